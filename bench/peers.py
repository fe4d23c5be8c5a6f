#!/usr/bin/env python3
"""The peers of `make bench`: fruitnet against the CPU engines users would pick, in one process, in rounds.

usage: .venv/bin/python bench/peers.py [--threads 2] [--batch 32] [--rounds 3] [--iters N] [--iters1 K]
                                       [--only NAME,...] [--out bench/results/peers.md]
                                       [--e2e-images 1024] [--e2e-decoders 1,2] [--no-ceilings]
                                       [--machine-record bench/results] [--baseline-lib OLD/libfruitnet.so]

Engines (each on the same weights: weights/resnet50.fnw, batch norm folded in; the same NHWC inputs, the
8 golden ones tiled to the batch; the same number of threads):
  fruitnet fp32 / bf16 / int8  libfruitnet.so through ctypes, each precision the library knows
                        (fn_precision_parse) and this CPU runs (fn_precision_check)
  tensorflow fp32       Keras 3 `keras.applications.ResNet50(include_top=False, pooling="avg")`, its convs
                        given the folded weights and its batch norms set to the identity; model.predict
  openvino fp32 / bf16  the ONNX model of bench/onnx/make_onnx.py, INFERENCE_PRECISION_HINT f32 / bf16
  openvino int8         the int8 QDQ model below (OpenVINO runs the quantized convolutions in int8)
  onnxruntime fp32      the same ONNX model, CPU execution provider, all graph optimisations
  onnxruntime int8      onnxruntime.quantization.quantize_static of it: QDQ, per-channel int8 weights, uint8
                        activations calibrated (MinMax) on 64 images of the sample as fruitnet preprocesses
                        them; cached in build/ (rebuilt when the float model changes)
  pytorch fp32 / bf16   torch 2.x, ResNet50 v1 built from the folded weights (Conv2d + bias, relu), the NHWC
                        input viewed as NCHW, inference_mode; the fastest of eager NCHW, eager channels_last
                        and TorchScript frozen + optimize_for_inference (channels_last)
Every engine is checked against the Keras golden features (../shared/golden/img8) before it is timed:
fp32 to the golden README's tolerance (rel-L2 <= 1e-4 per image), bf16 to cosine >= 0.9995 per image, int8
to cosine >= 0.995 (issue 16's gates); an engine that fails its check is reported and not timed.

Also, in the same run: build/bench/bench_peak (this CPU's FMA / vdpbf16ps / vpdpbusd ceilings, once) and,
in every round, fruitnet-extract on --e2e-images images of the sample (FRUITNET_SAMPLE) per fruitnet
precision and --e2e-decoders count, against the network-only rate of that round. The table ends with the
targets of issue 16 (fp32 >= 1.25x the best fp32 peer, bf16 >= 2x and int8 >= 3x ONNX Runtime fp32, each
>= 1.0x the best peer of its precision, end to end >= 90% of the network alone), each from the rounds.

Rounds: in each round every engine is timed at batch N then batch 1, back to back, so all of them see the
same machine load (this machine is shared: compare within a round; the table gives each engine's median
over the rounds and every round's fruitnet/peer ratio). Output: one `peer ...` key=value line per engine
and batch and round on stdout, the markdown table on stdout and in --out.

Records: the table also goes to bench/results/<cpu-model>-<features>.md (machine_slug: one file per machine
model, e.g. intel-xeon-avx512-bf16.md), which keeps the last run's table and one summary line per earlier
run, and bench/results/README.md lists the last run of every machine (--machine-record '' for neither).
--baseline-lib times a second libfruitnet.so (fp32, as "fruitnet-baseline") in the same rounds, for a
before/after comparison of a change; such a run writes no machine record.
"""
import argparse
import re
import ctypes
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NAMES = ["g0_banana", "g1_apple_braeburn", "g2_lemon", "g3_pineapple", "g4_strawberry", "g5_cocos", "g6_kiwi",
         "g7_tomato_1"]
STAGES = [(3, 64), (4, 128), (6, 256), (3, 512)]


def log(*a):
    print("peers:", *a, file=sys.stderr, flush=True)


def golden_dir():
    return os.environ.get("FRUITNET_GOLDEN", os.path.join(ROOT, "..", "shared", "golden"))


def load_golden():
    g = golden_dir()
    x = np.stack([np.fromfile(f"{g}/img8/{n}.input.f32", "<f4").reshape(224, 224, 3) for n in NAMES])
    ref = np.fromfile(f"{g}/img8/all8.avgpool.f32", "<f4").reshape(8, 2048)
    return x, ref


# the accuracy gates (cosine per image against the Keras features) for the reduced precisions
GATE_COS = {"bf16": 0.9995, "int8": 0.995}


def check(name, prec, feats, ref):
    """(ok, text): the first min(n, 8) rows against Keras."""
    n = min(len(feats), 8)
    f = feats[:n].astype(np.float64).reshape(n, -1)
    r = ref[:n].astype(np.float64)
    rel = np.sqrt(((f - r) ** 2).sum(1) / (r ** 2).sum(1))
    cos = (f * r).sum(1) / np.sqrt((f * f).sum(1) * (r * r).sum(1))
    ok = bool(rel.max() <= 1e-4) if prec == "fp32" else bool(cos.min() >= GATE_COS[prec])
    return ok, f"worst_rel_l2={rel.max():.2e} worst_cosine={cos.min():.6f} ok={int(ok)}"


# ---------------------------------------------------------------- engines
# Each maker returns run(x) -> features [n, 2048] for a batch x [n,224,224,3] (n = 1 or N).

class _Opts(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_int), ("max_batch", ctypes.c_int), ("isa", ctypes.c_int),
                ("classifier", ctypes.c_int), ("precision", ctypes.c_int)]


class _Err(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 512)]


def fruitnet_lib(lib_path=None):
    return ctypes.CDLL(lib_path or os.environ.get("FRUITNET_LIB", os.path.join(ROOT, "build", "libfruitnet.so")))


def fruitnet_precision(lib, name):
    """The library's fn_precision for "fp32"/"bf16"/"int8", None when this libfruitnet does not know it."""
    p = ctypes.c_int(-1)
    lib.fn_precision_parse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    return p.value if lib.fn_precision_parse(name.encode(), ctypes.byref(p)) == 0 else None


def make_fruitnet(weights, threads, batch, precision, lib_path=None):
    lib = fruitnet_lib(lib_path)
    prec = fruitnet_precision(lib, precision)
    if prec is None:
        raise RuntimeError(f"this libfruitnet has no precision {precision}")
    e = _Err()
    lib.fn_precision_check.argtypes = [ctypes.c_int, ctypes.POINTER(_Err)]
    if lib.fn_precision_check(prec, ctypes.byref(e)) != 0:
        raise RuntimeError(e.msg.decode())
    lib.fn_model_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Opts), ctypes.POINTER(ctypes.c_void_p),
                                  ctypes.POINTER(_Err)]
    lib.fn_model_features.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                      ctypes.POINTER(_Err)]
    models = {}
    for b in sorted({1, batch}):
        o = _Opts(threads, b, 0, 0, prec)
        m, e = ctypes.c_void_p(), _Err()
        if lib.fn_model_open(weights.encode(), ctypes.byref(o), ctypes.byref(m), ctypes.byref(e)) != 0:
            raise RuntimeError(e.msg.decode())
        models[b] = m

    def run(x):
        x = np.ascontiguousarray(x, np.float32)
        out = np.empty((len(x), 2048), np.float32)
        e = _Err()
        if lib.fn_model_features(models[len(x)], x.ctypes.data, len(x), out.ctypes.data, ctypes.byref(e)) != 0:
            raise RuntimeError(e.msg.decode())
        return out
    return run, "libfruitnet"


def read_weights(weights):
    sys.path.insert(0, os.path.join(ROOT, "bench", "onnx"))
    import make_onnx  # noqa: E402  (the .fnw reader, validated as fruitnet does)
    w, _ = make_onnx.read_fnw(weights)
    return w


def make_tensorflow(weights, threads, batch, precision):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    w = read_weights(weights)
    model = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(224, 224, 3))
    # Keras 3 names: conv{s}_block{b}_{0|1|2|3}_conv/_bn; v1 (Keras 2.2.4) names: res{s}{a..}_branch{1|2a|2b|2c}
    names = {"conv1_conv": "conv1"}
    for si, (blocks, _) in enumerate(STAGES):
        for b in range(blocks):
            for k, br in (("0", "1"), ("1", "2a"), ("2", "2b"), ("3", "2c")):
                names[f"conv{si + 2}_block{b + 1}_{k}_conv"] = f"res{si + 2}{chr(97 + b)}_branch{br}"
    done = 0
    for layer in model.layers:
        if layer.name in names:
            src = names[layer.name]
            layer.set_weights([w[src + "/kernel"], w[src + "/bias"]])
            done += 1
        elif layer.name.endswith("_bn"):  # identity: (x - 0) / sqrt(var + eps) * 1 + 0 with var + eps = 1
            c = layer.get_weights()[0].shape[0]
            eps = layer.epsilon
            layer.set_weights([np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32),
                               np.full(c, 1.0 - eps, np.float32)])
    if done != 53:
        raise RuntimeError(f"set {done} of 53 convolutions")

    def run(x):
        return model.predict(x, batch_size=len(x), verbose=0)
    return run, f"tensorflow {tf.__version__}, keras {keras.__version__}"


def onnx_model(weights):
    path = os.path.join(os.environ.get("FRUITNET_BUILD", os.path.join(ROOT, "build")), "resnet50.onnx")
    mk = os.path.join(ROOT, "bench", "onnx", "make_onnx.py")
    if not os.path.exists(path) or os.path.getmtime(path) < max(os.path.getmtime(weights), os.path.getmtime(mk)):
        import subprocess
        subprocess.run([sys.executable, mk, weights, path], check=True, stdout=sys.stderr)
    return path


def make_openvino(weights, threads, batch, precision):
    import openvino as ov
    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise RuntimeError("this CPU has no bf16 in OpenVINO's OPTIMIZATION_CAPABILITIES")
    # int8: the quantize/dequantize pairs of ORT's QDQ model tell OpenVINO where int8 runs
    path = ort_int8_model(weights) if precision == "int8" else onnx_model(weights)
    compiled = {}
    for b in sorted({1, batch}):
        m = core.read_model(path)
        m.reshape({m.inputs[0].get_any_name(): [b, 224, 224, 3]})
        compiled[b] = core.compile_model(m, "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision]})
    reqs = {b: c.create_infer_request() for b, c in compiled.items()}

    def run(x):
        r = reqs[len(x)]
        r.infer({0: np.ascontiguousarray(x, np.float32)})
        return r.get_output_tensor(0).data.copy()
    return run, f"openvino {ov.get_version()}" + (f", {os.path.basename(path)}" if precision == "int8" else "")


def make_onnxruntime(weights, threads, batch, precision):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    path = ort_int8_model(weights) if precision == "int8" else onnx_model(weights)
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name

    def run(x):
        return s.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]
    return run, f"onnxruntime {ort.__version__}" + (f", {os.path.basename(path)}" if precision == "int8" else "")


def sample_dir():
    return os.environ.get("FRUITNET_SAMPLE", os.path.join(ROOT, "..", "shared", "data", "fruits-360-sample"))


def sample_images(n):
    """n images of the sample spread evenly over its sorted list (so over its classes)."""
    d = sample_dir()
    paths = sorted(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs
                   if f.lower().endswith((".jpg", ".jpeg", ".png")))
    if not paths:
        raise RuntimeError(f"{d}: no images (the sample, set FRUITNET_SAMPLE)")
    step = max(1, len(paths) // n)
    return paths[::step][:n]


def fruitnet_inputs(paths):
    """The network inputs fruitnet makes of these images (fn_input_from_file: decode, PIL bicubic resize, BGR
    minus the Caffe means), float32 [n,224,224,3]."""
    lib = fruitnet_lib()
    lib.fn_input_from_file.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_Err)]
    x = np.empty((len(paths), 224, 224, 3), np.float32)
    for i, p in enumerate(paths):
        e = _Err()
        if lib.fn_input_from_file(p.encode(), 0, x[i].ctypes.data, ctypes.byref(e)) != 0:
            raise RuntimeError(e.msg.decode())
    return x


# ONNX Runtime's int8 model: static quantization (MinMax calibration on CALIB_IMAGES images of the sample,
# int8 weights per output channel, uint8 activations). QDQ (quantize/dequantize pairs that ORT fuses into
# QLinearConv) and QOperator (QLinearConv nodes) ran at the same speed on the Xeon of bench/results
# (QOperator / QDQ 0.99x, median of 4 alternating batch-32 passes); QDQ is ORT's default and OpenVINO
# runs the same file in int8, so one model serves both.
CALIB_IMAGES = 64
ORT_INT8_FORMAT = "QDQ"


def ort_int8_model(weights, fmt=ORT_INT8_FORMAT):
    """build/resnet50.int8-<format>-c<N>.onnx, made from the float model when missing or older than it."""
    src = onnx_model(weights)
    path = os.path.join(os.path.dirname(src), f"resnet50.int8-{fmt.lower()}-c{CALIB_IMAGES}.onnx")
    if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(src):
        return path
    from onnxruntime import quantization as q
    t0 = time.perf_counter()
    calib = fruitnet_inputs(sample_images(CALIB_IMAGES))

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    pre = path + ".pre.onnx"
    q.quant_pre_process(src, pre, skip_symbolic_shape=True)
    tmp = f"{path}.tmp.{os.getpid()}.onnx"
    q.quantize_static(pre, tmp, Reader(), quant_format=getattr(q.QuantFormat, fmt), per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      calibrate_method=q.CalibrationMethod.MinMax)
    os.replace(tmp, path)
    os.unlink(pre)
    log(f"{path}: quantized ({fmt}, {CALIB_IMAGES} calibration images) in {time.perf_counter() - t0:.0f} s")
    return path


def make_torch(weights, threads, batch, precision):
    """PyTorch ResNet50 v1 built from the folded weights (Conv2d with bias, ReLU), the NHWC input viewed as
    NCHW, under inference_mode; bf16 by casting the model and its input (oneDNN's AVX512_BF16 kernels). Of
    eager contiguous NCHW, eager channels_last and TorchScript (trace, freeze, optimize_for_inference: oneDNN
    convolutions with fused ReLU) in channels_last, the fastest on one batch here is timed."""
    import warnings
    import torch
    import torch.nn.functional as F
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch")  # TorchScript's deprecation notes
    torch.set_num_threads(threads)
    w = read_weights(weights)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]

    class ResNet50(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.ModuleDict()

            def conv(name, k, stride, pad):
                kern = torch.from_numpy(np.ascontiguousarray(w[name + "/kernel"].transpose(3, 2, 0, 1)))  # OIHW
                c = torch.nn.Conv2d(kern.shape[1], kern.shape[0], k, stride, pad)
                c.weight.data, c.bias.data = kern, torch.from_numpy(np.array(w[name + "/bias"]))
                self.c[name] = c
            conv("conv1", 7, 2, 3)
            for s, (blocks, _) in enumerate(STAGES):
                for b in range(blocks):
                    pre, st = f"res{s + 2}{chr(97 + b)}_branch", 2 if s > 0 and b == 0 else 1
                    if b == 0:
                        conv(pre + "1", 1, st, 0)
                    conv(pre + "2a", 1, st, 0)
                    conv(pre + "2b", 3, 1, 1)
                    conv(pre + "2c", 1, 1, 0)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.c["conv1"](x)), 3, 2, 1)  # post-ReLU: zero padding == -inf padding
            for s, (blocks, _) in enumerate(STAGES):
                for b in range(blocks):
                    pre = f"res{s + 2}{chr(97 + b)}_branch"
                    short = self.c[pre + "1"](x) if b == 0 else x
                    a = F.relu(self.c[pre + "2a"](x))
                    a = F.relu(self.c[pre + "2b"](a))
                    x = F.relu(self.c[pre + "2c"](a) + short)
            return x.float().mean((2, 3))

    def tensor(x, fmt):
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).permute(0, 3, 1, 2).to(dt)  # a channels_last view
        return xt.contiguous(memory_format=fmt)
    xb = np.zeros((batch, 224, 224, 3), np.float32)
    runs = {}
    for name, fmt in (("eager, contiguous NCHW", torch.contiguous_format), ("eager, channels_last", torch.channels_last),
                      ("TorchScript frozen, channels_last", torch.channels_last)):
        m = ResNet50().eval().to(dt).to(memory_format=fmt)
        ms = {b: m for b in {1, batch}}
        if name.startswith("TorchScript"):  # one per batch size (a frozen graph re-specialises on each new shape)
            with torch.inference_mode():
                ms = {b: torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, tensor(xb[:b], fmt))))
                      for b in ms}

        def run(x, ms=ms, fmt=fmt):
            with torch.inference_mode():
                return ms[len(x)](tensor(x, fmt)).numpy()
        runs[name] = run
    dtm = {k: time_it(r, xb, 1, 1) + batch * time_it(r, xb[:1], 1, 2) for k, r in runs.items()}
    best = min(dtm, key=dtm.get)
    log(f"pytorch:{precision}: batch {batch} + {batch} x batch 1: " + ", ".join(f"{k} {v:.2f} s" for k, v in dtm.items()))
    return runs[best], f"torch {torch.__version__}, {best}"


ENGINES = [("fruitnet", "fp32", make_fruitnet), ("fruitnet", "bf16", make_fruitnet),
           ("fruitnet", "int8", make_fruitnet),
           ("tensorflow", "fp32", make_tensorflow), ("openvino", "fp32", make_openvino),
           ("openvino", "bf16", make_openvino), ("openvino", "int8", make_openvino),
           ("onnxruntime", "fp32", make_onnxruntime), ("onnxruntime", "int8", make_onnxruntime),
           ("pytorch", "fp32", make_torch), ("pytorch", "bf16", make_torch)]


def cpuinfo():
    """The first CPU's model name (None if /proc/cpuinfo has none) and its flags."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k.strip() == "model name" and model is None:
                    model = v.strip()
                elif k.strip() == "flags" and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    return model, flags


def cpu_text():
    model, flags = cpuinfo()
    model = model or "unknown CPU"
    feats = [f for f in ("avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8") if f in flags]
    return f"{model} ({os.cpu_count()} CPUs; {' '.join(feats) or 'no AVX-512'})"


def machine_slug():
    """The file name of this machine model's record in bench/results/: the CPU model (without (R), (TM),
    CPU, Processor, frequency) and the vector features that change which kernels run, e.g.
    intel-xeon-avx512-bf16 or amd-epyc-avx512."""
    model, flags = cpuinfo()
    model = model or "unknown-cpu"
    m = re.sub(r"\((R|TM|r|tm)\)|\bCPU\b|\bProcessor\b|@.*$|\b\d+-Core\b", " ", model)
    m = re.sub(r"[^a-z0-9]+", "-", m.lower()).strip("-") or "unknown-cpu"
    feats = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse2"
    feats += "".join(t for f, t in (("avx512_bf16", "-bf16"), ("amx_tile", "-amx")) if f in flags)
    return f"{m}-{feats}"


def ceilings(threads):
    """The markdown table of build/bench/bench_peak (this CPU's FMA / bf16 / VNNI peaks), or a note."""
    exe = os.path.join(os.environ.get("FRUITNET_BUILD", os.path.join(ROOT, "build")), "bench", "bench_peak")
    import subprocess
    try:
        out = subprocess.run([exe, "--threads", str(threads)], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        return f"(bench_peak did not run: {e}; make {os.path.relpath(exe, ROOT)})"
    log("ceilings: " + " / ".join(ln for ln in out.splitlines() if ln.startswith("peak ")))
    return "\n".join(ln for ln in out.splitlines() if not ln.startswith("peak ")) + "\n"


def e2e_inputs(n):
    """A list file of n images of the sample, in build/peers-e2e/ (fruitnet-extract @LIST)."""
    d = os.path.join(os.environ.get("FRUITNET_BUILD", os.path.join(ROOT, "build")), "peers-e2e")
    os.makedirs(d, exist_ok=True)
    paths = sample_images(n)
    with open(os.path.join(d, "list.txt"), "w") as f:
        f.write("".join(p + "\n" for p in paths))
    return paths


def e2e_run(paths, precision, decoders, a):
    """fruitnet-extract on the list into a fresh dataset: (images/s, its network-alone images/s)."""
    import shutil
    import subprocess
    b = os.environ.get("FRUITNET_BUILD", os.path.join(ROOT, "build"))
    d = os.path.join(b, "peers-e2e")
    out = os.path.join(d, "out")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [os.path.join(b, "fruitnet-extract"), "--weights", a.weights, "--threads", str(a.threads), "--batch",
           str(a.batch), "--decoders", str(decoders), "--precision", precision, "-o", out,
           "@" + os.path.join(d, "list.txt")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"(\d+) ok, (\d+) failed, [\d.]+ s, ([\d.]+) img/s \(network alone ([\d.]+) img/s", p.stderr)
    shutil.rmtree(out, ignore_errors=True)
    if p.returncode != 0 or not m or int(m.group(1)) != len(paths):
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
    return float(m.group(3)), float(m.group(4))


MACHINE_MARK = "<!-- bench/peers.py machine record -->"


def write_machine_record(results_dir, slug, table, summary, stamp):
    """bench/results/<slug>.md: this run's table (replacing the previous one) and one summary line per
    earlier run, newest first; then bench/results/README.md, the last run of every machine."""
    path = os.path.join(results_dir, slug + ".md")
    earlier = []
    try:
        with open(path) as f:
            old = f.read()
        if MACHINE_MARK in old:
            last = re.search(r"^Summary \((.*?)\): (.*)$", old, re.M)
            if last:
                earlier.append(f"- {last.group(1)}: {last.group(2)}")
            earlier += [ln for ln in old.split("## Earlier runs", 1)[-1].splitlines() if ln.startswith("- ")] \
                if "## Earlier runs" in old else []
    except OSError:
        pass
    text = (f"{MACHINE_MARK}\n# make bench peers on {slug}\n\nSummary ({stamp}): {summary}\n\n"
            + table.split("\n", 1)[1].lstrip("\n")
            + ("\n## Earlier runs\n\n" + "\n".join(earlier[:50]) + "\n" if earlier else ""))
    _write(path, text)
    rows = []
    for name in sorted(os.listdir(results_dir)):
        if not name.endswith(".md") or name == "README.md":
            continue
        try:
            with open(os.path.join(results_dir, name)) as f:
                body = f.read()
        except OSError:
            continue
        m = re.search(r"^Summary \((.*?)\): (.*)$", body, re.M)
        if MACHINE_MARK in body and m:
            rows.append(f"| [{name[:-3]}]({name}) | {m.group(1)} | {m.group(2)} |")
    _write(os.path.join(results_dir, "README.md"),
           "# bench/results: the last `make bench` peers run on each machine model\n\n"
           "Written by bench/peers.py (one `<cpu-model>-<features>.md` per machine model, its last table and "
           "its earlier runs' summaries). Ratios are fruitnet's over the best peer of the same precision, "
           "medians of the rounds of one run; batch 1 compares latencies (> 1: fruitnet faster).\n\n"
           "| machine | last run | summary |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    return path


def _write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def time_it(run, x, iters, warmup):
    for _ in range(warmup):
        run(x)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        run(x)
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=os.environ.get("FRUITNET_WEIGHTS", os.path.join(ROOT, "weights", "resnet50.fnw")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3, help="timed batch-N passes per round")
    ap.add_argument("--iters1", type=int, default=10, help="timed batch-1 passes per round")
    ap.add_argument("--only", default="", help="comma-separated engine[:precision] names")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "peers.md"))
    ap.add_argument("--machine-record", default=os.path.join(ROOT, "bench", "results"),
                    help="folder of the per-machine records (<cpu-model>-<features>.md and README.md); '' for none")
    ap.add_argument("--baseline-lib", default="", help="also time this libfruitnet.so (fp32) as "
                    "fruitnet-baseline, in the same rounds: before/after a change")
    ap.add_argument("--e2e-images", type=int, default=1024, help="images of the sample for the end-to-end "
                    "fruitnet-extract runs (0: none)")
    ap.add_argument("--e2e-decoders", default="1,2", help="decoder threads of the end-to-end runs")
    ap.add_argument("--no-ceilings", dest="ceilings", action="store_false", help="do not run bench_peak")
    a = ap.parse_args()
    xg, ref = load_golden()
    xb = np.stack([xg[i % 8] for i in range(a.batch)])
    only = [s for s in a.only.split(",") if s]
    engines = {}
    notes = []
    engine_list = list(ENGINES)
    if a.baseline_lib:
        base = os.path.abspath(a.baseline_lib)
        engine_list.insert(1, ("fruitnet-baseline", "fp32",
                               lambda w, t, b, p: make_fruitnet(w, t, b, p, base)[:1] + (f"libfruitnet {base}",)))
    for name, prec, make in engine_list:
        key = f"{name}:{prec}"
        if only and name not in only and key not in only and name != "fruitnet-baseline":
            continue
        if name == "fruitnet" and fruitnet_precision(fruitnet_lib(), prec) is None:
            continue  # a precision this libfruitnet does not have (int8 before it lands)
        try:
            t0 = time.perf_counter()
            run, ver = make(a.weights, a.threads, a.batch, prec)
            ok, text = check(name, prec, run(xb), ref)
            ok1, text1 = check(name, prec, run(xb[:1]), ref)
            print(f"peer_check engine={name} precision={prec} batch={a.batch} {text}", flush=True)
            print(f"peer_check engine={name} precision={prec} batch=1 {text1}", flush=True)
            log(f"{key}: {ver}, ready in {time.perf_counter() - t0:.1f} s; {text}")
            if not (ok and ok1):
                notes.append(f"{key}: fails the golden check ({text}; batch 1: {text1}), not timed")
                continue
            engines[key] = (run, ver)
        except Exception as e:  # a missing or broken peer is reported, the others go on
            notes.append(f"{key}: not available ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            log(notes[-1])
    ceil_text = ceilings(a.threads) if a.ceilings else None
    e2e_list = e2e_inputs(a.e2e_images) if a.e2e_images > 0 else None
    e2e_precs = [k.split(":")[1] for k in engines if k.startswith("fruitnet:")] if e2e_list else []
    decs = [int(d) for d in a.e2e_decoders.split(",") if d]
    res = {k: {"b": [], "one": []} for k in engines}
    e2e = {(p, d): [] for p in e2e_precs for d in decs}  # per round: (extract img/s, its network-alone img/s)
    for r in range(a.rounds):
        for key, (run, _) in engines.items():
            tb = time_it(run, xb, a.iters, 1)
            t1 = time_it(run, xb[:1], a.iters1, 2)
            res[key]["b"].append(a.batch / tb)
            res[key]["one"].append(t1 * 1e3)
            e, p = key.split(":")
            print(f"peer engine={e} precision={p} round={r + 1} batch={a.batch} img_per_s={a.batch / tb:.2f} "
                  f"batch1_ms={t1 * 1e3:.2f}", flush=True)
        for (p, d), v in list(e2e.items()):
            try:
                v.append(e2e_run(e2e_list, p, d, a))
            except Exception as e:  # reported, the rest goes on
                notes.append(f"end to end, {p}, {d} decoders: {e}")
                log(notes[-1])
                del e2e[(p, d)]
                continue
            print(f"peer_e2e precision={p} decoders={d} round={r + 1} images={len(e2e_list)} "
                  f"img_per_s={v[-1][0]:.2f} net_alone_img_per_s={v[-1][1]:.2f} "
                  f"vs_network_only={v[-1][0] / res[f'fruitnet:{p}']['b'][-1]:.3f}", flush=True)
    med = statistics.median

    def rounds(q):
        return f"{med(q):.2f}x (rounds {', '.join(f'{x:.2f}' for x in q)})"

    def qb(k1, k2):  # throughput of k1 / k2, per round (> 1: k1 faster)
        return [x / y for x, y in zip(res[k1]["b"], res[k2]["b"])]

    def q1(k1, k2):  # latency of k2 / k1, per round (> 1: k1 faster)
        return [y / x for x, y in zip(res[k1]["one"], res[k2]["one"])]
    # the best peer of each precision: the highest median batch-N throughput (batch 1: the lowest latency)
    best, best1 = {}, {}
    for key in engines:
        e, p = key.split(":")
        if e.startswith("fruitnet"):
            continue
        if p not in best or med(res[key]["b"]) > med(res[best[p]]["b"]):
            best[p] = key
        if p not in best1 or med(res[key]["one"]) < med(res[best1[p]]["one"]):
            best1[p] = key
    # table
    lines = [f"# peers — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"CPU: {cpu_text()}", "",
             f"{a.threads} threads; batch {a.batch} and 1; {a.rounds} rounds, each timing every engine back to "
             f"back (medians of {a.iters} batch-{a.batch} and {a.iters1} batch-1 passes per round). Shared, noisy "
             f"machine (1-minute load average {os.getloadavg()[0]:.1f} at the end of the rounds): compare within "
             "rounds (ratios below), not across runs.", "",
             "| engine | precision | batch %d img/s | batch 1 ms | fruitnet vs it, batch %d (rounds) | fruitnet vs it, batch 1 (rounds) | version |" % (a.batch, a.batch),
             "|---|---|---:|---:|---|---|---|"]
    for key in engines:
        e, p = key.split(":")
        fk = f"fruitnet:{p}"
        rb = r1 = ""
        if fk in res and not e.startswith("fruitnet"):
            rb, r1 = rounds(qb(fk, key)), rounds(q1(fk, key))
        mark = " (best)" if key in (best.get(p), best1.get(p)) else ""
        lines.append(f"| {e}{mark} | {p} | {med(res[key]['b']):.2f} | {med(res[key]['one']):.1f} | {rb} | {r1} | "
                     f"{engines[key][1]} |")
    lines += ["", "Ratios: fruitnet's throughput / the peer's (batch N), the peer's latency / fruitnet's (batch 1), "
              "against fruitnet in the same precision; > 1 means fruitnet is faster. (best): the best peer of its "
              "precision at batch N (highest img/s) or batch 1 (lowest ms)."]
    for p in sorted(best):
        lines.append(f"- Best {p} peer: batch {a.batch} **{best[p].split(':')[0]}** ({med(res[best[p]]['b']):.2f} "
                     f"img/s), batch 1 **{best1[p].split(':')[0]}** ({med(res[best1[p]]['one']):.1f} ms).")
    for n in notes:
        lines.append(f"- {n}")
    # the targets of issue 16, each from the rounds' ratios
    tg = []
    ort32 = "onnxruntime:fp32" if "onnxruntime:fp32" in res else None

    def target(what, q, goal):
        tg.append(f"| {what} | {rounds(q)} | {goal:.2f}x | {'yes' if med(q) >= goal else '**no**'} |")
    if "fruitnet:fp32" in res and "fp32" in best:
        target(f"fp32 batch {a.batch} vs the best fp32 peer ({best['fp32'].split(':')[0]})",
               qb("fruitnet:fp32", best["fp32"]), 1.25)
        target(f"fp32 batch 1 latency vs the best fp32 peer's ({best1['fp32'].split(':')[0]})",
               q1("fruitnet:fp32", best1["fp32"]), 1.0)
    for p, goal in (("bf16", 2.0), ("int8", 3.0)):
        fk = f"fruitnet:{p}"
        if fk not in res:
            continue
        if ort32:
            target(f"{p} batch {a.batch} vs ONNX Runtime fp32", qb(fk, ort32), goal)
        if p in best:
            target(f"{p} batch {a.batch} vs the best {p} peer ({best[p].split(':')[0]})", qb(fk, best[p]), 1.0)
        if "fp32" in best:
            tg.append(f"| {p} batch {a.batch} vs the best fp32 peer ({best['fp32'].split(':')[0]}) | "
                      f"{rounds(qb(fk, best['fp32']))} | (none) | |")
        tg.append(f"| {p} batch {a.batch} vs fruitnet fp32 | {rounds(qb(fk, 'fruitnet:fp32'))} | (none) | |")
    for (p, d), v in e2e.items():
        target(f"{p} end to end ({d} decoder{'s' if d > 1 else ''}) vs the network alone",
               [x[0] / n for x, n in zip(v, res[f"fruitnet:{p}"]["b"])], 0.90)
    if tg:
        lines += ["", "## Targets (issue 16), medians of the rounds' ratios", "",
                  "| target | measured | goal | holds |", "|---|---|---:|---|"] + tg
    if e2e:
        lines += ["", f"## End to end: fruitnet-extract on {len(e2e_list)} images of the sample", "",
                  f"`fruitnet-extract --threads {a.threads} --batch {a.batch} --decoders D --precision P` (JPEG "
                  "decoding, PIL bicubic resize, network, gzip Parquet dataset), timed in each round right after "
                  "the network-only passes; the ratio is its images/s over fruitnet's network-only batch "
                  f"{a.batch} rate of the same precision in the same round. Network alone: the time extract itself "
                  "spent in the network (decoders running beside it).", "",
                  "| precision | decoders | images/s | its network alone, images/s | network-only run, images/s | end to end / network-only (rounds) |",
                  "|---|---:|---:|---:|---:|---|"]
        for (p, d), v in e2e.items():
            nb = res[f"fruitnet:{p}"]["b"]
            lines.append(f"| {p} | {d} | {med([x[0] for x in v]):.2f} | {med([x[1] for x in v]):.2f} | "
                         f"{med(nb):.2f} | {rounds([x[0] / n for x, n in zip(v, nb)])} |")
    if ceil_text:
        lines += ["", f"## Ceilings of this CPU (build/bench/bench_peak --threads {a.threads})", "", ceil_text]
    # the summary: per precision, fruitnet against the best peer of that precision
    summary = []
    for p in sorted(best):
        fk = f"fruitnet:{p}"
        if fk not in res:
            continue
        summary.append(f"{p} vs the best peer: batch {a.batch} {rounds(qb(fk, best[p]))} {best[p].split(':')[0]}, "
                       f"batch 1 {rounds(q1(fk, best1[p]))} {best1[p].split(':')[0]}")
    for p in ("bf16", "int8"):
        if f"fruitnet:{p}" in res and ort32:
            summary.append(f"{p} vs onnxruntime fp32: batch {a.batch} {rounds(qb(f'fruitnet:{p}', ort32))}")
    stamp = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    if summary:
        lines.append("")
        lines.append(f"Summary ({stamp}): " + "; ".join(summary) + ".")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        _write(a.out, text)
        log(f"wrote {a.out}")
    if a.machine_record and summary and not a.baseline_lib:
        os.makedirs(a.machine_record, exist_ok=True)
        log(f"wrote {write_machine_record(a.machine_record, machine_slug(), text, '; '.join(summary) + '.', stamp)}")


if __name__ == "__main__":
    main()
