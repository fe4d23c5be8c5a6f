"""The glibc floor of libfruitnet.so: no symbol version newer than GLIBC_2.17 (objdump -T).

2.17 runs on Amazon Linux 2 (2.26), EMR 6/7, RHEL/CentOS 7 and every later glibc.
Newer default versions (hypot 2.35, pthread_create 2.34, stat 2.33, pow 2.29,
expf 2.27) are bound to their 2.2.5 versions by libfruitnet/glibc_compat.h.
The tools (executables) need 2.34: crt1.o's __libc_start_main of the glibc they are built with.
"""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD

FLOOR = (2, 17)


def versions(path):
    out = subprocess.run(["objdump", "-T", path], check=True, capture_output=True, text=True).stdout
    return {(int(a), int(b)): line.split()[-1] for line in out.splitlines()
            for a, b in re.findall(r"GLIBC_(\d+)\.(\d+)", line)}


def test_library_glibc_floor():
    if not shutil.which("objdump"):
        pytest.fail("objdump missing (binutils)")
    lib = os.environ.get("FRUITNET_LIB") or os.path.join(BUILD, "libfruitnet.so")
    v = versions(lib)
    assert v, "no GLIBC versions found: objdump output changed?"
    newest = max(v)
    assert newest <= FLOOR, f"{lib} needs GLIBC_{newest[0]}.{newest[1]} ({v[newest]}); the floor is 2.17"
    # on glibc >= 2.34 pthread_* live in libc.so.6; older ones need libpthread.so.0 loaded
    dyn = subprocess.run(["objdump", "-p", lib], check=True, capture_output=True, text=True).stdout
    assert "libpthread.so.0" in dyn


def test_tools_glibc():
    for t in ("fruitnet-extract", "fruitnet-pca", "fruitnet-convert"):
        v = versions(os.path.join(BUILD, t))
        newer = {k: s for k, s in v.items() if k > FLOOR}
        # only the C runtime start-up of the build machine's glibc
        assert set(newer.values()) <= {"__libc_start_main"}, (t, newer)
