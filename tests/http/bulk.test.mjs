// bulk.test.mjs — _bulk_get, _revs_diff, _missing_revs and _purge against a
// real divan.  Revision trees with branches are written as a replicator
// does (PUT ?new_edits=false with _revisions); expected answers come from
// a model of those trees kept here (which revisions exist, which are
// leaves, their bodies), not from the server.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request, startServer, tempDir } from './helpers.mjs';

const J = { 'Content-Type': 'application/json' };
const pos = (rev) => Number(rev.split('-')[0]);
const b64 = (s) => Buffer.from(s).toString('base64');

// A model of one document's tree: paths written newest first.
class Tree {
  constructor() { this.parent = new Map(); this.body = new Map(); this.deleted = new Set(); }
  add(pathRevs, body, deleted = false) {
    for (let i = 0; i < pathRevs.length; i++) {
      if (!this.parent.has(pathRevs[i])) this.parent.set(pathRevs[i], pathRevs[i + 1] ?? null);
    }
    this.body.set(pathRevs[0], body);
    if (deleted) this.deleted.add(pathRevs[0]);
  }
  has(rev) { return this.parent.has(rev); }
  leaves() {
    const inner = new Set([...this.parent.values()].filter(Boolean));
    return [...this.parent.keys()].filter((r) => !inner.has(r));
  }
  // CouchDB's winner: live leaves first, then highest pos, then highest id
  winner() {
    const key = (r) => [this.deleted.has(r) ? 0 : 1, pos(r), r.split('-')[1]];
    return this.leaves().sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      return y[0] - x[0] || y[1] - x[1] || (y[2] < x[2] ? -1 : y[2] > x[2] ? 1 : 0);
    })[0];
  }
  history(rev) {
    const ids = [];
    for (let r = rev; r; r = this.parent.get(r)) ids.push(r.split('-')[1]);
    return { start: pos(rev), ids };
  }
}

describe('bulk revision requests', () => {
  let srv;
  const trees = new Map();
  const req = (p, init) => request(srv.url, p, init);
  const post = (p, body, headers = J) => req(p, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const replicate = async (db, id, revs, body, deleted = false) => {
    const doc = { ...body, _revisions: { start: pos(revs[0]), ids: revs.map((r) => r.split('-')[1]) } };
    if (deleted) doc._deleted = true;
    const r = await req(`/${db}/${encodeURIComponent(id)}?new_edits=false`, { method: 'PUT', body: JSON.stringify(doc) });
    assert.equal(r.status, deleted ? 200 : 201, r.text);
    if (!trees.has(id)) trees.set(id, new Tree());
    trees.get(id).add(revs, body, deleted);
  };
  // The document as GET would render revision rev of the model.
  const modelDoc = (id, rev, extra = {}) => {
    const t = trees.get(id);
    const d = { _id: id, _rev: rev, ...t.body.get(rev) };
    if (t.deleted.has(rev)) d._deleted = true;
    return { ...d, ...extra };
  };
  const byRev = (a, b) => (a.ok?._rev ?? a.error?.rev ?? '').localeCompare(b.ok?._rev ?? b.error?.rev ?? '');

  before(async () => {
    srv = await startServer();
    await req('/bk', { method: 'PUT' });
    // c: 1-a -> 2-b -> 3-c, 1-a -> 2-x, 1-a -> 2-d -> 3-e (deleted)
    await replicate('bk', 'c', ['3-c', '2-b', '1-a'], { v: 'c' });
    await replicate('bk', 'c', ['2-x', '1-a'], { v: 'x' });
    await replicate('bk', 'c', ['3-e', '2-d', '1-a'], {}, true);
    // s: a linear history
    await replicate('bk', 's', ['4-s4', '3-s3', '2-s2', '1-s1'], { v: 4 });
    // g: deleted everywhere
    await replicate('bk', 'g', ['2-g2', '1-g1'], {}, true);
  });
  after(async () => { await srv.stop(); });

  test('_bulk_get: every leaf without rev, one rev, latest, revs, conflicts, request order', async () => {
    const c = trees.get('c');
    assert.equal(c.winner(), '3-c');
    let r = await post('/bk/_bulk_get', {
      docs: [{ id: 'c' }, { id: 'c', rev: '2-x' }, { id: 's', rev: '4-s4' }, { id: 'g' }, { id: 'c', rev: '3-e' }],
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    const res = r.json.results;
    assert.deepEqual(res.map((x) => x.id), ['c', 'c', 's', 'g', 'c']);
    assert.deepEqual(res[0].docs.sort(byRev), c.leaves().sort().map((rev) => ({ ok: modelDoc('c', rev) })));
    assert.deepEqual(res[1].docs, [{ ok: modelDoc('c', '2-x') }]);
    assert.deepEqual(res[2].docs, [{ ok: modelDoc('s', '4-s4') }]);
    assert.deepEqual(res[3].docs, [{ ok: modelDoc('g', '2-g2') }], 'deleted leaves are sent');
    assert.deepEqual(res[4].docs, [{ ok: modelDoc('c', '3-e') }]);

    r = await post('/bk/_bulk_get?revs=true&latest=true', { docs: [{ id: 'c', rev: '1-a' }, { id: 'c', rev: '2-b' }, { id: 's', rev: '2-s2' }] });
    const withRevs = (id, rev) => ({ ok: modelDoc(id, rev, { _revisions: trees.get(id).history(rev) }) });
    assert.deepEqual(r.json.results[0].docs.sort(byRev), c.leaves().sort().map((rev) => withRevs('c', rev)));
    assert.deepEqual(r.json.results[1].docs, [withRevs('c', '3-c')]);
    assert.deepEqual(r.json.results[2].docs, [withRevs('s', '4-s4')]);

    r = await post('/bk/_bulk_get?conflicts=true', { docs: [{ id: 'c', rev: '3-c' }] });
    assert.deepEqual(r.json.results[0].docs, [{ ok: modelDoc('c', '3-c', { _conflicts: ['2-x'] }) }]);
  });

  test('_bulk_get: per-item errors as CouchDB words them', async () => {
    const r = await post('/bk/_bulk_get', {
      docs: [{ id: 'nope' }, { id: 'nope', rev: '1-z' }, { id: 'c', rev: '1-a' }, { id: 'c', rev: '9-q' }, 5, {},
        { rev: '1-a' }, { id: '_bad' }, { id: 7 }, { id: 'c', rev: 'zz' }, { id: 'c', rev: 12 },
        { id: 'c', atts_since: '1-a' }, { id: 'c', atts_since: ['1-a', 'nope'] }],
    });
    assert.equal(r.status, 200);
    const err = (id, rev, error, reason) => ({ id, docs: [{ error: { id, rev, error, reason } }] });
    assert.deepEqual(r.json.results, [
      err('nope', 'undefined', 'not_found', 'missing'),
      err('nope', '1-z', 'not_found', 'missing'),
      err('c', '1-a', 'not_found', 'missing'), // in the tree, but its body is not kept
      err('c', '9-q', 'not_found', 'missing'),
      err(null, null, 'bad_request', 'document must be a JSON object'),
      err(null, null, 'bad_request', 'document must be a JSON object'),
      err(null, null, 'bad_request', 'document id missed'),
      err('_bad', null, 'illegal_docid', 'Only reserved document ids may start with underscore.'),
      err(7, null, 'illegal_docid', 'Document id must be a string'),
      err('c', 'zz', 'bad_request', 'Invalid rev format'),
      err('c', 12, 'bad_request', 'Invalid rev format'),
      err('c', '1-a', 'bad_request', 'att_since value must be array of revs.'),
      err('c', 'nope', 'bad_request', 'Invalid rev format'),
    ]);
  });

  test('_bulk_get: attachments, atts_since per item, att_encoding_info', async () => {
    let w = await req('/bk/att', { method: 'PUT', body: JSON.stringify({ _attachments: { 'one.txt': { content_type: 'text/plain', data: b64('first') } } }) });
    const rev1 = w.json.rev;
    w = await req(`/bk/att?rev=${rev1}`, {
      method: 'PUT',
      body: JSON.stringify({ n: 2, _attachments: { 'one.txt': { stub: true }, 'two.txt': { content_type: 'text/plain', data: b64('second') } } }),
    });
    assert.equal(w.status, 201);
    let r = await post('/bk/_bulk_get', { docs: [{ id: 'att' }, { id: 'att', atts_since: [rev1] }, { id: 'att', rev: rev1 }] });
    const [plain, since, old] = r.json.results.map((x) => x.docs[0].ok);
    assert.equal(plain._attachments['one.txt'].stub, true);
    assert.equal(plain._attachments['two.txt'].stub, true);
    assert.equal(since._attachments['one.txt'].stub, true, 'unchanged since rev1: a stub');
    assert.equal(Buffer.from(since._attachments['two.txt'].data, 'base64').toString(), 'second');
    assert.equal(old.n, undefined);
    assert.equal(old._attachments['one.txt'].stub, true);
    r = await post('/bk/_bulk_get?attachments=true&att_encoding_info=true', { docs: [{ id: 'att' }] });
    const full = r.json.results[0].docs[0].ok;
    assert.equal(Buffer.from(full._attachments['one.txt'].data, 'base64').toString(), 'first');
    assert.equal(Buffer.from(full._attachments['two.txt'].data, 'base64').toString(), 'second');
    assert.equal(full._attachments['two.txt'].revpos, 2);
  });

  test('_bulk_get: request errors and a long streamed answer', async () => {
    for (const p of ['rev=1-a', 'open_revs=all', 'atts_since=%5B%5D', 'new_edits=false', 'w=2']) {
      const r = await post(`/bk/_bulk_get?revs=true&${p}`, { docs: [] });
      assert.deepEqual([r.status, r.json], [400, { error: 'bad_request', reason: `"${p.split('=')[0]}" query parameter is not acceptable` }], p);
    }
    let r = await post('/bk/_bulk_get', {});
    assert.deepEqual([r.status, r.json], [400, { error: 'bad_request', reason: "Missing JSON list of 'docs'." }]);
    r = await post('/bk/_bulk_get', '[]');
    assert.deepEqual([r.status, r.json.reason], [400, 'Request body must be a JSON object']);
    r = await post('/bk/_bulk_get', '{"docs":[]}', {});
    assert.equal(r.status, 415);
    r = await req('/bk/_bulk_get');
    assert.deepEqual([r.status, r.headers.get('allow')], [405, 'POST']);
    r = await post('/bk/_bulk_get', { docs: [] });
    assert.deepEqual(r.json, { results: [] });
    const docs = [];
    for (let i = 0; i < 3000; i++) docs.push(i % 3 ? { id: 's' } : { id: `none${i}` });
    r = await post('/bk/_bulk_get', { docs });
    assert.equal(r.headers.get('transfer-encoding'), 'chunked');
    assert.equal(r.json.results.length, 3000);
    assert.deepEqual(r.json.results[1], { id: 's', docs: [{ ok: modelDoc('s', '4-s4') }] });
    assert.deepEqual(r.json.results[2997], { id: 'none2997', docs: [{ error: { id: 'none2997', rev: 'undefined', error: 'not_found', reason: 'missing' } }] });
  });

  // Expected _revs_diff from the model: missing = asked revs the tree does
  // not hold; possible_ancestors = leaves below the highest missing pos.
  const expectDiff = (ask) => {
    const out = {};
    for (const [id, revs] of Object.entries(ask)) {
      const t = trees.get(id);
      const missing = revs.filter((rev) => !t || !t.has(rev));
      if (!missing.length) continue;
      out[id] = { missing };
      const max = Math.max(...missing.map(pos));
      const anc = t ? t.leaves().filter((l) => pos(l) < max).sort() : [];
      if (anc.length) out[id].possible_ancestors = anc;
    }
    return out;
  };
  const sortAnc = (body) => Object.fromEntries(Object.entries(body).map(([id, v]) => [id, v.possible_ancestors ? { ...v, possible_ancestors: [...v.possible_ancestors].sort() } : v]));

  test('_revs_diff and _missing_revs on branched trees', async () => {
    const ask = {
      c: ['3-c', '2-x', '1-a', '4-new', '3-other', '2-b'],
      s: ['4-s4', '5-s5', '3-s3'],
      g: ['1-g1', '3-g3'],
      unknown: ['1-u', '2-u'],
      all_there: [],
      s2: ['1-q'],
    };
    let r = await post('/bk/_revs_diff', ask);
    assert.equal(r.status, 200);
    assert.deepEqual(sortAnc(r.json), expectDiff(ask));
    assert.deepEqual(r.json.c.missing, ['4-new', '3-other'], 'request order');
    assert.deepEqual(expectDiff(ask).c.possible_ancestors, ['2-x', '3-c', '3-e'], 'the model agrees with CouchDB: deleted leaves count');
    assert.equal(r.json.s.possible_ancestors.length, 1);
    assert.equal(r.json.unknown.possible_ancestors, undefined);
    r = await post('/bk/_revs_diff', { c: ['2-x'] });
    assert.deepEqual(r.json, {}, 'nothing missing: no entry');
    r = await post('/bk/_missing_revs', ask);
    assert.deepEqual(r.json, { missing_revs: Object.fromEntries(Object.entries(expectDiff(ask)).map(([id, v]) => [id, v.missing])) });
    for (const p of ['/bk/_revs_diff', '/bk/_missing_revs']) {
      r = await post(p, '[]');
      assert.deepEqual([r.status, r.json.reason], [400, 'Request body must be a JSON object']);
      r = await post(p, { c: ['bad'] });
      assert.deepEqual([r.status, r.json.reason], [400, 'Invalid rev format']);
      r = await post(p, { c: '1-a' });
      assert.equal(r.status, 400);
      r = await post(p, '{}', {});
      assert.equal(r.status, 415);
      r = await req(p);
      assert.deepEqual([r.status, r.headers.get('allow')], [405, 'POST']);
    }
  });

  test('_purge: leaves go, GET answers 404, purge_seq and doc_count follow', async () => {
    await req('/pg', { method: 'PUT' });
    const rev = async (id, body) => (await req(`/pg/${id}`, { method: 'PUT', body: JSON.stringify(body) })).json.rev;
    const r1 = await rev('p1', { v: 1 });
    const r2 = await rev('p2', { v: 2 });
    let info = (await req('/pg')).json;
    assert.equal(info.doc_count, 2);
    const seq0 = Number(info.purge_seq);
    let r = await post('/pg/_purge', { p1: [r1, r1], nothere: ['1-abc'], p2: ['9-zz'] });
    assert.equal(r.status, 201);
    assert.deepEqual(r.json, { purge_seq: null, purged: { p1: [r1], nothere: [], p2: [] } });
    r = await req('/pg/p1');
    assert.deepEqual([r.status, r.json], [404, { error: 'not_found', reason: 'missing' }]);
    assert.equal((await req('/pg/p2')).json._rev, r2);
    info = (await req('/pg')).json;
    assert.equal(Number(info.purge_seq), seq0 + 1);
    assert.equal(info.doc_count, 1);
    assert.deepEqual((await req('/pg/_all_docs')).json.rows.map((x) => x.id), ['p2']);
    assert.equal((await post('/pg/_revs_diff', { p1: [r1] })).json.p1.missing[0], r1, 'a purged rev is missing again');
    r = await req('/pg/p1', { method: 'PUT', body: '{"again":1}' });
    assert.match(r.json.rev, /^1-/, 'a purged id starts over');

    // one branch of a conflicted doc; an inner rev purges nothing
    await replicate('pg', 'pc', ['2-x', '1-a'], { v: 'x' });
    await replicate('pg', 'pc', ['2-y', '1-a'], { v: 'y' });
    r = await post('/pg/_purge', { pc: ['2-y', '1-a'] });
    assert.deepEqual(r.json.purged, { pc: ['2-y'] });
    r = await req('/pg/pc?open_revs=all', { headers: { Accept: 'application/json' } });
    assert.deepEqual(r.json.map((x) => x.ok._rev), ['2-x']);
    assert.equal(Number((await req('/pg')).json.purge_seq), seq0 + 2);
  });

  test('_purge: CouchDB\'s limits and bad bodies change nothing', async () => {
    const seq = (await req('/pg')).json.purge_seq;
    const ids = {};
    for (let i = 0; i < 101; i++) ids[`d${i}`] = ['1-a'];
    let r = await post('/pg/_purge', ids);
    assert.deepEqual([r.status, r.json], [400, { error: 'bad_request', reason: 'Exceeded maximum number of documents.' }]);
    const revs = [];
    for (let i = 0; i < 1001; i++) revs.push(`1-r${i}`);
    r = await post('/pg/_purge', { a: revs.slice(0, 500), b: revs.slice(500) });
    assert.deepEqual([r.status, r.json], [400, { error: 'bad_request', reason: 'Exceeded maximum number of revisions.' }]);
    r = await post('/pg/_purge', { a: revs.slice(0, 500), b: revs.slice(500, 1000) });
    assert.equal(r.status, 201, '1000 revisions are allowed');
    r = await post('/pg/_purge', { a: ['nope'] });
    assert.deepEqual([r.status, r.json.reason], [400, 'Invalid rev format']);
    r = await post('/pg/_purge', '["a"]');
    assert.deepEqual([r.status, r.json.reason], [400, 'Request body must be a JSON object']);
    r = await post('/pg/_purge', '{}', {});
    assert.equal(r.status, 415);
    r = await req('/pg/_purge');
    assert.deepEqual([r.status, r.headers.get('allow')], [405, 'POST']);
    r = await post('/pg/_purge', {});
    assert.deepEqual([r.status, r.json], [201, { purge_seq: null, purged: {} }]);
    assert.equal((await req('/pg')).json.purge_seq, seq);
  });
});

describe('_purge limits from [purge]', () => {
  test('max_document_id_number and max_revisions_number are read from the config', async () => {
    const dir = tempDir();
    const ini = path.join(dir, 'purge.ini');
    writeFileSync(ini, '[purge]\nmax_document_id_number = 2\nmax_revisions_number = 3\n');
    const srv = await startServer({ args: ['--config', ini] });
    try {
      const post = (body) => request(srv.url, '/l/_purge', { method: 'POST', headers: J, body: JSON.stringify(body) });
      await request(srv.url, '/l', { method: 'PUT' });
      assert.equal((await post({ a: ['1-a'], b: ['1-b'], c: ['1-c'] })).json.reason, 'Exceeded maximum number of documents.');
      assert.equal((await post({ a: ['1-a', '1-b'], b: ['1-c', '1-d'] })).json.reason, 'Exceeded maximum number of revisions.');
      assert.equal((await post({ a: ['1-a', '1-b'], b: ['1-c'] })).status, 201);
    } finally {
      await srv.stop();
    }
  });
});
