#!/usr/bin/env bash
# The layering of libfruitnet (libfruitnet/README.md): every source and private
# header belongs to one layer, and a file includes only the private headers of
# the layers below its own (or of its own layer). include/fruitnet.h, the public
# API, is open to all; system headers (<...>) are not checked. The tools and
# the fuzz harnesses include the public header only (and tools/*.h).
# A file that the table does not place fails the check: add it below.
# Usage: tests/check_layers.sh [BUILD_DIR] (the build folder is not used).
set -euo pipefail
cd "$(dirname "$0")/.."

# layer of a file (by its name; the first pattern that matches wins)
layer_of() {
    case "$1" in
    glibc_compat.h | util.h | util.c | isa.c) echo base ;;
    gemm.h | gemm_*.c | gemm_avx512_impl.h | winograd_impl.h | threadpool.h | threadpool.c) echo kernels ;;
    pca_kernels.h | pca_kernels_impl.h | pca_portable.c | pca_avx2.c | pca_avx512.c) echo kernels ;;
    conv.h | conv_plan.h | conv.c | conv_*.c | layers.h | pool.c) echo layers ;;
    files.h | files.c | atomic.c) echo io ;;
    image.c | png.c | jpeg_turbo.c | resize.c) echo io ;;
    fnw.h | fnw_write.c | weights.c | convert_tfjs.c | json.h | json.c) echo io ;;
    thrift.h | thrift.c | parquet.h | parquet_thrift.h | parquet_*.c) echo io ;;
    model.c | model_hook.h) echo model ;;
    pca_internal.h | pca_stats.c | pca_eigen.c | pca_io.c) echo model ;;
    classifier.h | classifier*.c) echo model ;;
    dataset.h | dataset.c | inputs.c | extract.c | pca_dataset.c | calibrate.c) echo dataset ;;
    fruitnet.h) echo public ;;
    *) echo unknown ;;
    esac
}

# the layers whose private headers a layer may include: kernels at the bottom, the layers on them, the
# model on the layers; I/O beside them (on the base only); the dataset pipeline on all of them
allowed() {
    case "$1" in
    base) echo "base" ;;
    kernels) echo "base kernels" ;;
    layers) echo "base kernels layers" ;;
    io) echo "base io" ;;
    model) echo "base kernels layers io model" ;;
    dataset) echo "base kernels layers io model dataset" ;;
    app) echo "app" ;;
    esac
}

fail=0
nfiles=0
check() { # file layer
    local f=$1 layer=$2 ok inc hl
    ok=" $(allowed "$layer") public "
    nfiles=$((nfiles + 1))
    while IFS= read -r inc; do
        case "$f" in
        tools/*) [ -f "tools/$inc" ] && hl=app || hl=$(layer_of "$inc") ;;
        *) hl=$(layer_of "$inc") ;;
        esac
        if [ "$hl" = unknown ] && [ -f "libfruitnet/$inc" ]; then
            echo "check_layers: libfruitnet/$inc (included by $f) is in no layer: add it to tests/check_layers.sh"
            fail=1
        elif [ "$hl" = unknown ]; then
            continue # a generated or system header reached with quotes
        elif [[ "$ok" != *" $hl "* ]]; then
            echo "check_layers: $f ($layer) includes $inc ($hl): a lower layer must not know a higher one"
            fail=1
        fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
}

for f in libfruitnet/*.c libfruitnet/*.h; do
    l=$(layer_of "$(basename "$f")")
    if [ "$l" = unknown ]; then
        echo "check_layers: $f is in no layer: add it to tests/check_layers.sh"
        fail=1
        continue
    fi
    check "$f" "$l"
done
for f in tools/*.c tools/*.h fuzz/*.c; do
    check "$f" app
done
[ -e libfruitnet/internal.h ] && { echo "check_layers: libfruitnet/internal.h is back: use the module headers"; fail=1; }
[ $fail = 0 ] || { echo "check_layers: FAILED"; exit 1; }
echo "check_layers: the $nfiles sources and headers of libfruitnet, tools and fuzz include no higher layer"
