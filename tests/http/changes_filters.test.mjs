// changes_filters.test.mjs — _changes?filter={ddoc}/{name} (JavaScript
// filter functions and CouchDB's req object) and filter=_view against a
// real divan with its real query server: exact rows of every feed type,
// since/limit/pending, include_docs, style=all_docs, errors (missing design
// document or function, a function that throws before and after the
// response started), feeds woken only by matching writes, heartbeats while
// nothing passes, an edited filter, clients that leave while a batch is
// being judged, and a stop with filtered feeds open.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openFeed, request, startServer, tempDir } from './helpers.mjs';

const J = { 'Content-Type': 'application/json' };
const row = (seq, id, revs, extra = {}) => JSON.stringify({ seq: String(seq), id, changes: revs.map((rev) => ({ rev })), ...extra });
const normalBody = (rows, lastSeq, pending) => `{"results":[\n${rows.join(',\r\n')}\n],\n"last_seq":"${lastSeq}","pending":${pending}}\n`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const APP = {
  filters: {
    even: 'function(doc, req) { return doc.n % 2 === 0; }',
    byq: 'function(doc, req) { return doc.n === Number(req.query.n); }',
    // each document carries a check of the req object
    req: 'function(doc, req) { return doc.expr ? !!eval(doc.expr) : false; }',
    boom: 'function(doc, req) { if (doc.bad) throw new Error("boom " + doc._id); return true; }',
    tagged: 'function(doc, req) { return doc.tag === "yes"; }',
    deleted: 'function(doc, req) { return doc._deleted === true; }',
    spin: 'function(doc, req) { var t = Date.now(); while (Date.now() - t < 300) {} return true; }',
  },
  views: {
    odd: { map: 'function(doc) { if (doc.n % 2 === 1) emit(doc.n, null); }' },
    throws: { map: 'function(doc) { if (doc.n === 3) throw new Error("no three"); emit(1); }' },
  },
};

describe('_changes filters', () => {
  let srv;
  const req = (p, init) => request(srv.url, p, init);
  const put = async (p, body) => {
    const r = await req(p, { method: 'PUT', headers: J, body: JSON.stringify(body) });
    assert.ok(r.status === 201 || r.status === 200, `${p}: ${r.status} ${r.text}`);
    return r.json;
  };
  // A database with _design/app (seq 1) and docs d1..dN with n = i.
  const numbered = async (db, n) => {
    assert.equal((await req(`/${db}`, { method: 'PUT' })).status, 201);
    await put(`/${db}/_design/app`, APP);
    const revs = {};
    for (let i = 1; i <= n; i++) revs[`d${i}`] = (await put(`/${db}/d${i}`, { n: i })).rev;
    return revs;
  };
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('a JavaScript filter by a document field: exact rows, since, limit, pending, include_docs', async () => {
    const revs = await numbered('fa', 6); // seqs: ddoc 1, d1..d6 = 2..7
    let r = await req('/fa/_changes?filter=app/even');
    assert.equal(r.status, 200);
    assert.equal(r.text, normalBody([row(3, 'd2', [revs.d2]), row(5, 'd4', [revs.d4]), row(7, 'd6', [revs.d6])], 7, 0));
    r = await req('/fa/_changes?filter=app/even&since=3');
    assert.equal(r.text, normalBody([row(5, 'd4', [revs.d4]), row(7, 'd6', [revs.d6])], 7, 0));
    // limit counts rows that passed; last_seq is the last row's, pending what follows it
    r = await req('/fa/_changes?filter=app/even&limit=2');
    assert.equal(r.text, normalBody([row(3, 'd2', [revs.d2]), row(5, 'd4', [revs.d4])], 5, 2));
    r = await req('/fa/_changes?filter=app/even&limit=1&descending=true');
    assert.equal(r.text, normalBody([row(7, 'd6', [revs.d6])], 7, 6));
    r = await req('/fa/_changes?filter=app/even&include_docs=true&since=5');
    assert.deepEqual(r.json.results, [{ seq: '7', id: 'd6', changes: [{ rev: revs.d6 }], doc: { _id: 'd6', _rev: revs.d6, n: 6 } }]);
    // POST takes the same query parameters
    r = await req('/fa/_changes?filter=app/even&since=5', { method: 'POST', headers: J, body: '{}' });
    assert.equal(r.text, normalBody([row(7, 'd6', [revs.d6])], 7, 0));
  });

  test('filters see the query parameters, deleted documents, and more batches than one', async () => {
    assert.equal((await req('/fb', { method: 'PUT' })).status, 201);
    await put('/fb/_design/app', APP);
    const docs = [];
    for (let i = 1; i <= 250; i++) docs.push({ _id: `k${String(i).padStart(3, '0')}`, n: i });
    assert.equal((await req('/fb/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs }) })).status, 201);
    let r = await req('/fb/_changes?filter=app/byq&n=217');
    assert.deepEqual(r.json.results.map((x) => x.id), ['k217']);
    assert.equal(r.json.last_seq, '251');
    r = await req('/fb/_changes?filter=app/even');
    assert.equal(r.json.results.length, 125);
    const d = await req('/fb/k010');
    const del = await req(`/fb/k010?rev=${d.json._rev}`, { method: 'DELETE' });
    r = await req('/fb/_changes?filter=app/deleted');
    assert.deepEqual(r.json.results, [{ seq: '252', id: 'k010', changes: [{ rev: del.json.rev }], deleted: true }]);
  });

  test('req: info, uuid, id, method, paths, query, headers, body, peer, form, cookie, userCtx, secObj', async () => {
    assert.equal((await req('/freq', { method: 'PUT' })).status, 201);
    await put('/freq/_security', { members: { names: ['bob'], roles: [] } });
    await put('/freq/_design/app', APP);
    const checks = {
      info: 'req.info.db_name === "freq" && typeof req.info.update_seq === "string" && req.info.doc_count >= 1',
      uuid: 'typeof req.uuid === "string" && /^[0-9a-f]{32}$/.test(req.uuid)',
      id: 'req.id === null',
      method: 'req.method === "GET"',
      requested_path: 'JSON.stringify(req.requested_path) === \'["freq","_changes"]\'',
      path: 'JSON.stringify(req.path) === \'["freq","_changes"]\'',
      raw_path: 'req.raw_path === "/freq/_changes?filter=app/req&startkey=%5B1%2C%22a%22%5D&color=blue"',
      query: 'req.query.filter === "app/req" && req.query.color === "blue" && req.query.startkey[1] === "a"',
      headers: 'req.headers["X-Test"] === "yes" && req.headers.Host.indexOf("127.0.0.1:") === 0',
      body: 'req.body === "undefined"',
      peer: 'req.peer === "127.0.0.1"',
      form: 'JSON.stringify(req.form) === "{}"',
      cookie: 'req.cookie.flavour === "oat" && req.cookie.kind === "soft one"',
      userCtx: 'req.userCtx.db === "freq" && req.userCtx.name === null && req.userCtx.roles.length === 0',
      secObj: 'req.secObj.members.names[0] === "bob"',
      this: 'this._id === "_design/app" && typeof this.filters.req === "string"',
      revisions: 'doc._revisions.start === 1 && doc._revisions.ids.length === 1',
    };
    for (const [id, expr] of Object.entries(checks)) await put(`/freq/${id}`, { expr });
    const r = await req('/freq/_changes?filter=app/req&startkey=%5B1%2C%22a%22%5D&color=blue', {
      headers: { 'X-Test': 'yes', Cookie: 'flavour=oat; kind="soft one"' },
    });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.results.map((x) => x.id).sort(), Object.keys(checks).sort());
    // a POST's body is the text sent
    await put('/freq/post', { expr: 'req.method === "POST" && JSON.parse(req.body).x === 1 && req.headers["Content-Length"] === "7"' });
    const p = await req('/freq/_changes?filter=app/req&since=now', { method: 'POST', headers: J, body: '{"x":1}' });
    assert.equal(p.status, 200);
    const q = await req(`/freq/_changes?filter=app/req&since=${Number(p.json.last_seq) - 1}`, { method: 'POST', headers: J, body: '{"x":1}' });
    assert.deepEqual(q.json.results.map((x) => x.id), ['post']);
    // a bad JSON value in a key parameter is the client's error
    const bad = await req('/freq/_changes?filter=app/req&key=%7Bnope');
    assert.deepEqual([bad.status, bad.json.error], [400, 'bad_request']);
  });

  test('missing design documents and functions: CouchDB\'s 404s', async () => {
    await numbered('fm', 1);
    await put('/fm/_design/nof', { views: { v: { map: 'function(doc) {}' } } });
    const cases = [
      ['filter=nope/even', 'missing'],
      ['filter=nof/even', 'missing json key: filters'],
      ['filter=app/nope', 'missing json key: nope'],
      ['filter=_view&view=nope/odd', 'missing'],
      ['filter=_view&view=app/nope', 'missing json key: nope'],
    ];
    for (const [qs, reason] of cases) {
      const r = await req(`/fm/_changes?${qs}`);
      assert.deepEqual([r.status, r.json], [404, { error: 'not_found', reason }], qs);
    }
  });

  test('a function that throws: 500 before the response started, a last error line after', async () => {
    await numbered('fx', 3);
    await put('/fx/bad1', { bad: true });
    let r = await req('/fx/_changes?filter=app/boom');
    assert.equal(r.status, 500);
    assert.equal(r.json.error, 'Error');
    assert.match(r.json.reason, /boom bad1/);
    r = await req('/fx/_changes?filter=_view&view=app/throws');
    assert.equal(r.status, 500);
    assert.match(r.json.reason, /no three/);
    // rows already sent: the feed ends with CouchDB's chunked error line
    const docs = [];
    for (let i = 0; i < 150; i++) docs.push({ _id: `ok${String(i).padStart(3, '0')}` });
    docs.push({ _id: 'zbad', bad: true });
    assert.equal((await req('/fx/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs }) })).status, 201);
    r = await req('/fx/_changes?filter=app/boom&since=5');
    assert.equal(r.status, 200);
    assert.ok(r.text.startsWith('{"results":[\n{"seq":"6","id":"ok000"'), r.text.slice(0, 80));
    const last = r.text.trimEnd().split('\n').pop();
    assert.deepEqual(JSON.parse(last), { code: 500, error: 'Error', reason: 'Error: boom zbad' });
    // the server goes on
    r = await req('/fx/_changes?filter=app/even');
    assert.deepEqual(r.json.results.map((x) => x.id), ['d2']);
  });

  test('filter=_view: a change passes when the map emits', async () => {
    const revs = await numbered('fv', 5);
    let r = await req('/fv/_changes?filter=_view&view=app/odd');
    assert.equal(r.text, normalBody([row(2, 'd1', [revs.d1]), row(4, 'd3', [revs.d3]), row(6, 'd5', [revs.d5])], 6, 0));
    r = await req('/fv/_changes?filter=_view&view=app/odd&limit=1&include_docs=true');
    assert.deepEqual(r.json, { results: [{ seq: '2', id: 'd1', changes: [{ rev: revs.d1 }], doc: { _id: 'd1', _rev: revs.d1, n: 1 } }], last_seq: '2', pending: 4 });
  });

  test('style=all_docs judges every leaf alone; main_only the winner, which sees _conflicts', async () => {
    assert.equal((await req('/fc', { method: 'PUT' })).status, 201);
    await put('/fc/_design/app', {
      filters: {
        tagged: APP.filters.tagged,
        conflicted: 'function(doc) { return !!doc._conflicts; }',
      },
    });
    const docs = [
      { _id: 'c', _rev: '1-aaa', tag: 'yes' },
      { _id: 'c', _rev: '1-bbb', tag: 'no' },
    ];
    assert.equal((await req('/fc/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs, new_edits: false }) })).status, 201);
    let r = await req('/fc/_changes?filter=app/tagged&style=all_docs');
    assert.deepEqual(r.json.results, [{ seq: '3', id: 'c', changes: [{ rev: '1-aaa' }] }]);
    r = await req('/fc/_changes?filter=app/tagged'); // the winner is 1-bbb, tagged no
    assert.deepEqual(r.json.results, []);
    r = await req('/fc/_changes?filter=app/conflicted');
    assert.deepEqual(r.json.results, [{ seq: '3', id: 'c', changes: [{ rev: '1-bbb' }] }]);
    r = await req('/fc/_changes?filter=app/conflicted&style=all_docs');
    assert.deepEqual(r.json.results, []);
  });

  test('longpoll is woken by a matching write, not by another', async () => {
    await numbered('fl', 2);
    const feed = openFeed(srv.url, '/fl/_changes?feed=longpoll&since=now&filter=app/even');
    await feed.until((f) => f.text === '{"results":[\n\n');
    await put('/fl/d3', { n: 3 });
    await sleep(300);
    assert.equal(feed.done, false);
    const d4 = await put('/fl/d4', { n: 4 });
    await feed.ended;
    assert.equal(feed.text, `{"results":[\n\n${row(5, 'd4', [d4.rev])}\n],\n"last_seq":"5","pending":0}\n`);
    // and a view filter
    const v = openFeed(srv.url, '/fl/_changes?feed=longpoll&since=now&filter=_view&view=app/odd');
    await v.until((f) => f.text === '{"results":[\n\n');
    await put('/fl/d6', { n: 6 });
    await sleep(200);
    assert.equal(v.done, false);
    const d7 = await put('/fl/d7', { n: 7 });
    await v.ended;
    assert.equal(v.text, `{"results":[\n\n${row(7, 'd7', [d7.rev])}\n],\n"last_seq":"7","pending":0}\n`);
  });

  test('continuous: old and live rows that pass, heartbeats while nothing does; eventsource', async () => {
    const revs = await numbered('fk', 2);
    const feed = openFeed(srv.url, '/fk/_changes?feed=continuous&filter=app/even&heartbeat=100');
    const first = `${row(3, 'd2', [revs.d2])}\n`;
    await feed.until((f) => f.text.startsWith(first));
    const hb = feed.text.length;
    await put('/fk/d5', { n: 5 });
    await feed.until((f) => f.text.length >= hb + 2); // at least two heartbeats, no row
    assert.match(feed.text.slice(first.length), /^\n+$/);
    const d6 = await put('/fk/d6', { n: 6 });
    await feed.until((f) => f.text.includes(row(5, 'd6', [d6.rev])));
    feed.close();
    await feed.ended;
    const es = openFeed(srv.url, '/fk/_changes?feed=eventsource&filter=app/even&timeout=300');
    await es.ended;
    assert.equal(es.headers['content-type'], 'text/event-stream');
    assert.equal(es.text, `data: ${row(3, 'd2', [revs.d2])}\nid: "3"\n\ndata: ${row(5, 'd6', [d6.rev])}\nid: "5"\n\n`);
  });

  test('an edited filter applies from the next pass', async () => {
    await numbered('fe', 1);
    const feed = openFeed(srv.url, '/fe/_changes?feed=continuous&since=now&filter=app/tagged');
    await feed.until((f) => f.text === '\n');
    const a = await put('/fe/a', { tag: 'yes' });
    await feed.until((f) => f.text.includes('"id":"a"'));
    const ddoc = (await req('/fe/_design/app')).json;
    await put('/fe/_design/app', { ...ddoc, filters: { ...ddoc.filters, tagged: 'function(doc) { return doc.tag === "new"; }' } });
    await put('/fe/b', { tag: 'yes' });
    const c = await put('/fe/c', { tag: 'new' });
    await feed.until((f) => f.text.includes('"id":"c"'));
    assert.equal(feed.text, `\n${row(3, 'a', [a.rev])}\n${row(6, 'c', [c.rev])}\n`);
    feed.close();
    await feed.ended;
  });

  test('clients that leave while a batch is judged cost nothing after', async () => {
    await numbered('fq', 3);
    const feeds = [];
    for (let i = 0; i < 5; i++) feeds.push(openFeed(srv.url, '/fq/_changes?feed=continuous&filter=app/spin'));
    await sleep(100);
    for (const f of feeds) f.close();
    await Promise.all(feeds.map((f) => f.ended));
    const r = await req('/fq/_changes?filter=app/even');
    assert.deepEqual(r.json.results.map((x) => x.id), ['d2']);
    await sleep(1500); // the abandoned batches finish on their workers
    const s = await req('/fq/_changes?filter=app/even&since=2');
    assert.equal(s.status, 200);
  });
});

describe('_changes filters: slow and endless functions', () => {
  // os_process_timeout 500 ms keeps these quick
  let srv;
  let cfgDir;
  const req = (p, init) => request(srv.url, p, init);
  before(async () => {
    cfgDir = tempDir('divan-cfg-');
    const ini = path.join(cfgDir, 'short.ini');
    // one event loop: a loop blocked by a filter would stall every request
    writeFileSync(ini, '[couchdb]\nos_process_timeout = 500\n[divan]\nhttp_threads = 1\n');
    srv = await startServer({ args: ['--config', ini] });
  });
  after(async () => {
    await srv.stop();
    rmSync(cfgDir, { recursive: true, force: true });
  });

  test('the deadline is per document, as CouchDB\'s: a batch over it goes again one by one', async () => {
    assert.equal((await req('/slow', { method: 'PUT' })).status, 201);
    const ddoc = {
      filters: {
        slow: 'function(doc) { var t = Date.now(); while (Date.now() - t < 40) {} return doc.n % 2 === 0; }',
        endless: 'function(doc) { while (true) {} }',
      },
    };
    assert.equal((await req('/slow/_design/app', { method: 'PUT', headers: J, body: JSON.stringify(ddoc) })).status, 201);
    const docs = [];
    for (let i = 1; i <= 30; i++) docs.push({ _id: `s${String(i).padStart(2, '0')}`, n: i });
    assert.equal((await req('/slow/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs }) })).status, 201);
    const slow = req('/slow/_changes?filter=app/slow');
    await sleep(100);
    const t0 = Date.now();
    assert.equal((await req('/slow')).status, 200); // the loop answers while the filter runs
    assert.ok(Date.now() - t0 < 300, `GET /slow took ${Date.now() - t0} ms during a filtered feed`);
    let r = await slow;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.results.length, 15);
    r = await req('/slow/_changes?filter=app/endless');
    assert.equal(r.status, 500);
  });

  test('a stop while an endless filter runs: its feed ends, the process exits 0 within a deadline or so', async () => {
    const feed = openFeed(srv.url, '/slow/_changes?feed=continuous&filter=app/endless');
    await sleep(100); // its first batch is on a worker, its response not started
    const t0 = Date.now();
    const stopped = await srv.stop();
    await feed.ended;
    assert.equal(stopped.code, 0);
    assert.equal(feed.status, 200);
    assert.equal(feed.text, '{"last_seq":"0","pending":31}\n');
    assert.ok(Date.now() - t0 < 3000, `stop took ${Date.now() - t0} ms`);
  });
});

describe('_changes filters: stop', () => {
  test('feeds with filters end promptly when the server stops', async () => {
    const srv = await startServer();
    const req = (p, init) => request(srv.url, p, init);
    assert.equal((await req('/fs', { method: 'PUT' })).status, 201);
    const ddoc = { filters: { all: 'function(doc) { return true; }' }, views: { v: { map: 'function(doc) { emit(1); }' } } };
    assert.equal((await req('/fs/_design/app', { method: 'PUT', headers: J, body: JSON.stringify(ddoc) })).status, 201);
    const a = (await req('/fs/a', { method: 'PUT', headers: J, body: '{}' })).json;
    const c = openFeed(srv.url, '/fs/_changes?feed=continuous&filter=app/all&since=1');
    const l = openFeed(srv.url, '/fs/_changes?feed=longpoll&filter=_view&view=app/v&since=now');
    await c.until((f) => f.text.includes('"id":"a"'));
    await l.until((f) => f.text === '{"results":[\n\n');
    const t0 = Date.now();
    const stopped = srv.stop();
    await Promise.all([c.ended, l.ended]);
    assert.equal(c.text, `${row(2, 'a', [a.rev])}\n{"last_seq":"2","pending":0}\n`);
    assert.equal(l.text, '{"results":[\n\n\n],\n"last_seq":"2","pending":0}\n');
    assert.equal((await stopped).code, 0);
    assert.ok(Date.now() - t0 < 3000, `stop took ${Date.now() - t0} ms`);
  });
});
