#!/usr/bin/env bash
# The plugin SDK as a plugin author uses it: install cnnelm into a temporary prefix, build
# plugins/template outside the tree twice (the CMake package and pkg-config), and run
# `cnnelm plugin-check` on both results and on the in-tree CPU plugin.
# With FASHION_DIR (the Fashion-MNIST IDX files), it also trains a small model with the
# template plugin, found through plugin_path as a user's config would name it.
# usage: test_sdk.sh BUILD_DIR SOURCE_DIR [FASHION_DIR]
set -u
build=$1
src=$2
fashion=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
check() { if eval "$2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $1"; fi; }
show() { sed 's/^/    /' "$1" | tail -n 40; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1
rc=$?
check "cmake --install" '[ $rc = 0 ] || { show "$tmp/install.log"; false; }'
cnnelm=$tmp/prefix/bin/cnnelm
pcdir=$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib64/pkgconfig:$tmp/prefix/lib/x86_64-linux-gnu/pkgconfig
check "CMake package installed" 'ls "$tmp"/prefix/lib*/cmake/cnnelm/cnnelmConfig.cmake "$tmp"/prefix/lib*/cmake/cnnelm/cnnelmConfigVersion.cmake >/dev/null 2>&1 ||
  ls "$tmp"/prefix/lib/*/cmake/cnnelm/cnnelmConfig.cmake >/dev/null 2>&1'
check "pkg-config file installed" 'PKG_CONFIG_PATH=$pcdir pkg-config --exists cnnelm'

# 1. CMake: find_package(cnnelm) against the installed prefix, out of tree
cp -r "$src/plugins/template" "$tmp/template"
cmake -S "$tmp/template" -B "$tmp/tb" -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/tb.log" 2>&1 &&
  cmake --build "$tmp/tb" >>"$tmp/tb.log" 2>&1
rc=$?
check "template builds out of tree with find_package(cnnelm)" '[ $rc = 0 ] || { show "$tmp/tb.log"; false; }'
check "CMake build gives libcnnelm-mydevice.so" '[ -f "$tmp/tb/libcnnelm-mydevice.so" ]'

# 2. pkg-config, no CMake at all
mkdir -p "$tmp/pc"
cflags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags cnnelm 2>"$tmp/pc.log")
cc -shared -fPIC -fvisibility=hidden -Wall -Wextra $cflags "$src/plugins/template/template.c" \
  -o "$tmp/pc/libcnnelm-mydevice.so" -lm >>"$tmp/pc.log" 2>&1
rc=$?
check "template builds with pkg-config --cflags cnnelm ($cflags)" '[ $rc = 0 ] || { show "$tmp/pc.log"; false; }'

# Each plugin exports its entry and nothing else of its own
for so in "$tmp/tb/libcnnelm-mydevice.so" "$tmp/pc/libcnnelm-mydevice.so"; do
  [ -f "$so" ] || continue
  exports=$(nm -D --defined-only "$so" 2>/dev/null | awk '{print $3}' | grep -v '^_' | sort | tr '\n' ' ')
  check "$so exports only cnnelm_backend_entry (got: $exports)" '[ "$exports" = "cnnelm_backend_entry " ]'
done

# 3. The installed command checks every plugin against the installed CPU reference
for so in "$tmp/tb/libcnnelm-mydevice.so" "$tmp/pc/libcnnelm-mydevice.so" "$build/lib/cnnelm/libcnnelm-cpu.so"; do
  if [ ! -f "$so" ]; then
    check "plugin-check $so: no such file" 'false'
    continue
  fi
  "$cnnelm" plugin-check "$so" >"$tmp/check.log" 2>&1
  rc=$?
  check "cnnelm plugin-check $so exits 0 (got $rc)" '[ $rc = 0 ] || { show "$tmp/check.log"; false; }'
  check "cnnelm plugin-check $so: nothing failed" 'grep -Eq "^plugin-check: [1-9][0-9]* passed, 0 failed" "$tmp/check.log" || { show "$tmp/check.log"; false; }'
done

# 4. A user's run: plugin_path points at the build, the worker names the plugin
if [ -n "$fashion" ] && [ -r "$fashion/train-images-idx3-ubyte.gz" ] && [ -f "$tmp/tb/libcnnelm-mydevice.so" ]; then
  cfg=$(ls "$tmp"/prefix/share/cnnelm/conf/paper-fashion.cfg 2>/dev/null || echo "$src/conf/paper-fashion.cfg")
  "$cnnelm" train -c "$cfg" -s "plugin_path=\"$tmp/tb\"" -s 'workers=({backend="mydevice";device=0;})' \
    -s "data.train_images=\"$fashion/train-images-idx3-ubyte.gz\"" \
    -s "data.train_labels=\"$fashion/train-labels-idx1-ubyte.gz\"" \
    -s "data.test_images=\"$fashion/t10k-images-idx3-ubyte.gz\"" \
    -s "data.test_labels=\"$fashion/t10k-labels-idx1-ubyte.gz\"" \
    -s data.train_limit=2000 -s data.test_limit=500 -o "$tmp/m.model" >"$tmp/train.log" 2>&1
  rc=$?
  check "train with the template plugin exits 0 (got $rc)" '[ $rc = 0 ] || { show "$tmp/train.log"; false; }'
  check "train with the template plugin reports a test accuracy" 'grep -Eq "test accuracy [0-9.]+%" "$tmp/train.log" || { show "$tmp/train.log"; false; }'
fi

echo "sdk: $passed passed, $failed failed"
[ "$failed" = 0 ]
