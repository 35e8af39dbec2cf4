#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c: IDX reader, model decoder, config loader)
# with clang under AddressSanitizer + UndefinedBehaviorSanitizer and runs each for a bounded time
# from its seed corpus (tests/fuzz/corpus/NAME) and dictionary (tests/fuzz/NAME.dict).
# usage: tests/fuzz.sh [SECONDS_EACH (default 60)] [NAME...]
#        tests/fuzz.sh --replay OUT_DIR [CC [CFLAGS...]]
# --replay builds each harness from the same source lists with an ordinary compiler (no libFuzzer)
# and tests/fuzz/replay_main.c, and runs it once over its seed and regression inputs: CTest's
# `fuzz_replay` does this on every test run, so a harness that no longer links fails there.
# A crash, leak, sanitizer report or slow input stops with exit 1; the input is kept under
# build-fuzz/artifacts/NAME/: add it to tests/fuzz/corpus/NAME/ with the fix (a regression input).
# Without clang (with libFuzzer) it says so and exits 0, so a machine without it still tests.
set -euo pipefail
cd "$(dirname "$0")/.."
replay=""
names=()
if [ "${1:-}" = --replay ]; then
  replay=${2:?usage: tests/fuzz.sh --replay OUT_DIR [CC [CFLAGS...]]}
  shift 2
fi
if [ -z "$replay" ]; then
  seconds=${1:-60}
  shift || true
  names=("$@")
fi
[ ${#names[@]} -gt 0 ] || names=(idx model config)

libs=($(pkg-config --libs libconfig zlib) -lm -lpthread -ldl)
# the IDX reader and what it pulls in: the stream, its noise and augmentation, atomic files
idx_sources="core/src/data/idx_header.c core/src/data/idx_read.c core/src/data/idx_gunzip.c core/src/data/idx_write.c core/src/data/dataset_stream.c core/src/data/noise.c core/src/data/augment.c core/src/data/class_names.c core/src/base/atomic_file.c core/src/base/error.c"
declare -A sources=(
  [idx]="$idx_sources"
  [model]="core/src/model/model.c core/src/model/model_io.c $idx_sources"
  [config]="$(echo core/src/config/*.c) core/src/base/error.c"
)

if [ -n "$replay" ]; then
  rcc=${1:-cc}
  shift || true
  mkdir -p "$replay"
  for name in idx model config; do
    # shellcheck disable=SC2086
    "$rcc" -std=c11 -g -O1 -Wall -Wextra -Werror "$@" -Icore/include -Icore/src -Iplugins/include \
      -o "$replay/replay_$name" tests/fuzz/replay_main.c "tests/fuzz/fuzz_$name.c" ${sources[$name]} "${libs[@]}"
    echo "fuzz replay: $name: $("$replay/replay_$name" "tests/fuzz/corpus/$name")"
  done
  exit 0
fi

cc=""
for c in "${CNNELM_FUZZ_CC:-}" clang-14 clang; do
  if [ -n "$c" ] && command -v "$c" >/dev/null &&
     echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { (void)d; (void)n; return 0; }' |
       "$c" -x c -fsanitize=fuzzer -o "${TMPDIR:-/tmp}/cnnelm-fuzz-probe.$$" - 2>/dev/null; then
    rm -f "${TMPDIR:-/tmp}/cnnelm-fuzz-probe.$$"
    cc=$c
    break
  fi
done
if [ -z "$cc" ]; then
  echo "fuzz: SKIP: no clang with libFuzzer (Debian: apt-get install clang); the harnesses did not run"
  exit 0
fi

out=build-fuzz
mkdir -p "$out"
flags=(-g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Icore/include -Icore/src -Iplugins/include)
declare -A max_len=([idx]=8192 [model]=65536 [config]=8192)
status=0
for name in "${names[@]}"; do
  [ -n "${sources[$name]:-}" ] || { echo "fuzz: unknown harness '$name' (idx, model, config)"; exit 2; }
  # shellcheck disable=SC2086
  "$cc" "${flags[@]}" -o "$out/fuzz_$name" "tests/fuzz/fuzz_$name.c" ${sources[$name]} "${libs[@]}"
  work="$out/corpus/$name"
  art="$out/artifacts/$name"
  mkdir -p "$work" "$art"
  dict=()
  [ -e "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  echo "fuzz: $name for ${seconds}s"
  # new inputs go to the work corpus; the seeds in the tree are only read
  if ! ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 \
       "$out/fuzz_$name" "$work" "tests/fuzz/corpus/$name" "${dict[@]}" -max_total_time="$seconds" \
       -max_len="${max_len[$name]}" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$art/" >"$out/$name.log" 2>&1; then
    echo "fuzz: $name FAILED; the input is in $art/, the report in $out/$name.log:"
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$out/$name.log" | head -8
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/$name.log" | tr '\n' ' '
    echo
  fi
done
exit $status
