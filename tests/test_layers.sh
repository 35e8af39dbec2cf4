#!/usr/bin/env bash
# The core's layering, checked: core/src has one folder per layer, and a file may include only
# headers of its own layer or of a lower one (the plugin ABI headers, cnnelm/backend*.h, are
# below every layer). Also the library's two promises from docs/architecture.md: it never exits
# (no exit/abort/MPI_Abort in core/src, but for lines marked exit-ok: a forked child, a fatal
# signal's handler) and never writes to stdout (only core/tools does).
# usage: tests/test_layers.sh [SOURCE_DIR]
set -uo pipefail
top=${1:-$(dirname "$0")/..}
src=$top/core/src
layers=(base config plugins data model cluster training report)
rank() { local i; for i in "${!layers[@]}"; do [ "${layers[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo -1; }

# public headers (core/include/cnnelm) by the layer that implements them
declare -A public=(
  [error.h]=base [enums.h]=base [config.h]=config [layers.h]=base [plugin.h]=plugins [dataset.h]=data
  [model.h]=model [cluster.h]=cluster [metrics.h]=training [reduce.h]=training
  [run.h]=report [predict.h]=report [plugin_check.h]=report
)
fail=0
bad() { echo "FAIL: $*"; fail=1; }

for f in "$src"/*.c "$src"/*.h; do
  [ -e "$f" ] && bad "${f#$top/} sits in core/src itself: every module belongs in a layer folder"
done
for d in "$src"/*/; do
  l=$(basename "$d")
  [ "$(rank "$l")" -ge 0 ] || bad "core/src/$l is not a layer (${layers[*]})"
done

for l in "${layers[@]}"; do
  [ -d "$src/$l" ] || continue
  me=$(rank "$l")
  for f in "$src/$l"/*.[ch]; do
    [ -e "$f" ] || continue
    while IFS= read -r inc; do
      case $inc in
        cnnelm/backend*.h) continue ;;
        cnnelm/*) h=${inc#cnnelm/}; tl=${public[$h]:-}
                  [ -n "$tl" ] || { bad "${f#$top/}: public header $inc has no layer in this test"; continue; } ;;
        */*) [ -e "$src/$inc" ] || { bad "${f#$top/}: $inc not found in core/src"; continue; }
             tl=${inc%%/*} ;;
        *) bad "${f#$top/}: #include \"$inc\" does not name its layer (write \"LAYER/$inc\")"; continue ;;
      esac
      [ "$(rank "$tl")" -le "$me" ] || bad "${f#$top/} ($l) includes $inc from the higher layer $tl"
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  done
done

# the library never exits and never prints to stdout (string literals and comment lines aside)
# prints "LINE: source" for each code line of $1 matching $2
code() {
  local n
  for n in $(sed -e 's/"\([^"\\]\|\\.\)*"/""/g' -e 's|/\*.*\*/||g' -e 's|//.*$||' "$1" |
             grep -nE "$2" | grep -vE '^[0-9]+:[[:space:]]*\*' | cut -d: -f1); do
    echo "$n: $(sed -n "${n}p" "$1" | sed 's/^[[:space:]]*//')"
  done
}
# A line may end the process only where nothing else can run: a forked child (which must
# _exit) or a fatal-signal handler; such a line says so with an "exit-ok:" comment.
for f in "$src"/*/*.c; do
  rel=${f#$top/}
  while IFS= read -r hit; do
    case $hit in *exit-ok:*) ;; *) bad "library code exits: $rel:$hit" ;; esac
  done < <(code "$f" '(^|[^_a-zA-Z0-9])(exit|_exit|_Exit|abort|MPI_Abort)[[:space:]]*\(')
  while IFS= read -r hit; do bad "library code writes to stdout: $rel:$hit"; done < <(
    code "$f" '(^|[^_a-zA-Z0-9])(printf|puts|putchar)[[:space:]]*\(|(^|[^_a-zA-Z0-9])stdout([^_a-zA-Z0-9]|$)')
done

[ "$fail" = 0 ] && echo "layers: every include runs downward; no exit, no stdout in core/src"
exit "$fail"
