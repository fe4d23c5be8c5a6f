#!/usr/bin/env bash
# Images/s of the Spark job (local[2]: 2 tasks x 1 fruitnet thread) against fruitnet-extract
# (2 threads) on the same images and the same 2 cores, back to back. Spark's figure is its
# extraction phase (worker start-up and model loading included, JVM start and listing not);
# the CLI's is its whole run. Usage: bench/spark_throughput.sh [CLASSES] (default 10: 240 images).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}
sample=${FRUITNET_SAMPLE:-../shared/data/fruits-360-sample}
py=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/in"
ls "$sample" | sort | sed -n "1,${n}p" | while read -r c; do cp -r "$sample/$c" "$tmp/in/"; done
imgs=$(find "$tmp/in" -type f | wc -l)
echo "spark_throughput: $imgs images, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s.%N)
build/fruitnet-extract -q --threads 2 -o "$tmp/cli.parquet" "$tmp/in"
t1=$(date +%s.%N)
echo "fruitnet-extract --threads 2: $(echo "$imgs / ($t1 - $t0)" | bc -l | cut -c1-6) images/s ($(echo "$t1 - $t0" | bc) s)"
(cd python && PYSPARK_PYTHON="$PWD/../$py" "../$py" -m fruitnet.spark_job "$tmp/in" "$tmp/spark" --master 'local[2]' \
   --threads 1 --conf spark.ui.enabled=false 2>&1 >/dev/null | grep '^fruitnet:')
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
