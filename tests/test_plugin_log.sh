#!/usr/bin/env bash
# Plugins can talk: `cnnelm train -v` shows the OpenCL backend's program-cache messages (a miss
# with a fresh cache_dir, then a hit), the JSON report keeps them, and without -v they stay off
# stderr. usage: test_plugin_log.sh PATH/TO/cnnelm SOURCE_DIR FASHION_DIR
set -u
CNNELM=$1
SRC=$2
FASHION=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -e "$FASHION/train-images-idx3-ubyte.gz" ] && [ ! -e "$FASHION/train-images-idx3-ubyte" ]; then
  echo "SKIP: no Fashion-MNIST in $FASHION"; exit 0
fi
if ! "$CNNELM" devices 2>/dev/null | grep -A1 "^backend opencl" | grep -q "device 0"; then
  echo "SKIP: no OpenCL device"; exit 0
fi
img=$(ls "$FASHION"/train-images-idx3-ubyte* | head -1)
lab=$(ls "$FASHION"/train-labels-idx1-ubyte* | head -1)
timg=$(ls "$FASHION"/t10k-images-idx3-ubyte* | head -1)
tlab=$(ls "$FASHION"/t10k-labels-idx1-ubyte* | head -1)
args=(-c "$SRC/conf/paper-fashion.cfg" -s "data.train_images=\"$img\"" -s "data.train_labels=\"$lab\""
      -s "data.test_images=\"$timg\"" -s "data.test_labels=\"$tlab\"" -s data.train_limit=500
      -s data.test_limit=200 -s train.chunk=100 -s 'workers=({backend="opencl";device=0;})'
      -s "cache_dir=\"$tmp/cache\"" -o "$tmp/m.model")
failed=0
"$CNNELM" train -v -q "${args[@]}" --report "$tmp/r1.json" >"$tmp/out1" 2>"$tmp/err1" || { echo "FAIL: train -v: $(tail -3 "$tmp/err1")"; exit 1; }
grep -q "cache miss" "$tmp/err1" || { echo "FAIL: no cache miss message with -v: $(cat "$tmp/err1")"; failed=1; }
ls "$tmp/cache"/* >/dev/null 2>&1 || { echo "FAIL: nothing cached in cache_dir"; failed=1; }
grep -q '"plugin_messages"' "$tmp/r1.json" && grep -q "cache miss" "$tmp/r1.json" ||
  { echo "FAIL: the report lacks the plugin messages"; failed=1; }
"$CNNELM" train -v -q "${args[@]}" >"$tmp/out2" 2>"$tmp/err2" || { echo "FAIL: second train -v"; exit 1; }
grep -q "cache hit" "$tmp/err2" || { echo "FAIL: no cache hit message on the second run: $(cat "$tmp/err2")"; failed=1; }
"$CNNELM" train -q "${args[@]}" >"$tmp/out3" 2>"$tmp/err3" || { echo "FAIL: train without -v"; exit 1; }
if grep -q "cache hit" "$tmp/err3"; then echo "FAIL: plugin messages on stderr without -v"; failed=1; fi
[ $failed = 0 ] && echo "plugin_log: all passed"
exit $failed
