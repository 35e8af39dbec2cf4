#!/usr/bin/env bash
# Builds cnnelm twice (optimised with warnings as errors, then with AddressSanitizer and
# UndefinedBehaviorSanitizer) and runs every CTest suite on both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

echo "== optimised build (-Werror) =="
cmake -S . -B build -DCNNELM_WERROR=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build =="
cmake -S . -B build-sanitize -DCNNELM_WERROR=ON -DCNNELM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build-sanitize -j"$jobs"
ctest --test-dir build-sanitize --output-on-failure -j"$jobs"

echo "== libFuzzer harnesses (IDX reader, model decoder, config loader) under ASan + UBSan =="
# skipped with a message when clang with libFuzzer is absent; CNNELM_FUZZ_SECONDS=0 skips it too
if [ "${CNNELM_FUZZ_SECONDS:-60}" != 0 ]; then
  tests/fuzz.sh "${CNNELM_FUZZ_SECONDS:-60}"
fi

# Nothing the suite ran may have replaced a special file (as root, a careless `-o /dev/null`
# once turned /dev/null into a regular file on a developer machine).
if [ ! -c /dev/null ]; then
  echo "FAIL: /dev/null is no longer a character device after the tests"
  exit 1
fi
