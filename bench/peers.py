#!/usr/bin/env python3
"""The peers of `make bench`: fruitnet against the CPU engines users would pick, in one process, in rounds.

usage: .venv/bin/python bench/peers.py [--threads 2] [--batch 32] [--rounds 3] [--iters N] [--iters1 K]
                                       [--only NAME,...] [--out bench/results/peers.md]
                                       [--machine-record bench/results] [--baseline-lib OLD/libfruitnet.so]

Engines (each on the same weights: weights/resnet50.fnw, batch norm folded in; the same NHWC inputs, the
8 golden ones tiled to the batch; the same number of threads):
  fruitnet fp32 / bf16  libfruitnet.so through ctypes (bf16 only where CPUID reports AVX512_BF16)
  tensorflow fp32       Keras 3 `keras.applications.ResNet50(include_top=False, pooling="avg")`, its convs
                        given the folded weights and its batch norms set to the identity; model.predict
  openvino fp32 / bf16  the ONNX model of bench/onnx/make_onnx.py, INFERENCE_PRECISION_HINT f32 / bf16
  onnxruntime fp32      the same ONNX model, CPU execution provider, all graph optimisations
Every engine is checked against the Keras golden features (../shared/golden/img8) before it is timed:
fp32 to the golden README's tolerance (rel-L2 <= 1e-4 per image), bf16 to cosine >= 0.9995 per image; an
engine that fails its check is reported and not timed.

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


def check(name, prec, feats, ref):
    """(ok, text): the first min(n, 8) rows against Keras."""
    n = min(len(feats), 8)
    f = feats[:n].astype(np.float64).reshape(n, -1)
    r = ref[:n].astype(np.float64)
    rel = np.sqrt(((f - r) ** 2).sum(1) / (r ** 2).sum(1))
    cos = (f * r).sum(1) / np.sqrt((f * f).sum(1) * (r * r).sum(1))
    ok = bool(rel.max() <= 1e-4) if prec == "fp32" else bool(cos.min() >= 0.9995)
    return ok, f"worst_rel_l2={rel.max():.2e} worst_cosine={cos.min():.6f} ok={int(ok)}"


# ---------------------------------------------------------------- engines
# Each maker returns run(x) -> features [n, 2048] for a batch x [n,224,224,3] (n = 1 or N).

class _Opts(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_int), ("max_batch", ctypes.c_int), ("isa", ctypes.c_int),
                ("classifier", ctypes.c_int), ("precision", ctypes.c_int)]


class _Err(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 512)]


def make_fruitnet(weights, threads, batch, precision, lib_path=None):
    lib = ctypes.CDLL(lib_path or os.environ.get("FRUITNET_LIB", os.path.join(ROOT, "build", "libfruitnet.so")))
    lib.fn_model_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Opts), ctypes.POINTER(ctypes.c_void_p),
                                  ctypes.POINTER(_Err)]
    lib.fn_model_features.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                      ctypes.POINTER(_Err)]
    models = {}
    for b in sorted({1, batch}):
        o = _Opts(threads, b, 0, 0, {"fp32": 0, "bf16": 1}[precision])
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
    path = onnx_model(weights)
    compiled = {}
    for b in sorted({1, batch}):
        m = core.read_model(path)
        m.reshape({m.inputs[0].get_any_name(): [b, 224, 224, 3]})
        compiled[b] = core.compile_model(m, "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision]})
    reqs = {b: c.create_infer_request() for b, c in compiled.items()}

    def run(x):
        r = reqs[len(x)]
        r.infer({0: np.ascontiguousarray(x, np.float32)})
        return r.get_output_tensor(0).data.copy()
    return run, f"openvino {ov.get_version()}"


def make_onnxruntime(weights, threads, batch, precision):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(onnx_model(weights), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name

    def run(x):
        return s.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]
    return run, f"onnxruntime {ort.__version__}"


ENGINES = [("fruitnet", "fp32", make_fruitnet), ("fruitnet", "bf16", make_fruitnet),
           ("tensorflow", "fp32", make_tensorflow), ("openvino", "fp32", make_openvino),
           ("openvino", "bf16", make_openvino), ("onnxruntime", "fp32", make_onnxruntime)]


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
    res = {k: {"b": [], "one": []} for k in engines}
    for r in range(a.rounds):
        for key, (run, _) in engines.items():
            tb = time_it(run, xb, a.iters, 1)
            t1 = time_it(run, xb[:1], a.iters1, 2)
            res[key]["b"].append(a.batch / tb)
            res[key]["one"].append(t1 * 1e3)
            e, p = key.split(":")
            print(f"peer engine={e} precision={p} round={r + 1} batch={a.batch} img_per_s={a.batch / tb:.2f} "
                  f"batch1_ms={t1 * 1e3:.2f}", flush=True)
    # table
    lines = [f"# peers — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"CPU: {cpu_text()}", "",
             f"{a.threads} threads; batch {a.batch} and 1; {a.rounds} rounds, each timing every engine back to "
             f"back (medians of {a.iters} batch-{a.batch} and {a.iters1} batch-1 passes per round). Shared, noisy "
             f"machine (1-minute load average {os.getloadavg()[0]:.1f} at the end of the rounds): compare within "
             "rounds (ratios below), not across runs.", "",
             "| engine | precision | batch %d img/s | batch 1 ms | vs fruitnet, batch %d (rounds) | vs fruitnet, batch 1 (rounds) | version |" % (a.batch, a.batch),
             "|---|---|---:|---:|---|---|---|"]
    best = {}
    for key in engines:
        e, p = key.split(":")
        ims, ms = statistics.median(res[key]["b"]), statistics.median(res[key]["one"])
        fn = res.get(f"fruitnet:{p}")
        rb = r1 = ""
        if fn and e != "fruitnet":
            qb = [f / o for f, o in zip(fn["b"], res[key]["b"])]
            q1 = [o / f for f, o in zip(fn["one"], res[key]["one"])]
            rb = f"{statistics.median(qb):.2f}x ({', '.join(f'{q:.2f}' for q in qb)})"
            r1 = f"{statistics.median(q1):.2f}x ({', '.join(f'{q:.2f}' for q in q1)})"
            if not e.startswith("fruitnet") and (p not in best or ims > best[p][1]):
                best[p] = (e, ims)
        lines.append(f"| {e} | {p} | {ims:.2f} | {ms:.1f} | {rb} | {r1} | {engines[key][1]} |")
    lines.append("")
    if "fruitnet:fp32" in res and "fruitnet:bf16" in res:
        f32, f16 = res["fruitnet:fp32"], res["fruitnet:bf16"]
        qb = [h / f for h, f in zip(f16["b"], f32["b"])]
        q1 = [f / h for h, f in zip(f16["one"], f32["one"])]
        lines.append(f"fruitnet bf16 / fp32 speed: batch {a.batch} {statistics.median(qb):.2f}x "
                     f"(rounds {', '.join(f'{q:.2f}' for q in qb)}), batch 1 {statistics.median(q1):.2f}x "
                     f"(rounds {', '.join(f'{q:.2f}' for q in q1)}).")
        lines.append("")
    lines.append("Ratios: fruitnet's throughput / the peer's (batch N), the peer's latency / fruitnet's (batch 1), "
                 "against fruitnet in the same precision; > 1 means fruitnet is faster.")
    for p, (e, ims) in sorted(best.items()):
        lines.append(f"Best {p} peer (batch {a.batch}): **{e}** ({ims:.2f} img/s).")
    for n in notes:
        lines.append(f"- {n}")
    # the summary: per precision, the peer closest to fruitnet in the rounds' ratios (the median of each
    # peer's per-round ratios, the smallest of them), at batch N and at batch 1 separately
    summary = []
    for p in sorted({k.split(":")[1] for k in engines}):
        fn = res.get(f"fruitnet:{p}")
        peers_p = [k for k in engines if k.split(":")[1] == p and not k.startswith("fruitnet")]
        if not fn or not peers_p:
            continue
        parts = []
        for what, n in (("b", f"batch {a.batch}"), ("one", "batch 1")):
            qs = {k: ([f / o for f, o in zip(fn["b"], res[k]["b"])] if what == "b"
                      else [o / f for f, o in zip(fn["one"], res[k]["one"])]) for k in peers_p}
            k = min(qs, key=lambda k: statistics.median(qs[k]))
            parts.append(f"{n} {statistics.median(qs[k]):.2f}x {k.split(':')[0]} (rounds "
                         f"{', '.join(f'{q:.2f}' for q in qs[k])})")
        summary.append(f"{p} vs the closest peer: " + ", ".join(parts))
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
