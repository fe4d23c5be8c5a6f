#!/usr/bin/env bash
# run_peer.sh — ONNX Runtime figures for `make bench`, on the ONNX model built
# from fruitnet's own weight file (bench/onnx/make_onnx.py). Installs what it
# needs (Debian python3-onnx; onnxruntime-node with --ignore-scripts, whose CPU
# binary is inside the npm package). Batch 1 and batch N run in separate
# processes so that each peak RSS is its own.
# usage: bench/run_peer.sh [--threads T] [--batch N]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 batch=32
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    *) echo "usage: $0 [--threads T] [--batch N]" >&2; exit 2 ;;
  esac
done
if ! /usr/bin/python3 -c 'import onnx' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-onnx >&2
  else
    echo "run_peer: needs Debian python3-onnx (sudo apt-get install python3-onnx)" >&2; exit 1
  fi
fi
if [ ! -d bench/onnx/node_modules/onnxruntime-node ]; then
  (cd bench/onnx && npm install --ignore-scripts --no-audit --no-fund --silent) >&2
fi
model=build/resnet50.onnx
if [ ! -f "$model" ] || [ weights/resnet50.fnw -nt "$model" ]; then
  /usr/bin/python3 bench/onnx/make_onnx.py weights/resnet50.fnw "$model" >&2
fi
golden=${FRUITNET_GOLDEN:-../shared/golden}
node bench/onnx/ort_bench.mjs "$model" --batch 8 --threads "$threads" --iters 1 --golden "$golden" | grep ort_check || true
node bench/onnx/ort_bench.mjs "$model" --batch 1 --threads "$threads" --iters 12 --golden "$golden"
node bench/onnx/ort_bench.mjs "$model" --batch "$batch" --threads "$threads" --iters 3 --golden "$golden"
