// interop.test.mjs — real CouchDB clients against a real divan: PouchDB
// (npm `pouchdb`, its LevelDB adapter in a temporary directory) replicating
// to and from divan one-shot and live, with attachments and conflicts, and
// using divan directly as a remote database, live replication through a
// filter function; PouchDB's query() of divan's views against PouchDB's own
// map/reduce over the same documents; nano's CRUD, bulk, list, changes and
// attachment calls.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import nanoFactory from 'nano';
import PouchDB from 'pouchdb';
import { authUrl, startServer, tempDir } from './helpers.mjs';

const md5b64 = (buf) => 'md5-' + createHash('md5').update(buf).digest('base64');
const waitFor = async (what, fn, ms = 10000) => {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('PouchDB', () => {
  let srv;
  let localDir;
  const local = (name) => new PouchDB(path.join(localDir, name));
  const remote = (name) => new PouchDB(new URL(name, authUrl(srv.url)).href);
  before(async () => {
    srv = await startServer();
    localDir = tempDir('divan-pouch-');
  });
  after(async () => {
    await srv.stop();
    rmSync(localDir, { recursive: true, force: true });
  });

  test('as a remote database: put, get, bulkDocs, allDocs, changes, remove, info', async () => {
    const db = remote('pouch-remote');
    const info0 = await db.info();
    assert.equal(info0.db_name, 'pouch-remote');
    const r = await db.put({ _id: 'a', v: 1 });
    assert.ok(r.ok);
    const a = await db.get('a');
    assert.equal(a.v, 1);
    const bulk = await db.bulkDocs([{ _id: 'b', v: 2 }, { _id: 'c', v: 3 }, { _id: 'a', v: 'conflict' }]);
    assert.equal(bulk[2].status, 409);
    const all = await db.allDocs({ include_docs: true });
    assert.deepEqual(all.rows.map((x) => x.id), ['a', 'b', 'c']);
    assert.equal(all.rows[1].doc.v, 2);
    const keys = await db.allDocs({ keys: ['c', 'zz'] });
    assert.equal(keys.rows[0].id, 'c');
    assert.equal(keys.rows[1].error, 'not_found');
    const ch = await db.changes({ since: 0, include_docs: true });
    assert.deepEqual(ch.results.map((x) => x.id).sort(), ['a', 'b', 'c']);
    await db.remove(a);
    await assert.rejects(db.get('a'), (e) => e.status === 404);
    const info = await db.info();
    assert.equal(info.doc_count, 2);
    assert.equal(info.doc_del_count, 1);
  });

  test('replicate divan → PouchDB and PouchDB → divan, with attachments and deletions', async () => {
    const src = remote('pouch-src');
    await src.info(); // PouchDB creates the remote database
    const blob = Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 31) & 0xff));
    await src.put({ _id: 'withatt', title: 'x', _attachments: { 'data.bin': { content_type: 'application/octet-stream', data: blob } } });
    await src.bulkDocs(Array.from({ length: 200 }, (_, i) => ({ _id: `doc${String(i).padStart(3, '0')}`, i })));
    const gone = await src.put({ _id: 'gone', v: 1 });
    await src.remove('gone', gone.rev);

    const dst = local('from-divan');
    const res = await PouchDB.replicate(src, dst);
    assert.equal(res.ok, true);
    assert.equal(res.docs_written, 202);
    const got = await dst.get('withatt', { attachments: true, binary: true });
    assert.ok(Buffer.from(got._attachments['data.bin'].data).equals(blob));
    assert.equal(got._attachments['data.bin'].digest, md5b64(blob));
    await assert.rejects(dst.get('gone'), (e) => e.status === 404);
    assert.equal((await dst.info()).doc_count, 201);

    // edit locally and push back to a new divan database
    const back = remote('pouch-back');
    await dst.put({ ...(await dst.get('doc000')), edited: true });
    const res2 = await PouchDB.replicate(dst, back);
    assert.equal(res2.ok, true);
    const d0 = await back.get('doc000', { revs: true });
    assert.equal(d0.edited, true);
    assert.equal(d0._revisions.ids.length, 2);
    const att = await back.getAttachment('withatt', 'data.bin');
    assert.ok(Buffer.from(att).equals(blob));
    // a second replication transfers nothing: checkpoints were kept in _local docs
    const res3 = await PouchDB.replicate(dst, back);
    assert.equal(res3.docs_written, 0);
  });

  test('conflicts replicate both ways and both sides agree on the winner', async () => {
    const a = local('conf-a');
    const r = remote('conf-r');
    await r.info();
    const base = await a.put({ _id: 'x', v: 0 });
    await PouchDB.replicate(a, r);
    await a.put({ _id: 'x', _rev: base.rev, v: 'local' });
    await r.put({ _id: 'x', _rev: base.rev, v: 'remote' });
    const res = await PouchDB.sync(a, r);
    // a replication that completed with errors would explain disagreeing
    // sides: say so instead of comparing revisions
    for (const dir of ['push', 'pull']) {
      assert.equal(res[dir].status, 'complete', `${dir}: ${JSON.stringify(res[dir])}`);
      assert.equal(res[dir].doc_write_failures, 0, `${dir}: ${JSON.stringify(res[dir].errors)}`);
    }
    const la = await a.get('x', { conflicts: true, revs_info: true });
    const lr = await r.get('x', { conflicts: true, revs_info: true });
    assert.equal(la._rev, lr._rev, `local ${JSON.stringify(la)} divan ${JSON.stringify(lr)}`);
    assert.equal(la.v, lr.v);
    assert.equal(la._conflicts.length, 1);
    assert.deepEqual(lr._conflicts, la._conflicts);
    // resolve on divan, sync, the conflict is gone on both sides
    await r.remove('x', lr._conflicts[0]);
    await PouchDB.sync(a, r);
    assert.equal((await a.get('x', { conflicts: true }))._conflicts, undefined);
  });

  test('live sync carries writes both ways', async () => {
    const a = local('live-a');
    const r = remote('live-r');
    await r.info();
    const sync = PouchDB.sync(a, r, { live: true, retry: true });
    try {
      await a.put({ _id: 'from-local', v: 1 });
      await waitFor('local write on divan', () => r.get('from-local').then(() => true, () => false));
      await r.put({ _id: 'from-divan', v: 2 });
      await waitFor('divan write in PouchDB', () => a.get('from-divan').then(() => true, () => false));
      const doc = await r.get('from-local');
      await r.put({ ...doc, v: 10 });
      await waitFor('an update from divan', () => a.get('from-local').then((d) => d.v === 10, () => false));
    } finally {
      sync.cancel();
    }
  });

  test('live replication from divan through a filter function (filter: ddoc/name, query_params)', async () => {
    const r = remote('filtered-r');
    const a = local('filtered-a');
    await r.put({
      _id: '_design/app',
      filters: { team: 'function(doc, req) { return doc.team === req.query.team; }' },
    });
    await r.bulkDocs([{ _id: 'r1', team: 'red' }, { _id: 'b1', team: 'blue' }]);
    const rep = PouchDB.replicate(r, a, { live: true, retry: true, filter: 'app/team', query_params: { team: 'red' } });
    try {
      await waitFor('the matching document', () => a.get('r1').then(() => true, () => false));
      await r.bulkDocs([{ _id: 'b2', team: 'blue' }, { _id: 'r2', team: 'red' }]);
      await waitFor('a live matching write', () => a.get('r2').then(() => true, () => false));
      const all = await a.allDocs();
      assert.deepEqual(all.rows.map((x) => x.id), ['r1', 'r2']);
    } finally {
      rep.cancel();
    }
  });
});

// The same documents and design document in a local PouchDB and (replicated
// from it, so revisions are identical) in divan; every query runs as
// local.query() — PouchDB's own map/reduce — and as remote.query() — PouchDB's
// HTTP adapter against divan's _view — and both must give the same rows.
describe('PouchDB views: query() on divan gives the rows of PouchDB\'s own map/reduce', () => {
  let srv;
  let localDir;
  let local;
  let remote;
  const N = 300;
  // Keys of every JSON type; strings with case, accents, other scripts,
  // punctuation, digits and characters beyond the BMP.
  const MIXED = [
    null, false, true, -100, -1.5, 0, 0.25, 1, 2, 1e6,
    '', ' ', '0', '10', '9', 'a', 'A', 'aa', 'Ab', 'b', 'B', 'e', 'é', 'É', 'émile', 'Émile', 'f', 'z', 'Z',
    'ss', 'ß', 'ø', 'œ', 'ж', 'Ж', 'あ', 'ア', '中', '文', '😀', '𝄞', '\uff5e', 'a b', 'a_b', 'a-b',
    [], ['a'], ['A'], ['a', 1], ['é', null], [[]], {}, { a: 1 }, { A: 1 }, { a: 'é' }, { b: [1] },
  ];
  // Lower-case ASCII words and digits: ICU's order and PouchDB's agree on them.
  const WORDS = ['apple', 'banana', 'cherry', 'date', 'elder', 'fig', 'grape', 'kiwi', 'lemon', 'lime', 'mango', 'melon', 'nut', 'olive', 'pear', 'plum'];
  const JS_REDUCE = `function (keys, values, rereduce) {
    var r = { n: 0, s: 0, max: null };
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (rereduce) { r.n += v.n; r.s += v.s; if (r.max === null || v.max > r.max) r.max = v.max; }
      else { r.n += 1; r.s += v; if (r.max === null || v > r.max) r.max = v; }
    }
    return r;
  }`;
  const DDOC = {
    _id: '_design/i',
    views: {
      mixed: { map: 'function (doc) { if ("k" in doc) emit(doc.k, doc.n); }' },
      words: { map: 'function (doc) { if (doc.w) emit(doc.w, doc.v); }' },
      sum: { map: 'function (doc) { if (doc.g) emit([doc.g, doc.sub, doc.n], doc.v); }', reduce: '_sum' },
      count: { map: 'function (doc) { if (doc.g) emit(doc.g, null); }', reduce: '_count' },
      stats: { map: 'function (doc) { if (doc.g) emit(doc.g, doc.f); }', reduce: '_stats' },
      js: { map: 'function (doc) { if (doc.g) emit([doc.g, doc.sub], doc.v); }', reduce: JS_REDUCE },
      link: { map: 'function (doc) { if (doc.link) emit(doc.n, { _id: doc.link }); }' },
      dups: { map: 'function (doc) { if (doc.n % 25 === 0) { emit(doc.g, 2); emit(doc.g, 1); emit(doc.g, 3); emit(doc.n, null); } }' },
    },
  };
  const id = (i) => `d${String(i).padStart(4, '0')}`;
  const docs = Array.from({ length: N }, (_, i) => ({
    _id: id(i),
    n: i,
    k: MIXED[i % MIXED.length],
    w: `${WORDS[(i * 7) % WORDS.length]}${i % 5}`,
    g: `g${i % 5}`,
    sub: (i * 3) % 4,
    v: ((i * 37) % 101) - 50,
    f: ((i % 9) - 4) / 4, // quarters: sums and squares are exact in any order
    ...(i % 3 === 0 ? { link: id((i * 13) % N) } : {}),
  }));

  before(async () => {
    srv = await startServer();
    localDir = tempDir('divan-pouch-views-');
    local = new PouchDB(path.join(localDir, 'views'));
    remote = new PouchDB(new URL('views', authUrl(srv.url)).href);
    await local.bulkDocs([...docs, DDOC]);
    const rep = await PouchDB.replicate(local, remote);
    assert.equal(rep.docs_written, N + 1);
  });
  after(async () => {
    await local.close();
    await srv.stop();
    rmSync(localDir, { recursive: true, force: true });
  });

  // PouchDB's local answer carries offset = skip (CouchDB's is the position
  // of the first row in the view; tests/http/views.test.mjs checks it):
  // compare total_rows and rows only.
  // JSON text and back: PouchDB runs JavaScript reduces in a vm context, so
  // their objects have another realm's prototype (deepStrictEqual sees that).
  const plain = (x) => JSON.parse(JSON.stringify(x));
  const both = async (view, opts) => {
    const [l, r] = await Promise.all([local.query(`i/${view}`, { ...opts }), remote.query(`i/${view}`, { ...opts })]);
    return [plain(l), plain(r)];
  };
  const same = async (view, opts) => {
    const [l, r] = await both(view, opts);
    assert.deepEqual({ total_rows: r.total_rows, rows: r.rows }, { total_rows: l.total_rows, rows: l.rows }, `${view} ${JSON.stringify(opts)}`);
    return r;
  };

  // CouchDB's view collation (docs.couchdb.org "Views Collation"; its
  // couch_ejson_compare NIF): null < false < true < numbers < strings <
  // arrays < objects; strings by the ICU root collator at its defaults
  // (tertiary strength, punctuation not ignorable), which Intl.Collator
  // gives too; arrays element by element, objects member by member (name,
  // then value), a shorter one first.
  const icu = new Intl.Collator('und', { sensitivity: 'variant', ignorePunctuation: false, numeric: false });
  const rank = (v) => (v === null ? 0 : v === false ? 1 : v === true ? 2 : typeof v === 'number' ? 3 : typeof v === 'string' ? 4 : Array.isArray(v) ? 5 : 6);
  const couchCollate = (a, b) => {
    const ra = rank(a), rb = rank(b);
    if (ra !== rb || ra < 3) return ra - rb;
    if (ra === 3) return a - b;
    if (ra === 4) return icu.compare(a, b);
    const ea = ra === 5 ? a : Object.entries(a).flat();
    const eb = ra === 5 ? b : Object.entries(b).flat();
    for (let i = 0; i < Math.min(ea.length, eb.length); i++) {
      const c = couchCollate(ea[i], eb[i]);
      if (c) return c;
    }
    return ea.length - eb.length;
  };
  // PouchDB orders strings by UTF-16 code units, not by ICU (pouchdb-collate:
  // "ignoring some subtleties with ICU string ordering in CouchDB vs. ASCII
  // string ordering in PouchDB"; PouchDB's FAQ "differences from CouchDB";
  // apache/pouchdb#7224), so PouchDB itself sorts ['a', 'A', 'aa', 'é'] as
  // ['A', 'a', 'aa', 'é'] where CouchDB has 'a' < 'A' < 'aa' < 'é'.  For keys
  // where the two orders differ the expectation is PouchDB's rows put in
  // CouchDB's order (a stable sort: rows of equal keys stay in doc id order).
  const couchOrder = (rows, descending = false) =>
    [...rows].sort((x, y) => (descending ? -1 : 1) * couchCollate(x.key, y.key));

  test('keys of every type, unicode strings: the same rows, in CouchDB\'s (ICU) order', async () => {
    let [l, r] = await both('mixed', {});
    assert.equal(r.total_rows, N);
    assert.equal(l.total_rows, N);
    assert.deepEqual(r.rows, couchOrder(l.rows));
    const strings = [...new Set(r.rows.map((x) => x.key).filter((k) => typeof k === 'string'))];
    // the order CouchDB's documentation gives, independently of Intl.Collator
    const anchors = ['a', 'A', 'aa', 'Ab', 'b', 'B', 'e', 'é', 'É', 'f'];
    assert.deepEqual(strings.filter((k) => anchors.includes(k)), anchors);
    [l, r] = await both('mixed', { descending: true });
    assert.deepEqual(r.rows, couchOrder(l.rows, true));
    // ranges bounded by type: which rows fall inside does not depend on string order
    for (const opts of [{ startkey: false, endkey: 1e6 }, { startkey: '', endkey: [], inclusive_end: false },
      { startkey: [], endkey: {} }, { startkey: {}, endkey: [], descending: true }, { endkey: null }]) {
      [l, r] = await both('mixed', opts);
      assert.deepEqual(r.rows, couchOrder(l.rows, opts.descending), JSON.stringify(opts));
    }
    // exact keys: order-independent, so the answers are simply equal
    for (const k of ['é', 'É', 'ß', '😀', '中', '', 1, 0.25, -1.5, null, false, ['é', null], { a: 'é' }, [[]], {}]) {
      const got = await same('mixed', { key: k });
      assert.ok(got.rows.length > 0, JSON.stringify(k));
    }
    await same('mixed', { keys: ['😀', 1, null, ['a', 1], { A: 1 }, 'missing', 'é'] });
    await same('mixed', { key: 'Ж', include_docs: true });
    await same('mixed', { keys: ['ø', 'œ'], include_docs: true, limit: 15, skip: 2 });
  });

  test('map rows: startkey/endkey, inclusive_end, descending, limit/skip, key, keys, include_docs', async () => {
    for (const opts of [
      {},
      { startkey: 'c', endkey: 'm' },
      { start_key: 'c', end_key: 'm' },
      { startkey: 'm', endkey: 'c', descending: true },
      { startkey: 'fig', endkey: 'lime', inclusive_end: false },
      { startkey: 'lime', endkey: 'fig', inclusive_end: false, descending: true },
      { limit: 5, skip: 10 },
      { descending: true, limit: 7, skip: 3 },
      { startkey: 'kiwi', limit: 12, skip: 4 },
      { limit: 0 },
      { skip: N + 5 },
      { key: 'kiwi2' },
      { key: 'kiwi2', descending: true },
      { key: 'nothing' },
      // (no key twice in `keys`: CouchDB 3's coordinator merges the rows of a
      // repeated key at its last position — fabric_view:keydict/1 — where
      // PouchDB and a single couch_mrview answer each occurrence in place)
      { keys: ['lime1', 'apple0', 'nothing', 'olive3'] },
      { keys: ['pear3', 'fig4'], limit: 3, skip: 1 },
      { keys: [] },
      { include_docs: true, limit: 4, skip: 20 },
      { include_docs: true, startkey: 'plum', descending: true, limit: 6 },
    ]) await same('words', opts);
    // keys with descending=true: PouchDB ignores the direction for `keys`
    // (each key ascending, in the order given); CouchDB 3 reverses the list
    // of keys and reads each key's rows backwards (fabric_view_map:go/8
    // reverses `keys` when direction = rev; merge_row orders equal keys by
    // descending doc id), so its rows are PouchDB's in reverse.
    const keys = ['lime1', 'apple0', 'nothing', 'olive3'];
    const [l, r] = await both('words', { keys, descending: true });
    const [l2] = await both('words', { keys });
    assert.deepEqual(l.rows, l2.rows, 'PouchDB ignores descending with keys');
    assert.deepEqual(r.rows, [...l.rows].reverse());
  });

  test('_sum over array keys: group, group_level, ranges, descending, limit/skip, reduce=false', async () => {
    for (const opts of [
      {},
      { group: true },
      { group_level: 0 },
      { group_level: 1 },
      { group_level: 2 },
      { group_level: 2, startkey: ['g1'], endkey: ['g3', {}] },
      { group_level: 1, startkey: ['g1', 2], endkey: ['g3', 1] },
      { group_level: 2, startkey: ['g3', {}], endkey: ['g1'], descending: true },
      { group_level: 1, descending: true },
      { group: true, limit: 4, skip: 6 },
      { group: true, startkey: ['g4', 3, 900], limit: 10 },
      { startkey: ['g2'], endkey: ['g2', {}] },
      { reduce: false, startkey: ['g2'], endkey: ['g2', {}], limit: 5, skip: 2 },
      { reduce: false, descending: true, limit: 8 },
      { reduce: false, include_docs: true, startkey: ['g0', 1], limit: 3 },
    ]) await same('sum', opts);
  });

  test('_count, _stats: group, keys, ranges, include_docs with reduce=false', async () => {
    for (const opts of [
      {},
      { group: true },
      { group: true, keys: ['g2', 'g0', 'nothing', 'g4'] },
      { group: true, startkey: 'g1', endkey: 'g3', inclusive_end: false },
      { group: true, descending: true, skip: 1 },
      { key: 'g3' },
      { reduce: false, include_docs: true, key: 'g4', limit: 3 },
      { reduce: false, keys: ['g1', 'g0'], limit: 4 },
    ]) await same('count', opts);
    for (const opts of [{}, { group: true }, { group: true, descending: true }, { startkey: 'g1', endkey: 'g2' }]) {
      await same('stats', opts);
    }
  });

  test('a JavaScript reduce (with its rereduce on divan) gives PouchDB\'s values', async () => {
    for (const opts of [
      {},
      { group_level: 1 },
      { group: true },
      { group: true, limit: 5, skip: 2 },
      { group: true, descending: true },
      { group_level: 1, startkey: ['g1', 2], endkey: ['g4', 0] },
      { group: true, keys: [['g3', 1], ['g0', 0]] },
      { reduce: false, limit: 3 },
    ]) await same('js', opts);
  });

  test('include_docs follows {_id} values to the linked documents', async () => {
    for (const opts of [
      { include_docs: true },
      { include_docs: true, descending: true, limit: 5 },
      { include_docs: true, keys: [297, 3, 300] },
    ]) {
      const r = await same('link', opts);
      assert.ok(r.rows.length > 0 && r.rows.every((x) => x.doc._id === x.value._id), 'the linked documents');
    }
  });

  // A document emitting one key several times: CouchDB keeps one row per
  // emit, counts each in total_rows and offset (couch_mrview_util's count
  // reduction counts `{dups, Vals}` as length(Vals)), and sorts a document's
  // values for one key (couch_mrview_updater:insert_results/… sorts the
  // emitted pairs); PouchDB agrees (a row per emit, values sorted).
  test('a document that emits one key three times: three rows, each counted', async () => {
    for (const opts of [{}, { key: 'g0' }, { skip: 5, limit: 4 }, { startkey: 'g3' }]) await same('dups', opts);
  });
});

describe('nano', () => {
  let srv;
  let nano;
  before(async () => {
    srv = await startServer();
    nano = nanoFactory(authUrl(srv.url).replace(/\/$/, ''));
  });
  after(async () => { await srv.stop(); });

  test('databases, CRUD, bulk, list, changes, attachments', async () => {
    await nano.db.create('nano-db');
    assert.ok((await nano.db.list()).includes('nano-db'));
    const db = nano.use('nano-db');
    const ins = await db.insert({ hello: 'world' }, 'greeting');
    assert.equal(ins.ok, true);
    const doc = await db.get('greeting');
    assert.equal(doc.hello, 'world');
    const upd = await db.insert({ ...doc, hello: 'again' });
    assert.match(upd.rev, /^2-/);
    await assert.rejects(db.insert({ hello: 'stale' }, 'greeting'), (e) => e.statusCode === 409);
    const bulk = await db.bulk({ docs: [{ _id: 'n1', n: 1 }, { _id: 'n2', n: 2 }] });
    assert.equal(bulk.length, 2);
    const list = await db.list({ include_docs: true });
    assert.equal(list.total_rows, 3);
    assert.deepEqual(list.rows.map((x) => x.id), ['greeting', 'n1', 'n2']);
    const ch = await db.changes({ since: 0 });
    assert.equal(ch.results.length, 3);
    assert.equal(typeof ch.last_seq, 'string');
    const body = Buffer.from('hello attachment');
    const att = await db.attachment.insert('n1', 'note.txt', body, 'text/plain', { rev: bulk[0].rev });
    assert.equal(att.ok, true);
    const back = await db.attachment.get('n1', 'note.txt');
    assert.ok(Buffer.from(back).equals(body));
    const d = await db.get('n2');
    await db.destroy('n2', d._rev);
    await assert.rejects(db.get('n2'), (e) => e.statusCode === 404 && e.reason === 'deleted');
    const info = await nano.db.get('nano-db');
    assert.equal(info.doc_count, 2);
    await nano.db.destroy('nano-db');
    assert.ok(!(await nano.db.list()).includes('nano-db'));
  });
});
