"""fruitnet on Spark: images -> ResNet50 features -> Parquet + PCA, as a PySpark 4 job.

    python -m fruitnet.spark_job INPUT OUTPUT [--master URL] [--variance 0.8]
        [--partitions N] [--threads T] [--batch B] [--s3-endpoint URL] [--weights F]
        [--conf KEY=VALUE ...]
    spark-submit [spark options] .../fruitnet/spark_job.py INPUT OUTPUT [options]

INPUT is a folder or prefix (local path, file://, s3a://...) read recursively
with Spark's binaryFile source (*.jpg, *.jpeg, *.png in any letter case), or a
text file of image URIs (one a line; blank lines and '#' comments skipped;
relative paths are taken from the list's folder). The label of an image is
the name of its parent folder.

OUTPUT (local or s3a://) receives
  features.parquet/        path string, label string, features array<float>
                           (Spark's Parquet writer; one row per readable image)
  errors/                  Parquet (path string, reason string): every image
                           that could not be read or decoded; never fails the job
  pca/                     model.fnpca, explained_variance.csv, scree.svg,
                           scatter.svg: PCA fitted on the driver from per-partition
                           statistics (fruitnet PcaStats) merged by a tree
                           aggregation; no feature row reaches the driver
and the job prints "K principal components explain at least 80% of the total
variance".

Each Python worker process opens one fruitnet.Model and keeps it for its
lifetime (spark.python.worker.reuse); mapInPandas hands it the bytes Spark
read, in Arrow batches. Weights: --weights (a path on the executors, or the
name of a file shipped with spark-submit --files), else a resnet50.fnw shipped
with --files, else the installed package's; the library checks their CRC.

S3: credentials come only from the standard AWS environment variables or the
instance role (Hadoop S3A's default chain), never from arguments.
--s3-endpoint URL sets a custom endpoint with path-style access. The S3A
connector jars must be on the classpath (spark-submit --packages
org.apache.hadoop:hadoop-aws:<Spark's Hadoop version>, --jars, or
--conf spark.jars=...): see docs/scale-out.md.

Exit status: 0 done, 2 bad input (missing, no images, no readable image, fewer
than 2 images for the PCA), 1 anything else.
"""
import argparse
import functools
import math
import os
import sys
import tempfile
import time

IMAGE_GLOB = "*.{[jJ][pP][gG],[jJ][pP][eE][gG],[pP][nN][gG]}"
DEFAULT_WEIGHTS_NAME = "resnet50.fnw"
SCATTER_MAX_POINTS = 20000

# One fruitnet.Model per Python worker process: (weights, threads, batch) -> Model
_MODELS = {}


class JobError(Exception):
    """A problem with the job's input or arguments: printed, exit status 2."""


# ----------------------------------------------------------------- executor side

def _resolve_weights(weights):
    """The weight file on this executor: the path given, a file shipped with --files, or the package's."""
    import fruitnet

    if weights and os.path.isfile(weights):
        return weights
    name = os.path.basename(weights) if weights else DEFAULT_WEIGHTS_NAME
    try:
        from pyspark import SparkFiles
        shipped = SparkFiles.get(name)
        if os.path.isfile(shipped):
            return shipped
    except Exception:  # no SparkFiles root outside a Spark worker
        pass
    if weights:
        raise FileNotFoundError(f"{weights}: weight file not found on this executor "
                                f"(nor shipped with spark-submit --files as {name})")
    return fruitnet.DEFAULT_WEIGHTS


def _model(weights, threads, batch):
    """This worker process's Model, opened on first use and kept for the process lifetime."""
    key = (weights, threads, batch)
    m = _MODELS.get(key)
    if m is None:
        import fruitnet
        m = fruitnet.Model(_resolve_weights(weights), threads=threads, batch=batch)
        _MODELS[key] = m
        if os.environ.get("FRUITNET_SPARK_LOG_MODELS"):
            print(f"fruitnet: model opened in Python worker {os.getpid()}", file=sys.stderr, flush=True)
    return m


def _extract(batches, weights, threads, batch):
    """mapInPandas: (path, label, content) -> (path, label, features, error)."""
    import pandas as pd

    m = _model(weights, threads, batch)
    for pdf in batches:
        paths = pdf["path"].tolist()
        labels = pdf["label"].tolist()
        data = [bytes(c) if c is not None else b"" for c in pdf["content"].tolist()]
        feats, good, failures = m.features(data, errors="skip")
        out_feats = [None] * len(paths)
        errors = [None] * len(paths)
        for k, i in enumerate(good):
            out_feats[i] = feats[k]
        for i, msg in failures:
            errors[i] = msg.replace("<bytes>", paths[i], 1) if "<bytes>" in msg else f"{paths[i]}: {msg}"
        yield pd.DataFrame({"path": paths, "label": labels, "features": out_feats, "error": errors})


def _stats_to_bytes(st):
    d = tempfile.mkdtemp(prefix="fruitnet-stats-")
    p = os.path.join(d, "s.stats")
    try:
        st.save(p)
        with open(p, "rb") as f:
            return f.read()
    finally:
        try:
            os.unlink(p)
        finally:
            os.rmdir(d)


def _stats_from_bytes(b):
    import fruitnet

    d = tempfile.mkdtemp(prefix="fruitnet-stats-")
    p = os.path.join(d, "s.stats")
    try:
        with open(p, "wb") as f:
            f.write(b)
        return fruitnet.PcaStats.load(p)
    finally:
        try:
            os.unlink(p)
        finally:
            os.rmdir(d)


def _partition_stats(batches, threads):
    """mapInPandas: features -> one row (n, blob) of this partition's mergeable PCA statistics."""
    import numpy as np
    import pandas as pd
    import fruitnet

    st = fruitnet.PcaStats(fruitnet.FEATURE_DIM)
    for pdf in batches:
        if len(pdf):
            st.add(np.stack(pdf["features"].to_numpy()).astype(np.float32, copy=False), threads=threads)
    if st.n:
        yield pd.DataFrame({"n": [st.n], "blob": [_stats_to_bytes(st)]})


def _merge_blobs(a, b):
    """treeAggregate's seqOp and combOp over serialized statistics (None = nothing yet)."""
    if a is None:
        return b
    if b is None:
        return a
    return _stats_to_bytes(_stats_from_bytes(a).merge(_stats_from_bytes(b)))


def _fit(stats, variance):
    """(model of the fewest components reaching variance, every eigenvalue descending, total variance).

    The whole spectrum comes with the fit (PcaStats.fit_with_spectrum: one eigen-decomposition)."""
    model, spectrum = stats.fit_with_spectrum(variance=variance)
    return model, spectrum, model.total_var


def _project(batches, mean, comps):
    """mapInPandas: (label, features) -> (label, pc1, pc2) for the scatter plot."""
    import numpy as np
    import pandas as pd

    for pdf in batches:
        if not len(pdf):
            continue
        x = np.stack(pdf["features"].to_numpy()).astype(np.float64)
        y = (x - mean) @ comps.T
        yield pd.DataFrame({"label": pdf["label"], "pc1": y[:, 0], "pc2": y[:, 1] if y.shape[1] > 1 else 0.0})


# ------------------------------------------------------------------- driver side

def _is_local(uri):
    return "://" not in uri or uri.startswith("file:")


def _local_path(uri):
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if uri.startswith("file:"):
        return uri[len("file:"):]
    return uri


def _hadoop(spark):
    jvm = spark.sparkContext._jvm
    return jvm, spark.sparkContext._jsc.hadoopConfiguration()


def _java_error_is(e, name):
    s = str(getattr(e, "java_exception", e))
    return name in s


def _status(spark, uri):
    """Hadoop FileStatus of uri, or None if it does not exist."""
    from py4j.protocol import Py4JJavaError

    jvm, conf = _hadoop(spark)
    p = jvm.org.apache.hadoop.fs.Path(uri)
    try:
        fs = p.getFileSystem(conf)
        return fs.getFileStatus(p)
    except Py4JJavaError as e:
        if _java_error_is(e, "FileNotFoundException"):
            return None
        if _java_error_is(e, "UnsupportedFileSystemException") or _java_error_is(e, "ClassNotFoundException"):
            hint = " (use s3a://, and put the S3A connector on the classpath: see docs/scale-out.md)" \
                if uri.startswith(("s3://", "s3a://", "s3n://")) else ""
            raise JobError(f"{uri}: no file system for this URI{hint}: "
                           f"{e.java_exception.getMessage()}") from None
        raise


def _read_list(spark, uri):
    """(image URIs of a list file, [(uri, reason)] for the ones that do not exist)."""
    jvm, conf = _hadoop(spark)
    base = os.path.dirname(uri.rstrip("/"))
    lines = [r[0] for r in spark.read.text(uri).collect()]
    seen, uris = set(), []
    for ln in lines:
        ln = ln.strip()
        if not ln or ln.startswith("#"):
            continue
        if "://" not in ln and not ln.startswith(("/", "file:")):
            ln = base + "/" + ln
        p = jvm.org.apache.hadoop.fs.Path(ln)
        q = str(p.getFileSystem(conf).makeQualified(p).toString())
        if q not in seen:
            seen.add(q)
            uris.append(q)
    # one listing per parent folder instead of one request per image
    by_parent = {}
    for q in uris:
        by_parent.setdefault(q.rsplit("/", 1)[0], []).append(q)
    present = set()
    for parent in by_parent:
        st = _status(spark, parent)
        if st is None or not st.isDirectory():
            continue
        p = jvm.org.apache.hadoop.fs.Path(parent)
        for s in p.getFileSystem(conf).listStatus(p):
            if s.isFile():
                present.add(str(s.getPath().toString()))
    missing = [(q, f"{q}: no such file") for q in uris if q not in present]
    return [q for q in uris if q in present], missing


def _remove(spark, *uris):
    """Delete earlier outputs of the job under OUTPUT (Hadoop FileSystem API: local and s3a alike)."""
    jvm, conf = _hadoop(spark)
    for u in uris:
        p = jvm.org.apache.hadoop.fs.Path(u)
        fs = p.getFileSystem(conf)
        if fs.exists(p):
            fs.delete(p, True)


def _write_text_local(path, text):
    """Atomic local write: hidden temporary name, fsync, rename, fsync the folder."""
    d = os.path.dirname(path) or "."
    tmp = os.path.join(d, "." + os.path.basename(path) + ".tmp%d" % os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(spark, local_dir, out_dir, names):
    """Copy local_dir/names to out_dir: atomically on a local file system, via Hadoop's FileSystem API elsewhere."""
    if _is_local(out_dir):
        dst = _local_path(out_dir)
        os.makedirs(dst, exist_ok=True)
        for n in names:
            with open(os.path.join(local_dir, n), "rb") as f:
                data = f.read()
            if n.endswith(".fnpca"):
                tmp = os.path.join(dst, "." + n + ".tmp%d" % os.getpid())
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, os.path.join(dst, n))
            else:
                _write_text_local(os.path.join(dst, n), data.decode())
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    jvm, conf = _hadoop(spark)
    Path = jvm.org.apache.hadoop.fs.Path
    d = Path(out_dir)
    fs = d.getFileSystem(conf)
    fs.mkdirs(d)
    for n in names:  # create + write, not copyFromLocalFile (whose S3A single PUT sends Expect: 100-continue)
        with open(os.path.join(local_dir, n), "rb") as f:
            data = f.read()
        stream = fs.create(Path(out_dir + "/" + n), True)
        try:
            for i in range(0, len(data), 1 << 22):
                stream.write(bytearray(data[i:i + (1 << 22)]))
        finally:
            stream.close()


def _explained_variance_csv(eig, total):
    lines = ["component,eigenvalue,ratio,cumulative"]
    cum = 0.0
    for i, v in enumerate(eig):
        r = v / total
        cum += r
        lines.append("%d,%.17g,%.17g,%.17g" % (i + 1, v, r, cum))
    return "\n".join(lines) + "\n"


def _scree_svg(eig, total, k, variance):
    import numpy as np

    n = int(min(len(eig), max(2 * k, 100)))
    r = np.asarray(eig[:n]) / total
    cum = np.cumsum(r)
    W, H, L, B, T, R = 720, 420, 60, 50, 30, 20
    pw, ph = W - L - R, H - T - B
    x = lambda i: L + pw * (i + 0.5) / n  # noqa: E731
    y = lambda v: T + ph * (1 - v)  # noqa: E731
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="18" text-anchor="middle">Explained variance of the first {n} components '
         f'({k} reach {variance * 100:g}%)</text>',
         f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" stroke="black"/>',
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{T + ph}" stroke="black"/>']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        s.append(f'<text x="{L - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    bw = max(1.0, pw / n * 0.8)
    for i, v in enumerate(r):
        s.append(f'<rect x="{x(i) - bw / 2:.1f}" y="{y(v):.1f}" width="{bw:.1f}" height="{T + ph - y(v):.1f}" '
                 f'fill="#4a7ebb"/>')
    s.append('<polyline fill="none" stroke="#c0504d" stroke-width="1.5" points="' +
             " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(cum)) + '"/>')
    s.append(f'<line x1="{L}" y1="{y(variance):.1f}" x2="{L + pw}" y2="{y(variance):.1f}" stroke="gray" '
             f'stroke-dasharray="4,3"/>')
    s.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">component (bars: ratio, line: cumulative)</text>')
    s.append("</svg>")
    return "\n".join(s) + "\n"


def _scatter_svg(points, eig, total):
    import numpy as np

    labels = sorted({p[0] for p in points})
    W, H, M = 720, 720, 50
    xs = np.array([p[1] for p in points]) if points else np.zeros(1)
    ys = np.array([p[2] for p in points]) if points else np.zeros(1)
    x0, x1 = float(xs.min()), float(xs.max())
    y0, y1 = float(ys.min()), float(ys.max())
    sx = (W - 2 * M) / ((x1 - x0) or 1.0)
    sy = (H - 2 * M) / ((y1 - y0) or 1.0)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="20" text-anchor="middle">PC1 ({eig[0] / total * 100:.1f}%) vs PC2 '
         f'({(eig[1] if len(eig) > 1 else 0) / total * 100:.1f}%), {len(points)} images, {len(labels)} labels</text>']
    for lab, px, py in points:
        hue = (labels.index(lab) * 137.508) % 360
        s.append(f'<circle cx="{M + (px - x0) * sx:.1f}" cy="{H - M - (py - y0) * sy:.1f}" r="2.5" '
                 f'fill="hsl({hue:.0f},70%,45%)" fill-opacity="0.7"/>')
    s.append("</svg>")
    return "\n".join(s) + "\n"


def _executor_env(builder, user_conf):
    """Let Python workers import this package and find libfruitnet when the driver's paths are valid there
    (local mode, or a cluster with the same install paths); the user's own settings win."""
    import fruitnet

    if not os.environ.get("PYSPARK_PYTHON") and "spark.pyspark.python" not in user_conf:
        os.environ["PYSPARK_PYTHON"] = sys.executable  # workers run the driver's interpreter (and its packages)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fruitnet.__file__)))
    if "spark.executorEnv.PYTHONPATH" not in user_conf:
        pp = [pkg_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        builder = builder.config("spark.executorEnv.PYTHONPATH", os.pathsep.join(pp))
    lib = getattr(getattr(getattr(fruitnet, "_lib", None), "lib", None), "_name", None)
    if lib and os.path.isabs(lib) and "spark.executorEnv.FRUITNET_LIB" not in user_conf \
            and "FRUITNET_LIB" not in os.environ:
        builder = builder.config("spark.executorEnv.FRUITNET_LIB", lib)
    for var in ("FRUITNET_LIB", "FRUITNET_WEIGHTS"):
        if os.environ.get(var) and f"spark.executorEnv.{var}" not in user_conf:
            builder = builder.config(f"spark.executorEnv.{var}", os.environ[var])
    return builder


def _session(a):
    from pyspark.sql import SparkSession

    user_conf = {}
    for kv in a.conf:
        if "=" not in kv:
            raise JobError(f"--conf {kv}: expected KEY=VALUE")
        k, v = kv.split("=", 1)
        user_conf[k] = v
    b = SparkSession.builder.appName("fruitnet")
    if a.master:
        b = b.master(a.master)
    b = b.config("spark.python.worker.reuse", "true")
    b = b.config("spark.ui.showConsoleProgress", "true" if sys.stderr.isatty() else "false")
    b = b.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(a.arrow_batch))
    if a.s3_endpoint:
        b = b.config("spark.hadoop.fs.s3a.endpoint", a.s3_endpoint)
        b = b.config("spark.hadoop.fs.s3a.path.style.access", "true")
        if a.s3_endpoint.startswith("http://"):
            b = b.config("spark.hadoop.fs.s3a.connection.ssl.enabled", "false")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        b = b.config("spark.hadoop.fs.s3a.endpoint.region", region)
    b = _executor_env(b, user_conf)
    for k, v in user_conf.items():
        b = b.config(k, v)
    return b.getOrCreate()


def _norm_uri(u):
    u = u.rstrip("/") or u
    return u if "://" in u or u.startswith("file:") else os.path.abspath(u)


def run(a):
    """The job; returns the number of principal components reaching a.variance."""
    import numpy as np
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    inp, out = _norm_uri(a.input), _norm_uri(a.output)
    t0 = time.monotonic()
    spark = _session(a)
    sc = spark.sparkContext
    if not a.verbose:
        sc.setLogLevel("WARN")
    threads = a.threads or int(sc.getConf().get("spark.task.cpus", "1"))
    st = _status(spark, inp)
    if st is None:
        raise JobError(f"{inp}: no such file or folder")
    pre_errors = []
    reader = spark.read.format("binaryFile")
    if st.isDirectory():
        df = reader.option("recursiveFileLookup", "true").option("pathGlobFilter", IMAGE_GLOB).load(inp)
    else:
        name = inp.rsplit("/", 1)[-1].lower()
        if name.endswith((".jpg", ".jpeg", ".png")):
            uris = [str(st.getPath().toString())]
        else:
            uris, pre_errors = _read_list(spark, inp)
        if not uris and not pre_errors:
            raise JobError(f"{inp}: the list names no image")
        df = reader.load(uris) if uris else None
    n_in = df.count() if df is not None else 0  # a listing only: content is not read
    if n_in == 0 and not pre_errors:
        raise JobError(f"{inp}: no *.jpg, *.jpeg or *.png file found")
    parts = a.partitions or max(1, min(n_in, sc.defaultParallelism * 4))
    print(f"fruitnet: {n_in} images in {parts} partitions, {threads} thread(s) per task", file=sys.stderr)

    schema = "path string, label string, features array<float>, error string"
    if df is not None:
        src = df.select("path", F.element_at(F.split("path", "/"), -2).alias("label"), "content") \
            .repartition(parts)
        res = src.mapInPandas(functools.partial(_extract, weights=a.weights, threads=threads, batch=a.batch),
                              schema)
        if pre_errors:
            res = res.unionByName(spark.createDataFrame(
                [(p, p.rsplit("/", 2)[-2] if p.count("/") >= 2 else "", None, r) for p, r in pre_errors], schema))
    else:
        res = spark.createDataFrame(
            [(p, p.rsplit("/", 2)[-2] if p.count("/") >= 2 else "", None, r) for p, r in pre_errors], schema)
    res = res.persist(StorageLevel.MEMORY_AND_DISK)
    t1 = time.monotonic()
    row = res.agg(F.count("*").alias("n"), F.count("error").alias("bad")).collect()[0]  # runs the extraction
    n_ok, n_bad = row["n"] - row["bad"], row["bad"]
    t2 = time.monotonic()

    res.filter(F.col("error").isNotNull()).select("path", F.col("error").alias("reason")) \
        .coalesce(1).write.mode("overwrite").parquet(out + "/errors")
    if n_ok == 0:
        _remove(spark, out + "/features.parquet", out + "/pca")  # no earlier run's output left as this one's
        raise JobError(f"{inp}: none of the {n_bad} images could be read (reasons in {out}/errors); "
                       f"no features written")
    good = res.filter(F.col("error").isNull())
    good.select("path", "label", "features").write.mode("overwrite").parquet(out + "/features.parquet")
    print(f"fruitnet: {n_ok} images -> {out}/features.parquet, {n_bad} failed -> {out}/errors; extraction "
          f"{t2 - t1:.1f} s ({(n_ok + n_bad) / max(t2 - t1, 1e-9):.2f} images/s, with worker start-up and model "
          f"loading), Spark start-up and listing "
          f"{t1 - t0:.1f} s", file=sys.stderr)
    if n_ok < 2:
        _remove(spark, out + "/pca")
        raise JobError(f"PCA needs at least 2 images, got {n_ok}")

    # PCA: one statistics blob per partition, merged by a tree aggregation, fitted here
    few = good.coalesce(max(1, min(parts, sc.defaultParallelism)))  # fewer, larger tasks for the passes below
    blobs = few.select("features").mapInPandas(functools.partial(_partition_stats, threads=threads),
                                                "n long, blob binary").rdd.map(lambda r: bytes(r[1]))
    nparts = max(1, blobs.getNumPartitions())
    depth = max(2, math.ceil(math.log(nparts, 4))) if nparts > 1 else 1
    merged = _stats_from_bytes(blobs.treeAggregate(None, _merge_blobs, _merge_blobs, depth=depth))
    model, eig, total = _fit(merged, a.variance)
    k = model.k

    comps = model.components[:2].astype(np.float64)
    proj = few.select("label", "features")
    if n_ok > SCATTER_MAX_POINTS:
        proj = proj.sample(fraction=SCATTER_MAX_POINTS / n_ok, seed=1)
    points = [(r[0], r[1], r[2]) for r in
              proj.mapInPandas(functools.partial(_project, mean=model.mean, comps=comps),
                               "label string, pc1 double, pc2 double").collect()]
    tmp = tempfile.mkdtemp(prefix="fruitnet-pca-")
    names = ["model.fnpca", "explained_variance.csv", "scree.svg", "scatter.svg"]
    try:
        model.save(os.path.join(tmp, "model.fnpca"))
        for n, text in (("explained_variance.csv", _explained_variance_csv(eig, total)),
                        ("scree.svg", _scree_svg(eig, total, k, a.variance)),
                        ("scatter.svg", _scatter_svg(points, eig, total))):
            with open(os.path.join(tmp, n), "w") as f:
                f.write(text)
        _publish(spark, tmp, out + "/pca", names)
    finally:
        for n in os.listdir(tmp):
            os.unlink(os.path.join(tmp, n))
        os.rmdir(tmp)
    res.unpersist()
    print(f"fruitnet: PCA of {merged.n} images -> {out}/pca/{{{','.join(names)}}}; job {time.monotonic() - t0:.1f} s",
          file=sys.stderr)
    print("%d principal components explain at least %g%% of the total variance" % (k, a.variance * 100))
    sys.stdout.flush()
    return k


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="fruitnet.spark_job", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="folder / prefix URI of images, or a text file of image URIs")
    ap.add_argument("output", help="output folder / prefix URI")
    ap.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    ap.add_argument("--variance", type=float, default=0.80, help="variance the PCA must explain (default 0.8)")
    ap.add_argument("--partitions", type=int, default=0, help="extraction tasks (default 4 x default parallelism)")
    ap.add_argument("--threads", type=int, default=0, help="fruitnet threads per task (default spark.task.cpus)")
    ap.add_argument("--batch", type=int, default=8, help="images per forward pass (default 8)")
    ap.add_argument("--arrow-batch", type=int, default=64, help="images per Arrow batch (default 64)")
    ap.add_argument("--s3-endpoint", help="custom S3 endpoint URL (path-style access)")
    ap.add_argument("--weights", help="weight file: a path on the executors or the name of a --files file")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting")
    ap.add_argument("-v", "--verbose", action="store_true", help="keep Spark's INFO log")
    a = ap.parse_args(argv)
    if not 0 < a.variance <= 1:
        ap.error("--variance must be in (0, 1]")
    if a.partitions < 0 or a.threads < 0 or a.batch < 1 or a.arrow_batch < 1:
        ap.error("--partitions/--threads must be >= 0, --batch/--arrow-batch >= 1")
    return a


def main(argv=None):
    a = parse_args(argv)
    try:
        import fruitnet  # noqa: F401  (a missing library fails here, before Spark starts)
        run(a)
    except JobError as e:
        print(f"fruitnet.spark_job: {e}", file=sys.stderr)
        return 2
    finally:
        try:
            from pyspark.sql import SparkSession
            s = SparkSession.getActiveSession()
            if s is not None:
                s.stop()
        except Exception:
            pass
    return 0


if __name__ == "__main__":
    # Run as a file (spark-submit .../fruitnet/spark_job.py): import the package so that the functions
    # shipped to the workers are fruitnet.spark_job's (and its per-process Model cache), not __main__'s.
    try:
        import fruitnet.spark_job as _job
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import fruitnet.spark_job as _job
    sys.exit(_job.main())
