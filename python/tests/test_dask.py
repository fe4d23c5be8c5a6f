"""Dask distributed end to end: 2 workers over the sample, every image exactly
once, PCA from merged partial statistics equal to the single-machine
fruitnet-pca on the same features (eigenvalues within 1e-9 relative).

FRUITNET_DASK_QUICK=1 uses 12 classes (288 images) instead of all 2,880."""
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fruitnet  # noqa: E402

SAMPLE = os.environ.get("FRUITNET_SAMPLE", os.path.join(os.path.dirname(__file__), "../../../shared/data/fruits-360-sample"))
BUILD = os.environ.get("FRUITNET_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))


class TestDask(unittest.TestCase):
    def test_two_workers_end_to_end(self):
        try:
            from fruitnet import dask_pipeline
            import distributed  # noqa: F401
        except ImportError as e:
            if os.environ.get("FRUITNET_REQUIRE_DATA") == "1":
                raise
            raise unittest.SkipTest(f"dask not installed: {e}")
        if not os.path.isdir(SAMPLE):
            if os.environ.get("FRUITNET_REQUIRE_DATA") == "1":
                raise AssertionError(f"{SAMPLE} missing")
            raise unittest.SkipTest("sample images missing")
        d = tempfile.mkdtemp(prefix="fruitnet-dask-")
        try:
            inputs = [SAMPLE]
            if os.environ.get("FRUITNET_DASK_QUICK") == "1":
                classes = sorted(os.listdir(SAMPLE))[:12]
                lst = os.path.join(d, "inputs.lst")
                with open(lst, "w") as f:
                    for c in classes:
                        for n in sorted(os.listdir(os.path.join(SAMPLE, c))):
                            f.write(os.path.join(SAMPLE, c, n) + "\n")
                inputs = ["@" + lst]
            expected = dask_pipeline.list_inputs(inputs)
            out = os.path.join(d, "out")
            t0 = time.time()
            r = dask_pipeline.run(inputs, out, workers=2, partitions=6)
            wall = time.time() - t0
            rows = list(fruitnet.read_parquet(os.path.join(out, "features.parquet")))
            paths = [p for p, _, _ in rows]
            self.assertEqual(len(paths), len(set(paths)))                 # no duplicate
            self.assertEqual(sorted(paths), sorted(p for p, _ in expected))  # none missing
            self.assertTrue(os.path.exists(os.path.join(out, "features.parquet", "_SUCCESS")))
            self.assertEqual(r["failed"], [])
            # the single-machine tool on the same features
            ref = os.path.join(d, "ref")
            subprocess.run([os.path.join(BUILD, "fruitnet-pca"), "fit", "-q", "-i",
                            os.path.join(out, "features.parquet"), "-o", ref], check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(ref, "explained_variance.csv")) as f:
                lam = np.array([float(row["eigenvalue"]) for row in csv.DictReader(f)])
            n = min(len(lam), len(r["eigenvalues"]))
            rel = np.abs(r["eigenvalues"][:n] - lam[:n]) / lam[:n]
            print(f"\n[ dask ] {len(paths)} images, 2 workers: {wall:.1f} s wall "
                  f"(extraction {r['seconds_extract']:.1f} s); k80 = {r['k']}; "
                  f"max rel eigenvalue diff vs fruitnet-pca: {rel.max():.2e}", file=sys.stderr)
            self.assertLessEqual(rel.max(), 1e-9)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
