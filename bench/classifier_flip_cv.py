"""Horizontal-flip augmentation of the classifier's training rows, judged by blocked cross-validation.

    .venv/bin/python bench/classifier_flip_cv.py FLIP_FEATURES.parquet [--cs 3.16,10,31.6] [--test]

FLIP_FEATURES.parquet: fruitnet-extract's features of mirrored copies of the training sample (same class
folders and file names), e.g. made with Pillow's ImageOps.mirror (saved as JPEG, quality 95) then
`build/fruitnet-extract -q --single-file -o FLIP_FEATURES.parquet FLIPPED_FOLDER`. For each C: the same 5
blocked folds as fruitnet-train (frame order), fixed-C fits on 512 components, trained on the training
folds' rows with or without their mirrored copies, scored on the held-out originals. --test: then train on
all rows + mirrors at the C of the best augmented CV accuracy and print the test sample's top-1 (once).
"""
import argparse
import csv
import gzip
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import fruitnet  # noqa: E402
from fruitnet.classifier import Classifier, frame_order  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("flip")
    ap.add_argument("--train", default="build/classifier-data/train_features.parquet")
    ap.add_argument("--golden", default=os.environ.get("FRUITNET_GOLDEN", "../shared/golden"))
    ap.add_argument("--cs", default="3.16,10,31.6")
    ap.add_argument("--test", action="store_true")
    a = ap.parse_args()
    rows = list(fruitnet.read_parquet(a.train))
    X = np.stack([r[2] for r in rows]).astype(np.float32)
    y = np.array([r[1] for r in rows])
    key = lambda p: (os.path.basename(os.path.dirname(p)), os.path.basename(p))  # noqa: E731
    fr = {key(r[0]): r[2] for r in fruitnet.read_parquet(a.flip)}
    Xf = np.stack([fr[key(r[0])] for r in rows]).astype(np.float32)
    order = frame_order([r[0] for r in rows])
    F = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = np.where(y == c)[0]
        idx = idx[np.lexsort((idx, order[idx]))]
        F[idx] = np.arange(len(idx)) * 5 // len(idx)
    best = (0, None)
    for C in [float(v) for v in a.cs.split(",")]:
        for aug in (0, 1):
            ok, t = 0, time.time()
            for k in range(5):
                tr, te = F != k, F == k
                Xa, ya = (np.vstack([X[tr], Xf[tr]]), np.concatenate([y[tr], y[tr]])) if aug else (X[tr], y[tr])
                ok += (Classifier(C=C, pca_dim=512, threads=2).fit(Xa, ya).predict(X[te]) == y[te]).sum()
            print(f"C={C:g} flip-augmented={aug}: blocked CV {100 * ok / len(y):.2f}% ({time.time() - t:.0f} s)",
                  flush=True)
            if aug and ok > best[0]:
                best = (ok, C)
    if a.test:
        g = os.path.join(a.golden, "all2880")
        Xt = np.frombuffer(gzip.open(os.path.join(g, "features_2880x2048.f16.gz")).read(), "<f2").reshape(2880, 2048)
        yt = np.array([r["class"] for r in csv.DictReader(open(os.path.join(g, "manifest.csv")))])
        m = np.isin(yt, np.unique(y))
        Xt, yt = Xt[m].astype(np.float32), yt[m]
        clf = Classifier(C=best[1], pca_dim=512, threads=2).fit(np.vstack([X, Xf]), np.concatenate([y, y]))
        wrong = int((clf.predict(Xt) != yt).sum())
        print(f"flip-augmented, C = {best[1]:g} (the best augmented CV): test top-1 {100 * (1 - wrong / len(yt)):.2f}% "
              f"({wrong} wrong of {len(yt)})")


if __name__ == "__main__":
    main()
