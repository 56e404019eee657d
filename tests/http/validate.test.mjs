// validate.test.mjs — validate_doc_update functions on every write path
// (docs/validation.md): what a client sees when a function accepts,
// forbids (403), asks for authentication (401) or fails (500); the
// arguments it is given (newDoc, oldDoc, userCtx, secObj); design
// documents taking effect at once; _bulk_docs and replication (PouchDB)
// with some documents refused.
//
// The functions echo their arguments back by throwing them as the
// refusal message ({forbidden: {...}}), so the tests read exactly what
// the function saw; userCtx for the server admin, a _users user and an
// anonymous writer.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import PouchDB from 'pouchdb';
import { ADMIN, authUrl, request, startServer, tempDir } from './helpers.mjs';

// The validation function most tests use: refuses documents by their
// fields, echoes its arguments on demand.
const VDU = `function (newDoc, oldDoc, userCtx, secObj) {
  if (newDoc.echo) throw({forbidden: {newDoc: newDoc, oldDoc: oldDoc, secObj: secObj}});
  if (newDoc._deleted && oldDoc && oldDoc.echoDelete) throw({forbidden: {newDoc: newDoc, oldDoc: oldDoc}});
  if (newDoc._deleted && oldDoc && oldDoc.keep) throw({forbidden: 'cannot delete a kept document'});
  if (newDoc.bad) throw({forbidden: 'bad document'});
  if (newDoc.anon) throw({unauthorized: 'please log in'});
  if (newDoc.str) throw('a plain string');
  if (newDoc.crash) return newDoc.nothing.here;
  if (oldDoc && oldDoc.frozen) throw({forbidden: 'frozen'});
}`;

describe('validate_doc_update', () => {
  let srv;
  let dir;
  const req = (p, init) => request(srv.url, p, init);
  const json = (method, body, headers = {}) => ({
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const put = (p, body, headers) => req(p, json('PUT', body, headers));
  const post = (p, body, headers) => req(p, json('POST', body, headers));
  const get = (p) => req(p);
  let n = 0;
  // A fresh database with the given validation functions (name → source).
  const freshDb = async (fns = { v: VDU }) => {
    const db = `vdu${++n}`;
    assert.equal((await req(`/${db}`, { method: 'PUT' })).status, 201);
    for (const [name, src] of Object.entries(fns)) {
      const r = await put(`/${db}/_design/${name}`, { validate_doc_update: src });
      assert.equal(r.status, 201, r.text);
    }
    return db;
  };

  before(async () => {
    dir = tempDir('divan-vdu-');
    const ini = path.join(dir, 'vdu.ini');
    writeFileSync(ini, '[couchdb]\nos_process_timeout = 1000\n');
    srv = await startServer({ args: ['--config', ini] });
  });
  after(async () => {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a refusal: 403 forbidden, 401 unauthorized, 500 for anything else; nothing is written', async () => {
    const db = await freshDb();
    const ok = await put(`/${db}/good`, { v: 1 });
    assert.equal(ok.status, 201);
    let r = await put(`/${db}/a`, { bad: true });
    assert.equal(r.status, 403);
    assert.deepEqual(r.json, { error: 'forbidden', reason: 'bad document' });
    r = await put(`/${db}/b`, { anon: true });
    assert.equal(r.status, 401);
    assert.deepEqual(r.json, { error: 'unauthorized', reason: 'please log in' });
    r = await put(`/${db}/c`, { str: true });
    assert.equal(r.status, 500);
    assert.deepEqual(r.json, { error: 'unknown_error', reason: 'a plain string' });
    r = await put(`/${db}/d`, { crash: true });
    assert.equal(r.status, 500);
    assert.equal(typeof r.json.error, 'string');
    assert.match(r.json.reason, /nothing|undefined/);
    for (const id of ['a', 'b', 'c', 'd']) assert.equal((await get(`/${db}/${id}`)).status, 404, id);
    const info = await get(`/${db}`);
    assert.equal(info.json.doc_count, 2); // the design document and "good"
  });

  test('oldDoc is null on create, the replaced revision on update and delete; newDoc as sent', async () => {
    const db = await freshDb();
    let r = await put(`/${db}/x`, { echo: 1 });
    assert.equal(r.status, 403);
    assert.deepEqual(r.json.reason.newDoc, { _id: 'x', echo: 1 });
    assert.equal(r.json.reason.oldDoc, null);

    const c = await put(`/${db}/x`, { v: 1, echoDelete: true });
    assert.equal(c.status, 201);
    r = await put(`/${db}/x`, { _rev: c.json.rev, echo: 2 });
    assert.equal(r.status, 403);
    const rev1 = c.json.rev.split('-')[1];
    assert.deepEqual(r.json.reason.newDoc, { _id: 'x', _rev: c.json.rev, echo: 2, _revisions: { start: 1, ids: [rev1] } });
    assert.deepEqual(r.json.reason.oldDoc, { _id: 'x', _rev: c.json.rev, v: 1, echoDelete: true, _revisions: { start: 1, ids: [rev1] } });

    r = await req(`/${db}/x?rev=${c.json.rev}`, { method: 'DELETE' });
    assert.equal(r.status, 403);
    assert.equal(r.json.reason.newDoc._deleted, true);
    assert.equal(r.json.reason.newDoc._id, 'x');
    assert.equal(r.json.reason.oldDoc.v, 1);
    assert.equal((await get(`/${db}/x`)).json.v, 1);

    // re-creating over a deleted document: oldDoc is null again
    const k = await put(`/${db}/y`, { v: 1 });
    assert.equal((await req(`/${db}/y?rev=${k.json.rev}`, { method: 'DELETE' })).status, 200);
    r = await put(`/${db}/y`, { echo: 3 });
    assert.equal(r.status, 403);
    assert.equal(r.json.reason.oldDoc, null);
  });

  test('secObj is the database\'s _security object', async () => {
    const db = await freshDb();
    const sec = { admins: { names: ['boss'], roles: [] }, members: { names: [], roles: ['staff'] } };
    assert.equal((await put(`/${db}/_security`, sec)).status, 200);
    const r = await put(`/${db}/s`, { echo: true });
    assert.equal(r.status, 403);
    assert.deepEqual(r.json.reason.secObj, sec);
  });

  test('userCtx names the database, the user and its roles', async () => {
    const db = await freshDb({ u: 'function (n, o, userCtx) { if (n.who) throw({forbidden: userCtx}); }' });
    // request() signs in as the server admin
    let r = await put(`/${db}/w`, { who: true });
    assert.equal(r.status, 403);
    assert.deepEqual(r.json.reason, { db, name: ADMIN.name, roles: ['_admin'] });
    // a _users user, a member of the database by name, with a role
    r = await put('/_users/org.couchdb.user:vera', { name: 'vera', password: 'v', roles: ['clerk'], type: 'user' });
    assert.equal(r.status, 201, r.text);
    assert.equal((await put(`/${db}/_security`, { members: { names: ['vera'] } })).status, 200);
    const vera = `Basic ${Buffer.from('vera:v').toString('base64')}`;
    r = await put(`/${db}/w`, { who: true }, { authorization: vera });
    assert.equal(r.status, 403);
    assert.deepEqual(r.json.reason, { db, name: 'vera', roles: ['clerk'] });
    // and an anonymous writer of a public database
    assert.equal((await put(`/${db}/_security`, {})).status, 200);
    r = await req(`/${db}/w`, { ...json('PUT', { who: true }), auth: false });
    assert.equal(r.status, 403);
    assert.deepEqual(r.json.reason, { db, name: null, roles: [] });
  });

  test('every write path: POST, DELETE, COPY, attachments, multipart, batch=ok', async () => {
    const db = await freshDb();
    // POST /db
    let r = await post(`/${db}`, { bad: true });
    assert.equal(r.status, 403);
    r = await post(`/${db}`, { _id: 'p', v: 1 });
    assert.equal(r.status, 201);
    // DELETE of a kept document
    const k = await put(`/${db}/kept`, { keep: true });
    r = await req(`/${db}/kept?rev=${k.json.rev}`, { method: 'DELETE' });
    assert.deepEqual([r.status, r.json.reason], [403, 'cannot delete a kept document']);
    r = await req(`/${db}/kept`, { method: 'DELETE', headers: { 'if-match': k.json.rev } });
    assert.equal(r.status, 403);
    assert.equal((await get(`/${db}/kept`)).status, 200);
    // COPY: the copy is validated as a new document
    const b = await put(`/${db}/src`, { v: 1 });
    await put(`/${db}/src`, { _rev: b.json.rev, bad: false, v: 2 });
    const bad = await put(`/${db}/frozen`, { frozen: true });
    assert.equal(bad.status, 201);
    r = await req(`/${db}/frozen`, { method: 'COPY', headers: { destination: 'frozen2' } });
    assert.equal(r.status, 201); // a new document: oldDoc null
    const f2 = await get(`/${db}/frozen2`);
    r = await req(`/${db}/src`, { method: 'COPY', headers: { destination: `frozen2?rev=${f2.json._rev}` } });
    assert.deepEqual([r.status, r.json.reason], [403, 'frozen']);
    // attachments: PUT and DELETE go through the functions with oldDoc
    const fz = await get(`/${db}/frozen`);
    r = await req(`/${db}/frozen/a.txt?rev=${fz.json._rev}`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'hi' });
    assert.deepEqual([r.status, r.json.reason], [403, 'frozen']);
    const att = await req(`/${db}/p/a.txt?rev=${(await get(`/${db}/p`)).json._rev}`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'hi' });
    assert.equal(att.status, 201);
    // freeze p (its attachment stays) and try to delete the attachment
    const p2 = await put(`/${db}/p`, { _rev: att.json.rev, frozen: true, _attachments: { 'a.txt': { stub: true } } });
    assert.equal(p2.status, 201, p2.text);
    r = await req(`/${db}/p/a.txt?rev=${p2.json.rev}`, { method: 'DELETE' });
    assert.deepEqual([r.status, r.json.reason], [403, 'frozen']);
    assert.equal((await get(`/${db}/p/a.txt`)).text, 'hi');
    // multipart/related PUT
    const boundary = 'xyzzy';
    const body = `--${boundary}\r\ncontent-type: application/json\r\n\r\n` +
      JSON.stringify({ bad: true, _attachments: { 'f.txt': { follows: true, content_type: 'text/plain', length: 5 } } }) +
      `\r\n--${boundary}\r\n\r\nhello\r\n--${boundary}--`;
    r = await req(`/${db}/mp`, { method: 'PUT', headers: { 'content-type': `multipart/related; boundary="${boundary}"` }, body });
    assert.deepEqual([r.status, r.json.error], [403, 'forbidden']);
    assert.equal((await get(`/${db}/mp`)).status, 404);
    const good = body.replace('"bad":true', '"bad":false');
    r = await req(`/${db}/mp`, { method: 'PUT', headers: { 'content-type': `multipart/related; boundary="${boundary}"` }, body: good });
    assert.equal(r.status, 201, r.text);
    // batch=ok: refused before it is accepted
    r = await put(`/${db}/bt?batch=ok`, { bad: true });
    assert.equal(r.status, 403);
  });

  test('functions see attachment stubs in newDoc and oldDoc', async () => {
    const db = await freshDb({ a: 'function (n, o) { if (n.echo) throw({forbidden: {n: n._attachments, o: o && o._attachments}}); }' });
    const c = await put(`/${db}/d`, { _attachments: { 't.txt': { content_type: 'text/plain', data: Buffer.from('abc').toString('base64') } } });
    assert.equal(c.status, 201);
    const r = await put(`/${db}/d`, { _rev: c.json.rev, echo: true, _attachments: { 't.txt': { stub: true } } });
    assert.equal(r.status, 403);
    assert.equal(r.json.reason.n['t.txt'].stub, true);
    assert.equal(r.json.reason.o['t.txt'].stub, true);
    assert.equal(r.json.reason.o['t.txt'].length, 3);
    assert.equal(r.json.reason.o['t.txt'].content_type, 'text/plain');
  });

  test('_local and _design documents are not given to validation functions', async () => {
    const db = await freshDb({ all: 'function () { throw({forbidden: "nothing"}); }' });
    assert.equal((await put(`/${db}/x`, {})).status, 403);
    assert.equal((await put(`/${db}/_local/x`, { a: 1 })).status, 201);
    assert.equal((await put(`/${db}/_design/other`, { views: {} })).status, 201);
    const r = await post(`/${db}/_bulk_docs`, { docs: [{ _id: '_local/y' }, { _id: '_design/z' }, { _id: 'n' }] });
    assert.deepEqual(r.json.map((x) => x.ok ?? x.error), [true, true, 'forbidden']);
  });

  test('every design document\'s function runs; editing or deleting one takes effect at once', async () => {
    const db = await freshDb({
      a: 'function (n) { if (n.noA) throw({forbidden: "a says no"}); }',
      b: 'function (n) { if (n.noB) throw({forbidden: "b says no"}); }',
    });
    assert.equal((await put(`/${db}/1`, { noA: true })).json.reason, 'a says no');
    assert.equal((await put(`/${db}/2`, { noB: true })).json.reason, 'b says no');
    assert.equal((await put(`/${db}/3`, { ok: true })).status, 201);
    // edit b: it now allows noB and refuses noC
    const b = await get(`/${db}/_design/b`);
    assert.equal((await put(`/${db}/_design/b`, { _rev: b.json._rev, validate_doc_update: 'function (n) { if (n.noC) throw({forbidden: "c"}); }' })).status, 201);
    assert.equal((await put(`/${db}/2`, { noB: true })).status, 201);
    assert.equal((await put(`/${db}/4`, { noC: true })).status, 403);
    // delete a: noA goes in
    const a = await get(`/${db}/_design/a`);
    assert.equal((await req(`/${db}/_design/a?rev=${a.json._rev}`, { method: 'DELETE' })).status, 200);
    assert.equal((await put(`/${db}/1`, { noA: true })).status, 201);
    // a design document added through _bulk_docs takes effect too
    assert.equal((await post(`/${db}/_bulk_docs`, { docs: [{ _id: '_design/d', validate_doc_update: 'function (n) { if (n.noD) throw({forbidden: "d"}); }' }] })).status, 201);
    assert.equal((await put(`/${db}/5`, { noD: true })).status, 403);
  });

  test('a validate_doc_update that does not compile is refused on save', async () => {
    const db = await freshDb({});
    let r = await put(`/${db}/_design/bad`, { validate_doc_update: 'function (n) { if (' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'compilation_error');
    r = await post(`/${db}/_bulk_docs`, { docs: [{ _id: '_design/bad', validate_doc_update: 'function (' }, { _id: 'fine' }] });
    assert.equal(r.json[0].error, 'compilation_error');
    assert.equal(r.json[1].ok, true);
    assert.equal((await put(`/${db}/x`, {})).status, 201);
  });

  test('_bulk_docs mixes accepted and refused documents', async () => {
    const db = await freshDb();
    const r = await post(`/${db}/_bulk_docs`, { docs: [{ _id: 'a' }, { _id: 'b', bad: true }, { _id: 'c', anon: 1 }, { _id: 'd' }] });
    assert.equal(r.status, 201);
    assert.equal(r.json.length, 4);
    assert.equal(r.json[0].ok, true);
    assert.deepEqual(r.json[1], { id: 'b', error: 'forbidden', reason: 'bad document' });
    assert.deepEqual(r.json[2], { id: 'c', error: 'unauthorized', reason: 'please log in' });
    assert.equal(r.json[3].ok, true);
    const all = await get(`/${db}/_all_docs`);
    assert.deepEqual(all.json.rows.map((x) => x.id), ['_design/v', 'a', 'd']);
    // a conflict is reported as a conflict, not validated
    const c = await post(`/${db}/_bulk_docs`, { docs: [{ _id: 'a', bad: true }] });
    assert.equal(c.json[0].error, 'conflict');
  });

  test('_bulk_docs of hundreds of documents and two functions: each refusal on the right row', async () => {
    const db = await freshDb({
      a: 'function (n) { if (n.i % 7 === 0) throw({forbidden: "a: " + n.i}); }',
      b: 'function (n) { if (n.i % 5 === 0) throw({unauthorized: "b: " + n.i}); if (n.i === 101) null.x; }',
    });
    const docs = Array.from({ length: 300 }, (_, i) => ({ _id: `k${String(i).padStart(3, '0')}`, i }));
    const r = await post(`/${db}/_bulk_docs`, { docs });
    assert.equal(r.status, 201);
    assert.equal(r.json.length, 300);
    const kept = [];
    for (let i = 0; i < 300; i++) {
      const row = r.json[i];
      assert.equal(row.id, docs[i]._id);
      if (i % 7 === 0) assert.deepEqual([row.error, row.reason], ['forbidden', `a: ${i}`]); // a runs first
      else if (i % 5 === 0) assert.deepEqual([row.error, row.reason], ['unauthorized', `b: ${i}`]);
      else if (i === 101) assert.equal(row.error, 'TypeError'); // a JavaScript error fails its document only
      else { assert.equal(row.ok, true, JSON.stringify(row)); kept.push(docs[i]._id); }
    }
    const all = await get(`/${db}/_all_docs?startkey="k"&endkey="l"`);
    assert.deepEqual(all.json.rows.map((x) => x.id), kept);
  });

  test('_bulk_docs with a function that never returns for one document: only that one is refused', async () => {
    const db = await freshDb({ loop: 'function (n) { if (n.spin) while (true) {} }' });
    const docs = [{ _id: 'a' }, { _id: 'b', spin: true }, { _id: 'c' }];
    const r = await post(`/${db}/_bulk_docs`, { docs });
    assert.equal(r.status, 201);
    assert.equal(r.json[0].ok, true);
    assert.equal(r.json[1].id, 'b');
    assert.equal(r.json[1].error, 'os_process_error');
    assert.equal(r.json[2].ok, true);
    assert.equal((await get(`/${db}/b`)).status, 404);
    assert.equal((await get(`/${db}/c`)).status, 200);
  });

  test('new_edits=false: refused revisions listed with their rev; oldDoc is the nearest stored ancestor', async () => {
    const db = await freshDb();
    const c = await put(`/${db}/r`, { v: 1 });
    const [, id1] = c.json.rev.split('-');
    const docs = [
      { _id: 'r', _rev: '3-ccc', _revisions: { start: 3, ids: ['ccc', 'bbb', id1] }, echo: true },
      { _id: 'n', _rev: '1-aaa', bad: true },
      { _id: 'm', _rev: '1-abc', v: 2 },
    ];
    const r = await post(`/${db}/_bulk_docs`, { docs, new_edits: false });
    assert.equal(r.status, 201);
    assert.equal(r.json.length, 2);
    assert.equal(r.json[0].id, 'r');
    assert.equal(r.json[0].rev, '3-ccc');
    assert.equal(r.json[0].error, 'forbidden');
    assert.equal(r.json[0].reason.oldDoc._rev, c.json.rev);
    assert.deepEqual(r.json[0].reason.newDoc._revisions, { start: 3, ids: ['ccc', 'bbb', id1] });
    assert.deepEqual(r.json[1], { id: 'n', rev: '1-aaa', error: 'forbidden', reason: 'bad document' });
    assert.equal((await get(`/${db}/m`)).json._rev, '1-abc');
    assert.equal((await get(`/${db}/n`)).status, 404);
    assert.equal((await get(`/${db}/r`)).json._rev, c.json.rev);
    // a revision already stored is not validated again
    const again = await post(`/${db}/_bulk_docs`, { docs: [{ _id: 'm', _rev: '1-abc', bad: true }], new_edits: false });
    assert.deepEqual(again.json, []);
    // PUT ?new_edits=false goes through the functions too
    const p = await put(`/${db}/q?new_edits=false`, { _rev: '1-fff', bad: true });
    assert.equal(p.status, 403);
  });

  test('a function that never returns is stopped (os_process_timeout) and the server goes on', async () => {
    const db = await freshDb({ loop: 'function (n) { if (n.spin) while (true) {} }' });
    const t0 = Date.now();
    const r = await put(`/${db}/s`, { spin: true });
    assert.equal(r.status, 500);
    assert.ok(Date.now() - t0 < 10000);
    assert.equal((await get(`/${db}/s`)).status, 404);
    assert.equal((await put(`/${db}/t`, { v: 1 })).status, 201);
    assert.equal((await get('/')).status, 200);
  });

  test('PouchDB replicating to divan: refused documents are absent and counted as doc_write_failures', async () => {
    const db = await freshDb();
    const localDir = tempDir('divan-vdu-pouch-');
    try {
      const src = new PouchDB(path.join(localDir, 'src'));
      const docs = [];
      for (let i = 0; i < 20; i++) docs.push({ _id: `d${String(i).padStart(2, '0')}`, bad: i % 4 === 0, i });
      await src.bulkDocs(docs);
      const dst = new PouchDB(new URL(db, authUrl(srv.url)).href);
      const res = await PouchDB.replicate(src, dst);
      assert.equal(res.ok, true);
      assert.equal(res.doc_write_failures, 5);
      assert.equal(res.docs_written, 15);
      const all = await dst.allDocs();
      const ids = all.rows.map((x) => x.id).filter((x) => !x.startsWith('_design/'));
      assert.deepEqual(ids, docs.filter((d) => !d.bad).map((d) => d._id));
    } finally {
      rmSync(localDir, { recursive: true, force: true });
    }
  });
});
