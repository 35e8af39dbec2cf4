#!/usr/bin/env bash
# The plugin SDK as a plugin author uses it: install cnnelm into a temporary prefix, copy the
# prefix elsewhere (the original removed), build the installed template
# (share/cnnelm/plugin-sdk/template) out of tree twice (the CMake package, and
# `pkg-config --cflags cnnelm` alone), install the CMake one into CNNELM_PLUGIN_INSTALL_DIR and
# see the copied command find it there, and run `cnnelm plugin-check` on both results and on the
# in-tree CPU plugin.
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
# The SDK must work from a copy of the prefix: nothing may point back at where it was installed.
cp -a "$tmp/prefix" "$tmp/copy" && rm -rf "$tmp/prefix"
p=$tmp/copy
cnnelm=$p/bin/cnnelm
pcdir=$p/lib/pkgconfig:$p/lib64/pkgconfig:$p/lib/x86_64-linux-gnu/pkgconfig
check "CMake package installed" 'ls "$p"/lib*/cmake/cnnelm/cnnelmConfig.cmake "$p"/lib*/cmake/cnnelm/cnnelmConfigVersion.cmake >/dev/null 2>&1 ||
  ls "$p"/lib/*/cmake/cnnelm/cnnelmConfig.cmake >/dev/null 2>&1'
check "pkg-config file installed" 'PKG_CONFIG_PATH=$pcdir pkg-config --exists cnnelm cnnelm-plugin'
sdk=$p/share/cnnelm/plugin-sdk
check "plugins/README.md installed under share/cnnelm/plugin-sdk" 'cmp -s "$sdk/README.md" "$src/plugins/README.md"'
check "the template installed under share/cnnelm/plugin-sdk" \
  'diff -r "$sdk/template" "$src/plugins/template" >/dev/null'
cpu_plugin=$(ls "$p"/lib*/cnnelm/libcnnelm-cpu.so "$p"/lib/*/cnnelm/libcnnelm-cpu.so 2>/dev/null | head -n 1)
plugindir=$(dirname "${cpu_plugin:-/nonexistent/x}")

# pkg-config's variables point into the copy
for v in pluginsdir sdkdir includedir; do
  val=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=$v cnnelm)
  real=$(realpath -m "$val")
  check "pkg-config --variable=$v cnnelm is inside the copied prefix ($val)" 'case "$real" in "$p"/*) true ;; *) false ;; esac && [ -d "$real" ]'
done
check "pluginsdir is where the plugins are" \
  '[ "$(realpath "$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=pluginsdir cnnelm)")" = "$(realpath "$plugindir")" ]'
check "cnnelm-plugin.pc adds no libraries (plugins do not link the core)" \
  '[ -z "$(PKG_CONFIG_PATH=$pcdir pkg-config --libs cnnelm-plugin | tr -d " ")" ]'

# 1. CMake: find_package(cnnelm) against the copied prefix, the installed template, out of tree
cp -r "$sdk/template" "$tmp/template"
cmake -S "$tmp/template" -B "$tmp/tb" -DCMAKE_PREFIX_PATH="$p" >"$tmp/tb.log" 2>&1 &&
  cmake --build "$tmp/tb" >>"$tmp/tb.log" 2>&1
rc=$?
check "template builds out of tree with find_package(cnnelm)" '[ $rc = 0 ] || { show "$tmp/tb.log"; false; }'
check "CMake build gives libcnnelm-mydevice.so" '[ -f "$tmp/tb/libcnnelm-mydevice.so" ]'
# CNNELM_PLUGIN_INSTALL_DIR is computed from the package's own location: installing the
# plugin puts it in the copy, where the copied command finds it
cmake --install "$tmp/tb" >"$tmp/tbi.log" 2>&1
rc=$?
check "the plugin installs into CNNELM_PLUGIN_INSTALL_DIR of the copy" \
  '[ $rc = 0 ] && [ -f "$plugindir/libcnnelm-mydevice.so" ] || { show "$tmp/tbi.log"; false; }'
out=$("$cnnelm" devices -v 2>&1)
check "the copied cnnelm finds the installed plugin in the copy" \
  'echo "$out" | grep -q "^backend mydevice ($(realpath "$plugindir")/libcnnelm-mydevice.so" || { echo "$out"; false; }'

# 2. pkg-config, no CMake at all: --cflags is all a plugin needs
mkdir -p "$tmp/pc"
cflags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags cnnelm 2>"$tmp/pc.log")
cc -shared -fPIC -fvisibility=hidden -Wall -Wextra -Werror $cflags "$sdk/template/template.c" \
  -o "$tmp/pc/libcnnelm-mydevice.so" -lm >>"$tmp/pc.log" 2>&1
rc=$?
check "template builds with pkg-config --cflags cnnelm ($cflags)" '[ $rc = 0 ] || { show "$tmp/pc.log"; false; }'
check "the pkg-config build does not link libcnnelm" \
  '! readelf -d "$tmp/pc/libcnnelm-mydevice.so" | grep -q "libcnnelm\.so"'

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
  cfg=$(ls "$p"/share/cnnelm/conf/paper-fashion.cfg 2>/dev/null || echo "$src/conf/paper-fashion.cfg")
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
