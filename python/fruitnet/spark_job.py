"""fruitnet on Spark: the "Fruits!" pipeline as a PySpark job.

NOT RUN HERE: Spark cannot run on the machines this project is built and tested
on. The job uses only the binding's API that the test suite exercises
(Model.features with errors='skip', PcaStats add/merge/fit); see
docs/scale-out.md for a cluster recipe.

    spark-submit --py-files fruitnet.zip -m fruitnet.spark_job \\
        s3://bucket/paths.txt s3://bucket/out/ [--partitions 64] [--weights /opt/fruitnet/resnet50.fnw]

Input: a text file of image paths readable on every executor (local or a
mounted bucket; one path per line; label = parent folder name). Output:
<out>/features.parquet (path string, label string, features array<float>),
<out>/pca/ (model.fnpca, explained_variance.csv) from per-partition
statistics merged on the driver.
"""
import argparse
import os
import sys


def _extract_partition(rows, weights, threads, batch):
    import numpy as np
    import fruitnet

    rows = list(rows)
    if not rows:
        return iter([])
    model = fruitnet.Model(weights, threads=threads, batch=batch)
    try:
        feats, good, _failures = model.features([r[0] for r in rows], errors="skip")
    finally:
        model.close()
    return iter([(rows[i][0], rows[i][1], [float(v) for v in feats[k]]) for k, i in enumerate(good)])


def _partition_stats(rows):
    import numpy as np
    import fruitnet
    import tempfile

    vecs = [r[2] for r in rows]
    st = fruitnet.PcaStats(fruitnet.FEATURE_DIM)
    if vecs:
        st.add(np.asarray(vecs, dtype=np.float32))
    with tempfile.NamedTemporaryFile(suffix=".stats") as f:
        st.save(f.name)
        return [open(f.name, "rb").read()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths")
    ap.add_argument("output")
    ap.add_argument("--partitions", type=int, default=0)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threads", type=int, default=1, help="fruitnet threads per task (match spark.task.cpus)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--variance", type=float, default=0.80)
    a = ap.parse_args(argv)

    from pyspark.sql import SparkSession
    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType
    import tempfile
    import fruitnet

    spark = SparkSession.builder.appName("fruitnet").getOrCreate()
    sc = spark.sparkContext
    lines = sc.textFile(a.paths)
    if a.partitions:
        lines = lines.repartition(a.partitions)
    items = lines.filter(lambda l: l.strip()).map(lambda p: (p, os.path.basename(os.path.dirname(p))))
    feats = items.mapPartitions(lambda it: _extract_partition(it, a.weights, a.threads, a.batch)).cache()
    schema = StructType([StructField("path", StringType(), False), StructField("label", StringType(), False),
                         StructField("features", ArrayType(FloatType(), False), True)])
    spark.createDataFrame(feats, schema).write.mode("overwrite").parquet(a.output.rstrip("/") + "/features.parquet")
    # PCA: per-partition statistics, merged on the driver
    blobs = feats.mapPartitions(_partition_stats).collect()
    merged = None
    for b in blobs:
        with tempfile.NamedTemporaryFile(suffix=".stats") as f:
            f.write(b)
            f.flush()
            s = fruitnet.PcaStats.load(f.name)
        merged = s if merged is None else merged.merge(s)
    model = merged.fit(variance=a.variance)
    print("%d principal components explain at least %g%% of the total variance" % (model.k, a.variance * 100))
    local = tempfile.mkdtemp(prefix="fruitnet-pca-")
    model.save(os.path.join(local, "model.fnpca"))
    print("PCA model written to %s (copy it next to the dataset, e.g. with `aws s3 cp`)" % local)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
