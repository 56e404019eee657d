// alldocs.test.mjs — _all_docs, _design_docs, _local_docs and their
// /queries forms against a real divan.  Expected rows, total_rows and offset
// are computed here from a model of the documents written (ids sorted by
// their UTF-8 bytes in JS, CouchDB's rules for bounds, skip and limit), then
// compared with what the server answers; CouchDB's parameter errors; one
// snapshot per answer; and a 50,000-document scan that must stream (the
// server's RSS does not grow with the response).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { request, startServer, withAuth } from './helpers.mjs';

const J = { 'Content-Type': 'application/json' };

const byBytes = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));
// Expected answer of a range query, from the model: docs is a Map id ->
// {rev, deleted}; ns is 'all' | 'design'.  CouchDB: a string startkey
// wins over startkey_docid (other keys bound nothing), deleted docs are no
// rows, offset = live ids before the start in iteration order (whole
// database) + skip, capped at total_rows.
function expectRange(docs, p, ns = 'all') {
  const desc = p.descending === true;
  const live = [...docs.entries()].filter(([, d]) => !d.deleted).map(([id]) => id).sort(byBytes);
  if (desc) live.reverse();
  const pick = (key, docid) => (typeof key === 'string' ? key : docid);
  let lo = pick(p.startkey ?? p.start_key ?? p.key, p.startkey_docid);
  let hi = pick(p.endkey ?? p.end_key ?? p.key, p.endkey_docid);
  if (ns === 'design') {
    const [first, last] = ['_design/', '_design0'];
    const max = (a, b) => (a === undefined || byBytes(a, b) < 0 ? b : a);
    const min = (a, b) => (a === undefined || byBytes(a, b) > 0 ? b : a);
    lo = desc ? min(lo, last) : max(lo, first);
    hi = desc ? max(hi, first) : min(hi, last);
  }
  const incl = p.inclusive_end !== false;
  const afterStart = (id) => lo === undefined || (desc ? byBytes(id, lo) <= 0 : byBytes(id, lo) >= 0);
  const beforeEnd = (id) => {
    if (hi === undefined) return true;
    const c = byBytes(id, hi);
    return desc ? (incl ? c >= 0 : c > 0) : (incl ? c <= 0 : c < 0);
  };
  const inRange = live.filter((id) => afterStart(id) && beforeEnd(id));
  const total = ns === 'design' ? live.filter((id) => id.startsWith('_design/')).length : live.length;
  const before = lo === undefined ? 0 : live.filter((id) => !afterStart(id)).length;
  const skip = p.skip ?? 0;
  const rows = inRange.slice(skip, p.limit === undefined ? undefined : skip + p.limit)
    .map((id) => ({ id, key: id, value: { rev: docs.get(id).rev } }));
  return { total_rows: total, offset: Math.min(total, before + skip), rows };
}

// Expected answer of a keys query.
function expectKeys(docs, keys, p = {}, ns = 'all') {
  let ks = p.descending ? [...keys].reverse() : [...keys];
  const skip = p.skip ?? 0;
  ks = ks.slice(skip, p.limit === undefined ? undefined : skip + p.limit);
  const rows = ks.map((k) => {
    const d = typeof k === 'string' ? docs.get(k) : undefined;
    if (!d) return { key: k, error: 'not_found' };
    const row = { id: k, key: k, value: d.deleted ? { rev: d.rev, deleted: true } : { rev: d.rev } };
    if (p.include_docs && d.deleted) row.doc = null;
    return row;
  });
  const live = [...docs.entries()].filter(([id, d]) => !d.deleted && !id.startsWith('_local/')).length;
  return { total_rows: ns === 'local' ? null : live, offset: null, rows };
}

const stripDocs = (body) => ({ ...body, rows: body.rows.map(({ doc, ...r }) => r) });

describe('_all_docs', () => {
  let srv;
  const docs = new Map(); // the model
  const req = (p, init) => request(srv.url, p, init);
  const post = (p, body, headers = J) => req(p, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const get = async (path) => {
    const r = await req(path);
    assert.equal(r.status, 200, `${path}: ${r.text}`);
    return r.json;
  };

  before(async () => {
    srv = await startServer();
    await req('/ad', { method: 'PUT' });
    const ids = ['a', 'b', 'c', 'B', 'Z', '0', '9x', 'é', 'ä', 'zz', '\u{1F600}', 'a b', 'a/b', 'aa', 'ab', 'ç',
      '_design/d1', '_design/d2', '_design/é', 'del1', 'del2', 'delb', 'y', 'x'];
    const r = await post('/ad/_bulk_docs', { docs: ids.map((id, i) => ({ _id: id, n: i, s: `v${i}` })) });
    assert.equal(r.status, 201);
    for (const x of r.json) docs.set(x.id, { rev: x.rev, deleted: false });
    for (const id of ['del1', 'del2', 'delb']) {
      const d = await req(`/ad/${id}?rev=${docs.get(id).rev}`, { method: 'DELETE' });
      assert.equal(d.status, 200);
      docs.set(id, { rev: d.json.rev, deleted: true });
    }
    // a conflicted document: two branches written as a replicator would
    for (const [v, path] of [['one', { start: 2, ids: ['c2a', 'c1'] }], ['two', { start: 2, ids: ['c2b', 'c1'] }]]) {
      const w = await req('/ad/conf?new_edits=false', { method: 'PUT', body: JSON.stringify({ v, _revisions: path }) });
      assert.equal(w.status, 201);
    }
    docs.set('conf', { rev: '2-c2b', deleted: false });
    // a document with an inline attachment
    const att = await req('/ad/withatt', {
      method: 'PUT',
      body: JSON.stringify({ _attachments: { 'a.txt': { content_type: 'text/plain', data: Buffer.from('hello').toString('base64') } } }),
    });
    assert.equal(att.status, 201);
    docs.set('withatt', { rev: att.json.rev, deleted: false });
    for (const id of ['_local/l1', '_local/l2', '_local/a']) {
      const w = await req(`/ad/${id}`, { method: 'PUT', body: JSON.stringify({ local: id }) });
      assert.equal(w.status, 201);
    }
  });
  after(async () => { await srv.stop(); });

  test('rows in byte order, CouchDB\'s layout, chunked', async () => {
    const r = await req('/ad/_all_docs');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(r.headers.get('transfer-encoding'), 'chunked');
    assert.ok(r.text.startsWith('{"total_rows":'));
    assert.ok(r.text.endsWith('\r\n]}\n'));
    assert.deepEqual(r.json, expectRange(docs, {}));
    assert.equal(r.json.rows[0].id, '0');
    assert.equal(r.json.rows.at(-1).id, '\u{1F600}', 'UTF-8 bytes order: the emoji (F0..) sorts last');
    const head = await req('/ad/_all_docs', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    const p = await post('/ad/_all_docs', {});
    assert.deepEqual(p.json, r.json, 'POST without keys is the same query');
  });

  test('ranges, descending, inclusive_end, skip and limit match the model', async () => {
    const cases = [
      {}, { descending: true }, { startkey: 'b' }, { endkey: 'b' }, { startkey: 'a', endkey: 'b' },
      { startkey: 'a', endkey: 'b', inclusive_end: false }, { start_key: 'aa', end_key: 'é' },
      { startkey: 'b', endkey: 'a' }, { startkey: 'b', endkey: 'a', descending: true },
      { startkey: 'b', endkey: 'a', descending: true, inclusive_end: false }, { key: 'ab' }, { key: 'nope' },
      { key: 'del1' }, { startkey: 'del', endkey: 'dem' }, { skip: 3 }, { limit: 2 }, { skip: 5, limit: 4 },
      { skip: 100 }, { limit: 0 }, { startkey: 'c', skip: 2, limit: 3 }, { startkey: 'c', skip: 2, descending: true },
      { startkey_docid: 'b' }, { endkey_docid: 'b', inclusive_end: false }, { startkey_docid: 'b', startkey: 'Z' },
      { startkey: 1, startkey_docid: 'x' }, { startkey: null }, { key: 42 }, { endkey: ['a'] },
      { startkey: '\u{1F600}' }, { startkey: 'é', descending: true, limit: 3 }, { startkey: '_design/', endkey: '_design0' },
      { startkey: '' }, { endkey: '' }, { startkey: '', descending: true }, { endkey: '', descending: true, inclusive_end: false },
      { startkey_docid: '', endkey_docid: 'b' },
    ];
    for (const p of cases) {
      const params = Object.entries(p).map(([k, v]) => `${k}=${encodeURIComponent(/docid$/.test(k) ? v : JSON.stringify(v))}`);
      const body = await get(`/ad/_all_docs?${params.join('&')}`);
      assert.deepEqual(body, expectRange(docs, p), JSON.stringify(p));
    }
  });

  test('include_docs with conflicts, attachments and att_encoding_info', async () => {
    let body = await get('/ad/_all_docs?include_docs=true&startkey=%22c%22&endkey=%22conf%22');
    assert.deepEqual(stripDocs(body), expectRange(docs, { startkey: 'c', endkey: 'conf' }));
    for (const row of body.rows) assert.deepEqual(row.doc, await get(`/ad/${encodeURIComponent(row.id)}`));
    assert.equal(body.rows.find((r) => r.id === 'conf').doc._conflicts, undefined);
    body = await get('/ad/_all_docs?include_docs=true&conflicts=true&key=%22conf%22');
    assert.deepEqual(body.rows[0].doc, { _id: 'conf', _rev: '2-c2b', v: 'two', _conflicts: ['2-c2a'] });
    body = await get('/ad/_all_docs?include_docs=true&key=%22withatt%22');
    const stub = body.rows[0].doc._attachments['a.txt'];
    assert.equal(stub.stub, true);
    assert.equal(stub.length, 5);
    body = await get('/ad/_all_docs?include_docs=true&attachments=true&att_encoding_info=true&key=%22withatt%22');
    const single = await req('/ad/withatt?attachments=true&att_encoding_info=true', { headers: { Accept: 'application/json' } });
    assert.deepEqual(body.rows[0].doc, single.json);
    assert.equal(Buffer.from(body.rows[0].doc._attachments['a.txt'].data, 'base64').toString(), 'hello');
    body = await get('/ad/_all_docs?include_docs=false&limit=1');
    assert.equal(body.rows[0].doc, undefined);
  });

  test('keys: found, missing, deleted, non-string, local; skip/limit/descending on the key list', async () => {
    const keys = ['b', 'nope', 'del1', 42, 'a', 'b', '_local/l1', null, 'conf'];
    const k = encodeURIComponent(JSON.stringify(keys));
    const local = { id: '_local/l1', key: '_local/l1', value: { rev: '0-1' } };
    const withLocal = (e) => ({ ...e, rows: e.rows.map((r) => (r.key === '_local/l1' ? local : r)) });
    let body = await get(`/ad/_all_docs?keys=${k}`);
    assert.deepEqual(body, withLocal(expectKeys(docs, keys)));
    body = await get(`/ad/_all_docs?keys=${k}&descending=true&skip=1&limit=4`);
    assert.deepEqual(body, withLocal(expectKeys(docs, keys, { descending: true, skip: 1, limit: 4 })));
    const r = await post('/ad/_all_docs?update_seq=true', { keys, include_docs: true });
    assert.equal(r.status, 200);
    const want = withLocal(expectKeys(docs, keys, { include_docs: true }));
    assert.deepEqual(stripDocs({ ...r.json, update_seq: undefined }), { ...stripDocs(want), update_seq: undefined });
    assert.equal(r.json.update_seq, null);
    assert.equal(r.json.rows[2].doc, null, 'a deleted doc is doc:null');
    assert.deepEqual(r.json.rows[0].doc, await get('/ad/b'));
    assert.deepEqual(r.json.rows[6].doc, { _id: '_local/l1', _rev: '0-1', local: '_local/l1' });
    assert.equal(r.json.rows[1].doc, undefined, 'no doc member on a not_found row');
    body = await get('/ad/_all_docs?keys=%5B%5D&key=%22a%22');
    assert.deepEqual(body, { total_rows: expectKeys(docs, []).total_rows, offset: null, rows: [] }, 'keys=[] goes with key');
  });

  test('update_seq, offset with skip beyond the end', async () => {
    const info = await get('/ad');
    let body = await get('/ad/_all_docs?update_seq=true&limit=1');
    assert.equal(body.update_seq, info.update_seq);
    assert.deepEqual(Object.keys(body), ['total_rows', 'offset', 'update_seq', 'rows']);
    body = await get('/ad/_all_docs?skip=1000');
    assert.equal(body.offset, body.total_rows, 'offset is capped at total_rows');
    assert.deepEqual(body.rows, []);
  });

  test('_design_docs and _local_docs', async () => {
    for (const p of [{}, { descending: true }, { startkey: '_design/d2' }, { endkey: '_design/d1' }, { skip: 1 },
      { startkey: 'a' }, { startkey: 'a', descending: true }, { limit: 1, descending: true }]) {
      const params = Object.entries(p).map(([k, v]) => `${k}=${encodeURIComponent(JSON.stringify(v))}`).join('&');
      assert.deepEqual(await get(`/ad/_design_docs?${params}`), expectRange(docs, p, 'design'), JSON.stringify(p));
    }
    let body = await get('/ad/_design_docs?keys=%5B%22_design%2Fd1%22,%22b%22%5D');
    assert.deepEqual(body, expectKeys(docs, ['_design/d1', 'b']), 'keys are looked up in any namespace');
    const locals = ['_local/a', '_local/l1', '_local/l2'];
    const lrow = (id) => ({ id, key: id, value: { rev: '0-1' } });
    body = await get('/ad/_local_docs?update_seq=true');
    assert.deepEqual(body, { total_rows: null, offset: null, update_seq: null, rows: locals.map(lrow) });
    body = await get('/ad/_local_docs?descending=true&skip=1&include_docs=true');
    assert.deepEqual(body.rows.map((r) => r.id), ['_local/l1', '_local/a']);
    assert.deepEqual(body.rows[0].doc, { _id: '_local/l1', _rev: '0-1', local: '_local/l1' });
    body = await get('/ad/_local_docs?startkey=%22_local%2Fl%22&endkey=%22_local%2Fl2%22&inclusive_end=false');
    assert.deepEqual(body.rows, [lrow('_local/l1')]);
    body = await get('/ad/_local_docs?keys=%5B%22_local%2Fl2%22,%22_local%2Fx%22%5D');
    assert.deepEqual(body, { total_rows: null, offset: null, rows: [lrow('_local/l2'), { key: '_local/x', error: 'not_found' }] });
  });

  test('POST …/queries: one answer per query, each starting from the URL parameters', async () => {
    const queries = [{}, { startkey: 'b', limit: 2 }, { keys: ['a', 'nope'] }, { descending: true, skip: 2, limit: 1 }];
    let r = await post('/ad/_all_docs/queries?include_docs=false', { queries });
    assert.equal(r.status, 200);
    assert.ok(r.text.startsWith('{"results":[\r\n{'));
    assert.deepEqual(r.json, { results: [expectRange(docs, {}), expectRange(docs, queries[1]), expectKeys(docs, ['a', 'nope']), expectRange(docs, queries[3])] });
    r = await post('/ad/_all_docs/queries?limit=1&keys=%5B%22zz%22%5D', { queries: [{}, { limit: 2 }] });
    assert.deepEqual(r.json, { results: [expectRange(docs, { limit: 1 }), expectRange(docs, { limit: 2 })] }, 'URL keys are not inherited');
    r = await post('/ad/_design_docs/queries', { queries: [{ limit: 1 }] });
    assert.deepEqual(r.json, { results: [expectRange(docs, { limit: 1 }, 'design')] });
    r = await post('/ad/_local_docs/queries', { queries: [{ limit: 1 }, { keys: ['_local/l2'] }] });
    assert.deepEqual(r.json.results.map((x) => x.rows.map((y) => y.id)), [['_local/a'], ['_local/l2']]);
    r = await post('/ad/_all_docs/queries', { queries: [] });
    assert.deepEqual(r.json, { results: [] });
  });

  test('CouchDB\'s errors for bad parameters and bodies', async () => {
    const qpe = (reason) => [400, { error: 'query_parse_error', reason }];
    const bad = (reason) => [400, { error: 'bad_request', reason }];
    const cases = [
      ['/ad/_all_docs?limit=abc', qpe('Invalid value for integer: "abc"')],
      ['/ad/_all_docs?limit=-1', qpe('Invalid value for positive integer: "-1"')],
      ['/ad/_all_docs?skip=1.5', qpe('Invalid value for integer: "1.5"')],
      ['/ad/_all_docs?descending=yes', qpe('Invalid boolean parameter: "yes"')],
      ['/ad/_all_docs?include_docs=1', qpe('Invalid boolean parameter: "1"')],
      ['/ad/_all_docs?key=abc', bad('invalid UTF-8 JSON')],
      ['/ad/_all_docs?startkey=%7B', bad('invalid UTF-8 JSON')],
      ['/ad/_all_docs?keys=%7B%7D', bad('`keys` parameter must be an array.')],
      ['/ad/_all_docs?keys=nope', bad('invalid UTF-8 JSON')],
      ['/ad/_all_docs?keys=%5B%22a%22%5D&key=%22a%22', qpe('`keys` is incompatible with `key`, `start_key` and `end_key`')],
      ['/ad/_all_docs?keys=%5B%22a%22%5D&startkey=%22a%22', qpe('`keys` is incompatible with `key`, `start_key` and `end_key`')],
      ['/ad/_all_docs?reduce=true', qpe('Reduce is invalid for map-only views.')],
      ['/ad/_all_docs?group=true', qpe('Invalid use of grouping on a map view.')],
      ['/ad/_all_docs?stale=never', qpe('Invalid value for `stale`.')],
      ['/ad/_design_docs?limit=x', qpe('Invalid value for integer: "x"')],
      ['/ad/_local_docs?skip=-2', qpe('Invalid value for positive integer: "-2"')],
    ];
    for (const [path, [status, body]] of cases) {
      const r = await req(path);
      assert.deepEqual([r.status, r.json], [status, body], path);
    }
    const posts = [
      ['/ad/_all_docs', '[]', bad('Request body must be a JSON object')],
      ['/ad/_all_docs', '{"keys":"a"}', bad('`keys` body member must be an array.')],
      ['/ad/_all_docs', '{"keys":null}', bad('`keys` body member must be an array.')],
      ['/ad/_all_docs', '{"keys":["a"],"limit":"2"}', qpe('Invalid value for integer: <<"2">>')],
      ['/ad/_all_docs', '{"keys":["a"],"startkey":"a"}', qpe('`keys` is incompatible with `key`, `start_key` and `end_key`')],
      ['/ad/_all_docs', 'nope', bad('invalid UTF-8 JSON')],
      ['/ad/_all_docs/queries', '{}', bad('POST body must include `queries` parameter.')],
      ['/ad/_all_docs/queries', '{"queries":{}}', bad('`queries` member must be an array.')],
      ['/ad/_all_docs/queries', '{"queries":[{"limit":-1}]}', qpe('Invalid value for positive integer: -1')],
      ['/ad/_all_docs/queries', '{"queries":[{},{"keys":["a"],"key":"b"}]}', qpe('`keys` is incompatible with `key`, `start_key` and `end_key`')],
    ];
    for (const [path, body, [status, want]] of posts) {
      const r = await post(path, body);
      assert.deepEqual([r.status, r.json], [status, want], `${path} ${body}`);
    }
    let r = await req('/ad/_all_docs', { method: 'POST', body: '{}' });
    assert.equal(r.status, 415, 'POST _all_docs needs application/json');
    r = await req('/ad/_all_docs', { method: 'PUT' });
    assert.deepEqual([r.status, r.headers.get('allow')], [405, 'GET,HEAD,POST']);
    r = await req('/ad/_all_docs/queries');
    assert.deepEqual([r.status, r.headers.get('allow')], [405, 'POST']);
    r = await req('/nodb/_all_docs');
    assert.deepEqual([r.status, r.json], [404, { error: 'not_found', reason: 'Database does not exist.' }]);
  });
});

// Resident set size and its high-water mark of a process, in KiB.
function memOf(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(s)[1]);
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

// Reads a streamed body slowly (a pause every 256 KiB) while sampling the
// server's RSS; returns the text and the peak RSS seen.
async function readSampling(url, pid) {
  const res = await fetch(url, { headers: withAuth() });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const parts = [];
  let size = 0, next = 0, peak = memOf(pid).rss;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    size += value.length;
    if (size >= next) {
      next = size + 256 * 1024;
      peak = Math.max(peak, memOf(pid).rss);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  return { text: Buffer.concat(parts).toString('utf8'), size, peak };
}

describe('a large database', () => {
  let srv;
  const N = 50000;
  const req = (p, init) => request(srv.url, p, init);
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test(`_all_docs streams ${N} rows from one snapshot in bounded memory, across writes and compaction`, async () => {
    await req('/big', { method: 'PUT' });
    const pad = 'x'.repeat(400);
    const id = (i) => `doc${String(i).padStart(6, '0')}`;
    for (let b = 0; b < N; b += 5000) {
      const docs = [];
      for (let i = b; i < b + 5000; i++) docs.push({ _id: id(i), i, pad });
      const r = await req('/big/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs }) });
      assert.equal(r.status, 201);
    }
    // every row, in order, with CouchDB's totals (also fills the node cache)
    let r = await req('/big/_all_docs');
    assert.equal(r.json.total_rows, N);
    assert.equal(r.json.offset, 0);
    assert.equal(r.json.rows.length, N);
    for (let i = 0; i < N; i += 997) assert.equal(r.json.rows[i].id, id(i));
    assert.equal(r.json.rows[N - 1].id, id(N - 1));
    r = await req(`/big/_all_docs?startkey=%22${id(30000)}%22&limit=2`);
    assert.deepEqual([r.json.offset, r.json.rows.map((x) => x.id)], [30000, [id(30000), id(30001)]]);

    // The include_docs answer is ~25 MB while the file is small (the pad
    // compresses): the server's memory must not grow like the answer.
    // (ASan's allocator keeps freed memory in quarantine: its RSS says
    // nothing about what the server holds, so only the release build is
    // measured.)
    const pid = srv.child.pid;
    const base = memOf(pid).rss;
    const { text, size, peak } = await readSampling(`${srv.url}big/_all_docs?include_docs=true`, pid);
    const body = JSON.parse(text);
    assert.equal(body.rows.length, N);
    assert.equal(body.rows[12345].doc.i, 12345);
    assert.ok(size > 20e6, `answer of ${size} bytes`);
    if (!process.env.ASAN_OPTIONS) {
      const grewKiB = peak - base;
      assert.ok(grewKiB * 1024 < size / 8, `RSS grew by ${grewKiB} KiB while streaming ${size} bytes`);
    }

    // One snapshot: a document deleted after the answer started is still
    // in it; the next answer no longer has it.
    const res = await fetch(`${srv.url}big/_all_docs`, { headers: withAuth() });
    const reader = res.body.getReader();
    const first = await reader.read();
    assert.ok(!first.done);
    const last = id(N - 1);
    const rev = (await req(`/big/${last}`)).json._rev;
    assert.equal((await req(`/big/${last}?rev=${rev}`, { method: 'DELETE' })).status, 200);
    const parts = [first.value];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
    }
    const during = JSON.parse(Buffer.concat(parts).toString('utf8'));
    assert.equal(during.rows.length, N);
    assert.equal(during.rows.at(-1).id, last);
    r = await req('/big/_all_docs?descending=true&limit=1');
    assert.equal(r.json.total_rows, N - 1);
    assert.equal(r.json.rows[0].id, id(N - 2));

    // A compaction that swaps the file under a long answer does not
    // disturb it: the answer's snapshot keeps reading the old file.
    const res2 = await fetch(`${srv.url}big/_all_docs?include_docs=true`, { headers: withAuth() });
    const reader2 = res2.body.getReader();
    const parts2 = [(await reader2.read()).value];
    r = await req('/big/_compact', { method: 'POST', headers: J });
    assert.equal(r.status, 202);
    for (let i = 0; (await req('/big')).json.compact_running; i++) {
      assert.ok(i < 600, 'compaction finishes');
      await new Promise((res) => setTimeout(res, 100));
    }
    for (;;) {
      const { done, value } = await reader2.read();
      if (done) break;
      parts2.push(value);
    }
    const across = JSON.parse(Buffer.concat(parts2).toString('utf8'));
    assert.equal(across.rows.length, N - 1);
    assert.equal(across.rows[N - 2].doc.i, N - 2);
    assert.equal((await req('/big/_all_docs?limit=0')).json.total_rows, N - 1);
  });

  test('long runs of deleted documents and large skips stay correct (fills that only skip yield)', async () => {
    await req('/holes', { method: 'PUT' });
    const docs = [];
    for (let i = 0; i < 40000; i++) docs.push({ _id: `h${String(i).padStart(5, '0')}` });
    let r = await req('/holes/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs }) });
    const dels = r.json.slice(0, 39000).map((x) => ({ _id: x.id, _rev: x.rev, _deleted: true }));
    r = await req('/holes/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs: dels }) });
    assert.equal(r.status, 201);
    r = await req('/holes/_all_docs?limit=2');
    assert.deepEqual([r.json.total_rows, r.json.offset, r.json.rows.map((x) => x.id)], [1000, 0, ['h39000', 'h39001']]);
    r = await req('/holes/_all_docs?skip=998');
    assert.deepEqual([r.json.offset, r.json.rows.map((x) => x.id)], [998, ['h39998', 'h39999']]);
    r = await req('/holes/_all_docs?startkey=%22h39500%22&descending=true&skip=499');
    assert.deepEqual([r.json.offset, r.json.rows.map((x) => x.id)], [499 + 499, ['h39001', 'h39000']]);
    r = await req('/holes/_all_docs?descending=true&startkey=%22h38999%22');
    assert.deepEqual([r.json.offset, r.json.rows], [1000, []], 'only deleted docs in range');
  });
});
