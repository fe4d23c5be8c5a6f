// check.mjs — reads every Parquet file of a case folder written by
// tests/test_parquet.c with two independent readers (DuckDB and hyparquet)
// and compares every value with the expected rows (expected.json: path,
// label, and the float32 bit patterns of each vector).
// usage: node check.mjs CASEDIR   (prints "interop: N passed, N failed")
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { readFileSync, readdirSync } from 'fs';
import { join } from 'path';

const dir = process.argv[2];
const cases = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
const bits = (x) => { const b = new DataView(new ArrayBuffer(4)); b.setFloat32(0, x, true); return b.getUint32(0, true); };
let passed = 0, failed = 0;
const fail = (name, reader, msg) => { failed++; console.log(`FAIL ${name} [${reader}]: ${msg}`); };

function compare(name, reader, rows, exp) {
  if (rows.length !== exp.rows.length) return fail(name, reader, `${rows.length} rows, expected ${exp.rows.length}`);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i], e = exp.rows[i];
    if (r.path !== e.path) return fail(name, reader, `row ${i} path ${JSON.stringify(r.path)} != ${JSON.stringify(e.path)}`);
    if (r.label !== e.label) return fail(name, reader, `row ${i} label differs`);
    const v = r.vec ? Array.from(r.vec) : [];
    if (v.length !== e.bits.length) return fail(name, reader, `row ${i} has ${v.length} values, expected ${e.bits.length}`);
    for (let j = 0; j < v.length; j++) {
      const got = bits(v[j]), want = e.bits[j] >>> 0;
      const bothNaN = Number.isNaN(v[j]) && ((want & 0x7f800000) === 0x7f800000) && (want & 0x7fffff);
      if (got !== want && !bothNaN) return fail(name, reader, `row ${i} value ${j}: bits ${got.toString(16)} != ${want.toString(16)}`);
    }
  }
  passed++;
  console.log(`ok   ${name} [${reader}] ${rows.length} rows`);
}

const inst = await DuckDBInstance.create(':memory:');
const con = await inst.connect();
for (const c of cases) {
  const file = join(dir, c.file);
  // DuckDB: schema and values
  try {
    const d = await con.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${file}')`);
    const types = d.getRowObjects().map(r => `${r.column_name}:${r.column_type}`).join(',');
    const want = `path:VARCHAR,label:VARCHAR,${c.list}:FLOAT[]`;
    if (types !== want) fail(c.file, 'duckdb', `schema ${types}, expected ${want}`);
    const res = await con.runAndReadAll(`SELECT path, label, ${c.list} AS vec FROM read_parquet('${file}')`);
    const rows = res.getRowObjects().map(r => ({ path: r.path, label: r.label, vec: r.vec ? r.vec.items : [] }));
    compare(c.file, 'duckdb', rows, c);
  } catch (e) { fail(c.file, 'duckdb', e.message); }
  // hyparquet
  try {
    const buf = readFileSync(file);
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    const rows = (await parquetReadObjects({ file: ab, compressors })).map(r => ({ path: r.path, label: r.label, vec: r[c.list] || [] }));
    compare(c.file, 'hyparquet', rows, c);
  } catch (e) { fail(c.file, 'hyparquet', e.message); }
}
console.log(`interop: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
