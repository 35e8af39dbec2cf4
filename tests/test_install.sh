#!/usr/bin/env bash
# `cmake --install` into a temporary prefix gives a working tool: the command, the library, the
# plugins (found beside the library), the public headers and the configs.
# usage: test_install.sh BUILD_DIR
set -u
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
check() { if eval "$2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $1"; fi; }
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null 2>"$tmp/err"
check "cmake --install" '[ $? = 0 ]'
check "command installed" '[ -x "$tmp/prefix/bin/cnnelm" ]'
check "headers installed" '[ -f "$tmp/prefix/include/cnnelm/backend.h" ] && [ -f "$tmp/prefix/include/cnnelm/run.h" ]'
check "configs installed" '[ -f "$tmp/prefix/share/cnnelm/conf/default.cfg" ]'
# moved elsewhere, it still finds its library and its plugins
mv "$tmp/prefix" "$tmp/moved"
out=$("$tmp/moved/bin/cnnelm" devices -v 2>&1)
check "installed cnnelm finds its CPU plugin after a move: $out" 'echo "$out" | grep -q "^backend cpu ($tmp/moved/"'
echo "install: $passed passed, $failed failed"
[ "$failed" = 0 ]
