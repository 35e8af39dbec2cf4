#!/usr/bin/env bash
# `cmake --install` into a temporary prefix gives a working tool and a clean SDK: the command,
# libcnnelm.so exporting exactly the functions of the public headers, the public and plugin ABI
# headers (and no internal one), the configs; moved elsewhere, the command finds its plugins
# there and nowhere else (no build-tree or /usr/local path is baked into an installed binary),
# and a program using the public API builds from `pkg-config --cflags --libs cnnelm` alone.
# usage: test_install.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
check() { if eval "$2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $1"; fi; }
for tool in cmake pkg-config nm readelf cc; do
  command -v $tool >/dev/null || { echo "FAIL: $tool is needed and missing"; exit 1; }
done
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1
rc=$?
check "cmake --install exits 0 (got $rc)" '[ $rc = 0 ] || cat "$tmp/install.log"'
p=$tmp/prefix
check "command installed" '[ -x "$p/bin/cnnelm" ]'
lib=$(ls "$p"/lib*/libcnnelm.so.0 "$p"/lib/*/libcnnelm.so.0 2>/dev/null | head -n 1)
check "libcnnelm.so installed" '[ -n "$lib" ] && [ -f "$lib" ]'
check "CPU plugin installed" 'ls "$p"/lib*/cnnelm/libcnnelm-cpu.so >/dev/null 2>&1'
check "configs installed" '[ -f "$p/share/cnnelm/conf/default.cfg" ]'

# headers: the public API and the plugin ABI, nothing internal
inc=$p/include/cnnelm
# the public API headers (core/CMakeLists.txt CNNELM_PUBLIC_HEADERS)
public_headers="config.h model.h run.h dataset.h metrics.h error.h layers.h enums.h predict.h reduce.h"
for h in $public_headers backend.h; do
  check "header $h installed" '[ -f "$inc/$h" ]'
done
for h in plugin.h plugin_check.h cluster.h network.h ops.h train.h; do
  check "internal header $h not installed" '[ ! -e "$inc/$h" ]'
done
check "public headers do not include the plugin ABI" \
  '! grep -l "cnnelm/backend.h" "$inc"/config.h "$inc"/model.h "$inc"/run.h "$inc"/dataset.h "$inc"/reduce.h'
# each public header stands alone, without the plugin ABI anywhere on the include path
mkdir -p "$tmp/noabi/cnnelm"
cp "$inc"/*.h "$tmp/noabi/cnnelm/" && rm -f "$tmp/noabi/cnnelm/backend.h"
for h in $public_headers; do
  echo "#include <cnnelm/$h>" >"$tmp/one.c"
  check "<cnnelm/$h> compiles alone" 'cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I"$tmp/noabi" "$tmp/one.c" 2>&1'
done
# the enums the public headers share with the ABI: both in one file, same values
cat >"$tmp/both.c" <<'C'
#include <cnnelm/model.h>
#include <cnnelm/backend.h>
_Static_assert(CNNELM_ACT_OPTTANH == 2 && CNNELM_POOL_MAX == 1, "enum values");
C
check "public headers and backend.h together" 'cc -std=c11 -Wall -Werror -fsyntax-only -I"$p/include" "$tmp/both.c" 2>&1'

# exports: exactly the functions declared in the installed public headers
nm -D --defined-only "$lib" | awk '$2 ~ /[TWDBR]/ {print $3}' | grep -v '^_' | sort >"$tmp/exported"
for h in $public_headers; do
  grep -E '^[a-z][a-z0-9_ ]*[ *]cnnelm_[a-z0-9_]+\(' "$inc/$h" | grep -Ev '^(static|typedef) ' |
    grep -oE 'cnnelm_[a-z0-9_]+\(' | tr -d '('
done | sort -u >"$tmp/declared"
echo "libcnnelm.so exports $(wc -l <"$tmp/exported") symbols; the public headers declare $(wc -l <"$tmp/declared") functions"
check "every exported symbol is declared in a public header: $(comm -23 "$tmp/exported" "$tmp/declared" | tr '\n' ' ')" \
  '[ -z "$(comm -23 "$tmp/exported" "$tmp/declared")" ]'
check "every public function is exported: $(comm -13 "$tmp/exported" "$tmp/declared" | tr '\n' ' ')" \
  '[ -z "$(comm -13 "$tmp/exported" "$tmp/declared")" ]'
check "internal functions are not exported" '! grep -qE "^cnnelm_(plugin_load|net_|pool_|train_|op_)" "$tmp/exported"'

# nothing absolute baked in: the build tree (plugins were searched there) and /usr/local
for f in "$p/bin/cnnelm" "$lib"; do
  { readelf -p .rodata "$f"; readelf -d "$f"; } >"$tmp/strings" 2>/dev/null
  check "$f names neither the build tree nor /usr/local" \
    '! grep -E "$build|/usr/local" "$tmp/strings"'
done

# moved elsewhere, it still finds its library and its plugins, and looks nowhere else
mv "$tmp/prefix" "$tmp/moved"
m=$tmp/moved
lib=$m${lib#"$tmp/prefix"}
out=$("$m/bin/cnnelm" devices -v 2>&1)
check "installed cnnelm finds its CPU plugin after a move: $out" 'echo "$out" | grep -q "^backend cpu ($m/"'
dirs=$(echo "$out" | sed -n '/^plugin search path:/,/^[^ ]/p' | grep '^  ' | sed 's/^  //')
check "search path after the move is inside the moved prefix only: $dirs" \
  '[ -n "$dirs" ] && ! echo "$dirs" | grep -qv "^$m/"'

# the command's loading rules: a planted world-writable plugin is refused unless
# --allow-insecure-plugins (anywhere on the line) says load it with a warning; a bare relative
# CNNELM_PLUGIN_PATH entry is an error
mkdir -p "$tmp/open"
cp "$(ls "$m"/lib*/cnnelm/libcnnelm-cpu.so | head -n 1)" "$tmp/open/libcnnelm-planted.so"
chmod 0777 "$tmp/open"
out=$("$m/bin/cnnelm" devices --plugin-path "$tmp/open" 2>&1)
check "devices refuses the planted plugin: $out" \
  'echo "$out" | grep -q "libcnnelm-planted.so: unusable: .*refusing to load plugin: its directory $tmp/open is writable by others"'
out=$("$m/bin/cnnelm" devices --plugin-path "$tmp/open" --allow-insecure-plugins 2>&1)
check "--allow-insecure-plugins loads it with a warning: $out" \
  'echo "$out" | grep -q "^cnnelm: warning: loading plugin .*libcnnelm-planted.so although" &&
   echo "$out" | grep -q "^backend cpu ($tmp/open/libcnnelm-planted.so"'
out=$(cd "$m" && CNNELM_PLUGIN_PATH=lib/cnnelm "$m/bin/cnnelm" devices 2>&1)
rc=$?
check "a relative CNNELM_PLUGIN_PATH entry is an error (exit $rc): $out" \
  '[ $rc = 1 ] && echo "$out" | grep -q "CNNELM_PLUGIN_PATH entry .lib/cnnelm. is a relative path"'
chmod 0755 "$tmp/open"
out=$(cd "$tmp" && CNNELM_PLUGIN_PATH=./open "$m/bin/cnnelm" devices 2>&1)
check "written ./open it is searched: $out" 'echo "$out" | grep -q "^backend cpu ($tmp/open/libcnnelm-planted.so"'

# a program on the public API, built with pkg-config only, runs against the moved library
cat >"$tmp/user.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <cnnelm/config.h>
#include <cnnelm/model.h>
#include <cnnelm/run.h>
int main(void)
{
    static cnnelm_config cfg;
    const char *set[] = { "train.seed=7" };
    cnnelm_error err = { "" };
    if (cnnelm_config_load(&cfg, NULL, set, 1, &err) != 0) { printf("error: %s\n", err.msg); return 1; }
    printf("seed %d, %s\n", (int)cfg.train.seed, cnnelm_activation_name(CNNELM_ACT_RELU));
    cnnelm_config_free(&cfg);
    fflush(stdout);
    /* the plugins are found beside the library, wherever this program is */
    if (cnnelm_run_devices(NULL, 1, stdout, &err) < 0) { printf("error: %s\n", err.msg); return 1; }
    return 0;
}
C
pcpath=$(ls -d "$m"/lib*/pkgconfig "$m"/lib/*/pkgconfig 2>/dev/null | tr '\n' ':')
flags=$(PKG_CONFIG_PATH=$pcpath pkg-config --cflags --libs cnnelm)
# a sanitizer build's library needs its runtime first in the program
san=""
if readelf -d "$lib" | grep -q "libasan"; then san="-fsanitize=address,undefined"; fi
cc -std=c11 -Wall -Werror $san "$tmp/user.c" -o "$tmp/user" $flags >"$tmp/user.log" 2>&1
rc=$?
check "a program builds with pkg-config --cflags --libs cnnelm ($flags)" '[ $rc = 0 ] || cat "$tmp/user.log"'
out=$(LD_LIBRARY_PATH=$(dirname "$lib") "$tmp/user" 2>&1)
check "it runs on the moved libcnnelm.so: $out" '[ "$(echo "$out" | head -n 1)" = "seed 7, relu" ]'
check "libcnnelm.so finds the plugins beside itself: $out" 'echo "$out" | grep -q "^backend cpu ($m/"'
# the same program through the CMake package's cnnelm::cnnelm, from the moved prefix
mkdir -p "$tmp/cm"
cp "$tmp/user.c" "$tmp/cm/user.c"
cat >"$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(cnnelm-user C)
find_package(cnnelm 0.1 REQUIRED)
add_executable(user user.c)
target_link_libraries(user PRIVATE cnnelm::cnnelm)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$m" -DCMAKE_C_FLAGS="$san" >"$tmp/cm.log" 2>&1 &&
  cmake --build "$tmp/cm/build" >>"$tmp/cm.log" 2>&1
rc=$?
check "a program builds with find_package(cnnelm) and cnnelm::cnnelm" '[ $rc = 0 ] || cat "$tmp/cm.log"'
out=$("$tmp/cm/build/user" 2>&1)
check "it runs: $(echo "$out" | head -n 1)" '[ "$(echo "$out" | head -n 1)" = "seed 7, relu" ]'
echo "install: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 30 ]
