"""Where the shared library, the tools and the weights are looked for.

Private. Three layouts are supported:
  * a wheel / ``pip install``: ``libfruitnet.so`` and ``_bin/`` inside the package,
    weights in the package's ``data/`` folder (``fruitnet weights`` puts them there);
  * ``make install PREFIX=...``: the generated ``_prefix.py`` names the prefix
    (library in PREFIX/lib, tools in PREFIX/bin, weights in PREFIX/share/fruitnet);
  * a source checkout: ``build/`` and ``weights/`` of the repository.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(PACKAGE_DIR, "data")
WEIGHTS_NAME = "resnet50.fnw"

try:  # written by `make install`
    from . import _prefix  # type: ignore[attr-defined]
    PREFIX: Optional[str] = _prefix.PREFIX
    SONAME: str = _prefix.SONAME
except ImportError:
    PREFIX = None
    SONAME = "libfruitnet.so.1"  # libfruitnet.so.FRUITNET_ABI (tests/test_api.py checks it against the header)


def _repo() -> Optional[str]:
    """The repository root when running from a source checkout (python/fruitnet/ inside it)."""
    root = os.path.dirname(os.path.dirname(PACKAGE_DIR))
    if os.path.isfile(os.path.join(root, "include", "fruitnet.h")) and os.path.isfile(os.path.join(root, "Makefile")):
        return root
    return None


def library_candidates() -> List[str]:
    """libfruitnet.so candidates, in order ($FRUITNET_LIB first)."""
    out = []
    env = os.environ.get("FRUITNET_LIB")
    if env:
        out.append(env)
    out.append(os.path.join(PACKAGE_DIR, "libfruitnet.so"))
    if PREFIX:
        out.append(os.path.join(PREFIX, "lib", SONAME))
    repo = _repo()
    if repo:
        out.append(os.path.join(repo, "build", "libfruitnet.so"))
    return [c for c in out if c == env or os.path.exists(c)]


def user_data_dir() -> str:
    """$XDG_DATA_HOME/fruitnet (default ~/.local/share/fruitnet)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "fruitnet")


def weights_candidates() -> List[str]:
    """Where the weight file is looked for, in order (after $FRUITNET_WEIGHTS)."""
    out = [os.path.join(DATA_DIR, WEIGHTS_NAME)]
    if PREFIX:
        out.append(os.path.join(PREFIX, "share", "fruitnet", WEIGHTS_NAME))
    out.append(os.path.join(sys.prefix, "share", "fruitnet", WEIGHTS_NAME))
    out.append(os.path.join(user_data_dir(), WEIGHTS_NAME))
    repo = _repo()
    if repo:
        out.append(os.path.join(repo, "weights", WEIGHTS_NAME))
    seen: List[str] = []
    for c in out:
        if c not in seen:
            seen.append(c)
    return seen


def calibration_images() -> Optional[str]:
    """The int8 calibration set `make weights` uses (the repository's 24 Fruits-360 images, MIT): the
    wheel's copy in ``data/calibration/`` (setup.py), else ``tests/data/fruits-360-mini/images`` of a
    source checkout; None when neither exists."""
    cands = [os.path.join(DATA_DIR, "calibration", "images")]
    repo = _repo()
    if repo:
        cands.append(os.path.join(repo, "tests", "data", "fruits-360-mini", "images"))
    for c in cands:
        if os.path.isdir(c):
            return c
    return None


def tool(name: str) -> Optional[str]:
    """Path of a C tool (fruitnet-extract, fruitnet-pca, fruitnet-convert), or None."""
    cands = [os.path.join(PACKAGE_DIR, "_bin", name)]
    if PREFIX:
        cands.append(os.path.join(PREFIX, "bin", name))
    repo = _repo()
    if repo:
        cands.append(os.path.join(repo, "build", name))
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None
