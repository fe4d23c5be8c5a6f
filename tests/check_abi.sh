#!/usr/bin/env bash
# The shared library exports exactly the functions that include/fruitnet.h
# declares: no private symbol (json_parse, tb_i32, fn_gemm_avx2...) leaks, and
# no declared function is missing. Usage: tests/check_abi.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
so="${1:-build}/libfruitnet.so"
[ -f "$so" ] || { echo "check_abi: $so: not built"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# declared: every identifier called like a function in the preprocessed header
# (typedef'd callback types are written (*name)(...) and do not match)
${CC:-cc} -E -P -Iinclude include/fruitnet.h | tr -s ' \t\n' ' ' |
  grep -oE '\b(fn|fruitnet)_[A-Za-z0-9_]+ ?\(' | tr -d ' (' | sort -u > "$tmp/declared"
nm -D --defined-only "$so" | awk '$2 ~ /^[TtWiDdBbRr]$/ {print $3}' | sed 's/@.*//' | sort -u > "$tmp/exported"
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
n=$(wc -l < "$tmp/exported")
if [ -n "$extra" ]; then echo "check_abi: $so exports symbols that include/fruitnet.h does not declare:"; echo "$extra" | sed 's/^/  /'; fi
if [ -n "$missing" ]; then echo "check_abi: include/fruitnet.h declares functions that $so does not export:"; echo "$missing" | sed 's/^/  /'; fi
[ -z "$extra" ] && [ -z "$missing" ] || { echo "check_abi: FAILED"; exit 1; }
echo "check_abi: $so exports the $n functions that include/fruitnet.h declares, and nothing else"
