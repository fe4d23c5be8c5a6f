// check.mjs — reads every Parquet file of a case folder written by
// tests/test_parquet.c with two independent readers, DuckDB (@duckdb/node-api)
// and hyparquet (+ hyparquet-compressors for GZIP), and compares:
//   - every value: path, label, and the float32 bit pattern of every vector
//     element against <file>.f32 (raw little-endian floats, all rows in order);
//   - the schema: DuckDB's DESCRIBE (VARCHAR, VARCHAR, FLOAT[]), hyparquet's
//     schema elements (STRING logical types, 3-level LIST, optional FLOAT);
//   - the footer: created_by, row and row-group counts, codec of every column
//     chunk, key/value metadata, statistics (null_count; min/max of strings in
//     unsigned byte order).
// usage: node check.mjs CASEDIR   (prints "interop: N passed, N failed")
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetReadObjects, parquetMetadata } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { readFileSync } from 'fs';
import { join } from 'path';

const dir = process.argv[2];
const cases = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
let passed = 0, failed = 0, nanNote = 0;
const big = (x) => (typeof x === 'bigint' ? Number(x) : typeof x === 'string' ? Number(x) : x);

class Mismatch extends Error {}
const must = (cond, msg) => { if (!cond) throw new Mismatch(msg); };
const byteCmp = (a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

function expectedOf(c) {
  const raw = readFileSync(join(dir, c.file + '.f32'));
  const bits = new Uint32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  let off = 0;
  const rows = c.rows.map((r) => { const b = bits.subarray(off, off + r.n); off += r.n; return { ...r, bits: b }; });
  must(off === bits.length, `${c.file}.f32 has ${bits.length} floats, rows say ${off}`);
  // per row group: null counts and string min/max
  const groups = [];
  for (let g = 0; g * c.group < rows.length; g++) {
    const part = rows.slice(g * c.group, (g + 1) * c.group);
    const mm = (k) => part.reduce((a, r) => ({ min: a.min === null || byteCmp(r[k], a.min) < 0 ? r[k] : a.min,
                                               max: a.max === null || byteCmp(r[k], a.max) > 0 ? r[k] : a.max }),
                                  { min: null, max: null });
    groups.push({ rows: part.length, path: mm('path'), label: mm('label'),
                  listNulls: part.filter((r) => r.n === 0).length,
                  listValues: part.reduce((a, r) => a + Math.max(r.n, 1), 0) });
  }
  return { rows, groups };
}

function compareRows(rows, exp) {
  must(rows.length === exp.rows.length, `${rows.length} rows, expected ${exp.rows.length}`);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i], e = exp.rows[i];
    must(r.path === e.path, `row ${i} path ${JSON.stringify(r.path)} != ${JSON.stringify(e.path)}`);
    must(r.label === e.label, `row ${i} label ${JSON.stringify(r.label)} != ${JSON.stringify(e.label)}`);
    const v = r.vec ? Array.from(r.vec) : [];
    must(v.length === e.bits.length, `row ${i} has ${v.length} values, expected ${e.bits.length}`);
    const u = new Uint32Array(Float32Array.from(v).buffer); // float32 bit patterns of what the reader returned
    for (let j = 0; j < v.length; j++) {
      const got = u[j], want = e.bits[j];
      if (got === want) continue;
      // A JS number cannot promise a NaN's payload: a NaN for a NaN is noted, not failed.
      const wantNaN = (want & 0x7f800000) === 0x7f800000 && (want & 0x7fffff) !== 0;
      if (wantNaN && Number.isNaN(v[j])) { nanNote++; continue; }
      must(false, `row ${i} value ${j}: bits ${got.toString(16)} != ${want.toString(16)}`);
    }
  }
}

async function check(name, reader, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} [${reader}]`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name} [${reader}]: ${e instanceof Mismatch ? '' : 'error: '}${e.message}`);
  }
}

const inst = await DuckDBInstance.create(':memory:');
const con = await inst.connect();
const q = async (sql) => (await con.runAndReadAll(sql)).getRowObjects();

for (const c of cases) {
  const file = join(dir, c.file);
  const lit = `'${file.replace(/'/g, "''")}'`;
  const exp = expectedOf(c);
  const ngroups = exp.groups.length;

  await check(c.file, 'duckdb values', async () => {
    const d = await q(`DESCRIBE SELECT * FROM read_parquet(${lit})`);
    const types = d.map((r) => `${r.column_name}:${r.column_type}`).join(',');
    must(types === `path:VARCHAR,label:VARCHAR,${c.list}:FLOAT[]`, `schema ${types}`);
    const res = await q(`SELECT path, label, ${c.list} AS vec FROM read_parquet(${lit})`);
    compareRows(res.map((r) => ({ path: r.path, label: r.label, vec: r.vec ? r.vec.items : [] })), exp);
    const [agg] = await q(`SELECT count(*) AS n, sum(len(${c.list})) AS v FROM read_parquet(${lit})`);
    must(big(agg.n) === exp.rows.length, `count(*) ${agg.n}`);
    must(big(agg.v ?? 0) === exp.rows.reduce((a, r) => a + r.n, 0), `sum(len) ${agg.v}`);
  });

  await check(c.file, 'duckdb footer', async () => {
    const [fm] = await q(`SELECT * FROM parquet_file_metadata(${lit})`);
    must(/^fruitnet version \S+ \(build [^)]+\)$/.test(fm.created_by), `created_by ${fm.created_by}`);
    must(big(fm.num_rows) === exp.rows.length && big(fm.num_row_groups) === ngroups,
      `num_rows ${fm.num_rows}, row groups ${fm.num_row_groups} (expected ${ngroups})`);
    const kv = await q(`SELECT decode(key) AS k, decode(value) AS v FROM parquet_kv_metadata(${lit})`);
    must(kv.length === Object.keys(c.meta).length, `${kv.length} key/value entries`);
    for (const { k, v } of kv) must(c.meta[k] === v, `metadata ${k} = ${JSON.stringify(v)}`);
    const md = await q(`SELECT * FROM parquet_metadata(${lit}) ORDER BY row_group_id, column_id`);
    must(md.length === 3 * ngroups, `${md.length} column chunks`);
    for (const m of md) {
      const g = exp.groups[big(m.row_group_id)], col = big(m.column_id);
      must(m.compression === c.codec, `codec ${m.compression}`);
      must(big(m.row_group_num_rows) === g.rows, `row group rows ${m.row_group_num_rows}`);
      if (col < 2) {
        const mm = col ? g.label : g.path;
        must(big(m.stats_null_count) === 0 && big(m.num_values) === g.rows, `string chunk counts`);
        must(m.stats_min_value === mm.min && m.stats_max_value === mm.max,
          `min/max ${m.stats_min_value}..${m.stats_max_value}, expected ${mm.min}..${mm.max}`);
      } else {
        must(m.path_in_schema === `${c.list}, list, element`, `path_in_schema ${m.path_in_schema}`);
        must(big(m.stats_null_count) === g.listNulls, `list null_count ${m.stats_null_count}, expected ${g.listNulls}`);
        must(big(m.num_values) === g.listValues, `list num_values ${m.num_values}`);
      }
    }
  });

  const buf = readFileSync(file);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  await check(c.file, 'hyparquet values', async () => {
    const rows = await parquetReadObjects({ file: ab, compressors });
    compareRows(rows.map((r) => ({ path: r.path, label: r.label, vec: r[c.list] || [] })), exp);
  });

  await check(c.file, 'hyparquet footer', async () => {
    const md = parquetMetadata(ab);
    const s = md.schema;
    must(s.length === 6 && s[0].num_children === 3, `schema of ${s.length} elements`);
    for (const i of [1, 2]) {
      must(s[i].type === 'BYTE_ARRAY' && s[i].repetition_type === 'OPTIONAL' && s[i].logical_type?.type === 'STRING' &&
           s[i].converted_type === 'UTF8', `column ${s[i].name} is not an optional STRING`);
    }
    must(s[1].name === 'path' && s[2].name === 'label', 'column names');
    must(s[3].name === c.list && s[3].repetition_type === 'OPTIONAL' && s[3].converted_type === 'LIST' &&
         s[3].logical_type?.type === 'LIST', 'list column is not an optional LIST');
    must(s[4].name === 'list' && s[4].repetition_type === 'REPEATED' && s[4].num_children === 1, 'repeated group list');
    must(s[5].name === 'element' && s[5].type === 'FLOAT' && s[5].repetition_type === 'OPTIONAL', 'optional float element');
    must(big(md.num_rows) === exp.rows.length && md.row_groups.length === ngroups, 'row counts');
    must(/^fruitnet version /.test(md.created_by), `created_by ${md.created_by}`);
    const kv = md.key_value_metadata || [];
    must(kv.length === Object.keys(c.meta).length && kv.every(({ key, value }) => c.meta[key] === value), 'key/value metadata');
    md.row_groups.forEach((rg, gi) => {
      const g = exp.groups[gi];
      must(big(rg.num_rows) === g.rows, `row group ${gi} rows`);
      rg.columns.forEach((cc, col) => {
        const m = cc.meta_data;
        must(m.codec === c.codec && m.encodings.join() === 'PLAIN,RLE', `codec ${m.codec}, encodings ${m.encodings}`);
        must(big(m.data_page_offset) >= 4 && big(m.data_page_offset) + big(m.total_compressed_size) <= buf.length,
          'column chunk outside the file');
        if (col < 2) {
          const mm = col ? g.label : g.path;
          must(big(m.statistics.null_count) === 0 && m.statistics.min_value === mm.min && m.statistics.max_value === mm.max,
            `statistics ${JSON.stringify(m.statistics, (k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
        } else {
          must(big(m.statistics.null_count) === g.listNulls, `list null_count ${m.statistics.null_count}`);
        }
      });
    });
  });
}
if (nanNote) console.log(`note: ${nanNote} NaN values came back as NaN with another payload (JS numbers)`);
console.log(`interop: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
