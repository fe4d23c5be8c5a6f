"""Tests of the Python binding against ../shared/golden (unittest)."""
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fruitnet  # noqa: E402

GOLDEN = os.environ.get("FRUITNET_GOLDEN", os.path.join(os.path.dirname(__file__), "../../../shared/golden"))
SAMPLE = os.environ.get("FRUITNET_SAMPLE", os.path.join(os.path.dirname(__file__), "../../../shared/data/fruits-360-sample"))
NAMES = ["g0_banana", "g1_apple_braeburn", "g2_lemon", "g3_pineapple", "g4_strawberry", "g5_cocos", "g6_kiwi",
         "g7_tomato_1"]
PATHS = ["Banana/108_100.jpg", "Apple Braeburn/321_100.jpg", "Lemon/321_100.jpg", "Pineapple/15_100.jpg",
         "Strawberry/321_100.jpg", "Cocos/0_100.jpg", "Kiwi/39_100.jpg", "Tomato 1/186_100.jpg"]
REQUIRE = os.environ.get("FRUITNET_REQUIRE_DATA") == "1"


def need(path):
    if not os.path.exists(path):
        if REQUIRE:
            raise AssertionError(f"{path} missing and FRUITNET_REQUIRE_DATA=1")
        raise unittest.SkipTest(f"{path} missing")


def read_bytes(p):
    with open(p, "rb") as f:
        return f.read()


def cos(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


class TestBinding(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = fruitnet.Model(threads=2, batch=8, classifier=True)

    @classmethod
    def tearDownClass(cls):
        cls.m.close()

    def test_tensors_match_keras(self):
        need(GOLDEN)
        x = np.stack([np.fromfile(f"{GOLDEN}/img8/{n}.input.f32", "<f4").reshape(224, 224, 3) for n in NAMES])
        ref = np.fromfile(f"{GOLDEN}/img8/all8.avgpool.f32", "<f4").reshape(8, 2048)
        f = self.m.features_from_tensors(x)
        rel = np.linalg.norm(f - ref, axis=1) / np.linalg.norm(ref, axis=1)
        self.assertLessEqual(rel.max(), 1e-4)
        self.assertLessEqual(np.abs(f - ref).max(), 1e-3)

    def test_paths_and_bytes(self):
        need(GOLDEN), need(SAMPLE)
        ref = np.fromfile(f"{GOLDEN}/img8/all8.avgpool.f32", "<f4").reshape(8, 2048)
        paths = [os.path.join(SAMPLE, p) for p in PATHS]
        f1 = self.m.features(paths)
        f2 = self.m.features([read_bytes(p) for p in paths])
        np.testing.assert_array_equal(f1, f2)
        self.assertGreaterEqual(min(cos(f1[i], ref[i]) for i in range(8)), 0.999)

    def test_classify_banana(self):
        need(SAMPLE)
        top = self.m.classify([os.path.join(SAMPLE, PATHS[0])], k=5)[0]
        self.assertEqual(top[0][0], "banana")
        self.assertGreater(top[0][1], 0.9)
        self.assertEqual(len(top), 5)

    def test_errors(self):
        with self.assertRaises(fruitnet.FruitnetError) as cm:
            self.m.features(["/nonexistent/apple.jpg"])
        self.assertIn("/nonexistent/apple.jpg", str(cm.exception))
        self.assertEqual(cm.exception.code, -2)
        with self.assertRaises(fruitnet.FruitnetError):
            fruitnet.Model("/nonexistent.fnw")
        need(SAMPLE)
        good = os.path.join(SAMPLE, PATHS[2])
        feats, idx, fails = self.m.features([b"not an image", good, b""], errors="skip")
        self.assertEqual(feats.shape, (1, 2048))
        self.assertEqual(idx, [1])
        self.assertEqual([i for i, _ in fails], [0, 2])
        self.assertIn("empty", fails[1][1])

    def test_parquet_and_pca(self):
        rng = np.random.default_rng(7)
        x = (rng.standard_normal((300, 16)) * np.arange(16, 0, -1)).astype(np.float32)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "t.parquet")
            with fruitnet.ParquetWriter(p, meta={"k": "v"}) as w:
                for i, row in enumerate(x):
                    w.add(f"img{i}.jpg", "Äpfel", row)
            rows = list(fruitnet.read_parquet(p))
            self.assertEqual(len(rows), 300)
            np.testing.assert_array_equal(np.stack([r[2] for r in rows]), x)
            self.assertEqual(rows[5][1], "Äpfel")
            a, b = fruitnet.PcaStats(16), fruitnet.PcaStats(16)
            a.add(x[:100]), b.add(x[100:])
            a.save(os.path.join(d, "a.stats"))
            m1 = fruitnet.PcaStats.load(os.path.join(d, "a.stats")).merge(b).fit(k=5)
            m2 = fruitnet.PcaStats(16).add(x).fit(k=5)
            np.testing.assert_allclose(m1.eigenvalues, m2.eigenvalues, rtol=1e-9)
            w = np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False))[::-1][:5]
            np.testing.assert_allclose(m2.eigenvalues, w, rtol=1e-9)


if __name__ == "__main__":
    unittest.main(verbosity=2)
