#!/usr/bin/env bash
# run_peer.sh — ONNX Runtime figures for `make bench`, on the ONNX model built
# from fruitnet's own weight file (bench/onnx/make_onnx.py, run by the venv's
# python, which has onnx: make venv bench-peers-deps). Installs onnxruntime-node
# (--ignore-scripts; its CPU binary is inside the npm package), builds build/resnet50.onnx (git-ignored)
# when missing or older than the weights, then runs batch 1 and batch N in
# separate processes so that each peak RSS is its own.
#
# usage: bench/run_peer.sh [--threads T] [--batch N] [--iters1 K] [--itersN K]
# stdout (progress and install logs go to stderr):
#   ort batch=1 threads=T ms_per_batch=.. best_ms=.. img_per_s=.. peak_rss_mb=.. base_rss_mb=.. iters=.. warmup=.. load1=.. input=golden version=..
#   ort_check batch=1 images=1 max_abs=.. rel_l2=.. worst_rel_l2=.. ok=1
#   ort batch=N ...
#   ort_check batch=N images=min(N,8) ...
# Exit status non-zero when anything fails, including ORT's features missing the
# golden tolerance (then the figures of that run are still printed).
# Environment: FRUITNET_WEIGHTS (default weights/resnet50.fnw),
# FRUITNET_GOLDEN (default ../shared/golden), FRUITNET_BUILD (default build),
# FRUITNET_PYTHON (default .venv/bin/python). (bench/peers.py times ONNX Runtime
# too, in-process beside the other peers; this script gives bench_layers its
# own process, hence ORT's peak RSS.)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 batch=32 iters1=30 itersN=5
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --iters1) iters1=$2; shift 2 ;;
    --itersN) itersN=$2; shift 2 ;;
    *) echo "usage: $0 [--threads T] [--batch N] [--iters1 K] [--itersN K]" >&2; exit 2 ;;
  esac
done
weights=${FRUITNET_WEIGHTS:-weights/resnet50.fnw}
golden=${FRUITNET_GOLDEN:-../shared/golden}
builddir=${FRUITNET_BUILD:-build}
[ -f "$weights" ] || { echo "run_peer: $weights not found (run: make weights)" >&2; exit 1; }
command -v node >/dev/null || { echo "run_peer: node (>= 18) not found" >&2; exit 1; }
[ -d "$golden/img8" ] || echo "run_peer: warning: $golden/img8 not found, synthetic inputs and no correctness check" >&2

python=${FRUITNET_PYTHON:-.venv/bin/python}
"$python" -c 'import onnx, numpy' 2>/dev/null ||
  { echo "run_peer: $python cannot import onnx (run: make venv bench-peers-deps)" >&2; exit 1; }
if [ ! -f bench/onnx/node_modules/onnxruntime-node/package.json ]; then
  echo "run_peer: npm install onnxruntime-node (--ignore-scripts)" >&2
  (cd bench/onnx && npm ci --ignore-scripts --no-audit --no-fund --silent) >&2
fi

mkdir -p "$builddir"
model=$builddir/resnet50.onnx
if [ ! -f "$model" ] || [ "$weights" -nt "$model" ] || [ bench/onnx/make_onnx.py -nt "$model" ]; then
  "$python" bench/onnx/make_onnx.py "$weights" "$model" >&2
fi

node bench/onnx/ort_bench.mjs "$model" --batch 1 --threads "$threads" --iters "$iters1" --warmup 5 --golden "$golden"
node bench/onnx/ort_bench.mjs "$model" --batch "$batch" --threads "$threads" --iters "$itersN" --warmup 1 --golden "$golden"
