// ort_bench.mjs — ONNX Runtime (onnxruntime-node, CPU) on the ONNX model built
// from fruitnet's weight file, same inputs as fruitnet's bench.
// usage: node ort_bench.mjs MODEL.onnx --batch N --threads T --iters K [--golden DIR]
// prints: ort batch=N threads=T ms_per_batch=… img_per_s=… peak_rss_mb=… version=…
// and, with --golden, the features' error against the Keras reference.
import ort from 'onnxruntime-node';
import { readFileSync, existsSync } from 'fs';

const args = process.argv.slice(2);
const model = args[0];
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const batch = +opt('--batch', 1), threads = +opt('--threads', 2), iters = +opt('--iters', 10);
const golden = opt('--golden', null);
const names = ['g0_banana', 'g1_apple_braeburn', 'g2_lemon', 'g3_pineapple', 'g4_strawberry', 'g5_cocos', 'g6_kiwi', 'g7_tomato_1'];
const per = 224 * 224 * 3;
const input = new Float32Array(batch * per);
for (let i = 0; i < batch; i++) {
  const f = golden ? `${golden}/img8/${names[i % 8]}.input.f32` : null;
  if (f && existsSync(f)) {
    const b = readFileSync(f);
    input.set(new Float32Array(b.buffer, b.byteOffset, per), i * per);
  } else {
    let s = 12345 + i;
    for (let k = 0; k < per; k++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; input[i * per + k] = (s >>> 24) - 120; }
  }
}
const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
});
const feeds = { input: new ort.Tensor('float32', input, [batch, 224, 224, 3]) };
let out = await session.run(feeds); // warm-up
const times = [];
for (let i = 0; i < iters; i++) {
  const t0 = process.hrtime.bigint();
  out = await session.run(feeds);
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
times.sort((a, b) => a - b);
const ms = times[Math.floor(times.length / 2)];
let rss = 0;
for (const l of readFileSync('/proc/self/status', 'utf8').split('\n')) if (l.startsWith('VmHWM:')) rss = parseInt(l.slice(6)) / 1024;
const ver = JSON.parse(readFileSync(new URL('./node_modules/onnxruntime-node/package.json', import.meta.url))).version;
console.log(`ort batch=${batch} threads=${threads} ms_per_batch=${ms.toFixed(2)} img_per_s=${(batch * 1000 / ms).toFixed(2)} peak_rss_mb=${rss.toFixed(0)} version=${ver}`);
if (golden && batch >= 8) {
  const ref = readFileSync(`${golden}/img8/all8.avgpool.f32`);
  const r = new Float32Array(ref.buffer, ref.byteOffset, 8 * 2048), f = out.features.data;
  let mx = 0, num = 0, den = 0;
  for (let i = 0; i < 8 * 2048; i++) { const d = f[i] - r[i]; mx = Math.max(mx, Math.abs(d)); num += d * d; den += r[i] * r[i]; }
  console.log(`ort_check max_abs=${mx.toExponential(2)} rel_l2=${Math.sqrt(num / den).toExponential(2)}`);
}
