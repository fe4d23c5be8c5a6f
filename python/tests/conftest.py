"""Shared fixtures of the Python tests (pytest).

The package is imported from this source tree (python/), with the library of
$FRUITNET_LIB (the Makefile exports build/libfruitnet.so). Reference data:
$FRUITNET_GOLDEN, $FRUITNET_SAMPLE (default ../shared beside the clone). A
missing folder skips a test, or fails it when FRUITNET_REQUIRE_DATA=1 (CI).
"""
import gzip
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
REPO = os.path.dirname(PYDIR)
sys.path.insert(0, PYDIR)

GOLDEN = os.environ.get("FRUITNET_GOLDEN", os.path.join(REPO, "..", "shared", "golden"))
SAMPLE = os.environ.get("FRUITNET_SAMPLE", os.path.join(REPO, "..", "shared", "data", "fruits-360-sample"))
BUILD = os.environ.get("FRUITNET_BUILD", os.path.join(REPO, "build"))
REQUIRE = os.environ.get("FRUITNET_REQUIRE_DATA") == "1"
NAMES = ["g0_banana", "g1_apple_braeburn", "g2_lemon", "g3_pineapple", "g4_strawberry", "g5_cocos", "g6_kiwi",
         "g7_tomato_1"]
PATHS = ["Banana/108_100.jpg", "Apple Braeburn/321_100.jpg", "Lemon/321_100.jpg", "Pineapple/15_100.jpg",
         "Strawberry/321_100.jpg", "Cocos/0_100.jpg", "Kiwi/39_100.jpg", "Tomato 1/186_100.jpg"]


def need(path):
    """Skip (or fail under FRUITNET_REQUIRE_DATA=1) when a reference file or folder is missing."""
    if not os.path.exists(path):
        if REQUIRE:
            pytest.fail(f"{path} missing and FRUITNET_REQUIRE_DATA=1")
        pytest.skip(f"{path} missing")
    return path


@pytest.fixture(scope="session")
def golden():
    return need(GOLDEN)


@pytest.fixture(scope="session")
def sample():
    return need(SAMPLE)


@pytest.fixture(scope="session")
def all2880(golden):
    """The 2,880 golden features (float16 file) as float32 (2880, 2048)."""
    p = need(os.path.join(golden, "all2880", "features_2880x2048.f16.gz"))
    with gzip.open(p) as f:
        return np.frombuffer(f.read(), "<f2").reshape(2880, 2048).astype(np.float32)


@pytest.fixture(scope="session")
def model():
    import fruitnet
    m = fruitnet.Model(threads=2, batch=8, classifier=True)
    yield m
    m.close()


def read_bytes(p):
    with open(p, "rb") as f:
        return f.read()
