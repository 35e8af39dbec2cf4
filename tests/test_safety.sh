#!/usr/bin/env bash
# Safety tests of the command line (issue 15): outputs are regular files or nothing, nothing is
# lost or half-written, stale checkpoints are not reused, hostile data files are clear errors.
# Small generated IDX data sets keep every run to a second or two.
# usage: test_safety.sh PATH/TO/cnnelm SOURCE_DIR
set -u
CNNELM=$1
SRC=$2
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
skip() { echo "SKIP: $*"; }

# expect CODE PATTERN -- command...: exit status CODE and stderr+stdout matching PATTERN
expect() {
  local code=$1 pattern=$2
  shift 3
  "$@" >"$tmp/out" 2>&1
  local got=$?
  if [ "$got" != "$code" ]; then
    bad "$* exited $got, expected $code: $(head -3 "$tmp/out")"
  elif [ -n "$pattern" ] && ! grep -qE -- "$pattern" "$tmp/out"; then
    bad "$*: output lacks /$pattern/: $(head -3 "$tmp/out")"
  else
    ok
  fi
}

# idx DIR N [BAD_LABEL]: raw IDX images (N of 28x28, random) and labels (i % 4; with BAD_LABEL,
# example 7 gets that label) as DIR/img and DIR/lab
idx() {
  python3 - "$@" <<'PY'
import os, random, struct, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
rng = random.Random(n)
with open(os.path.join(d, "img"), "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 28, 28))
    f.write(bytes(rng.randrange(256) for _ in range(n * 784)))
labels = [i % 4 for i in range(n)]
if len(sys.argv) > 3:
    labels[7] = int(sys.argv[3])
with open(os.path.join(d, "lab"), "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + bytes(labels))
PY
}

cfg="$SRC/conf/default.cfg"
# data D: the -s settings that train and test on the generated set in D
data() {
  echo -s "data.train_images=\"$1/img\"" -s "data.train_labels=\"$1/lab\"" \
       -s "data.test_images=\"$1/img\"" -s "data.test_labels=\"$1/lab\""
}
idx "$tmp/d" 200
# shellcheck disable=SC2207
D=($(data "$tmp/d"))
one='workers=({backend="cpu";threads=1;})'
base=(-q -c "$cfg" "${D[@]}" -s "$one")

expect 0 "model saved to" -- "$CNNELM" train "${base[@]}" -o "$tmp/ok.model"

# ---- 6: a stray training label is an error naming the file, the example and the value ----
idx "$tmp/badlab" 200 200
expect 1 "badlab/lab: label 200 of example 7 is out of range" -- "$CNNELM" train "${base[@]}" $(data "$tmp/badlab") -o "$tmp/x.model"
# ---- 6: zero-mean kernels of size 1 would all be 0 ----
expect 1 "model.kernel = 1" -- "$CNNELM" train "${base[@]}" -s model.kernel=1 -o "$tmp/x.model"
expect 0 "model saved" -- "$CNNELM" train "${base[@]}" -s model.kernel=1 -s 'model.init="uniform"' -o "$tmp/x.model"

echo "safety: $passed passed, $failed failed"
[ "$failed" = 0 ]
