// docs.test.mjs — the document API against a real divan: CRUD, revisions
// and their parameters, conflicts, new_edits=false, batch=ok, design and
// local documents, COPY, _bulk_docs, bad input (4xx, nothing written),
// concurrent writers, a stalled client, and kill -9 keeping every
// acknowledged write.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ADMIN_AUTH, request, startServer, tempDir } from './helpers.mjs';

const J = { 'Content-Type': 'application/json' };
// open_revs answers multipart/mixed unless JSON is asked for (CouchDB's
// content negotiation; fetch sends Accept: */*).
const AJ = { headers: { Accept: 'application/json' } };
const REV = /^\d+-[0-9a-f]{32}$/;

describe('documents', () => {
  let srv;
  const req = (p, init) => request(srv.url, p, init);
  const put = (p, body, headers = {}) => req(p, { method: 'PUT', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const seqOf = async (db) => (await req('/' + db)).json.update_seq;
  before(async () => {
    const dir = tempDir();
    const ini = path.join(dir, 'limits.ini');
    writeFileSync(ini, '[couchdb]\nmax_document_size = 20000\n[chttpd]\nmax_http_request_size = 200000\nmax_json_depth = 64\n');
    srv = await startServer({ args: ['--config', ini] });
    await req('/db', { method: 'PUT' });
  });
  after(async () => { await srv.stop(); });

  test('create, read, update, delete', async () => {
    let r = await put('/db/doc1', '{"a":1,"nested":{"b":[1,2.50,"x"]}}');
    assert.equal(r.status, 201);
    assert.equal(r.json.ok, true);
    assert.equal(r.json.id, 'doc1');
    assert.match(r.json.rev, /^1-/);
    assert.match(r.json.rev, REV);
    assert.equal(r.headers.get('etag'), `"${r.json.rev}"`);
    assert.match(r.headers.get('location'), /\/db\/doc1$/);
    const rev1 = r.json.rev;
    r = await req('/db/doc1');
    assert.equal(r.status, 200);
    assert.equal(r.text, `{"_id":"doc1","_rev":"${rev1}","a":1,"nested":{"b":[1,2.50,"x"]}}\n`, 'numbers kept as written, key order kept');
    assert.equal(r.headers.get('etag'), `"${rev1}"`);
    r = await req('/db/doc1', { headers: { 'If-None-Match': `"${rev1}"` } });
    assert.equal(r.status, 304);
    assert.equal(r.text, '');
    r = await req('/db/doc1', { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('etag'), `"${rev1}"`);
    r = await put('/db/doc1', { a: 2 });
    assert.equal(r.status, 409);
    assert.deepEqual(r.json, { error: 'conflict', reason: 'Document update conflict.' });
    r = await put('/db/doc1', { _rev: rev1, a: 2 });
    assert.equal(r.status, 201);
    const rev2 = r.json.rev;
    assert.match(rev2, /^2-/);
    r = await put('/db/doc1', { _rev: rev1, a: 3 });
    assert.equal(r.status, 409, 'stale rev');
    r = await req(`/db/doc1?rev=${rev2}`, { method: 'DELETE' });
    assert.equal(r.status, 200);
    assert.equal(r.json.ok, true);
    assert.match(r.json.rev, /^3-/);
    r = await req('/db/doc1');
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { error: 'not_found', reason: 'deleted' });
    r = await req(`/db/doc1?rev=${r.json.rev ?? ''}`);
    assert.equal(r.status, 400, 'empty rev is malformed');
    const del = (await req('/db/doc1?open_revs=all', AJ)).json[0].ok;
    assert.equal(del._deleted, true);
    r = await req(`/db/doc1?rev=${rev1}`);
    assert.equal(r.status, 200);
    assert.equal(r.json.a, 1, 'old revisions stay readable until compaction');
    r = await req('/db/nothere');
    assert.deepEqual([r.status, r.json], [404, { error: 'not_found', reason: 'missing' }]);
    r = await req('/db/doc1?rev=9-0123456789abcdef0123456789abcdef');
    assert.equal(r.status, 404);
    // a deleted doc can be re-created without a rev
    r = await put('/db/doc1', { again: true });
    assert.equal(r.status, 201);
    assert.match(r.json.rev, /^4-/);
  });

  test('DELETE: without rev on a live doc is a conflict; absent doc 404', async () => {
    const { json } = await put('/db/deltest', { x: 1 });
    let r = await req('/db/deltest', { method: 'DELETE' });
    assert.equal(r.status, 409);
    r = await req('/db/deltest', { method: 'DELETE', headers: { 'If-Match': `"${json.rev}"` } });
    assert.equal(r.status, 200);
    r = await req('/db/absent?rev=1-0123456789abcdef0123456789abcdef', { method: 'DELETE' });
    assert.equal(r.status, 409, 'rev that is not a leaf');
    r = await req('/db/absent', { method: 'DELETE' });
    assert.equal(r.status, 404);
  });

  test('rev from body, ?rev= and If-Match must agree', async () => {
    const { json } = await put('/db/revsrc', { v: 1 });
    let r = await put(`/db/revsrc?rev=${json.rev}`, { v: 2 });
    assert.equal(r.status, 201, 'rev from the query string');
    const rev2 = r.json.rev;
    r = await put('/db/revsrc', { v: 3 }, { 'If-Match': `"${rev2}"` });
    assert.equal(r.status, 201, 'rev from If-Match');
    const rev3 = r.json.rev;
    r = await put(`/db/revsrc?rev=${rev2}`, { _rev: rev3, v: 4 });
    assert.equal(r.status, 400);
    assert.equal(r.json.reason, 'Document rev from request body and query string have different values');
    r = await put('/db/revsrc', { _rev: rev3, v: 4 }, { 'If-Match': `"${rev2}"` });
    assert.equal(r.status, 400);
    assert.equal(r.json.reason, 'Document rev and etag have different values');
    r = await put('/db/revsrc?rev=bogus', { v: 4 });
    assert.deepEqual([r.status, r.json.reason], [400, 'Invalid rev format']);
  });

  test('GET parameters: revs, revs_info, conflicts, deleted_conflicts, local_seq, meta, open_revs, latest', async () => {
    // a tree with a conflict and a deleted conflict, made by replication
    const base = { _id: 'tree' };
    let r = await put('/db/tree?new_edits=false', { ...base, v: 'a', _revisions: { start: 2, ids: ['a2', 'a1'] } });
    assert.equal(r.status, 201);
    r = await put('/db/tree?new_edits=false', { ...base, v: 'b', _revisions: { start: 3, ids: ['b3', 'b2', 'a1'] } });
    assert.equal(r.status, 201);
    r = await put('/db/tree?new_edits=false', { ...base, _deleted: true, _revisions: { start: 4, ids: ['c4', 'c3', 'c2', 'a1'] } });
    assert.equal(r.status, 200, 'a deletion answers 200');
    r = await req('/db/tree');
    assert.equal(r.json._rev, '3-b3', 'winner: highest non-deleted');
    r = await req('/db/tree?conflicts=true&deleted_conflicts=true&revs=true&revs_info=true&local_seq=true');
    const d = r.json;
    assert.deepEqual(d._conflicts, ['2-a2']);
    assert.deepEqual(d._deleted_conflicts, ['4-c4']);
    assert.deepEqual(d._revisions, { start: 3, ids: ['b3', 'b2', 'a1'] });
    assert.deepEqual(d._revs_info, [
      { rev: '3-b3', status: 'available' },
      { rev: '2-b2', status: 'missing' },
      { rev: '1-a1', status: 'missing' },
    ]);
    assert.equal(typeof d._local_seq, 'number');
    assert.equal(r.headers.get('etag'), null, 'no ETag with meta members');
    assert.deepEqual(Object.keys(d), ['_id', '_rev', 'v', '_revisions', '_revs_info', '_conflicts', '_deleted_conflicts', '_local_seq']);
    r = await req('/db/tree?meta=true');
    assert.ok(r.json._revs_info && r.json._conflicts && r.json._deleted_conflicts);
    r = await req('/db/tree?open_revs=all', AJ);
    assert.deepEqual(r.json.map((x) => x.ok._rev).sort(), ['2-a2', '3-b3', '4-c4']);
    r = await req(`/db/tree?open_revs=${encodeURIComponent(JSON.stringify(['2-a2', '9-zz', '1-a1']))}`, AJ);
    assert.deepEqual(r.json, [
      { ok: { _id: 'tree', _rev: '2-a2', v: 'a' } },
      { missing: '9-zz' },
      { missing: '1-a1' },
    ]);
    r = await req(`/db/tree?open_revs=${encodeURIComponent('["1-a1"]')}&latest=true`, AJ);
    assert.deepEqual(r.json.map((x) => x.ok._rev).sort(), ['2-a2', '3-b3', '4-c4']);
    r = await req('/db/tree?open_revs=notjson', AJ);
    assert.equal(r.status, 400);
    r = await req(`/db/tree?open_revs=${encodeURIComponent('["bad"]')}`, AJ);
    assert.equal(r.status, 400);
    r = await req('/db/tree?rev=2-a2');
    assert.equal(r.json.v, 'a');
    r = await req('/db/tree?rev=2-a2&latest=true');
    assert.equal(r.json._rev, '3-b3');
    r = await req('/db/tree?rev=4-c4');
    assert.deepEqual(r.json, { _id: 'tree', _rev: '4-c4', _deleted: true });
    r = await req('/db/nosuch?open_revs=all', AJ);
    assert.equal(r.status, 404);
    r = await req(`/db/nosuch?open_revs=${encodeURIComponent('["1-x"]')}`, AJ);
    assert.deepEqual(r.json, [{ missing: '1-x' }]);
  });

  test('new_edits=false is never a conflict and converges on the same winner', async () => {
    const paths = [
      { v: 1, _revisions: { start: 2, ids: ['bbb', 'aaa'] } },
      { v: 2, _revisions: { start: 2, ids: ['ccc', 'aaa'] } },
    ];
    for (const order of [[0, 1], [1, 0]]) {
      const id = `conv${order.join('')}`;
      for (const i of order) {
        const r = await put(`/db/${id}?new_edits=false`, { _id: id, ...paths[i] });
        assert.equal(r.status, 201);
      }
      const r = await req(`/db/${id}?conflicts=true`);
      assert.equal(r.json._rev, '2-ccc');
      assert.deepEqual(r.json._conflicts, ['2-bbb']);
    }
    let r = await put('/db/norev?new_edits=false', { v: 1 });
    assert.equal(r.status, 400);
    assert.equal(r.json.reason, 'When `new_edits: false`, the document needs `_rev` or `_revisions` specified');
    r = await put('/db/qsrev?new_edits=false&rev=1-fromquery', { v: 1 });
    assert.equal(r.status, 201, 'the rev may come from the query string');
    assert.equal((await req('/db/qsrev')).json._rev, '1-fromquery');
  });

  test('batch=ok answers 202 and the write lands', async () => {
    const r = await put('/db/batched?batch=ok', { b: 1 });
    assert.equal(r.status, 202);
    assert.deepEqual(r.json, { ok: true, id: 'batched' });
    let got;
    for (let i = 0; i < 100 && !(got = await req('/db/batched')).json?.b; i++) await new Promise((x) => setTimeout(x, 10));
    assert.equal(got.json.b, 1);
  });

  test('POST /db creates with a server id or the given _id; needs JSON', async () => {
    let r = await req('/db', { method: 'POST', headers: J, body: '{"p":1}' });
    assert.equal(r.status, 201);
    assert.match(r.json.id, /^[0-9a-f]{32}$/);
    assert.match(r.headers.get('location'), new RegExp(`/db/${r.json.id}$`));
    r = await req('/db', { method: 'POST', headers: J, body: '{"_id":"posted","p":2}' });
    assert.equal(r.json.id, 'posted');
    r = await req('/db', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{"p":1}' });
    assert.equal(r.status, 415);
    assert.equal(r.json.error, 'bad_content_type');
    r = await req('/db?batch=ok', { method: 'POST', headers: J, body: '{"_id":"postbatch"}' });
    assert.equal(r.status, 202);
    assert.equal(r.json.id, 'postbatch');
  });

  test('design documents: both URL forms, other ids with underscores refused', async () => {
    let r = await put('/db/_design/app', { views: {} });
    assert.equal(r.status, 201);
    assert.equal(r.json.id, '_design/app');
    r = await req('/db/_design%2Fapp');
    assert.equal(r.json._id, '_design/app');
    r = await put('/db/_foo', { x: 1 });
    assert.equal(r.status, 404, 'not a document path: CouchDB has no such endpoint');
    r = await req('/db', { method: 'POST', headers: J, body: '{"_id":"_foo"}' });
    assert.deepEqual([r.status, r.json.error], [400, 'illegal_docid']);
    r = await req('/db', { method: 'POST', headers: J, body: '{"_id":"_design/"}' });
    assert.deepEqual([r.status, r.json.error], [400, 'illegal_docid']);
  });

  test('local documents: 0-N revs, not in changes counts, conflicts', async () => {
    const before = (await req('/db')).json;
    let r = await put('/db/_local/cp', { seq: 1 });
    assert.deepEqual([r.status, r.json], [201, { ok: true, id: '_local/cp', rev: '0-1' }]);
    r = await req('/db/_local/cp');
    assert.deepEqual(r.json, { _id: '_local/cp', _rev: '0-1', seq: 1 });
    r = await put('/db/_local/cp', { seq: 2 });
    assert.equal(r.status, 409);
    r = await put('/db/_local/cp', { _rev: '0-1', seq: 2 });
    assert.equal(r.json.rev, '0-2');
    r = await req('/db/_local%2Fcp');
    assert.equal(r.json.seq, 2);
    const after = (await req('/db')).json;
    assert.equal(after.doc_count, before.doc_count);
    assert.equal(after.update_seq, before.update_seq);
    r = await put('/db/_local/cp', { _rev: '0-x', seq: 3 });
    assert.deepEqual([r.status, r.json.reason], [400, 'Invalid rev format']);
    r = await req('/db/_bulk_docs', { method: 'POST', headers: J, body: '{"docs":[{"_id":"_local/cp","_rev":"1-abc"}]}' });
    assert.equal(r.status, 400, 'local docs take 0-N revs only');
    r = await req('/db/_local/cp?rev=0-2', { method: 'DELETE' });
    assert.equal(r.status, 200);
    assert.equal((await req('/db/_local/cp')).status, 404);
  });

  test('COPY to a new id and over an existing rev', async () => {
    const src = await put('/db/copysrc', { c: 1 });
    let r = await req('/db/copysrc', { method: 'COPY', headers: { Destination: 'copydst' } });
    assert.equal(r.status, 201);
    assert.equal(r.json.id, 'copydst');
    assert.deepEqual((await req('/db/copydst')).json.c, 1);
    r = await req('/db/copysrc', { method: 'COPY', headers: { Destination: 'copydst' } });
    assert.equal(r.status, 409);
    r = await req('/db/copysrc', { method: 'COPY', headers: { Destination: `copydst?rev=${r.json.rev ?? (await req('/db/copydst')).json._rev}` } });
    assert.equal(r.status, 201);
    assert.match(r.json.rev, /^2-/);
    r = await req(`/db/copysrc?rev=${src.json.rev}`, { method: 'COPY', headers: { Destination: 'copy%20space' } });
    assert.equal(r.json.id, 'copy space');
    r = await req('/db/copysrc', { method: 'COPY' });
    assert.equal(r.status, 400);
    r = await req('/db/nosrc', { method: 'COPY', headers: { Destination: 'x' } });
    assert.equal(r.status, 404);
  });

  test('_bulk_docs: results in order, conflicts per doc, new_edits=false, local docs', async () => {
    let r = await req('/db/_bulk_docs', {
      method: 'POST', headers: J,
      body: JSON.stringify({ docs: [{ _id: 'b1', n: 1 }, { _id: 'b2' }, { _id: 'b1' }, { n: 4 }, { _id: '_local/bl' }] }),
    });
    assert.equal(r.status, 201);
    const res = r.json;
    assert.equal(res.length, 5);
    assert.deepEqual([res[0].ok, res[0].id], [true, 'b1']);
    assert.deepEqual(res[2], { id: 'b1', error: 'conflict', reason: 'Document update conflict.' });
    assert.match(res[3].id, /^[0-9a-f]{32}$/);
    assert.deepEqual(res[4], { ok: true, id: '_local/bl', rev: '0-1' });
    r = await req('/db/_bulk_docs', {
      method: 'POST', headers: J,
      body: JSON.stringify({ docs: [{ _id: 'b1', _rev: res[0].rev, _deleted: true }, { _id: 'b2', _rev: res[1].rev, v: 2 }] }),
    });
    assert.equal(r.json.length, 2);
    assert.ok(r.json.every((x) => x.ok));
    assert.equal((await req('/db/b1')).json.reason, 'deleted');
    r = await req('/db/_bulk_docs', {
      method: 'POST', headers: J,
      body: JSON.stringify({ new_edits: false, docs: [{ _id: 'rep', _rev: '1-abc', v: 1 }, { _id: 'rep', _rev: '1-abd', v: 2 }] }),
    });
    assert.deepEqual([r.status, r.json], [201, []]);
    assert.equal((await req('/db/rep')).json._rev, '1-abd');
    for (const [body, reason] of [
      ['{}', 'POST body must include `docs` parameter.'],
      ['{"docs":{}}', '`docs` parameter must be an array.'],
      ['{"docs":[],"new_edits":"no"}', '`new_edits` parameter must be a boolean.'],
    ]) {
      r = await req('/db/_bulk_docs', { method: 'POST', headers: J, body });
      assert.deepEqual([r.status, r.json.reason], [400, reason]);
    }
    const seq = await seqOf('db');
    r = await req('/db/_bulk_docs', { method: 'POST', headers: J, body: '{"docs":[{"_id":"ok1"},{"_id":"_bad"}]}' });
    assert.equal(r.status, 400, 'one malformed doc fails the request');
    assert.equal(await seqOf('db'), seq, 'and nothing was written');
    r = await req('/db/_bulk_docs', { method: 'POST', body: '{"docs":[]}' });
    assert.equal(r.status, 415);
    r = await req('/db/_bulk_docs');
    assert.equal(r.status, 405);
  });

  test('bad input: 4xx with CouchDB error bodies, nothing written, server keeps serving', async () => {
    const seq = await seqOf('db');
    const cases = [
      ['{"a":', 400, 'bad_request'],
      ['[1,2]', 400, 'bad_request'],
      ['"str"', 400, 'bad_request'],
      ['{"a":1} trailing', 400, 'bad_request'],
      ['{\'a\':1}', 400, 'bad_request'],
      ['{"a":"\\ud800"}', 400, 'bad_request'],
      ['{"_foo":1}', 400, 'doc_validation'],
      ['{"_deleted":"yes"}', 400, 'doc_validation'],
      ['{"_rev":"abc"}', 400, 'bad_request'],
      ['{"_rev":5}', 400, 'bad_request'],
      ['{"_attachments":{"_x":{"data":"AA=="}}}', 400, 'bad_request'],
      ['{"_attachments":{"a":{"data":"!!!"}}}', 400, 'bad_request'],
      ['{"_revisions":{"start":"x","ids":[]}}', 400, 'doc_validation'],
      [JSON.stringify({ big: 'x'.repeat(30000) }), 413, 'document_too_large'],
      ['['.repeat(100) + ']'.repeat(100), 400, 'bad_request'],
      [`{"a":${'['.repeat(70)}${']'.repeat(70)}}`, 400, 'bad_request'],
    ];
    for (const [body, status, error] of cases) {
      const r = await put('/db/badinput', body);
      assert.equal(r.status, status, body.slice(0, 60));
      assert.equal(r.json.error, error, body.slice(0, 60));
      assert.equal(typeof r.json.reason, 'string');
    }
    // invalid UTF-8 bytes in the body
    const raw = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    let r = await req('/db/badinput', { method: 'PUT', body: raw });
    assert.equal(r.status, 400);
    // a body over max_http_request_size
    r = await put('/db/badinput', JSON.stringify({ big: 'y'.repeat(300000) }));
    assert.equal(r.status, 413);
    assert.deepEqual(r.json, { error: 'too_large', reason: 'the request entity is too large' });
    assert.equal(await seqOf('db'), seq, 'nothing written');
    assert.equal((await req('/db/badinput')).status, 404);
    r = await req('/db/doc%ff', { method: 'PUT', body: '{}' });
    assert.equal(r.status, 400, 'id that is not UTF-8');
    assert.equal((await req('/')).status, 200);
  });

  test('conflicting writers: exactly one wins', async () => {
    const { json } = await put('/db/race', { n: 0 });
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => put('/db/race', { _rev: json.rev, n: i + 1 })));
    const codes = results.map((x) => x.status).sort();
    assert.equal(codes.filter((c) => c === 201).length, 1);
    assert.equal(codes.filter((c) => c === 409).length, 23);
    const winner = results.find((x) => x.status === 201).json.rev;
    assert.equal((await req('/db/race')).json._rev, winner);
    // concurrent creates of one new id: one wins too
    const creates = await Promise.all(Array.from({ length: 10 }, (_, i) => put('/db/race-new', { i })));
    assert.equal(creates.filter((x) => x.status === 201).length, 1);
  });

  test('64 concurrent writers on both event loops: every write acknowledged, server alive', async () => {
    // Regression: loops created on the main thread shared its h2o buffer
    // allocator and crashed once write completions woke two loops at once.
    const clients = Array.from({ length: 64 }, async (_, c) => {
      let ok = 0;
      for (let i = 0; i < 25; i++) {
        const r = await put(`/db/many-${c}-${i}`, { c, i });
        if (r.status === 201) ok++;
      }
      return ok;
    });
    const oks = await Promise.all(clients);
    assert.equal(oks.reduce((a, b) => a + b, 0), 64 * 25);
    const r = await req('/db/many-63-24');
    assert.equal(r.json.i, 24);
  });

  test('a stalled client does not block others', async () => {
    const u = new URL(srv.url);
    const sock = net.connect(Number(u.port), u.hostname);
    await new Promise((res) => sock.once('connect', res));
    sock.write(`PUT /db/stalled HTTP/1.1\r\nHost: x\r\nAuthorization: ${ADMIN_AUTH}\r\nContent-Length: 1000\r\n\r\n{"a":`);
    const t0 = Date.now();
    const r = await req('/db/doc1');
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 < 2000);
    sock.destroy();
  });
});

test('kill -9 keeps every acknowledged write', async () => {
  const dir = tempDir();
  let srv = await startServer({ dataDir: dir });
  await request(srv.url, '/crash', { method: 'PUT' });
  const acked = new Map();
  let stop = false;
  const writer = async (w) => {
    for (let i = 0; !stop; i++) {
      const id = `w${w}-${i}`;
      try {
        const r = await request(srv.url, `/crash/${id}`, { method: 'PUT', body: JSON.stringify({ w, i }) });
        if (r.status === 201) acked.set(id, r.json.rev);
      } catch {
        return; // the server is gone
      }
    }
  };
  const writers = Array.from({ length: 8 }, (_, w) => writer(w));
  await new Promise((res) => setTimeout(res, 700));
  srv.child.kill('SIGKILL');
  stop = true;
  await Promise.all(writers);
  await srv.stop();
  assert.ok(acked.size > 20, `some writes were acknowledged (${acked.size})`);
  srv = await startServer({ dataDir: dir });
  try {
    for (const [id, rev] of acked) {
      const r = await request(srv.url, `/crash/${id}`);
      assert.equal(r.status, 200, id);
      assert.equal(r.json._rev, rev);
    }
    const info = (await request(srv.url, '/crash')).json;
    assert.ok(info.doc_count >= acked.size);
  } finally {
    await srv.stop();
  }
});
