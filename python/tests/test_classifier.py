"""fruitnet.Classifier: the scikit-learn protocol, the .fncls file, and agreement with the C tools
(fruitnet-extract, fruitnet-train, fruitnet-classify) on the repository's 24 images (unittest)."""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import fruitnet  # noqa: E402
from fruitnet.classifier import Classifier  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("FRUITNET_BUILD", os.path.join(REPO, "build"))
MINI = os.path.join(REPO, "tests", "data", "fruits-360-mini", "images")
WEIGHTS = os.environ.get("FRUITNET_WEIGHTS", os.path.join(REPO, "weights", "resnet50.fnw"))


def clusters(K=3, d=8, m=20, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, (K * m, d)).astype(np.float32)
    y = np.repeat(np.arange(K), m)
    for c in range(K):
        X[y == c, c::K] += 4
    return X, y


class TestClassifier(unittest.TestCase):
    def test_sklearn_protocol(self):
        X, y = clusters()
        labels = np.array([10, 2, 7])[y]  # non-string labels keep their type and numeric order
        clf = Classifier(folds=3).fit(X, labels)
        self.assertEqual(list(clf.classes_), [2, 7, 10])
        P = clf.predict_proba(X)
        self.assertEqual(P.shape, (60, 3))
        np.testing.assert_allclose(P.sum(1), 1, atol=1e-5)
        self.assertEqual(clf.score(X, labels), 1.0)
        self.assertTrue(np.isfinite(clf.C_) and clf.C_ > 0)
        self.assertEqual(len(clf.cv_results_["C"]), 4)
        self.assertTrue((clf.cv_predictions_ == labels).all())
        from sklearn.base import clone
        c2 = clone(clf).set_params(C=1.0)
        self.assertEqual(c2.fit(X, labels).C_, 1.0)
        with self.assertRaises(ValueError):
            Classifier().predict(X)

    def test_file_round_trip_and_errors(self):
        X, y = clusters()
        clf = Classifier(C=1.0).fit(X, np.array(["Apple", "Banana", "Cherry"])[y])
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "m.fncls")
            clf.save(p)
            c2 = Classifier.load(p)
            self.assertEqual(list(c2.classes_), ["Apple", "Banana", "Cherry"])
            np.testing.assert_array_equal(c2.predict_proba(X), clf.predict_proba(X))
            with open(p, "rb") as f:
                data = f.read()
            np.testing.assert_array_equal(Classifier.load(data).predict_proba(X), clf.predict_proba(X))
            # out-of-set distance: kept in the file; training rows within the threshold, a far row beyond
            self.assertGreater(c2.distance_threshold_, 0)
            self.assertEqual(c2.distance_threshold_, clf.distance_threshold_)
            np.testing.assert_array_equal(c2.distance(X), clf.distance(X))
            self.assertTrue((clf.distance(X) <= clf.distance_threshold_ * (1 + 1e-4)).all())
            self.assertGreater(clf.distance(np.full((1, X.shape[1]), 40, np.float32))[0], 10 * clf.distance_threshold_)
            bad = bytearray(data)
            bad[-10] ^= 1
            with self.assertRaises(fruitnet.FruitnetError) as cm:
                Classifier.load(bytes(bad))
            self.assertIn("checksum mismatch", str(cm.exception))
            with self.assertRaises(fruitnet.FruitnetError) as cm:
                Classifier.load(data[:100])
            self.assertIn("truncated", str(cm.exception))

    def test_same_as_the_tools(self):
        """Trained by fruitnet-train on the repository's 24 images, read by Classifier.load: the same
        probabilities as fruitnet-classify prints, and Classifier.fit on the same rows writes the same file."""
        for p in (os.path.join(BUILD, "fruitnet-train"), os.path.join(BUILD, "fruitnet-classify"), WEIGHTS):
            if not os.path.exists(p):
                self.fail(f"{p} missing: run make")
        with tempfile.TemporaryDirectory() as d:
            feats, model = os.path.join(d, "f.parquet"), os.path.join(d, "m.fncls")
            subprocess.run([os.path.join(BUILD, "fruitnet-extract"), "-q", "--single-file", "--weights", WEIGHTS,
                            "-o", feats, MINI], check=True)
            subprocess.run([os.path.join(BUILD, "fruitnet-train"), "-q", "--folds", "3", "-i", feats, "-o", model],
                           check=True)
            rows = list(fruitnet.read_parquet(feats))
            X = np.stack([r[2] for r in rows])
            y = np.array([r[1] for r in rows])
            clf = Classifier.load(model)
            self.assertEqual(len(clf.classes_), 8)
            out = subprocess.run([os.path.join(BUILD, "fruitnet-classify"), "--weights", WEIGHTS, "--classifier",
                                  model, "--top", "2"] + [r[0] for r in rows], check=True, capture_output=True,
                                 text=True).stdout.splitlines()
            self.assertEqual(len(out), len(rows))
            P = clf.predict_proba(X)
            for i, line in enumerate(out):
                f = line.split("\t")
                self.assertEqual(f[0], rows[i][0])
                self.assertEqual(f[1], clf.classes_[np.argmax(P[i])])
                self.assertAlmostEqual(float(f[2]), float(P[i].max()), places=4)
            self.assertEqual(clf.score(X, y), 1.0)  # its own training images
            # inputs are listed by the library (fn_inputs), as fruitnet-extract lists them: a file named twice
            # (also inside a folder given too) is classified once, and a missing one is named, exit 1
            banana = os.path.join(MINI, "Banana")
            missing = os.path.join(d, "missing.jpg")
            r = subprocess.run([os.path.join(BUILD, "fruitnet-classify"), "--weights", WEIGHTS, "--classifier", model,
                                os.path.join(banana, "108_100.jpg"), banana + "//108_100.jpg", banana, missing],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(missing, r.stderr)
            printed = [line.split("\t")[0] for line in r.stdout.splitlines()]
            self.assertEqual(len(printed), len(set(printed)))
            self.assertEqual(len(printed), len(os.listdir(banana)))
            # the estimator trains the same model as the tool (blocked folds by frame order), byte for byte
            # but for the info text; random folds are another model
            from fruitnet.classifier import frame_order
            order = frame_order([r[0] for r in rows])
            self.assertEqual(sorted(order.tolist()), list(range(len(rows))))
            own = Classifier(folds=3).fit(X, y, order=order)
            np.testing.assert_array_equal(own.predict_proba(X), P)
            # the tool's report (per_class.csv beside -o) holds the same out-of-fold predictions
            import csv as _csv
            with open(os.path.join(d, "per_class.csv")) as f:
                rep = {r["class"]: r for r in _csv.DictReader(f)}
            self.assertEqual(sorted(rep), list(own.classes_))
            for c in own.classes_:
                self.assertEqual(int(rep[c]["support"]), int((y == c).sum()))
                self.assertEqual(int(rep[c]["correct"]), int(((y == c) & (own.cv_predictions_ == c)).sum()))
                self.assertEqual(int(rep[c]["predicted"]), int((own.cv_predictions_ == c).sum()))
            self.assertTrue(open(os.path.join(d, "confusion_matrix.svg")).read().startswith("<svg"))
            with self.assertRaises(ValueError):
                Classifier(folds=3).fit(X, y, order=order[:-1])
            # fruitnet-extract --classifier: prediction and probability columns, as pyarrow reads them
            pred = os.path.join(d, "p.parquet")
            subprocess.run([os.path.join(BUILD, "fruitnet-extract"), "-q", "--single-file", "--weights", WEIGHTS,
                            "--classifier", model, "-o", pred, MINI], check=True)
            import pyarrow.parquet as pq
            self.assertEqual(pq.read_table(feats).column_names, ["path", "label", "features"])
            t = pq.read_table(pred)
            self.assertEqual(t.column_names, ["path", "label", "features", "prediction", "probability"])
            self.assertEqual(str(t.schema.field("prediction").type), "string")
            self.assertEqual(str(t.schema.field("probability").type), "float")
            self.assertEqual(t.column("path").to_pylist(), [r[0] for r in rows])
            self.assertEqual(t.column("prediction").to_pylist(), list(clf.classes_[P.argmax(1)]))
            np.testing.assert_allclose(t.column("probability").to_numpy(), P.max(1), rtol=1e-5)
            self.assertEqual(t.column("prediction").null_count + t.column("probability").null_count, 0)
            # fruitnet's own reader skips the extra columns: same rows as without them
            again = list(fruitnet.read_parquet(pred))
            self.assertEqual([r[:2] for r in again], [r[:2] for r in rows])
            np.testing.assert_array_equal(np.stack([r[2] for r in again]), X)

    def test_augment_same_as_the_tool(self):
        """fruitnet-extract --mirror then fruitnet-train --augment on the repository's 24 images: the same
        probabilities as Classifier.fit(..., X_augment=, y_augment=); the mirrored rows change the model, not
        the cross-validation; bad augmentation arguments raise ValueError."""
        for p in (os.path.join(BUILD, "fruitnet-train"), WEIGHTS):
            if not os.path.exists(p):
                self.fail(f"{p} missing: run make")
        ext, train = os.path.join(BUILD, "fruitnet-extract"), os.path.join(BUILD, "fruitnet-train")
        with tempfile.TemporaryDirectory() as d:
            feats, mir = os.path.join(d, "f.parquet"), os.path.join(d, "m.parquet")
            plain, aug = os.path.join(d, "plain.fncls"), os.path.join(d, "aug.fncls")
            subprocess.run([ext, "-q", "--single-file", "--weights", WEIGHTS, "-o", feats, MINI], check=True)
            subprocess.run([ext, "-q", "--single-file", "--mirror", "--weights", WEIGHTS, "-o", mir, MINI], check=True)
            subprocess.run([train, "-q", "--folds", "3", "-i", feats, "-o", plain], check=True)
            subprocess.run([train, "-q", "--folds", "3", "-i", feats, "--augment", mir, "-o", aug], check=True)
            rows, mrows = list(fruitnet.read_parquet(feats)), list(fruitnet.read_parquet(mir))
            self.assertEqual([r[:2] for r in rows], [r[:2] for r in mrows])  # same images, same labels
            X, Xm = np.stack([r[2] for r in rows]), np.stack([r[2] for r in mrows])
            self.assertGreater(np.abs(X - Xm).max(), 1e-3)
            y, ym = np.array([r[1] for r in rows]), np.array([r[1] for r in mrows])
            from fruitnet.classifier import frame_order
            order = frame_order([r[0] for r in rows])
            own = Classifier(folds=3).fit(X, y, order=order, X_augment=Xm, y_augment=ym)
            ref, base = Classifier.load(aug), Classifier.load(plain)
            np.testing.assert_array_equal(own.predict_proba(X), ref.predict_proba(X))
            self.assertEqual(ref.info_["augment_rows"], "24")
            self.assertEqual(ref.info_["cv_accuracy"], base.info_["cv_accuracy"])
            self.assertFalse(np.array_equal(ref.predict_proba(X), base.predict_proba(X)))
            with self.assertRaises(ValueError):
                Classifier(folds=3).fit(X, y, X_augment=Xm)
            with self.assertRaises(ValueError):
                Classifier(folds=3).fit(X, y, X_augment=Xm, y_augment=np.array(["Durian"] * len(ym)))
            # --val holds out images: their mirrored rows are left out of the fit too (else they would leak)
            r = subprocess.run([train, "--folds", "3", "-i", feats, "--augment", mir, "-o", os.path.join(d, "x.fncls"),
                                "--val", "0.34"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("16 augmentation rows", r.stderr)  # 24 mirrored, 8 of them of held-out images


if __name__ == "__main__":
    unittest.main()
