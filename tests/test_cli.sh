#!/usr/bin/env bash
# Command-line tests: what a user types and sees. Exit codes (0 ok, 1 failed job, 2 usage),
# one-line error messages naming the file or setting, train -> eval agreement, reports, plots.
# usage: test_cli.sh PATH/TO/cnnelm SOURCE_DIR FASHION_DIR
set -u
CNNELM=$1
SRC=$2
FASHION=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

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

cfg="$SRC/conf/default.cfg"
slice=(-s data.train_limit=3000 -s data.test_limit=1000)

expect 0 "^cnnelm [0-9]" -- "$CNNELM" --version
expect 0 "usage: cnnelm COMMAND" -- "$CNNELM" --help
expect 0 "usage: cnnelm train" -- "$CNNELM" train --help
expect 2 "no command given" -- "$CNNELM"
expect 2 "unknown command 'bogus'" -- "$CNNELM" bogus
expect 2 "a config file is required" -- "$CNNELM" train
expect 2 "a model file is required" -- "$CNNELM" eval -c "$cfg"
expect 2 "unknown or incomplete option '--frobnicate'" -- "$CNNELM" train --frobnicate -c "$cfg"
expect 2 "expected KEY=VALUE" -- "$CNNELM" train -c "$cfg" -s train.seed
expect 1 "nonexistent.cfg: cannot open" -- "$CNNELM" train -c "$tmp/nonexistent.cfg"
expect 1 "-s model.kernel=0: .*out of range" -- "$CNNELM" train -c "$cfg" -s model.kernel=0
expect 1 "unknown setting 'model.layer'.*did you mean 'model.layers'" -- "$CNNELM" train -c "$cfg" -s model.layer=6c
expect 1 "layer 2 \(5s\): pooling size 5 does not divide" -- "$CNNELM" train -c "$cfg" -s model.layers=6c-5s
expect 1 "backend 'nosuch' not found" -- "$CNNELM" train -c "$cfg" -s 'workers=({backend="nosuch";})'
expect 1 "has no device 7" -- "$CNNELM" train -c "$cfg" -s 'workers=({backend="cpu";device=7;})' "${slice[@]}"
expect 0 "^  device 0: .*\[cpu\]" -- "$CNNELM" devices
expect 1 "no-such-images.gz: cannot open" -- "$CNNELM" train -c "$cfg" -s "data.train_images=\"$tmp/no-such-images.gz\""

if [ -r "$FASHION/train-images-idx3-ubyte.gz" ]; then
  # train -> model + report; eval of the saved model gives the training run's figure
  expect 0 "model saved to" -- "$CNNELM" train -q -c "$cfg" "${slice[@]}" -o "$tmp/a.model" --report "$tmp/a.json"
  train_acc=$(grep -oE 'test accuracy [0-9.]+%' "$tmp/out" | head -1)
  expect 0 "" -- "$CNNELM" eval -q -m "$tmp/a.model" -c "$cfg" "${slice[@]}" --report "$tmp/e.json"
  eval_acc=$(grep -oE 'test accuracy [0-9.]+%' "$tmp/out" | head -1)
  if [ -n "$train_acc" ] && [ "$train_acc" = "$eval_acc" ]; then ok; else bad "train said '$train_acc', eval said '$eval_acc'"; fi
  # quiet means nothing on stderr
  "$CNNELM" train -q -c "$cfg" "${slice[@]}" -o "$tmp/q.model" 2>"$tmp/err" >/dev/null
  if [ ! -s "$tmp/err" ]; then ok; else bad "--quiet still wrote to stderr: $(head -2 "$tmp/err")"; fi
  # without -q and not on a terminal: one line per stage
  "$CNNELM" train -c "$cfg" "${slice[@]}" -o "$tmp/q.model" 2>"$tmp/err" >/dev/null
  if grep -q "iteration 0: ELM fit: 3000 images in" "$tmp/err"; then ok; else bad "no stage line on stderr: $(head -3 "$tmp/err")"; fi
  # reports are JSON with the figures a user looks for
  if command -v python3 >/dev/null; then
    if python3 - "$tmp/a.json" "$tmp/e.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1])); e = json.load(open(sys.argv[2]))
assert a["command"] == "train" and e["command"] == "eval"
assert 0.5 < a["test"]["accuracy"] <= 1 and a["test"]["accuracy"] == e["test"]["accuracy"]
assert len(a["test"]["confusion"]) == 10 and sum(map(sum, a["test"]["confusion"])) == 1000
assert "layers" in a["model"] and a["model"]["hidden"] == 192 and "timings" in a and "config" in a
PY
    then ok; else bad "reports are not what they should be"; fi
  fi
  # damaged model files are clear errors
  cp "$tmp/a.model" "$tmp/bad.model"
  printf 'X' | dd of="$tmp/bad.model" bs=1 seek=2000 conv=notrunc 2>/dev/null
  expect 1 "bad.model: checksum mismatch" -- "$CNNELM" eval -m "$tmp/bad.model" -c "$cfg" "${slice[@]}"
  head -c 1000 "$tmp/a.model" >"$tmp/short.model"
  expect 1 "short.model: truncated" -- "$CNNELM" eval -m "$tmp/short.model" -c "$cfg" "${slice[@]}"
  expect 1 "not a cnnelm model file" -- "$CNNELM" eval -m "$cfg" -c "$cfg" "${slice[@]}"
  # a failed save leaves no file behind and the earlier model intact
  before=$(cksum <"$tmp/a.model")
  expect 1 "cannot" -- "$CNNELM" train -q -c "$cfg" "${slice[@]}" -o "$tmp/no-such-dir/x.model"
  if [ "$(cksum <"$tmp/a.model")" = "$before" ]; then ok; else bad "earlier model changed"; fi
else
  echo "SKIP: Fashion-MNIST not installed ($FASHION); install Debian's dataset-fashion-mnist"
fi

echo "cli: $passed passed, $failed failed"
[ "$failed" = 0 ]
