#!/usr/bin/env bash
# coverage.sh NAME SOURCE... — line coverage of library sources reached by a fuzz harness's corpus
# (fuzz/corpus/NAME plus build-fuzz/corpus/NAME when it exists). Builds the harness with clang's
# source-based coverage into build-cov/ (the same rules as `make fuzz-build`), runs the corpus once, and
# prints llvm-cov's report for the given sources, e.g.
#   fuzz/coverage.sh dataset libfruitnet/dataset.c
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
C=build-cov
objs=$(ls libfruitnet/*.c | sed "s#libfruitnet/\(.*\)\.c#$C/obj/\1.o#")
flags=$(make -s --eval 'fn-print-cppflags: ; @echo $(CPPFLAGS)' fn-print-cppflags)
nice make -s -j2 FUZZ_B=$C CPPFLAGS="$flags -fprofile-instr-generate -fcoverage-mapping" $objs "$C/fuzz_$name" >/dev/null
dirs=("$PWD/fuzz/corpus/$name"); [ -d "build-fuzz/corpus/$name" ] && dirs+=("$PWD/build-fuzz/corpus/$name")
LLVM_PROFILE_FILE="$PWD/$C/$name.profraw" "$C/fuzz_$name" -runs=0 "${dirs[@]}" 2>/dev/null
llvm-profdata merge -sparse "$C/$name.profraw" -o "$C/$name.profdata"
llvm-cov report "$C/fuzz_$name" -instr-profile="$C/$name.profdata" "$@"
