#!/usr/bin/env python3
"""Build the ONNX ResNet50 (up to avg_pool) from fruitnet's own weight file.

usage: .venv/bin/python make_onnx.py WEIGHTS.fnw OUT.onnx [--opset K]

The graph takes NHWC float32 [N,224,224,3] like fruitnet (the Transpose to NCHW
is inside the graph, so ORT pays for it as fruitnet pays for its own layout),
uses the same BN-folded conv weights (HWIO -> OIHW, bit-identical float32) and
returns the 2048-d avg_pool features [N,2048]. The batch dimension N is dynamic.
Only for benchmarking: the peer is never linked into fruitnet.

The .fnw (format version 1) is validated as fruitnet does: header fields, header/table/data
CRC-32s, every tensor's bounds and alignment, and the shape of every tensor used.
Needs onnx and numpy: the venv's (make venv bench-peers-deps; bench/requirements-peers.txt).
"""
import os
import struct
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HDR = struct.Struct("<8sIIQQQQIIII")  # 64 bytes
STAGES = [(3, 64, 256), (4, 128, 512), (6, 256, 1024), (3, 512, 2048)]


def die(msg):
    sys.exit("make_onnx: " + msg)


def read_fnw(path):
    try:
        with open(path, "rb") as f:
            b = f.read()
    except OSError as e:
        die(f"{path}: {e.strerror}")
    if len(b) < HDR.size:
        die(f"{path}: truncated header ({len(b)} bytes)")
    (magic, ver, count, toff, tbytes, doff, dbytes, dcrc, tcrc, hcrc, _res) = HDR.unpack_from(b)
    if magic != b"FNWEIGHT":
        die(f"{path}: not a fruitnet weight file (magic {magic!r})")
    if ver != 1:
        die(f"{path}: unsupported version {ver}")
    if zlib.crc32(b[:56]) != hcrc:
        die(f"{path}: header checksum mismatch")
    if toff != 64 or doff % 64 or toff + tbytes > doff or doff + dbytes != len(b):
        die(f"{path}: inconsistent layout (table {toff}+{tbytes}, data {doff}+{dbytes}, file {len(b)})")
    if zlib.crc32(b[toff:toff + tbytes]) != tcrc:
        die(f"{path}: table checksum mismatch")
    if zlib.crc32(b[doff:doff + dbytes]) != dcrc:
        die(f"{path}: data checksum mismatch")
    p, end, t = toff, toff + tbytes, {}
    try:
        for _ in range(count):
            (nl,) = struct.unpack_from("<H", b, p)
            if not 1 <= nl <= 255 or p + 2 + nl + 2 > end:
                raise ValueError("bad name length")
            name = b[p + 2:p + 2 + nl].decode("utf-8")
            p += 2 + nl
            dtype, ndim = b[p], b[p + 1]
            p += 2
            if dtype not in (1, 2) or ndim > 4 or p + 8 * ndim + 16 > end:
                raise ValueError(f"{name}: bad dtype {dtype} / ndim {ndim}")
            shape = struct.unpack_from("<%dQ" % ndim, b, p)
            p += 8 * ndim
            off, nbytes = struct.unpack_from("<QQ", b, p)
            p += 16
            esz = 4 if dtype == 1 else 1
            if off % 64 or off + nbytes > dbytes or nbytes != int(np.prod(shape, dtype=np.uint64)) * esz:
                raise ValueError(f"{name}: bad offset/size")
            if name in t:
                raise ValueError(f"{name}: duplicate tensor")
            if dtype == 1:
                t[name] = np.frombuffer(b, "<f4", nbytes // 4, doff + off).reshape(shape)
            else:
                t[name] = bytes(b[doff + off:doff + off + nbytes])
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        die(f"{path}: bad tensor table: {e}")
    if p != end:
        die(f"{path}: {end - p} stray bytes after the tensor table")
    meta = dict(l.split("=", 1) for l in t.get("meta", b"").decode().splitlines() if "=" in l)
    if meta.get("bn") != "folded" or meta.get("layout") != "NHWC/HWIO":
        die(f"{path}: meta says bn={meta.get('bn')} layout={meta.get('layout')}, need folded NHWC/HWIO")
    return t, meta


def main():
    args = sys.argv[1:]
    opset = 13
    if "--opset" in args:
        i = args.index("--opset")
        opset = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__.strip().splitlines()[2])
    src, dst = args
    w, meta = read_fnw(src)
    nodes, inits = [], []

    def conv(name, x, k, cin, cout, stride, pad, relu, res=None):
        kn, bn = name + "/kernel", name + "/bias"
        if kn not in w or bn not in w:
            die(f"{src}: tensor {kn} or {bn} missing")
        if w[kn].shape != (k, k, cin, cout) or w[bn].shape != (cout,):
            die(f"{src}: {kn} is {w[kn].shape}, {bn} is {w[bn].shape}; want ({k}, {k}, {cin}, {cout}), ({cout},)")
        kern = np.ascontiguousarray(w[kn].transpose(3, 2, 0, 1), np.float32)  # HWIO -> OIHW
        inits.append(numpy_helper.from_array(kern, name + "_W"))
        inits.append(numpy_helper.from_array(np.array(w[bn], np.float32), name + "_B"))
        out = name
        nodes.append(helper.make_node("Conv", [x, name + "_W", name + "_B"], [out], name=name,
                                      kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))
        if res is not None:
            nodes.append(helper.make_node("Add", [out, res], [out + "_add"], name=name + "_add"))
            out += "_add"
        if relu:
            nodes.append(helper.make_node("Relu", [out], [out + "_relu"], name=name + "_relu"))
            out += "_relu"
        return out

    nodes.append(helper.make_node("Transpose", ["input"], ["x_nchw"], name="nhwc_to_nchw", perm=[0, 3, 1, 2]))
    x = conv("conv1", "x_nchw", 7, 3, 64, 2, 3, True)
    # pool1: ZeroPadding2D(1) + MaxPool 3x3/2 valid; the input is post-ReLU (>= 0) so
    # zero padding and ONNX's implicit -inf padding give the same result.
    nodes.append(helper.make_node("MaxPool", [x], ["pool1"], name="pool1",
                                  kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4))
    x, cin = "pool1", 64
    for s, (blocks, f, fout) in enumerate(STAGES):
        for bi in range(blocks):
            pre = "res%d%s_branch" % (s + 2, "abcdef"[bi])
            stride = 2 if (s > 0 and bi == 0) else 1  # Keras v1: stride on the first 1x1
            short = conv(pre + "1", x, 1, cin, fout, stride, 0, False) if bi == 0 else x
            a = conv(pre + "2a", x, 1, cin, f, stride, 0, True)
            a = conv(pre + "2b", a, 3, f, f, 1, 1, True)
            x = conv(pre + "2c", a, 1, f, fout, 1, 0, True, res=short)
            cin = fout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="avg_pool"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["features"], name="flatten", axis=1))
    g = helper.make_graph(nodes, "resnet50_fruitnet",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 224, 224, 3])],
                          [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 2048])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="fruitnet-bench",
                          doc_string="ResNet50 to avg_pool from %s (%s)" % (os.path.basename(src),
                                                                           meta.get("integrity", "?")))
    m.ir_version = 8
    onnx.checker.check_model(m)
    tmp = "%s.tmp.%d" % (dst, os.getpid())
    onnx.save(m, tmp)
    os.replace(tmp, dst)
    print(f"make_onnx: {dst}: {len(nodes)} nodes, {len(inits) // 2} convs, opset {opset}, onnx {onnx.__version__}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
