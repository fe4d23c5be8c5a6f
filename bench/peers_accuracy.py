#!/usr/bin/env python3
"""The accuracy of each engine of bench/peers.py, with issue 16's gates: on the 2,880 sample images, the
cosine of its features to the Keras ones (../shared/golden/all2880) and how often the ImageNet top-1 class
(fc1000 on the features) equals the Keras features'. fruitnet's tests hold it to >= 99% in bf16 (cosine
>= 0.9995) and >= 97% in int8 (cosine >= 0.995); this asks the same of the peers, so that a speed ratio
can be read against what each side gives up.

usage: bench/peers_accuracy.py [--weights W] [--engines fruitnet:bf16,openvino:bf16,...] [--step K]
                               [--out bench/results/peers-accuracy.md]
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (the engines, the inputs, the weight reader)

GATES = {"bf16": (0.9995, 99.0), "int8": (0.995, 97.0)}  # cosine, top-1 agreement % (float32: none)
DEFAULT = ("fruitnet:fp32,fruitnet:bf16,fruitnet:int8,openvino:fp32,openvino:bf16,openvino:int8,"
           "onnxruntime:int8,pytorch:bf16")


def golden():
    g = os.environ.get("FRUITNET_GOLDEN", os.path.join(peers.ROOT, "..", "shared", "golden"))
    d = os.path.join(g, "all2880")
    with open(os.path.join(d, "manifest.csv")) as f:
        rows = [line.rstrip("\n").split(",") for line in f][1:]
    paths = [os.path.join(peers.sample_dir(), r[1]) for r in rows]
    with gzip.open(os.path.join(d, "features_2880x2048.f16.gz"), "rb") as f:
        ref = np.frombuffer(f.read(), np.float16).astype(np.float32).reshape(len(paths), 2048)
    return paths, ref


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=os.path.join(peers.ROOT, "weights", "resnet50.fnw"))
    ap.add_argument("--engines", default=DEFAULT, help="engine:precision, comma-separated")
    ap.add_argument("--step", type=int, default=1, help="every step-th image (1: all 2,880)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=os.path.join(peers.ROOT, "bench", "results", "peers-accuracy.md"))
    a = ap.parse_args()
    paths, ref = golden()
    paths, ref = paths[::a.step], ref[::a.step]
    w = peers.read_weights(a.weights)
    W, b = w["fc1000/kernel"].astype(np.float64), w["fc1000/bias"].astype(np.float64)
    top_ref = np.argmax(ref @ W + b, axis=1)
    makers = {(e, p): f for e, p, f in peers.ENGINES}
    x = peers.fruitnet_inputs(paths)
    lines = [f"# Accuracy of the peers — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"CPU: {peers.cpu_text()}", "",
             f"`bench/peers_accuracy.py`: {len(paths)} sample images (fruitnet's inputs: PIL decode and bicubic "
             "resize), batch 32, 2 threads. Against the Keras float32 features (`../shared/golden/all2880`): the "
             "cosine per image, and the images whose ImageNet top-1 (fc1000 on the features) equals the Keras "
             "features'. Issue 16's gates: bf16 cosine >= 0.9995 and top-1 >= 99%, int8 >= 0.995 and >= 97%.",
             "", "| engine | precision | worst cosine | mean cosine | top-1 equal to Keras | gates | version |",
             "|---|---|---:|---:|---:|---|---|"]
    for spec in a.engines.split(","):
        e, p = spec.split(":")
        try:
            run, version = makers[(e, p)](a.weights, a.threads, a.batch, p)
        except Exception as exc:  # an engine this machine lacks is reported, not fatal
            lines.append(f"| {e} | {p} | | | | not run: {str(exc)[:120]} | |")
            peers.log(f"peers_accuracy: {e}:{p}: not run: {exc}")
            continue
        f = np.concatenate([run(x[i:i + a.batch]) for i in range(0, len(x), a.batch)]).astype(np.float64)
        cos = np.sum(f * ref, 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(ref, axis=1))
        agree = 100.0 * np.mean(np.argmax(f @ W + b, axis=1) == top_ref)
        if p in GATES:
            gc, ga = GATES[p]
            ok = ("pass" if cos.min() >= gc and agree >= ga else "**fail**") + f" (>= {gc}, >= {ga}%)"
        else:
            ok = "(none)"
        lines.append(f"| {e} | {p} | {cos.min():.5f} | {cos.mean():.5f} | {agree:.2f}% | {ok} | {version} |")
        peers.log(f"peers_accuracy: {e}:{p}: worst cosine {cos.min():.5f}, top-1 {agree:.2f}%")
    text = "\n".join(lines) + "\n"
    if a.out:
        with open(a.out, "w") as fo:
            fo.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
