#!/usr/bin/env bash
# make install, then make uninstall, into temporary prefixes: the installed
# header, static and shared libraries (with their symlinks), fruitnet.pc, the
# tools, the Python package and the weights work, and uninstall leaves no file
# or symlink behind. Twice: PREFIX=<tmp> (the files used where they are) and
# DESTDIR=<tmp> PREFIX=/usr/local (a staged install, as packagers do).
# The weights are a small stand-in file (WEIGHTS=...), so no 100 MB copy.
# Usage: tests/check_install.sh [BUILD_DIR] (make test runs it; $FRUITNET_SAN: the
# sanitizer flags of that build, for the test programs; the Python import is then left out).
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build}"
MAKE="${MAKE:-make}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fruitnet-check-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "check_install: $*"; fails=$((fails + 1)); }
version=$(sed -n 's/^#define FRUITNET_VERSION "\(.*\)"/\1/p' include/fruitnet.h)
abi=$(sed -n 's/^#define FRUITNET_ABI \([0-9]*\)$/\1/p' include/fruitnet.h)
[ -n "$abi" ] || { echo "check_install: no FRUITNET_ABI in include/fruitnet.h"; exit 1; }

# the stand-in weights: any bytes do (install copies them, the tools only find them)
mkdir -p "$tmp/src"
printf 'fruitnet check_install stand-in weights\n' > "$tmp/src/stand-in.fnw"
mk() { "$MAKE" -s --no-print-directory B="$B" WEIGHTS="$tmp/src/stand-in.fnw" "$@" > "$tmp/make.log" 2>&1 ||
    { cat "$tmp/make.log"; fail "make $* failed"; return 1; }; }

# ------------------------------------------------------------- PREFIX=<tmp>
P="$tmp/prefix"
mk PREFIX="$P" install || { echo "check_install: FAILED"; exit 1; }
for f in include/fruitnet.h lib/libfruitnet.a "lib/libfruitnet.so.$version" lib/pkgconfig/fruitnet.pc \
    share/fruitnet/resnet50.fnw; do
    [ -f "$P/$f" ] || fail "$P/$f: not installed"
done
[ "$(readlink "$P/lib/libfruitnet.so.$abi")" = "libfruitnet.so.$version" ] || fail "lib/libfruitnet.so.$abi: not a symlink to libfruitnet.so.$version"
[ "$(readlink "$P/lib/libfruitnet.so")" = libfruitnet.so.$abi ] || fail "lib/libfruitnet.so: not a symlink to libfruitnet.so.$abi"
cmp -s "$tmp/src/stand-in.fnw" "$P/share/fruitnet/resnet50.fnw" || fail "share/fruitnet/resnet50.fnw: not the WEIGHTS file"
[ "$(objdump -p "$P/lib/libfruitnet.so.$version" | awk '$1 == "SONAME" {print $2}')" = libfruitnet.so.$abi ] ||
    fail "libfruitnet.so.$version: SONAME is not libfruitnet.so.$abi"

# a program built against the installed header and fruitnet.pc, shared and static
cat > "$tmp/src/v.c" <<'EOF'
#include <fruitnet.h>
#include <stdio.h>
#include <string.h>
int main(void) { printf("%s\n", fn_version()); return strcmp(fn_version(), FRUITNET_VERSION) != 0; }
EOF
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
[ "$(pkg-config --modversion fruitnet)" = "$version" ] || fail "fruitnet.pc: version is not $version"
# shellcheck disable=SC2046
if ${CC:-cc} ${FRUITNET_SAN:-} -o "$tmp/v_shared" "$tmp/src/v.c" $(pkg-config --cflags --libs fruitnet) 2> "$tmp/cc.log"; then
    got=$(LD_LIBRARY_PATH="$P/lib" "$tmp/v_shared") || fail "the program linked to libfruitnet.so failed"
    [ "$got" = "$version" ] || fail "fn_version() of the installed libfruitnet.so is '$got', not $version"
    # (ldd's output is taken whole first: under pipefail, `ldd | grep -q` fails when grep exits before the
    # loader's last write, which kills it with SIGPIPE; 22 of 400 times on a loaded machine)
    deps=$(LD_LIBRARY_PATH="$P/lib" ldd "$tmp/v_shared") || fail "ldd $tmp/v_shared failed"
    grep -qF "libfruitnet.so.$abi => $P/lib/libfruitnet.so.$abi" <<< "$deps" ||
        fail "the program does not load $P/lib/libfruitnet.so.$abi"
else
    cat "$tmp/cc.log"
    fail "a program does not build with pkg-config --cflags --libs fruitnet"
fi
# shellcheck disable=SC2046
if ${CC:-cc} ${FRUITNET_SAN:-} -o "$tmp/v_static" "$tmp/src/v.c" $(pkg-config --cflags fruitnet) "$P/lib/libfruitnet.a" \
    $(pkg-config --static --libs-only-other --libs-only-l fruitnet | sed 's/-lfruitnet//') 2> "$tmp/cc.log"; then
    [ "$("$tmp/v_static")" = "$version" ] || fail "fn_version() of the installed libfruitnet.a is not $version"
    deps=$(ldd "$tmp/v_static" 2>&1 || true) # ("not a dynamic executable" is fine too)
    ! grep -q libfruitnet <<< "$deps" || fail "the static program still loads libfruitnet.so"
else
    cat "$tmp/cc.log"
    fail "a program does not link libfruitnet.a with pkg-config --static --libs fruitnet"
fi

# the tools
n=0
for t in tools/fruitnet-*.c; do
    t=$(basename "$t" .c)
    n=$((n + 1))
    out=$("$P/bin/$t" --version 2>&1) || fail "$P/bin/$t --version failed: $out"
    [[ "$out" == "$t $version"* ]] || fail "$P/bin/$t --version says '$out'"
done
[ "$n" -gt 0 ] || fail "no tool in tools/"

# the Python package: found by the prefix's python, or through PYTHONPATH as install says
PY=
for py in "${FRUITNET_PYTHON:-}" python3 /usr/bin/python3; do
    [ -n "$py" ] && command -v "$py" > /dev/null && "$py" -c 'import numpy' 2> /dev/null && { PY=$py; break; }
done
if [ -n "${FRUITNET_SAN:-}" ]; then
    echo "check_install: the Python package is not imported in a sanitizer build (python is not instrumented)"
elif [ -n "$PY" ]; then
    site=$(find "$P" -name _prefix.py -path '*/fruitnet/_prefix.py' -printf '%h\n' -quit)
    if [ -z "$site" ]; then
        fail "the Python package (fruitnet/_prefix.py) is not under $P"
    else
        got=$(cd "$tmp" && env -u FRUITNET_LIB -u FRUITNET_WEIGHTS PYTHONPATH="$(dirname "$site")" "$PY" -c '
import fruitnet, fruitnet._paths as p
print(fruitnet.__file__); print(fruitnet._lib.lib._name); print(p.PREFIX); print(fruitnet.find_weights())' 2>&1) ||
            fail "the installed Python package does not import: $got"
        want=$(printf '%s\n%s\n%s\n%s' "$site/__init__.py" "$P/lib/libfruitnet.so.$abi" "$P" "$P/share/fruitnet/resnet50.fnw")
        [ "$got" = "$want" ] || fail "the installed Python package uses other files:"$'\n'"$got"$'\n'"expected:"$'\n'"$want"
    fi
else
    fail "no python3 with numpy (\$FRUITNET_PYTHON, python3, /usr/bin/python3): the Python package is not checked"
fi

mk PREFIX="$P" uninstall || true
left=$(find "$P" ! -type d)
[ -z "$left" ] || fail "make uninstall PREFIX=$P left:"$'\n'"$left"

# ------------------------------------------------------------- DESTDIR=<tmp> PREFIX=/usr/local
D="$tmp/stage"
mk DESTDIR="$D" PREFIX=/usr/local install || { echo "check_install: FAILED"; exit 1; }
for f in include/fruitnet.h lib/libfruitnet.a lib/libfruitnet.so lib/libfruitnet.so.$abi lib/pkgconfig/fruitnet.pc \
    share/fruitnet/resnet50.fnw bin/fruitnet-extract; do
    [ -e "$D/usr/local/$f" ] || fail "DESTDIR=$D: /usr/local/$f not installed"
done
grep -qx 'prefix=/usr/local' "$D/usr/local/lib/pkgconfig/fruitnet.pc" || fail "DESTDIR: fruitnet.pc does not name prefix=/usr/local"
outside=$(find "$D" ! -type d ! -path "$D/usr/local/*")
[ -z "$outside" ] || fail "DESTDIR install wrote outside $D/usr/local:"$'\n'"$outside"
mk DESTDIR="$D" PREFIX=/usr/local uninstall || true
left=$(find "$D" ! -type d)
[ -z "$left" ] || fail "make uninstall DESTDIR=$D left:"$'\n'"$left"

[ $fails = 0 ] || { echo "check_install: FAILED ($fails)"; exit 1; }
echo "check_install: make install and uninstall (PREFIX=<tmp>, and DESTDIR=<tmp>) put in and took out the" \
    "header, libfruitnet.a, libfruitnet.so.$version + 2 symlinks, fruitnet.pc, $n tools, the Python package and the weights"
