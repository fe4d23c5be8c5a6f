"""fruitnet on Dask distributed: extraction sharded over workers, PCA from
per-partition statistics merged on the client.

    python3 -m fruitnet.dask_pipeline --input DIR_OR_@LIST --output OUT \\
        [--workers 2 | --scheduler tcp://host:8786] [--partitions N]

Writes OUT/features.parquet/ with libfruitnet's dataset writer, one shard per
partition (parts, manifests, _errors-s*.tsv of failed images, then _SUCCESS
when every shard is committed: exactly `fruitnet-extract --shard K/N`), and OUT/pca/ (model.fnpca, explained_variance.csv) from the merged
partial statistics; prints "N principal components explain at least 80% of
the total variance". Every worker process opens one Model and reuses it.
"""
import argparse
import os
import sys
import time

import numpy as np

import fruitnet

def list_inputs(inputs):
    """libfruitnet's listing, as fruitnet-extract's (fruitnet.list_images): [(path, label)]."""
    return fruitnet.list_images(inputs)


_MODEL = {}


def _model(weights, threads, batch):
    key = (weights, threads, batch)
    if key not in _MODEL:  # one model per worker process, reused by every task
        _MODEL[key] = fruitnet.Model(weights, threads=threads, batch=batch)
    return _MODEL[key]


def extract_partition(index, nparts, inputs, out_dir, weights=None, threads=1, batch=8):
    """Worker task: shard index+1 of nparts of `inputs` into the dataset out_dir by libfruitnet's dataset
    writer (listing, pipeline, parts, manifest, lock, errors file, _SUCCESS when the last shard commits:
    what `fruitnet-extract --shard K/N` does), and its PCA statistics -> _stats/part-<index>.stats.
    Returns (index, ok count, failures [(escaped path, reason)], stats path, committed)."""
    m = _model(weights, threads, batch)
    st = fruitnet.PcaStats(fruitnet.FEATURE_DIM)

    def on_rows(paths, labels, x):
        st.add(x, threads=threads)

    rep = fruitnet.data.extract_dataset(inputs, out_dir, m, shard=(index + 1, nparts), on_rows=on_rows)
    if rep["resumed_inputs"]:  # rows kept from an earlier run did not go through on_rows: read the shard's parts
        st = fruitnet.PcaStats(fruitnet.FEATURE_DIM)
        tag = "" if nparts == 1 else "-s%05dof%05d" % (index + 1, nparts)
        for f in sorted(os.listdir(out_dir)):
            if f.startswith("part-") and f.endswith(tag + ".parquet") and (tag or "-s" not in f):
                rows = [v for _, _, v in fruitnet.read_parquet(os.path.join(out_dir, f))]
                if rows:
                    st.add(np.stack(rows), threads=threads)
    stats_dir = os.path.join(os.path.dirname(out_dir), "_stats")
    os.makedirs(stats_dir, exist_ok=True)
    sp = os.path.join(stats_dir, "part-%05d.stats" % index)
    st.save(sp)
    return index, rep["ok"], rep["failures"] + [(fruitnet._lib.escape_path(p), why)
                                                for p, why, bad in rep["skipped"] if bad], sp, rep["committed"]


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
        # every task lists the inputs itself and keeps its shard (FNV-1a of the path), as fruitnet-extract
        # --shard K/N does on separate machines; the dataset writer commits _SUCCESS when all shards agree
        ins = [os.fspath(a) for a in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
        futures = [client.submit(extract_partition, k, nparts, ins, feat_dir, weights, threads, pure=False)
                   for k in range(nparts)]
        results = sorted(client.gather(futures))
    finally:
        if own is not None:
            cluster = getattr(own, "cluster", None)
            own.close()
            if cluster is not None and not scheduler:
                cluster.close()
    ok = sum(r[1] for r in results)
    failures = [f for r in results for f in r[2]]
    if not any(r[4] for r in results):
        raise RuntimeError(f"{feat_dir}: no shard committed the dataset (_SUCCESS): shards disagree or another "
                           f"writer ran; see its _manifest-*.tsv files")
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
