// views.test.mjs — map/reduce views against a real divan and its real
// divan-js query server: every query parameter, CouchDB's collation, the
// built-in and JavaScript reduces checked against values computed here,
// incremental updates, design documents that do not compile, map functions
// that throw or never end, a killed query server, a server killed during
// an index build, sibling views keeping their index, _info, _compact,
// _view_cleanup, ETags.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request, startServer, tempDir } from './helpers.mjs';

const J = { 'Content-Type': 'application/json' };
const enc = (v) => encodeURIComponent(JSON.stringify(v));

// CouchDB's collation order (its "Views Collation" documentation), as a list
// of keys already in order.  Strings follow ICU's root collation.
const ORDERED_KEYS = [
  null, false, true,
  -1e10, -2, -1.5, 0, 1, 1.5, 2, 1e10,
  'a', 'A', 'aa', 'b', 'B', 'ba', 'bb',
  ['a'], ['b'], ['b', 'c'], ['b', 'c', 'a'], ['b', 'd'], ['b', 'd', 'e'],
  { a: 1 }, { a: 2 }, { b: 1 }, { b: 2 }, { b: 2, a: 1 }, { b: 2, c: 2 },
];

async function bulk(url, db, docs) {
  const r = await request(url, `/${db}/_bulk_docs`, { method: 'POST', headers: J, body: JSON.stringify({ docs }) });
  assert.equal(r.status, 201);
  return r.json;
}

describe('views', () => {
  let srv;
  const req = (p, init) => request(srv.url, p, init);
  const put = (p, body) => req(p, { method: 'PUT', body: JSON.stringify(body) });
  const view = (db, ddoc, v, qs = '') => req(`/${db}/_design/${ddoc}/_view/${v}${qs ? `?${qs}` : ''}`);
  before(async () => {
    const dir = tempDir();
    const ini = path.join(dir, 'views.ini');
    writeFileSync(ini, '[couchdb]\nos_process_timeout = 1500\n[divan]\nview_batch_docs = 100\n');
    srv = await startServer({ args: ['--config', ini] });
  });
  after(async () => { await srv.stop(); });

  test('map rows in collation order; total_rows, offset; every type as key', async () => {
    await req('/coll', { method: 'PUT' });
    const docs = ORDERED_KEYS.map((k, i) => ({ _id: `k${String(i).padStart(2, '0')}`, k }));
    docs.reverse(); // insertion order must not matter
    await bulk(srv.url, 'coll', docs);
    assert.equal((await put('/coll/_design/c', { views: { k: { map: 'function(doc){ if ("k" in doc) emit(doc.k, null); }' } } })).status, 201);
    const r = await view('coll', 'c', 'k');
    assert.equal(r.status, 200);
    assert.equal(r.json.total_rows, ORDERED_KEYS.length);
    assert.equal(r.json.offset, 0);
    assert.deepEqual(r.json.rows.map((x) => x.key), ORDERED_KEYS);
    assert.ok(r.text.startsWith('{"total_rows":'));
    assert.ok(r.text.includes('"rows":[\r\n{'));
    assert.ok(r.text.endsWith('\r\n]}\n'));
    // raw collation: Erlang term order, strings by bytes
    await put('/coll/_design/raw', { options: { collation: 'raw' }, views: { k: { map: 'function(doc){ if (typeof doc.k === "string") emit(doc.k, null); }' } } });
    const raw = await view('coll', 'raw', 'k');
    const strs = ORDERED_KEYS.filter((k) => typeof k === 'string');
    assert.deepEqual(raw.json.rows.map((x) => x.key), [...strs].sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b)))));
  });

  test('query parameters: key, keys, ranges with docids, inclusive_end, descending, limit, skip', async () => {
    await req('/p', { method: 'PUT' });
    const docs = [];
    for (let i = 0; i < 30; i++) docs.push({ _id: `d${String(i).padStart(2, '0')}`, n: i % 10, tag: i % 3 });
    await bulk(srv.url, 'p', docs);
    await put('/p/_design/v', { views: { n: { map: 'function(doc){ emit(doc.n, doc.tag); }' } } });
    // model: rows sorted by (n, id)
    const rows = docs.map((d) => ({ id: d._id, key: d.n, value: d.tag })).sort((a, b) => a.key - b.key || (a.id < b.id ? -1 : 1));
    const q = async (qs) => (await view('p', 'v', 'n', qs)).json;
    assert.deepEqual((await q('key=3')).rows, rows.filter((r) => r.key === 3));
    let a = await q('startkey=2&endkey=4');
    assert.deepEqual(a.rows, rows.filter((r) => r.key >= 2 && r.key <= 4));
    assert.equal(a.offset, rows.findIndex((r) => r.key === 2));
    a = await q('startkey=2&endkey=4&inclusive_end=false');
    assert.deepEqual(a.rows, rows.filter((r) => r.key >= 2 && r.key < 4));
    a = await q('start_key=2&startkey_docid=d12&end_key=4&endkey_docid=d14');
    const i0 = rows.findIndex((r) => r.key === 2 && r.id === 'd12');
    const i1 = rows.findIndex((r) => r.key === 4 && r.id === 'd14');
    assert.deepEqual(a.rows, rows.slice(i0, i1 + 1));
    a = await q('startkey=4&endkey=2&descending=true');
    assert.deepEqual(a.rows, rows.filter((r) => r.key >= 2 && r.key <= 4).reverse());
    assert.equal(a.offset, [...rows].reverse().findIndex((r) => r.key === 4));
    a = await q('limit=5&skip=3');
    assert.deepEqual(a.rows, rows.slice(3, 8));
    assert.equal(a.offset, 3);
    a = await q('descending=true&limit=2');
    assert.deepEqual(a.rows, rows.slice(-2).reverse());
    a = await q(`keys=${enc([7, 1, 99])}`);
    assert.deepEqual(a.rows, [...rows.filter((r) => r.key === 7), ...rows.filter((r) => r.key === 1)]);
    const post = await req('/p/_design/v/_view/n?limit=3', { method: 'POST', headers: J, body: JSON.stringify({ keys: [5] }) });
    assert.deepEqual(post.json.rows, rows.filter((r) => r.key === 5));
    a = await q('update_seq=true&limit=0');
    assert.equal(a.update_seq, (await req('/p')).json.update_seq);
    assert.deepEqual(a.rows, []);
    const multi = await req('/p/_design/v/_view/n/queries', { method: 'POST', headers: J, body: JSON.stringify({ queries: [{ key: 0 }, { limit: 1, descending: true }] }) });
    assert.equal(multi.status, 200);
    assert.deepEqual(multi.json.results[0].rows, rows.filter((r) => r.key === 0));
    assert.deepEqual(multi.json.results[1].rows, rows.slice(-1));
  });

  test('include_docs, linked documents, conflicts', async () => {
    await req('/inc', { method: 'PUT' });
    await bulk(srv.url, 'inc', [{ _id: 'a', x: 1, other: 'b' }, { _id: 'b', x: 2 }]);
    await put('/inc/_design/v', { views: {
      self: { map: 'function(doc){ emit(doc._id, null); }' },
      link: { map: 'function(doc){ if (doc.other) emit(doc._id, {_id: doc.other}); }' },
    } });
    let r = await view('inc', 'v', 'self', 'include_docs=true');
    assert.equal(r.json.rows[0].doc.x, 1);
    assert.equal(r.json.rows[1].doc._id, 'b');
    r = await view('inc', 'v', 'link', 'include_docs=true');
    assert.equal(r.json.rows[0].id, 'a');
    assert.equal(r.json.rows[0].doc._id, 'b', 'the linked document');
    await put('/inc/a?new_edits=false', { _id: 'a', _rev: '1-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz', x: 9, other: 'b' });
    r = await view('inc', 'v', 'self', 'include_docs=true&conflicts=true&key=%22a%22');
    assert.equal(r.json.rows[0].doc._conflicts.length, 1);
    r = await view('inc', 'v', 'self', 'include_docs=true&reduce=true');
    assert.equal(r.status, 400);
  });

  test('built-in reduces and a JavaScript reduce match values computed here, with rereduce', async () => {
    await req('/red', { method: 'PUT' });
    const docs = [];
    for (let i = 0; i < 2500; i++) docs.push({ _id: `r${i}`, g: `g${i % 7}`, sub: i % 3, v: (i * 37) % 101, f: (i % 10) / 4 });
    await bulk(srv.url, 'red', docs);
    await put('/red/_design/r', { views: {
      sum: { map: 'function(doc){ emit([doc.g, doc.sub], doc.v); }', reduce: '_sum' },
      count: { map: 'function(doc){ emit(doc.g, null); }', reduce: '_count' },
      stats: { map: 'function(doc){ emit(doc.g, doc.f); }', reduce: '_stats' },
      distinct: { map: 'function(doc){ emit(doc.v, null); }', reduce: '_approx_count_distinct' },
      js: { map: 'function(doc){ emit(doc.g, doc.v); }', reduce: 'function(keys, values, rereduce){ return sum(values); }' },
      arr: { map: 'function(doc){ emit(doc.g, [doc.v, 1]); }', reduce: '_sum' },
    } });
    const total = docs.reduce((s, d) => s + d.v, 0);
    assert.deepEqual((await view('red', 'r', 'sum')).json.rows, [{ key: null, value: total }]);
    assert.deepEqual((await view('red', 'r', 'js')).json.rows, [{ key: null, value: total }]);
    assert.deepEqual((await view('red', 'r', 'count')).json.rows, [{ key: null, value: docs.length }]);
    assert.deepEqual((await view('red', 'r', 'arr')).json.rows, [{ key: null, value: [total, docs.length] }]);
    const groups = [...new Set(docs.map((d) => d.g))].sort();
    let r = await view('red', 'r', 'js', 'group=true');
    assert.deepEqual(r.json.rows, groups.map((g) => ({ key: g, value: docs.filter((d) => d.g === g).reduce((s, d) => s + d.v, 0) })));
    r = await view('red', 'r', 'sum', 'group_level=1');
    assert.deepEqual(r.json.rows, groups.map((g) => ({ key: [g], value: docs.filter((d) => d.g === g).reduce((s, d) => s + d.v, 0) })));
    r = await view('red', 'r', 'sum', `group=true&startkey=${enc(['g3', 1])}&endkey=${enc(['g4', 0])}`);
    const exp = [];
    for (const g of ['g3', 'g4']) for (const s of [0, 1, 2]) {
      if ((g === 'g3' && s < 1) || (g === 'g4' && s > 0)) continue;
      exp.push({ key: [g, s], value: docs.filter((d) => d.g === g && d.sub === s).reduce((a, d) => a + d.v, 0) });
    }
    assert.deepEqual(r.json.rows, exp);
    r = await view('red', 'r', 'stats', `key=${enc('g2')}`);
    const fs = docs.filter((d) => d.g === 'g2').map((d) => d.f);
    const st = r.json.rows[0].value;
    assert.equal(st.count, fs.length);
    assert.ok(Math.abs(st.sum - fs.reduce((a, b) => a + b, 0)) < 1e-9);
    assert.equal(st.min, Math.min(...fs));
    assert.equal(st.max, Math.max(...fs));
    assert.ok(Math.abs(st.sumsqr - fs.reduce((a, b) => a + b * b, 0)) < 1e-6);
    r = await view('red', 'r', 'distinct');
    const distinct = new Set(docs.map((d) => d.v)).size;
    assert.ok(Math.abs(r.json.rows[0].value - distinct) <= Math.ceil(distinct * 0.05), `${r.json.rows[0].value} ~ ${distinct}`);
    r = await view('red', 'r', 'count', 'group=true&limit=2&skip=1');
    assert.deepEqual(r.json.rows.map((x) => x.key), groups.slice(1, 3));
    r = await view('red', 'r', 'count', 'reduce=false&limit=1');
    assert.equal(r.json.total_rows, docs.length);
    r = await view('red', 'r', 'count', `keys=${enc(['g1', 'g5'])}&group=true`);
    assert.deepEqual(r.json.rows.map((x) => x.value), ['g1', 'g5'].map((g) => docs.filter((d) => d.g === g).length));
  });

  test('a JavaScript reduce that does not reduce is refused (reduce_limit)', async () => {
    await req('/rl', { method: 'PUT' });
    await bulk(srv.url, 'rl', Array.from({ length: 200 }, (_, i) => ({ _id: `x${i}`, s: 'y'.repeat(200) })));
    await put('/rl/_design/r', { views: { grow: { map: 'function(doc){ emit(null, doc.s); }', reduce: 'function(k, v){ return v.join(""); }' } } });
    const r = await view('rl', 'r', 'grow');
    assert.equal(r.status, 200);
    assert.match(JSON.stringify(r.json.rows[0].value), /reduce_overflow_error/);
  });

  test('incremental updates: edits, deletions, new documents', async () => {
    await req('/inc2', { method: 'PUT' });
    const w = await bulk(srv.url, 'inc2', [{ _id: 'a', v: 1 }, { _id: 'b', v: 2 }, { _id: 'c', v: 3 }]);
    await put('/inc2/_design/v', { views: { v: { map: 'function(doc){ if (doc.v) { emit(doc.v, doc._id); emit(-doc.v, null); } }', reduce: '_count' } } });
    assert.equal((await view('inc2', 'v', 'v', 'reduce=false')).json.total_rows, 6);
    await put(`/inc2/a?rev=${w[0].rev}`, { v: 10 });
    await req(`/inc2/b?rev=${w[1].rev}`, { method: 'DELETE' });
    await put('/inc2/d', { v: 4 });
    await put('/inc2/e', { nothing: true });
    const r = await view('inc2', 'v', 'v', 'reduce=false&startkey=0');
    assert.deepEqual(r.json.rows.map((x) => [x.key, x.id]), [[3, 'c'], [4, 'd'], [10, 'a']]);
    assert.equal(r.json.total_rows, 6);
    assert.deepEqual((await view('inc2', 'v', 'v')).json.rows, [{ key: null, value: 6 }]);
  });

  test('a document emitting one key several times: every row counts (total_rows, offset, reduce)', async () => {
    await req('/dups', { method: 'PUT' });
    await bulk(srv.url, 'dups', [{ _id: 'a' }, { _id: 'b' }]);
    // values of one key of one document come back sorted, as CouchDB's updater sorts them
    await put('/dups/_design/v', { views: { v: { map: 'function(doc){ emit(1, doc._id + "y"); emit(1, doc._id + "x"); emit(2, null); }', reduce: '_count' } } });
    let r = await view('dups', 'v', 'v', 'reduce=false');
    assert.equal(r.json.total_rows, 6);
    assert.deepEqual(r.json.rows.map((x) => [x.id, x.key, x.value]), [
      ['a', 1, 'ax'], ['a', 1, 'ay'], ['b', 1, 'bx'], ['b', 1, 'by'], ['a', 2, null], ['b', 2, null],
    ]);
    r = await view('dups', 'v', 'v', 'reduce=false&startkey=2');
    assert.equal(r.json.offset, 4);
    r = await view('dups', 'v', 'v', 'reduce=false&skip=1&limit=2');
    assert.deepEqual(r.json.rows.map((x) => x.value), ['ay', 'bx']);
    r = await view('dups', 'v', 'v', 'group=true');
    assert.deepEqual(r.json.rows, [{ key: 1, value: 4 }, { key: 2, value: 2 }]);
  });

  test('stale queries: update=false answers the last index, update=lazy updates afterwards', async () => {
    await req('/st', { method: 'PUT' });
    await put('/st/a', { v: 1 });
    await put('/st/_design/v', { views: { v: { map: 'function(doc){ emit(doc.v, null); }' } } });
    assert.equal((await view('st', 'v', 'v')).json.rows.length, 1);
    await put('/st/b', { v: 2 });
    assert.equal((await view('st', 'v', 'v', 'update=false')).json.rows.length, 1);
    assert.equal((await view('st', 'v', 'v', 'stale=ok')).json.rows.length, 1);
    assert.equal((await view('st', 'v', 'v', 'update=lazy')).json.rows.length, 1);
    let n = 0;
    for (let i = 0; i < 100 && n < 2; i++) {
      n = (await view('st', 'v', 'v', 'update=false')).json.rows.length;
      if (n < 2) await new Promise((res) => setTimeout(res, 20));
    }
    assert.equal(n, 2, 'the lazy update landed');
  });

  test('options.include_design, options.local_seq, CommonJS modules from views.lib', async () => {
    await req('/opt', { method: 'PUT' });
    await put('/opt/plain', { n: 1 });
    await put('/opt/_design/other', { language: 'javascript' });
    await put('/opt/_design/v', {
      views: {
        lib: { math: { twice: 'exports.twice = function (x) { return 2 * x; };' }, util: { four: 'var m = require("views/lib/math/twice"); exports.four = function (x) { return m.twice(m.twice(x)); };' } },
        ids: { map: 'function(doc){ emit(doc._id, doc._local_seq || null); }' },
        req: { map: 'function(doc){ if (doc.n) emit(require("views/lib/util/four").four(doc.n), null); }' },
      },
    });
    let r = await view('opt', 'v', 'ids');
    assert.deepEqual(r.json.rows.map((x) => x.id), ['plain'], 'design documents are not mapped by default');
    assert.equal(r.json.rows[0].value, null);
    r = await view('opt', 'v', 'req');
    assert.deepEqual(r.json.rows.map((x) => x.key), [4]);
    const d = (await req('/opt/_design/v')).json;
    d.options = { include_design: true, local_seq: true };
    assert.equal((await put('/opt/_design/v', d)).status, 201);
    r = await view('opt', 'v', 'ids');
    assert.deepEqual(r.json.rows.map((x) => x.id), ['_design/other', '_design/v', 'plain']);
    assert.ok(r.json.rows.every((x) => typeof x.value === 'number' && x.value > 0), 'local_seq is passed to the map');
  });

  test('queries with update=false are answered while a long build runs', async () => {
    await req('/busy', { method: 'PUT' });
    for (let b = 0; b < 3; b++) await bulk(srv.url, 'busy', Array.from({ length: 2000 }, (_, i) => ({ _id: `b${b}-${i}`, i })));
    await put('/busy/_design/v', { views: { slow: { map: 'function(doc){ var t = Date.now(); while (Date.now() - t < 1) {} emit(doc.i, null); }' } } });
    const building = view('busy', 'v', 'slow', 'limit=0');
    await new Promise((res) => setTimeout(res, 200));
    const t0 = Date.now();
    const r = await view('busy', 'v', 'slow', 'update=false&limit=1');
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 < 1000, `a stale read waited ${Date.now() - t0} ms`);
    assert.ok(r.json.total_rows < 6000, 'it read the index as last committed, mid-build');
    const done = await building;
    assert.equal(done.json.total_rows, 6000);
  });

  test('a map function that throws skips that document for that view only', async () => {
    await req('/thr', { method: 'PUT' });
    await bulk(srv.url, 'thr', [{ _id: 'a', v: 1 }, { _id: 'b', bad: true }, { _id: 'c', v: 3 }]);
    await put('/thr/_design/v', { views: {
      risky: { map: 'function(doc){ if (doc.bad) throw new Error("boom"); emit(doc._id, null); }' },
      safe: { map: 'function(doc){ emit(doc._id, null); }' },
    } });
    assert.deepEqual((await view('thr', 'v', 'risky')).json.rows.map((r) => r.id), ['a', 'c']);
    assert.deepEqual((await view('thr', 'v', 'safe')).json.rows.map((r) => r.id), ['a', 'b', 'c']);
  });

  test('an endless map function: the document is skipped, the server stays responsive', async () => {
    await req('/loop', { method: 'PUT' });
    await bulk(srv.url, 'loop', [{ _id: 'a' }, { _id: 'b', spin: true }, { _id: 'c' }]);
    await put('/loop/_design/v', { views: { v: { map: 'function(doc){ while (doc.spin) {} emit(doc._id, null); }' } } });
    const t0 = Date.now();
    const pending = view('loop', 'v', 'v');
    // meanwhile other requests are answered promptly
    const t1 = Date.now();
    assert.equal((await req('/loop/a')).status, 200);
    assert.ok(Date.now() - t1 < 1000);
    const r = await pending;
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.rows.map((x) => x.id), ['a', 'c']);
    assert.ok(Date.now() - t0 >= 1400, 'waited for the deadline');
  });

  test('a design document that does not compile is refused on save and nothing is stored', async () => {
    await req('/cmp', { method: 'PUT' });
    const seq = (await req('/cmp')).json.update_seq;
    let r = await put('/cmp/_design/bad', { views: { v: { map: 'function(doc) { emit(doc.x ' } } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'compilation_error');
    r = await put('/cmp/_design/bad', { views: { v: { map: 'function(doc){}', reduce: 'function(k, v) { return' } } });
    assert.equal(r.json.error, 'compilation_error');
    r = await put('/cmp/_design/bad', { views: { v: { map: 'function(doc){}', reduce: '_bogus' } } });
    assert.deepEqual([r.status, r.json.error], [400, 'invalid_design_doc']);
    r = await put('/cmp/_design/bad', { views: { v: { reduce: '_sum' } } });
    assert.deepEqual([r.status, r.json.error], [400, 'invalid_design_doc']);
    r = await put('/cmp/_design/bad', { views: [] });
    assert.deepEqual([r.status, r.json.error], [400, 'invalid_design_doc']);
    r = await req('/cmp/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs: [{ _id: '_design/b2', views: { v: { map: 'nope nope' } } }, { _id: 'fine' }] }) });
    assert.equal(r.json[0].error, 'compilation_error');
    assert.equal(r.json[1].ok, true);
    assert.equal((await req('/cmp/_design/bad')).status, 404);
    assert.equal((await req('/cmp/_design/b2')).status, 404);
    assert.equal(Number((await req('/cmp')).json.update_seq), Number(seq) + 1, 'only the valid document was written');
  });

  test('bad queries: 400 query_parse_error, 404 for missing views and design documents', async () => {
    await req('/bq', { method: 'PUT' });
    await put('/bq/_design/v', { views: { m: { map: 'function(doc){ emit(1, 1); }' }, r: { map: 'function(doc){ emit(1, 1); }', reduce: '_count' } } });
    for (const qs of ['limit=-1', 'limit=x', 'descending=maybe', 'startkey=nojson', 'group_level=-2', 'reduce=true']) {
      const r = await view('bq', 'v', 'm', qs);
      assert.equal(r.status, 400, qs);
    }
    let r = await view('bq', 'v', 'r', `keys=${enc([1])}`);
    assert.deepEqual([r.status, r.json.error], [400, 'query_parse_error']);
    r = await view('bq', 'v', 'nope');
    assert.deepEqual([r.status, r.json], [404, { error: 'not_found', reason: 'missing_named_view' }]);
    r = await view('bq', 'missing', 'm');
    assert.deepEqual([r.status, r.json.error], [404, 'not_found']);
    r = await req('/nodb/_design/v/_view/m');
    assert.equal(r.status, 404);
    r = await req('/bq/_design/v/_view/m', { method: 'PUT' });
    assert.equal(r.status, 405);
  });

  test('editing one view keeps its sibling\'s index', async () => {
    await req('/sib', { method: 'PUT' });
    await bulk(srv.url, 'sib', Array.from({ length: 50 }, (_, i) => ({ _id: `s${i}`, i })));
    const ddoc = { views: { a: { map: 'function(doc){ emit(doc.i, null); }' }, b: { map: 'function(doc){ emit(-doc.i, null); }' } } };
    const w = await put('/sib/_design/v', ddoc);
    assert.equal((await view('sib', 'v', 'a')).json.rows.length, 50);
    assert.equal((await view('sib', 'v', 'b')).json.rows.length, 50);
    const files0 = readdirSync(srv.dir).filter((f) => f.startsWith('sib.')).flatMap((d) => d.endsWith('.views') ? readdirSync(path.join(srv.dir, d)) : []);
    ddoc._rev = w.json.rev;
    ddoc.views.b.map = 'function(doc){ emit(doc.i * 2, null); }';
    await put('/sib/_design/v', ddoc);
    // the unchanged view answers from its existing index without any update
    assert.equal((await view('sib', 'v', 'a', 'update=false')).json.rows.length, 50);
    // the changed one starts empty until it is updated
    assert.equal((await view('sib', 'v', 'b', 'update=false')).json.rows.length, 0);
    assert.equal((await view('sib', 'v', 'b')).json.rows[49].key, 98);
    const files1 = readdirSync(srv.dir).filter((f) => f.startsWith('sib.')).flatMap((d) => d.endsWith('.views') ? readdirSync(path.join(srv.dir, d)) : []);
    assert.equal(files1.filter((f) => files0.includes(f)).length, 2, 'both old files are still there until cleanup');
    assert.equal((await req('/sib/_view_cleanup', { method: 'POST', headers: J })).status, 202);
    const files2 = readdirSync(srv.dir).filter((f) => f.startsWith('sib.')).flatMap((d) => d.endsWith('.views') ? readdirSync(path.join(srv.dir, d)) : []);
    assert.equal(files2.length, 2, 'cleanup removed the old b index');
  });

  test('_info, ETag and 304, _compact/{ddoc}, /_active_tasks during a build', async () => {
    await req('/inf', { method: 'PUT' });
    await bulk(srv.url, 'inf', Array.from({ length: 3000 }, (_, i) => ({ _id: `i${i}`, i, pad: 'p'.repeat(100) })));
    await put('/inf/_design/v', { views: { v: { map: 'function(doc){ emit(doc.i, doc.pad); }' } } });
    const building = view('inf', 'v', 'v', 'limit=1');
    let sawTask = false;
    for (let i = 0; i < 50 && !sawTask; i++) {
      const t = (await req('/_active_tasks')).json;
      sawTask = t.some((x) => x.type === 'indexer' && x.database === 'inf');
      await new Promise((r) => setTimeout(r, 5));
    }
    let r = await building;
    assert.equal(r.status, 200);
    const etag = r.headers.get('etag');
    assert.match(etag, /^"[0-9a-f]{32}"$/);
    r = await req('/inf/_design/v/_view/v?limit=1', { headers: { 'If-None-Match': etag } });
    assert.equal(r.status, 304);
    await put('/inf/new', { i: -1 });
    r = await req('/inf/_design/v/_view/v?limit=1', { headers: { 'If-None-Match': etag } });
    assert.equal(r.status, 200, 'a new document changes the ETag');
    const info = (await req('/inf/_design/v/_info')).json;
    assert.equal(info.name, 'v');
    assert.equal(info.view_index.language, 'javascript');
    assert.equal(info.view_index.update_seq, 3002);
    assert.ok(info.view_index.sizes.file > 0);
    r = await req('/inf/_compact/v', { method: 'POST', headers: J });
    assert.deepEqual([r.status, r.json], [202, { ok: true }]);
    for (let i = 0; i < 100; i++) {
      if (!(await req('/_active_tasks')).json.some((x) => x.type === 'view_compaction')) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    r = await view('inf', 'v', 'v', 'update=false');
    assert.equal(r.json.total_rows, 3001);
    assert.equal((await req('/inf/_compact/nope', { method: 'POST', headers: J })).status, 404);
    if (!sawTask) console.log('# the build finished before /_active_tasks was polled');
  });
});

test('a killed query server is replaced', async () => {
  const srv = await startServer();
  try {
    await request(srv.url, '/k', { method: 'PUT' });
    await request(srv.url, '/k/a', { method: 'PUT', body: '{"v":1}' });
    await request(srv.url, '/k/_design/v', { method: 'PUT', body: JSON.stringify({ views: { v: { map: 'function(doc){ emit(doc.v, null); }' } } }) });
    assert.equal((await request(srv.url, '/k/_design/v/_view/v')).json.rows.length, 1);
    // kill every divan-js child of this server
    // children may belong to any thread of the server (pools spawn on worker threads)
    const tasks = readdirSync(`/proc/${srv.child.pid}/task`);
    const kids = tasks.flatMap((t) => readFileSync(`/proc/${srv.child.pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
    assert.ok(kids.length >= 1, 'a query server process is running');
    for (const k of kids) process.kill(Number(k), 'SIGKILL');
    await request(srv.url, '/k/b', { method: 'PUT', body: '{"v":2}' });
    const r = await request(srv.url, '/k/_design/v/_view/v');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.rows.map((x) => x.key), [1, 2]);
  } finally {
    await srv.stop();
  }
});

test('kill -9 during an index build, then a restart resumes to the correct index', async () => {
  const dir = tempDir();
  const ini = path.join(dir, 'b.ini');
  writeFileSync(ini, '[divan]\nview_batch_docs = 200\n');
  let srv = await startServer({ dataDir: dir, args: ['--config', ini] });
  const N = 20000;
  await request(srv.url, '/big', { method: 'PUT' });
  for (let b = 0; b < N; b += 5000) {
    await bulk(srv.url, 'big', Array.from({ length: 5000 }, (_, i) => ({ _id: `b${b + i}`, n: (b + i) % 1000 })));
  }
  await request(srv.url, '/big/_design/v', { method: 'PUT', body: JSON.stringify({ views: { n: { map: 'function(doc){ emit(doc.n, 1); }', reduce: '_sum' } } }) });
  const building = request(srv.url, '/big/_design/v/_view/n').catch(() => null);
  // wait until the build has committed part of the index, then kill
  for (let i = 0; i < 400; i++) {
    const t = await request(srv.url, '/_active_tasks').then((r) => r.json, () => []);
    if (t.some((x) => x.type === 'indexer' && x.changes_done > 0)) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  srv.child.kill('SIGKILL');
  await building;
  await srv.stop();
  srv = await startServer({ dataDir: dir, args: ['--config', ini] });
  try {
    const partial = await request(srv.url, '/big/_design/v/_view/n?update=false&reduce=false&limit=0');
    console.log(`# rows indexed before the kill: ${partial.json.total_rows}`);
    assert.ok(partial.json.total_rows < N, 'the kill interrupted the build');
    const r = await request(srv.url, '/big/_design/v/_view/n?group=true');
    assert.equal(r.json.rows.length, 1000);
    assert.ok(r.json.rows.every((x) => x.value === N / 1000));
    const all = await request(srv.url, '/big/_design/v/_view/n?reduce=false&limit=0');
    assert.equal(all.json.total_rows, N);
  } finally {
    await srv.stop();
  }
});
