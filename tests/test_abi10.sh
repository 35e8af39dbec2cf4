#!/usr/bin/env bash
# ABI 1.0 plugins keep working: the plugin template as it was at 1.0 (tests/stubs/template_v10.c,
# abi_minor 0, built against today's header) passes `cnnelm plugin-check` and trains to the same
# model file, byte for byte, as today's 1.1 template.
# usage: test_abi10.sh PATH/TO/cnnelm SOURCE_DIR FASHION_DIR DIR_V10 DIR_V11
set -u
CNNELM=$1
SRC=$2
FASHION=$3
V10=$4
V11=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
"$CNNELM" plugin-check "$V10/libcnnelm-mydevice.so" >"$tmp/check" 2>&1 ||
  { echo "FAIL: plugin-check of the 1.0 template: $(tail -5 "$tmp/check")"; failed=1; }
grep -qE "[0-9]+ passed, 0 failed" "$tmp/check" || { echo "FAIL: plugin-check: $(tail -3 "$tmp/check")"; failed=1; }
if [ ! -e "$FASHION/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: training (no Fashion-MNIST in $FASHION)"; exit $failed
fi
args=(-q -c "$SRC/conf/paper-fashion.cfg"
      -s "data.train_images=\"$FASHION/train-images-idx3-ubyte.gz\"" -s "data.train_labels=\"$FASHION/train-labels-idx1-ubyte.gz\""
      -s "data.test_images=\"$FASHION/t10k-images-idx3-ubyte.gz\"" -s "data.test_labels=\"$FASHION/t10k-labels-idx1-ubyte.gz\""
      -s data.train_limit=600 -s data.test_limit=200 -s train.chunk=200 -s 'workers=({backend="mydevice";})')
"$CNNELM" train "${args[@]}" -s "plugin_path=\"$V10\"" -o "$tmp/v10.model" >"$tmp/o10" 2>&1 ||
  { echo "FAIL: training on the 1.0 template: $(tail -3 "$tmp/o10")"; exit 1; }
"$CNNELM" train "${args[@]}" -s "plugin_path=\"$V11\"" -o "$tmp/v11.model" >"$tmp/o11" 2>&1 ||
  { echo "FAIL: training on the 1.1 template: $(tail -3 "$tmp/o11")"; exit 1; }
cmp -s "$tmp/v10.model" "$tmp/v11.model" || { echo "FAIL: the 1.0 and 1.1 templates trained different models"; failed=1; }
grep -q "test accuracy" "$tmp/o10" || { echo "FAIL: no test accuracy from the 1.0 run"; failed=1; }
[ $failed = 0 ] && echo "abi10: all passed ($(grep -oE 'test accuracy [0-9.]+%' "$tmp/o10" | head -1))"
exit $failed
