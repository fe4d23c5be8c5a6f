"""Build step of the Python package (metadata in pyproject.toml).

build_py runs `make lib tools` (B=$FRUITNET_BUILD_DIR, default build/; -j from
$FRUITNET_MAKE_JOBS, default 2) and copies build/libfruitnet.so into the
package and the tools into fruitnet/_bin/. The wheel is tagged
py3-none-<platform>: the package is ctypes (any CPython 3), the library native.
"""
import os
import re
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70
    from wheel.bdist_wheel import bdist_wheel

ROOT = os.path.dirname(os.path.abspath(__file__))
TOOLS = ("fruitnet-extract", "fruitnet-pca", "fruitnet-convert")


def version():
    with open(os.path.join(ROOT, "include", "fruitnet.h")) as f:
        return re.search(r'#define FRUITNET_VERSION "([^"]+)"', f.read()).group(1)


class BuildPy(build_py):
    def run(self):
        super().run()
        b = os.environ.get("FRUITNET_BUILD_DIR", "build")
        jobs = os.environ.get("FRUITNET_MAKE_JOBS", "2")
        subprocess.check_call(["make", "-j" + jobs, "B=" + b, "lib", "tools"], cwd=ROOT)
        pkg = os.path.join(self.build_lib, "fruitnet")
        os.makedirs(os.path.join(pkg, "_bin"), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, b, "libfruitnet.so"), os.path.join(pkg, "libfruitnet.so"))
        for t in TOOLS:
            shutil.copy2(os.path.join(ROOT, b, t), os.path.join(pkg, "_bin", t))
        # the int8 calibration set of `make weights` (24 MIT-licensed Fruits-360 images, with their
        # licence), so that `fruitnet weights` writes the same file (fruitnet/_paths.calibration_images)
        cal = os.path.join(pkg, "data", "calibration")
        shutil.rmtree(cal, ignore_errors=True)
        mini = os.path.join(ROOT, "tests", "data", "fruits-360-mini")
        shutil.copytree(os.path.join(mini, "images"), os.path.join(cal, "images"))
        for f in ("LICENSE", "SOURCE.md"):
            shutil.copy2(os.path.join(mini, f), os.path.join(cal, f))
        if shutil.which("strip"):  # the debug info stays in the build tree
            files = [os.path.join(pkg, "libfruitnet.so")] + [os.path.join(pkg, "_bin", t) for t in TOOLS]
            subprocess.call(["strip", "--strip-debug"] + files)


class BinaryDistribution(Distribution):
    """The package carries a native library: platform wheel, platlib install."""

    def has_ext_modules(self):
        return True


class BdistWheel(bdist_wheel):
    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(version=version(), distclass=BinaryDistribution, cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel},
      options={"build": {"build_base": os.path.join("build", "python")}})
