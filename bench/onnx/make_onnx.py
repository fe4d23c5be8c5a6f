#!/usr/bin/env python3
"""Build the ONNX ResNet50 (up to avg_pool) from fruitnet's own weight file.

usage: /usr/bin/python3 make_onnx.py WEIGHTS.fnw OUT.onnx

The graph takes NHWC float32 [N,224,224,3] like fruitnet (a Transpose to NCHW
is inside the graph), uses the same BN-folded conv weights (HWIO -> OIHW) and
returns the 2048-d avg_pool features [N,2048]. Only for benchmarking: the
peer is never linked into fruitnet.
"""
import struct
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def read_fnw(path):
    b = open(path, "rb").read()
    if b[:8] != b"FNWEIGHT":
        sys.exit(f"{path}: not a fruitnet weight file")
    _ver, count, toff, tbytes, doff, dbytes, dcrc = struct.unpack_from("<IIQQQQI", b, 8)
    if zlib.crc32(b[doff:doff + dbytes]) != dcrc:
        sys.exit(f"{path}: data checksum mismatch")
    p, t = toff, {}
    for _ in range(count):
        (nl,) = struct.unpack_from("<H", b, p)
        name = b[p + 2:p + 2 + nl].decode()
        p += 2 + nl
        dtype, ndim = b[p], b[p + 1]
        p += 2
        shape = struct.unpack_from("<%dQ" % ndim, b, p)
        p += 8 * ndim
        off, nbytes = struct.unpack_from("<QQ", b, p)
        p += 16
        if dtype == 1:
            t[name] = np.frombuffer(b, np.float32, nbytes // 4, doff + off).reshape(shape)
    return t


def main():
    w = read_fnw(sys.argv[1])
    nodes, inits = [], []

    def conv(name, x, k, stride, pad, relu, res=None):
        kern = w[name + "/kernel"].transpose(3, 2, 0, 1).copy()  # HWIO -> OIHW
        inits.append(numpy_helper.from_array(kern, name + "_W"))
        inits.append(numpy_helper.from_array(w[name + "/bias"].copy(), name + "_B"))
        out = name
        nodes.append(helper.make_node("Conv", [x, name + "_W", name + "_B"], [out], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[pad] * 4))
        if res is not None:
            nodes.append(helper.make_node("Add", [out, res], [out + "_add"]))
            out += "_add"
        if relu:
            nodes.append(helper.make_node("Relu", [out], [out + "_relu"]))
            out += "_relu"
        return out

    nodes.append(helper.make_node("Transpose", ["input"], ["x_nchw"], perm=[0, 3, 1, 2]))
    x = conv("conv1", "x_nchw", 7, 2, 3, True)
    nodes.append(helper.make_node("MaxPool", [x], ["pool1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4))
    x = "pool1"
    for s, blocks in enumerate([3, 4, 6, 3]):
        for bi in range(blocks):
            pre = "res%d%s_branch" % (s + 2, "abcdef"[bi])
            stride = 2 if (s > 0 and bi == 0) else 1
            short = conv(pre + "1", x, 1, stride, 0, False) if bi == 0 else x
            a = conv(pre + "2a", x, 1, stride, 0, True)
            a = conv(pre + "2b", a, 3, 1, 1, True)
            x = conv(pre + "2c", a, 1, 1, 0, True, res=short)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["features"], axis=1))
    g = helper.make_graph(nodes, "resnet50_fruitnet",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 224, 224, 3])],
                          [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 2048])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="fruitnet-bench")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, sys.argv[2])


if __name__ == "__main__":
    main()
