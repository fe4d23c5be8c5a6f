"""fruitnet.spark_job on real PySpark 4 (local[2]), against S3 (moto's server
through Hadoop's S3A connector) and the local file system.

Two classes of the sample (12 images each, plus one upper-case .JPG copy), a
truncated JPEG, a text file named .png and a notes.txt go to
s3a://fruit/images/<class>/. Checked, reading the output back with pyarrow
(not Spark): one row per good image, labels from the folders, features equal
to fruitnet-extract's on the same files (rel-L2 <= 1e-6) and to the golden
Keras features (rel-L2 <= 1e-3, float16 storage), errors/ names the two bad
files with their reasons, the PCA files are on S3 and their eigenvalues and k80
equal fruitnet-pca's on the same features; one Model per Python worker
process. Then the same folder from the local file system through spark-submit
(the installed file), and the error exits: a missing input, an empty folder,
a list of images none of which can be read (exit 2, no features dataset).

Needs: .venv (make venv: pyspark, moto[server], boto3), Java 17, the S3A jars
(make s3a-jars: FRUITNET_S3A_JARS, default the ~/.m2 paths), the sample and
golden data, build/fruitnet-extract and build/fruitnet-pca. With
FRUITNET_REQUIRE_DATA=1 a missing piece fails the test instead of skipping it."""
import contextlib
import csv
import gzip
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
REPO = os.path.dirname(PYDIR)
sys.path.insert(0, PYDIR)
import fruitnet  # noqa: E402

SAMPLE = os.environ.get("FRUITNET_SAMPLE", os.path.join(REPO, "../shared/data/fruits-360-sample"))
GOLDEN = os.environ.get("FRUITNET_GOLDEN", os.path.join(REPO, "../shared/golden"))
BUILD = os.environ.get("FRUITNET_BUILD", os.path.join(REPO, "build"))
M2 = os.path.expanduser("~/.m2/repository")
S3A_JARS = os.environ.get("FRUITNET_S3A_JARS") or ",".join([
    f"{M2}/org/apache/hadoop/hadoop-aws/3.5.0/hadoop-aws-3.5.0.jar",
    f"{M2}/software/amazon/awssdk/bundle/2.35.4/bundle-2.35.4.jar",
    f"{M2}/software/amazon/s3/analyticsaccelerator/analyticsaccelerator-s3/1.3.1/analyticsaccelerator-s3-1.3.1.jar"])
# on the class paths of the driver and executors in place: spark.jars would copy the 686 MB bundle into
# every executor's folder
S3A_CONF = ["--conf", "spark.driver.extraClassPath=" + S3A_JARS.replace(",", ":"),
            "--conf", "spark.executor.extraClassPath=" + S3A_JARS.replace(",", ":")]
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
CLASSES = ("Banana", "Lemon")
PER_CLASS = 12
LINE = re.compile(r"^(\d+) principal components explain at least 80% of the total variance$", re.M)


def _missing(what):
    if os.environ.get("FRUITNET_REQUIRE_DATA") == "1":
        raise AssertionError(f"missing: {what}")
    raise unittest.SkipTest(f"missing: {what}")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(p, group=False):
    """Stop a process this test started (its own process group for the Spark daemons)."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM) if group else p.terminate()
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL) if group else p.kill()
        p.wait()
    except ProcessLookupError:
        pass


def _children():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def _descendants(pid):
    kids, out, todo = _children(), [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _alive_workers(ui_port):
    import json
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as f:
            return int(json.load(f).get("aliveworkers", 0))
    except (OSError, ValueError):
        return 0


def _rel_l2(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(np.asarray(b, np.float64)))


def _eigs_k80(csv_text):
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    lam = np.array([float(r["eigenvalue"]) for r in rows])
    k80 = next(int(r["component"]) for r in rows if float(r["cumulative"]) >= 0.8)
    return lam, k80


class TestSpark(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            import pyspark  # noqa: F401
            import pyarrow.parquet  # noqa: F401
            import boto3  # noqa: F401
            import moto  # noqa: F401
        except ImportError as e:
            _missing(f"Python package ({e}): run `make venv` and use .venv/bin/python")
        if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
            _missing("java (Java 17)")
        for p in S3A_JARS.split(","):
            if not os.path.isfile(p):
                _missing(f"S3A jar {p} (make s3a-jars)")
        for p in (SAMPLE, GOLDEN):
            if not os.path.isdir(p):
                _missing(p)
        for t in ("fruitnet-extract", "fruitnet-pca"):
            if not os.path.exists(os.path.join(BUILD, t)):
                _missing(os.path.join(BUILD, t) + " (make)")
        cls.tmp = tempfile.mkdtemp(prefix="fruitnet-spark-")
        cls.images = os.path.join(cls.tmp, "images")
        cls.good = []  # relative paths of the good images
        for c in CLASSES:
            os.makedirs(os.path.join(cls.images, c))
            for n in sorted(os.listdir(os.path.join(SAMPLE, c)))[:PER_CLASS]:
                shutil.copy(os.path.join(SAMPLE, c, n), os.path.join(cls.images, c, n))
                cls.good.append(f"{c}/{n}")
        src = os.path.join(SAMPLE, CLASSES[1], sorted(os.listdir(os.path.join(SAMPLE, CLASSES[1])))[-1])
        shutil.copy(src, os.path.join(cls.images, CLASSES[1], "COPY.JPG"))  # upper-case extension
        cls.good.append(f"{CLASSES[1]}/COPY.JPG")
        cls.golden_of = {f"{c}/{n}": f"{c}/{n}" for c in CLASSES for n in os.listdir(os.path.join(cls.images, c))}
        cls.golden_of[f"{CLASSES[1]}/COPY.JPG"] = os.path.relpath(src, SAMPLE)
        with open(os.path.join(cls.images, CLASSES[0], sorted(os.listdir(os.path.join(SAMPLE, CLASSES[0])))[0]),
                  "rb") as f:
            jpeg = f.read()
        with open(os.path.join(cls.images, CLASSES[0], "cut.jpg"), "wb") as f:
            f.write(jpeg[:len(jpeg) // 3])  # truncated JPEG
        with open(os.path.join(cls.images, CLASSES[1], "fake.png"), "w") as f:
            f.write("not an image\n")
        with open(os.path.join(cls.images, CLASSES[1], "notes.txt"), "w") as f:
            f.write("not an input: no image extension\n")
        cls.bad = {f"{CLASSES[0]}/cut.jpg": "truncated", f"{CLASSES[1]}/fake.png": "unknown image format"}
        # the reference: fruitnet-extract on the same files
        ref = os.path.join(cls.tmp, "ref.parquet")
        # batch 1, one thread, like the S3 run below: the same algorithms, so the same features to rounding
        # (a batch of 8 picks other convolution algorithms for some layers: within the project's
        # batch-consistency bound, test_golden.c's test_batching_consistent)
        subprocess.run([os.path.join(BUILD, "fruitnet-extract"), "-q", "--single-file", "--batch", "1",
                        "--threads", "1", "-o", ref, cls.images],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.ref = {os.path.relpath(p, cls.images): v for p, _, v in fruitnet.read_parquet(ref)}
        assert sorted(cls.ref) == sorted(cls.good), sorted(cls.ref)
        man = list(csv.DictReader(open(os.path.join(GOLDEN, "all2880", "manifest.csv"))))
        g = np.frombuffer(gzip.open(os.path.join(GOLDEN, "all2880", "features_2880x2048.f16.gz")).read(), "<f2")
        g = g.reshape(len(man), 2048)
        row = {r["relative_path"]: int(r["row"]) for r in man}
        cls.golden = {rel: g[row[cls.golden_of[rel]]].astype(np.float32) for rel in cls.good}

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ helpers
    def _env(self, extra=None):
        env = dict(os.environ)
        env["PYTHONPATH"] = PYDIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["FRUITNET_SPARK_LOG_MODELS"] = "1"
        env.update(extra or {})
        return env

    def _job(self, args, env, submit=(), master=True):
        common = ["--conf", "spark.ui.enabled=false", "--conf", "spark.driver.memory=1g"]
        if submit:
            cmd = [os.path.join(os.path.dirname(sys.executable), "spark-submit"), "--master", "local[2]",
                   "--conf", "spark.ui.enabled=false", *submit,
                   os.path.join(PYDIR, "fruitnet", "spark_job.py")] + args
            env = dict(env, PYSPARK_PYTHON=sys.executable)
            env.pop("PYTHONPATH", None)  # the file finds its own package (as an installed file does)
        else:
            cmd = [sys.executable, "-m", "fruitnet.spark_job"] + args + (["--master", "local[2]"] if master else []) \
                + common
        r = subprocess.run(cmd, env=env, cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=1800)
        if r.returncode != 0:
            print(r.stderr[-6000:], file=sys.stderr)
        return r

    def _check_rows(self, table, prefix, tol_ref=1e-6):
        paths = table.column("path").to_pylist()
        labels = table.column("label").to_pylist()
        feats = table.column("features").to_pylist()
        self.assertEqual(len(paths), len(set(paths)), "a path twice")
        self.assertEqual(sorted(paths), sorted(prefix + g for g in self.good))
        worst_ref = worst_gold = 0.0
        for p, lab, v in zip(paths, labels, feats):
            rel = p[len(prefix):]
            self.assertEqual(lab, rel.split("/")[0])
            v = np.asarray(v, np.float32)
            self.assertEqual(v.shape, (2048,))
            worst_ref = max(worst_ref, _rel_l2(v, self.ref[rel]))
            worst_gold = max(worst_gold, _rel_l2(v, self.golden[rel]))
        self.assertLessEqual(worst_ref, tol_ref, "features differ from fruitnet-extract's")
        self.assertLessEqual(worst_gold, 1e-3, "features differ from the golden Keras features")
        return paths, feats, worst_ref, worst_gold

    def _check_errors(self, table, prefix, expected):
        got = dict(zip(table.column("path").to_pylist(), table.column("reason").to_pylist()))
        self.assertEqual(sorted(got), sorted(prefix + b for b in expected))
        for rel, why in expected.items():
            self.assertIn(prefix + rel, got[prefix + rel])  # the reason names the file
            self.assertIn(why, got[prefix + rel])

    def _check_pca(self, k, csv_text, feats):
        """k80 and eigenvalues equal fruitnet-pca's on the same features."""
        local = os.path.join(self.tmp, "pca-in.parquet")
        with fruitnet.ParquetWriter(local) as w:
            for i, v in enumerate(feats):
                w.add(str(i), "x", v)
        ref = os.path.join(self.tmp, "pca-ref")
        shutil.rmtree(ref, ignore_errors=True)
        subprocess.run([os.path.join(BUILD, "fruitnet-pca"), "fit", "-q", "-i", local, "-o", ref], check=True,
                       stdout=subprocess.DEVNULL)
        lam_ref, k_ref = _eigs_k80(open(os.path.join(ref, "explained_variance.csv")).read())
        lam, k_csv = _eigs_k80(csv_text)
        self.assertEqual(k, k_ref)
        self.assertEqual(k_csv, k_ref)
        n = len(feats) - 1  # rank of the covariance: the rest are rounding noise around 0
        rel = np.abs(lam[:n] - lam_ref[:n]) / lam_ref[:n]
        self.assertLessEqual(rel.max(), 1e-9)
        return rel.max()

    def _check_model_cache(self, stderr):
        opens = re.findall(r"model opened in Python worker (\d+)", stderr)
        self.assertGreater(len(opens), 0)
        self.assertEqual(len(opens), len(set(opens)), "a worker process opened the model twice")
        self.assertLessEqual(len(opens), 4, "more models than Python workers of local[2]")
        return len(opens)

    @contextlib.contextmanager
    def _s3(self):
        """A moto S3 server on 127.0.0.1 with the images under s3://fruit/images/; stopped at the end."""
        import boto3

        port = _free_port()
        log = open(os.path.join(self.tmp, f"moto-{port}.log"), "w")
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, env=self._env(CREDS))
        try:
            endpoint = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    self.assertIsNone(server.poll(), "moto server exited")
                    time.sleep(0.2)
            s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
            s3.create_bucket(Bucket="fruit")
            for root, _, files in os.walk(self.images):
                for f in files:
                    p = os.path.join(root, f)
                    s3.upload_file(p, "fruit", "images/" + os.path.relpath(p, self.images))
            yield endpoint
        finally:
            _stop(server)
            log.close()

    def _check_s3_output(self, endpoint, r, tol_ref=1e-6):
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        m = LINE.search(r.stdout)
        self.assertIsNotNone(m, r.stdout)
        k = int(m.group(1))
        fs = pafs.S3FileSystem(access_key="testing", secret_key="testing", endpoint_override=endpoint,
                               scheme="http", region="us-east-1")
        self.assertEqual(fs.get_file_info("fruit/out/features.parquet/_SUCCESS").type, pafs.FileType.File)
        t = pq.read_table("fruit/out/features.parquet", filesystem=fs)
        self.assertEqual([f.name for f in t.schema], ["path", "label", "features"])
        self.assertEqual(str(t.schema.field("features").type), "list<element: float>")
        _, feats, worst_ref, worst_gold = self._check_rows(t, "s3a://fruit/images/", tol_ref)
        self._check_errors(pq.read_table("fruit/out/errors", filesystem=fs), "s3a://fruit/images/", self.bad)
        for n in ("model.fnpca", "explained_variance.csv", "scree.svg", "scatter.svg"):
            self.assertEqual(fs.get_file_info(f"fruit/out/pca/{n}").type, pafs.FileType.File, n)
        with fs.open_input_stream("fruit/out/pca/explained_variance.csv") as f:
            ev = f.read().decode()
        eig_rel = self._check_pca(k, ev, feats)
        with fs.open_input_stream("fruit/out/pca/scatter.svg") as f:
            self.assertEqual(f.read().decode().count("<circle"), len(self.good))
        return k, worst_ref, worst_gold, eig_rel

    # -------------------------------------------------------------------- tests
    def test_s3(self):
        with self._s3() as endpoint:
            t0 = time.time()
            r = self._job(["s3a://fruit/images", "s3a://fruit/out", "--s3-endpoint", endpoint,
                           "--partitions", "4", "--batch", "1", "--threads", "1",
                           *S3A_CONF], self._env(CREDS))
            wall = time.time() - t0
            k, worst_ref, worst_gold, eig_rel = self._check_s3_output(endpoint, r)
            opens = self._check_model_cache(r.stderr)
            print(f"\n[ spark s3a ] {len(self.good)} images + 2 bad, local[2]: {wall:.1f} s wall (JVM start, "
                  f"S3A, {opens} model opens); k80 = {k}; rel-L2 vs fruitnet-extract {worst_ref:.2e}, "
                  f"vs golden {worst_gold:.2e}; eigenvalues vs fruitnet-pca {eig_rel:.2e}", file=sys.stderr)

    def test_standalone_cluster_executor_killed(self):
        """A Spark standalone cluster on 127.0.0.1 (a master, 2 workers of 1 core, separate processes), S3 in
        and out; one executor is SIGKILLed once it runs Python tasks: the job completes, every image once."""
        bin_dir = os.path.dirname(sys.executable)
        env = self._env(dict(CREDS, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable))
        procs = []
        with self._s3() as endpoint:
            try:
                port, ui = _free_port(), _free_port()
                procs.append(subprocess.Popen(
                    [os.path.join(bin_dir, "spark-class"), "org.apache.spark.deploy.master.Master",
                     "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
                for i in range(2):
                    wd = os.path.join(self.tmp, f"worker{i}")
                    os.makedirs(wd, exist_ok=True)
                    procs.append(subprocess.Popen(
                        [os.path.join(bin_dir, "spark-class"), "org.apache.spark.deploy.worker.Worker",
                         "--host", "127.0.0.1", "--cores", "1", "--memory", "2g", "--webui-port", "0",
                         "--work-dir", wd, f"spark://127.0.0.1:{port}"],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
                deadline = time.time() + 600
                while _alive_workers(ui) < 2:
                    self.assertLess(time.time(), deadline, "the standalone workers did not register")
                    for p in procs:
                        self.assertIsNone(p.poll(), "a Spark daemon exited")
                    time.sleep(1)
                killed = []

                def killer():
                    # the executor JVM under worker 1, once it has Python workers (tasks running)
                    end = time.time() + 1200
                    while time.time() < end and not killed:
                        for pid in _descendants(procs[1].pid):
                            if "CoarseGrainedExecutorBackend" in _cmdline(pid) and \
                                    any("python" in _cmdline(c) for c in _descendants(pid)):
                                time.sleep(2)
                                os.kill(pid, signal.SIGKILL)
                                killed.append(pid)
                                return
                        time.sleep(0.5)

                th = threading.Thread(target=killer, daemon=True)
                th.start()
                t0 = time.time()
                r = self._job(["s3a://fruit/images", "s3a://fruit/out", "--s3-endpoint", endpoint,
                               "--partitions", "8", "--batch", "1", "--threads", "1",
                               "--master", f"spark://127.0.0.1:{port}", *S3A_CONF,
                               "--conf", "spark.executor.memory=1g"], env, master=False)
                wall = time.time() - t0
                th.join(timeout=5)
                self.assertEqual(len(killed), 1, "no executor was killed mid-job")
                k, worst_ref, _, eig_rel = self._check_s3_output(endpoint, r)
                print(f"\n[ spark standalone ] master + 2 workers x 1 core, executor {killed[0]} SIGKILLed: "
                      f"{wall:.1f} s wall; every image once; k80 = {k}; rel-L2 vs fruitnet-extract "
                      f"{worst_ref:.2e}; eigenvalues vs fruitnet-pca {eig_rel:.2e}", file=sys.stderr)
            finally:
                for p in reversed(procs):
                    _stop(p, group=True)

    def test_local_spark_submit(self):
        import pyarrow.parquet as pq

        out = os.path.join(self.tmp, "out-local")
        t0 = time.time()
        # the weights shipped with --files and named by their file name (not a path in the working folder)
        weights = os.path.join(REPO, "weights", "resnet50.fnw")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "resnet50.fnw")))
        r = self._job([self.images, out, "--partitions", "3", "--weights", "resnet50.fnw"],
                      dict(self._env(), FRUITNET_WEIGHTS="/nonexistent/resnet50.fnw"), submit=["--files", weights])
        wall = time.time() - t0
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        k = int(LINE.search(r.stdout).group(1))
        self.assertTrue(os.path.isfile(os.path.join(out, "features.parquet", "_SUCCESS")))
        prefix = "file:" + self.images + "/"
        # default batch (8): other convolution algorithms than the batch-1 reference for some layers
        _, feats, worst_ref, _ = self._check_rows(pq.read_table(os.path.join(out, "features.parquet")), prefix,
                                                  tol_ref=1e-5)
        self._check_errors(pq.read_table(os.path.join(out, "errors")), prefix, self.bad)
        self._check_pca(k, open(os.path.join(out, "pca", "explained_variance.csv")).read(), feats)
        self._check_model_cache(r.stderr)
        print(f"\n[ spark-submit local ] {len(self.good)} images: {wall:.1f} s wall; k80 = {k}; "
              f"rel-L2 vs fruitnet-extract {worst_ref:.2e}", file=sys.stderr)

    def test_bad_inputs(self):
        """Missing input, empty folder, a list whose images all fail: exit 2, a clear message, no features."""
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(os.path.join(empty, "Banana"))
        with open(os.path.join(empty, "Banana", "readme.txt"), "w") as f:
            f.write("no images here\n")
        lst = os.path.join(self.tmp, "bad.lst")
        with open(lst, "w") as f:
            f.write("# two inputs, neither readable\n\n")
            f.write(os.path.join(self.images, CLASSES[0], "cut.jpg") + "\n")
            f.write(os.path.join(self.images, CLASSES[0], "gone.jpg") + "\n")
        from fruitnet import spark_job

        cases = [(os.path.join(self.tmp, "nowhere"), "no such file or folder"),
                 (empty, "no *.jpg, *.jpeg or *.png file found"),
                 (lst, "none of the 2 images could be read")]
        # an earlier run's output in the third case's folder must not survive as this run's
        for d in ("features.parquet", "pca"):
            os.makedirs(os.path.join(self.tmp, "out-bad2", d))
            with open(os.path.join(self.tmp, "out-bad2", d, "stale"), "w") as f:
                f.write("from an earlier run\n")
        env_before = dict(os.environ)
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYTHONPATH"] = PYDIR + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH")
                                            else "")
        try:
            for i, (inp, msg) in enumerate(cases):
                out = os.path.join(self.tmp, f"out-bad{i}")
                err = io.StringIO()
                old = sys.stderr
                sys.stderr = err
                try:
                    rc = spark_job.main([inp, out, "--master", "local[2]", "--conf", "spark.ui.enabled=false"])
                finally:
                    sys.stderr = old
                self.assertEqual(rc, 2, err.getvalue())
                self.assertIn(msg, err.getvalue())
                self.assertIn(inp, err.getvalue())
                self.assertFalse(os.path.exists(os.path.join(out, "features.parquet")))
                self.assertFalse(os.path.exists(os.path.join(out, "pca")))
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        # the all-bad list still says why, per image
        import pyarrow.parquet as pq
        t = pq.read_table(os.path.join(self.tmp, "out-bad2", "errors"))
        got = dict(zip(t.column("path").to_pylist(), t.column("reason").to_pylist()))
        self.assertEqual(sorted(got), sorted("file:" + os.path.join(self.images, CLASSES[0], n)
                                             for n in ("cut.jpg", "gone.jpg")))
        self.assertIn("no such file", got["file:" + os.path.join(self.images, CLASSES[0], "gone.jpg")])
        self.assertIn("truncated", got["file:" + os.path.join(self.images, CLASSES[0], "cut.jpg")])


if __name__ == "__main__":
    unittest.main(verbosity=2)
