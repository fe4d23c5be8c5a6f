#!/usr/bin/env bash
# make_seeds.sh BUILD_DIR — small seed corpora for the fuzz harnesses, made
# from real files the library writes (nothing from Fruits-360 is copied).
set -euo pipefail
B=${1:-build}
cd "$(dirname "$0")"
mkdir -p corpus/weights corpus/image corpus/parquet corpus/tfjs corpus/pca
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
# a tiny TF.js model (1 conv + BN + dense) and its .fnw
python3 - "$t" <<'PY'
import json, struct, sys, os
d = sys.argv[1]
m = {"format": "layers-model", "modelTopology": {"model_config": {"class_name": "Model", "config": {"layers": [
  {"class_name": "Conv2D", "name": "c", "config": {"use_bias": True}, "inbound_nodes": []},
  {"class_name": "BatchNormalization", "name": "bn", "config": {"epsilon": 0.001}, "inbound_nodes": [[["c", 0, 0, {}]]]},
  {"class_name": "Dense", "name": "fc", "config": {"use_bias": True}, "inbound_nodes": [[["bn", 0, 0, {}]]]}]}}},
  "weightsManifest": [{"paths": ["s1.bin"], "weights": [
  {"name": "c/kernel", "shape": [1, 1, 2, 2], "dtype": "float32"}, {"name": "c/bias", "shape": [2], "dtype": "float32"},
  {"name": "bn/gamma", "shape": [2], "dtype": "float32"}, {"name": "bn/beta", "shape": [2], "dtype": "float32"},
  {"name": "bn/moving_mean", "shape": [2], "dtype": "float32"}, {"name": "bn/moving_variance", "shape": [2], "dtype": "float32"},
  {"name": "fc/kernel", "shape": [2, 2], "dtype": "float32"}, {"name": "fc/bias", "shape": [2], "dtype": "float32"}]}]}
js = json.dumps(m).encode()
shard = struct.pack("<20f", *[0.5 + i / 10 for i in range(20)])
open(os.path.join(d, "model.json"), "wb").write(js)
open(os.path.join(d, "s1.bin"), "wb").write(shard)
open(os.path.join(d, "labels.json"), "w").write(json.dumps({str(i): "l%d" % i for i in range(1000)}))
open("corpus/tfjs/seed1", "wb").write(struct.pack("<H", len(js)) + js + shard)
PY
"../$B/fruitnet-convert" --model "$t/model.json" --labels "$t/labels.json" -o corpus/weights/seed1.fnw >/dev/null
# small images: PNGs and a JPEG made by the library's own demo generator, downscaled by the harness itself
"../$B/demo-images" "$t/img" >/dev/null
cp "$t/img/Banana/0_100.png" corpus/image/banana.png
python3 - <<'PY'
import struct, zlib
def png(w, h, ct, bd, raw):
    c = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", w, h, bd, ct, 0, 0, 0)) + c(b"IDAT", zlib.compress(raw)) + c(b"IEND", b"")
open("corpus/image/grey4.png", "wb").write(png(4, 4, 0, 8, b"".join(b"\0" + bytes([i * 16 + j for j in range(4)]) for i in range(4))))
open("corpus/image/rgba2.png", "wb").write(png(2, 2, 6, 8, b"".join(b"\0" + bytes(range(8)) for _ in range(2))))
open("corpus/image/rgb16.png", "wb").write(png(2, 1, 2, 16, b"\0" + bytes(range(12))))
PY
# a small Parquet file (3 rows, 2 row groups) and PCA files, written by the library through the binding-free C path
cat > "$t/w.c" <<'C'
#include "fruitnet.h"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
int main(int c, char **v) {
  unsigned char px[8 * 8 * 3]; for (int i = 0; i < 192; i++) px[i] = (unsigned char)(i * 37);
  stbi_write_jpg(v[5], 8, 8, 3, px, 90); stbi_write_jpg(v[6], 8, 8, 1, px, 50);
  (void)c; fn_parquet_writer *w; fn_parquet_options o = {.list_column = "features", .codec = FN_CODEC_GZIP, .rows_per_group = 2};
  float x[4] = {1, 2, 3, 4}; if (fn_parquet_writer_open(v[1], &o, &w, 0)) return 1;
  for (int i = 0; i < 3; i++) fn_parquet_writer_add(w, "a/b.jpg", "b", x, i + 1, 0);
  if (fn_parquet_writer_close(w, 0)) return 1;
  o.codec = FN_CODEC_UNCOMPRESSED; if (fn_parquet_writer_open(v[2], &o, &w, 0)) return 1;
  fn_parquet_writer_add(w, "p", "l", x, 4, 0); if (fn_parquet_writer_close(w, 0)) return 1;
  fn_pca_stats *s; if (fn_pca_stats_new(4, &s, 0)) return 1; float r[12] = {1, 2, 3, 4, 2, 2, 1, 0, 5, 1, 0, 3}; fn_pca_stats_add(s, r, 3, 1, 0);
  fn_pca_stats_save(s, v[3], 0); fn_pca_model *m; if (fn_pca_fit(s, 2, 0, &m, 0)) return 1; fn_pca_model_save(m, v[4], 0); return 0; }
C
cc -std=c11 -I../include -I/usr/include/stb "$t/w.c" "../$B/libfruitnet.a" -lz -lm -pthread -o "$t/w"
"$t/w" corpus/parquet/gzip.parquet corpus/parquet/plain.parquet corpus/pca/seed.stats corpus/pca/seed.fnpca corpus/image/rgb8.jpg corpus/image/grey8.jpg
echo "seeds: $(find corpus -type f | wc -l) files, $(du -sh corpus | cut -f1)"
