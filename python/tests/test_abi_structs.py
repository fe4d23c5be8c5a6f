"""Every C struct that the binding mirrors with ctypes has the C size and field offsets.

fruitnet.h's option structs only grow at the end; a ctypes copy that was not
grown with them lets the library read past it (seen: fn_dataset_options gained
`classifier` and the Dask pipeline's writes failed with "the classifier takes
351827936 features"). This compiles a small C program against include/fruitnet.h
and compares sizeof/offsetof with ctypes.sizeof and the fields' offsets.
fn_pca_stats and fn_pca_model are opaque (handles and accessors): no layout to mirror."""
import ctypes
import os
import shutil
import subprocess

import pytest

from fruitnet import _lib
from fruitnet import classifier as _cls

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PAIRS = [  # (ctypes class, C type, C field names in ctypes order)
    (_lib.Error, "fn_error"),
    (_lib.ModelOptions, "fn_model_options"),
    (_lib.Image, "fn_image"),
    (_lib.KV, "fn_kv"),
    (_lib.ParquetOptions, "fn_parquet_options"),
    (_lib.Row, "fn_parquet_row"),
    (_lib.ExtractOptions, "fn_extract_options"),
    (_lib.DatasetOptions, "fn_dataset_options"),
    (_lib.DatasetCallbacks, "fn_dataset_callbacks"),
    (_lib.DatasetReport, "fn_dataset_report"),
    (_cls._Options, "fn_classifier_options"),
    (_cls._Report, "fn_classifier_report"),
]


def test_ctypes_structs_match_c(tmp_path):
    cc = shutil.which(os.environ.get("CC", "cc"))
    if not cc:
        pytest.fail("a C compiler is needed to read the C layouts (cc)")
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "fruitnet.h"', "int main(void) {"]
    for py, c in PAIRS:
        lines.append(f'printf("{c} size %zu\\n", sizeof({c}));')
        for name, *_ in py._fields_:
            lines.append(f'printf("{c} {name} %zu\\n", offsetof({c}, {name}));')
    lines += ["return 0; }"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    r = subprocess.run([cc, "-std=c11", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # a ctypes field that C does not have fails here, by name
    c_layout = {}
    for line in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines():
        t, f, v = line.split()
        c_layout[(t, f)] = int(v)
    bad = []
    for py, c in PAIRS:
        if ctypes.sizeof(py) != c_layout[(c, "size")]:
            bad.append(f"{py.__name__}: ctypes size {ctypes.sizeof(py)} != sizeof({c}) {c_layout[(c, 'size')]}")
        for name, *_ in py._fields_:
            off = getattr(py, name).offset
            if off != c_layout[(c, name)]:
                bad.append(f"{py.__name__}.{name}: offset {off} != {c_layout[(c, name)]}")
    assert not bad, "\n".join(bad)
