// ort_bench.mjs — ONNX Runtime (onnxruntime-node, CPU EP) on the ONNX model that
// make_onnx.py builds from fruitnet's own weight file; same inputs as fruitnet's bench.
//
// usage: node ort_bench.mjs MODEL.onnx [--batch N] [--threads T] [--iters K] [--warmup W] [--golden DIR]
//
// Input: the 8 golden NHWC inputs DIR/img8/<name>.input.f32 tiled to the batch
// (image i = golden i mod 8); without them, a fixed pseudo-random input
// (input=synthetic in the output). Session: intraOpNumThreads T, interOpNumThreads 1,
// graphOptimizationLevel 'all', sequential execution, ORT's default CPU arena and
// memory patterns. W untimed runs, then K timed session.run() calls (wall clock
// around the await); the median is reported. Peak RSS is this process's VmHWM
// (node itself included; base_rss_mb = VmRSS before the session was created).
//
// stdout, one line each (key=value, space separated):
//   ort batch=N threads=T ms_per_batch=<median> best_ms=<min> img_per_s=<N*1000/median>
//       peak_rss_mb=<VmHWM> base_rss_mb=<..> iters=K warmup=W load1=<1-min load average before the
//       session> input=golden|synthetic version=<ORT>
//   ort_check batch=N images=M max_abs=.. rel_l2=.. worst_rel_l2=.. ok=1|0   (golden only)
// ort_check compares the first min(N,8) feature rows with the Keras reference
// DIR/img8/all8.avgpool.f32 (tolerance of golden/README.md: per image rel-L2 <= 1e-4
// and max |diff| <= 1e-3); the exit status is 1 when ok=0.
import ort from 'onnxruntime-node';
import { readFileSync, existsSync } from 'fs';

const args = process.argv.slice(2);
const model = args[0];
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 && i + 1 < args.length ? args[i + 1] : d; };
const batch = +opt('--batch', 1), threads = +opt('--threads', 2), iters = +opt('--iters', 10);
const warmup = +opt('--warmup', batch === 1 ? 5 : 1);
const golden = opt('--golden', null);
if (!model || !existsSync(model) || !(batch >= 1) || !(threads >= 1) || !(iters >= 1) || !(warmup >= 0)) {
  console.error('usage: node ort_bench.mjs MODEL.onnx [--batch N] [--threads T] [--iters K] [--warmup W] [--golden DIR]');
  process.exit(2);
}

const status = (key) => {
  for (const l of readFileSync('/proc/self/status', 'utf8').split('\n')) if (l.startsWith(key + ':')) return parseInt(l.slice(key.length + 1)) / 1024;
  return 0;
};

const names = ['g0_banana', 'g1_apple_braeburn', 'g2_lemon', 'g3_pineapple', 'g4_strawberry', 'g5_cocos', 'g6_kiwi', 'g7_tomato_1'];
const per = 224 * 224 * 3;
const haveGolden = golden !== null && names.every((n) => existsSync(`${golden}/img8/${n}.input.f32`));
const input = new Float32Array(batch * per);
for (let i = 0; i < batch; i++) {
  if (haveGolden) {
    const b = readFileSync(`${golden}/img8/${names[i % 8]}.input.f32`);
    if (b.length !== per * 4) { console.error(`ort_bench: ${names[i % 8]}.input.f32: ${b.length} bytes, want ${per * 4}`); process.exit(1); }
    input.set(new Float32Array(b.buffer, b.byteOffset, per), i * per);
  } else {
    let s = 12345 + i;
    for (let k = 0; k < per; k++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; input[i * per + k] = (s >>> 24) - 120; }
  }
}

const load1 = readFileSync('/proc/loadavg', 'utf8').split(' ')[0]; // others' load skews any timing
const baseRss = status('VmRSS');
const session = await ort.InferenceSession.create(model, {
  executionProviders: ['cpu'],
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  executionMode: 'sequential',
});
const feeds = { input: new ort.Tensor('float32', input, [batch, 224, 224, 3]) };
let out;
for (let i = 0; i < warmup; i++) out = await session.run(feeds);
const times = [];
for (let i = 0; i < iters; i++) {
  const t0 = process.hrtime.bigint();
  out = await session.run(feeds);
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
times.sort((a, b) => a - b);
const ms = iters % 2 ? times[(iters - 1) / 2] : (times[iters / 2 - 1] + times[iters / 2]) / 2;
const rss = status('VmHWM');
const ver = JSON.parse(readFileSync(new URL('./node_modules/onnxruntime-node/package.json', import.meta.url))).version;
console.log(`ort batch=${batch} threads=${threads} ms_per_batch=${ms.toFixed(2)} best_ms=${times[0].toFixed(2)} ` +
  `img_per_s=${(batch * 1000 / ms).toFixed(2)} peak_rss_mb=${rss.toFixed(0)} base_rss_mb=${baseRss.toFixed(0)} ` +
  `iters=${iters} warmup=${warmup} load1=${load1} input=${haveGolden ? 'golden' : 'synthetic'} version=${ver}`);

if (haveGolden) {
  const f = out.features;
  if (f.dims.length !== 2 || f.dims[0] !== batch || f.dims[1] !== 2048) { console.error(`ort_bench: output dims ${f.dims}`); process.exit(1); }
  const ref = readFileSync(`${golden}/img8/all8.avgpool.f32`);
  const r = new Float32Array(ref.buffer, ref.byteOffset, 8 * 2048);
  const m = Math.min(batch, 8);
  let mx = 0, num = 0, den = 0, worst = 0;
  for (let i = 0; i < m; i++) {
    let n1 = 0, d1 = 0;
    for (let k = i * 2048; k < (i + 1) * 2048; k++) {
      const d = f.data[k] - r[k];
      mx = Math.max(mx, Math.abs(d)); n1 += d * d; d1 += r[k] * r[k];
    }
    num += n1; den += d1; worst = Math.max(worst, Math.sqrt(n1 / d1));
  }
  const ok = worst <= 1e-4 && mx <= 1e-3; // NaN fails both
  console.log(`ort_check batch=${batch} images=${m} max_abs=${mx.toExponential(2)} rel_l2=${Math.sqrt(num / den).toExponential(2)} ` +
    `worst_rel_l2=${worst.toExponential(2)} ok=${ok ? 1 : 0}`);
  if (!ok) process.exit(1);
}
