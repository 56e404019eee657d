// interop.test.mjs — real CouchDB clients against a real divan: PouchDB
// (npm `pouchdb`, its LevelDB adapter in a temporary directory) replicating
// to and from divan one-shot and live, with attachments and conflicts, and
// using divan directly as a remote database, live replication through a
// filter function; nano's CRUD, bulk, list,
// changes and attachment calls.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import nanoFactory from 'nano';
import PouchDB from 'pouchdb';
import { startServer, tempDir } from './helpers.mjs';

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
  const remote = (name) => new PouchDB(new URL(name, srv.url).href);
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
    await PouchDB.sync(a, r);
    const la = await a.get('x', { conflicts: true });
    const lr = await r.get('x', { conflicts: true });
    assert.equal(la._rev, lr._rev);
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

describe('nano', () => {
  let srv;
  let nano;
  before(async () => {
    srv = await startServer();
    nano = nanoFactory(srv.url.replace(/\/$/, ''));
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
