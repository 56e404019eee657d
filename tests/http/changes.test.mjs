// changes.test.mjs — GET/POST /{db}/_changes against a real divan: the
// exact bytes of every feed type (normal, longpoll, continuous/live,
// eventsource), since/limit/descending/pending, styles, include_docs,
// filters, seq_interval, heartbeats and timeouts, feeds woken by writes,
// deleted databases, server stop, and hundreds of waiting feeds at once.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { openFeed, request, startServer } from './helpers.mjs';

const J = { 'Content-Type': 'application/json' };

const row = (seq, id, revs, extra = {}) => JSON.stringify({ seq: String(seq), id, changes: revs.map((rev) => ({ rev })), ...extra });
const normalBody = (rows, lastSeq, pending) => `{"results":[\n${rows.join(',\r\n')}\n],\n"last_seq":"${lastSeq}","pending":${pending}}\n`;

describe('_changes', () => {
  let srv;
  const req = (p, init) => request(srv.url, p, init);
  const put = async (p, body) => {
    const r = await req(p, { method: 'PUT', headers: J, body: JSON.stringify(body) });
    assert.ok(r.status === 201 || r.status === 200, `${p}: ${r.status} ${r.text}`);
    return r.json;
  };
  // A database with docs a, b, c (seqs 1..3); returns their revs.
  const abc = async (db) => {
    assert.equal((await req(`/${db}`, { method: 'PUT' })).status, 201);
    const revs = {};
    for (const id of ['a', 'b', 'c']) revs[id] = (await put(`/${db}/${id}`, { v: id })).rev;
    return revs;
  };
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('normal feed: CouchDB 3\'s exact bytes, ETag, If-None-Match 304, HEAD', async () => {
    const revs = await abc('n1');
    let r = await req('/n1/_changes');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(r.text, normalBody([row(1, 'a', [revs.a]), row(2, 'b', [revs.b]), row(3, 'c', [revs.c])], 3, 0));
    const etag = r.headers.get('etag');
    assert.match(etag, /^"[0-9a-f]{32}"$/);
    r = await req('/n1/_changes', { headers: { 'If-None-Match': etag } });
    assert.equal(r.status, 304);
    assert.equal(r.text, '');
    await put('/n1/d', {});
    r = await req('/n1/_changes', { headers: { 'If-None-Match': etag } });
    assert.equal(r.status, 200);
    assert.notEqual(r.headers.get('etag'), etag);
    r = await req('/n1/_changes', { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
    // an empty database, and POST without a body answers like GET
    await req('/n0', { method: 'PUT' });
    r = await req('/n0/_changes');
    assert.equal(r.text, '{"results":[\n\n],\n"last_seq":"0","pending":0}\n');
    r = await req('/n0/_changes', { method: 'POST', headers: J });
    assert.equal(r.text, '{"results":[\n\n],\n"last_seq":"0","pending":0}\n');
  });

  test('since, limit and pending; since accepts CouchDB seq tokens and now', async () => {
    const revs = await abc('s1');
    let r = await req('/s1/_changes?limit=1');
    assert.equal(r.text, normalBody([row(1, 'a', [revs.a])], 1, 2));
    r = await req('/s1/_changes?since=1&limit=1');
    assert.equal(r.text, normalBody([row(2, 'b', [revs.b])], 2, 1));
    for (const since of ['2', '2-g1AAAAbogus', '%222%22', '"2"']) {
      r = await req(`/s1/_changes?since=${since}`);
      assert.deepEqual(r.json.results.map((x) => x.id), ['c'], since);
    }
    r = await req('/s1/_changes?limit=0');
    assert.equal(r.text, normalBody([], 0, 3));
    r = await req('/s1/_changes?since=now');
    assert.equal(r.text, normalBody([], 3, 0));
    // an update moves a document to the end of the feed
    const b2 = await put('/s1/b', { _rev: revs.b, v: 2 });
    r = await req('/s1/_changes');
    assert.deepEqual(r.json.results.map((x) => [x.seq, x.id, x.changes[0].rev]), [['1', 'a', revs.a], ['3', 'c', revs.c], ['4', 'b', b2.rev]]);
    assert.equal(r.json.last_seq, '4');
    // later parameters win, keys are case-insensitive (CouchDB lower-cases them)
    r = await req('/s1/_changes?since=0&Since=3');
    assert.deepEqual(r.json.results.map((x) => x.id), ['b']);
    r = await req('/s1/_changes?limit=1&LIMIT=2');
    assert.equal(r.json.results.length, 2);
  });

  test('descending with limit; since is ignored', async () => {
    const revs = await abc('d1');
    let r = await req('/d1/_changes?descending=true&limit=2&since=2');
    assert.equal(r.text, normalBody([row(3, 'c', [revs.c]), row(2, 'b', [revs.b])], 2, 1));
    r = await req('/d1/_changes?descending=true');
    assert.equal(r.text, normalBody([row(3, 'c', [revs.c]), row(2, 'b', [revs.b]), row(1, 'a', [revs.a])], 1, 0));
  });

  test('style=all_docs lists every leaf winner first; include_docs with conflicts', async () => {
    await req('/c1', { method: 'PUT' });
    await put('/c1/x?new_edits=false', { _id: 'x', _rev: '1-aaa', _revisions: { start: 1, ids: ['aaa'] }, v: 'low' });
    await put('/c1/x?new_edits=false', { _id: 'x', _rev: '2-bbb', _revisions: { start: 2, ids: ['bbb', 'zzz'] }, v: 'high' });
    let r = await req('/c1/_changes?style=all_docs');
    assert.equal(r.text, normalBody([row(2, 'x', ['2-bbb', '1-aaa'])], 2, 0));
    r = await req('/c1/_changes?style=main_only');
    assert.equal(r.text, normalBody([row(2, 'x', ['2-bbb'])], 2, 0));
    r = await req('/c1/_changes?include_docs=true&conflicts=true');
    assert.deepEqual(r.json.results[0].doc, { _id: 'x', _rev: '2-bbb', v: 'high', _conflicts: ['1-aaa'] });
    r = await req('/c1/_changes?include_docs=true');
    assert.deepEqual(r.json.results[0].doc, { _id: 'x', _rev: '2-bbb', v: 'high' });
  });

  test('include_docs with deleted documents: deleted:true and the tombstone', async () => {
    const revs = await abc('del1');
    const gone = await req(`/del1/b?rev=${revs.b}`, { method: 'DELETE' });
    assert.equal(gone.status, 200);
    const r = await req('/del1/_changes?include_docs=true&since=1');
    assert.equal(r.text, normalBody([
      row(3, 'c', [revs.c], { doc: { _id: 'c', _rev: revs.c, v: 'c' } }),
      row(4, 'b', [gone.json.rev], { deleted: true, doc: { _id: 'b', _rev: gone.json.rev, _deleted: true } }),
    ], 4, 0));
  });

  test('include_docs with attachments=true and att_encoding_info=true', async () => {
    await req('/att1', { method: 'PUT' });
    const plain = Buffer.from('hello changes');
    const gz = gzipSync(Buffer.from('x'.repeat(1000)));
    await put('/att1/d', {
      _attachments: {
        // not a compressible type: stored as sent (text/* would be gzipped)
        'p.txt': { content_type: 'application/octet-stream', data: plain.toString('base64') },
        'z.txt': { content_type: 'text/plain', encoding: 'gzip', length: 1000, data: gz.toString('base64') },
      },
    });
    let r = await req('/att1/_changes?include_docs=true');
    let atts = r.json.results[0].doc._attachments;
    assert.equal(atts['p.txt'].stub, true);
    assert.equal(atts['p.txt'].length, plain.length);
    assert.equal(atts['z.txt'].stub, true);
    assert.equal(atts['z.txt'].encoding, undefined);
    r = await req('/att1/_changes?include_docs=true&att_encoding_info=true');
    atts = r.json.results[0].doc._attachments;
    assert.equal(atts['z.txt'].encoding, 'gzip');
    assert.equal(atts['z.txt'].encoded_length, gz.length);
    assert.equal(atts['p.txt'].encoding, undefined);
    r = await req('/att1/_changes?include_docs=true&attachments=true');
    atts = r.json.results[0].doc._attachments;
    assert.equal(Buffer.from(atts['p.txt'].data, 'base64').toString(), 'hello changes');
    assert.equal(Buffer.from(atts['z.txt'].data, 'base64').toString(), 'x'.repeat(1000));
    assert.equal(atts['p.txt'].stub, undefined);
  });

  test('filter=_doc_ids from the query or a POST body; filter=_design', async () => {
    const revs = await abc('f1');
    const dd = await put('/f1/_design/app', { views: {} });
    let r = await req(`/f1/_changes?filter=_doc_ids&doc_ids=${encodeURIComponent('["c","a","nope","a"]')}`);
    assert.equal(r.text, normalBody([row(1, 'a', [revs.a]), row(3, 'c', [revs.c])], 4, 0));
    r = await req('/f1/_changes?filter=_doc_ids&since=1', { method: 'POST', headers: J, body: JSON.stringify({ doc_ids: ['a', 'c'] }) });
    assert.equal(r.text, normalBody([row(3, 'c', [revs.c])], 4, 0));
    r = await req('/f1/_changes?filter=_doc_ids&descending=true', { method: 'POST', headers: J, body: JSON.stringify({ doc_ids: ['a', 'c'] }) });
    assert.deepEqual(r.json.results.map((x) => x.id), ['c', 'a']);
    // beyond the lookup threshold the feed is a filtered by-seq scan: same rows
    const many = ['b', ...Array.from({ length: 1200 }, (_, i) => `none${i}`)];
    r = await req('/f1/_changes?filter=_doc_ids', { method: 'POST', headers: J, body: JSON.stringify({ doc_ids: many }) });
    assert.deepEqual(r.json.results.map((x) => x.id), ['b']);
    assert.equal(r.json.last_seq, '4');
    r = await req('/f1/_changes?filter=_design');
    assert.equal(r.text, normalBody([row(4, '_design/app', [dd.rev])], 4, 0));
    r = await req('/f1/_changes?filter=_design&since=4');
    assert.equal(r.text, normalBody([], 4, 0));
  });

  test('seq_interval: seqs only on every Nth row, counted as CouchDB does', async () => {
    await req('/q1', { method: 'PUT' });
    for (let i = 0; i < 6; i++) await put(`/q1/d${i}`, {});
    // without limit CouchDB counts down from 10^15, so with N=2 rows 1,3,5 keep theirs
    let r = await req('/q1/_changes?seq_interval=2');
    assert.deepEqual(r.json.results.map((x) => x.seq), ['1', null, '3', null, '5', null]);
    assert.equal(r.json.last_seq, '6');
    // 10^15 mod 3 = 1: the 2nd and 5th rows
    r = await req('/q1/_changes?seq_interval=3');
    assert.deepEqual(r.json.results.map((x) => x.seq), [null, '2', null, null, '5', null]);
    r = await req('/q1/_changes?seq_interval=2&limit=3');
    assert.deepEqual(r.json.results.map((x) => x.seq), [null, '2', null]);
    assert.equal(r.json.last_seq, '3');
    assert.match(r.text, /^\{"results":\[\n\{"seq":null,"id":"d0"/);
  });

  test('bad parameters get CouchDB\'s 4xx and nothing else', async () => {
    await abc('bad1');
    await put('/bad1/_design/nof', { views: { v: { map: 'function(d){}' } } });
    const dead = await put('/bad1/_design/dead', { filters: { f: 'function(d){return true;}' } });
    assert.equal((await req(`/bad1/_design/dead?rev=${dead.rev}`, { method: 'DELETE' })).status, 200);
    const cases = [
      ['heartbeat=0', 400, 'bad_request', 'The heartbeat value should be a positive integer (in milliseconds).'],
      ['heartbeat=-5', 400, 'bad_request', 'The heartbeat value should be a positive integer (in milliseconds).'],
      ['heartbeat=soon', 400, 'bad_request', 'Invalid heartbeat value. Expecting a positive integer value (in milliseconds).'],
      ['feed=sometimes', 400, 'bad_request', 'Supported `feed` types: normal, continuous, live, longpoll, eventsource'],
      ['since=yesterday', 400, 'bad_request', 'Malformed sequence supplied in \'since\' parameter.'],
      ['seq_interval=0', 400, 'bad_request', 'invalid_seq_interval'],
      ['seq_interval=x', 400, 'bad_request', 'invalid_seq_interval'],
      ['limit=ten', 400, 'query_parse_error'],
      ['timeout=later', 400, 'query_parse_error'],
      ['style=fancy', 400, 'bad_request'],
      ['filter=_nope', 400, 'bad_request', 'unknown builtin filter name'],
      ['filter=onlyone', 400, 'bad_request', '`filter` must be of the form `designname/filtername`'],
      ['filter=a/b/c', 400, 'bad_request', '`filter` must be of the form `designname/filtername`'],
      ['filter=missing/f', 404, 'not_found', 'missing'],
      ['filter=nof/f', 404, 'not_found', 'missing json key: filters'],
      ['filter=dead/f', 404, 'not_found', 'deleted'],
      ['filter=_doc_ids', 400, 'bad_request', '`doc_ids` filter parameter is not a list of doc ids.'],
      ['filter=_doc_ids&doc_ids=%7B%7D', 400, 'bad_request', '`doc_ids` filter parameter is not a list of doc ids.'],
      ['filter=_doc_ids&doc_ids=%5B1%5D', 400, 'bad_request', '`doc_ids` filter parameter is not a list of doc ids.'],
      ['filter=_selector', 400, 'bad_request', 'Selector must be specified in POST payload'],
      ['filter=_view', 400, 'bad_request', '`view` filter parameter is not provided.'],
      ['filter=_view&view=novid', 400, 'bad_request', '`view` must be of the form `designname/viewname`'],
      ['filter=_view&view=missing/v', 404, 'not_found', 'missing'],
      ['filter=_view&view=nof/w', 404, 'not_found', 'missing json key: w'],
    ];
    for (const [qs, status, error, reason] of cases) {
      const r = await req(`/bad1/_changes?${qs}`);
      assert.equal(r.status, status, qs);
      assert.equal(r.json.error, error, qs);
      if (reason) assert.equal(r.json.reason, reason, qs);
    }
    let r = await req('/bad1/_changes?filter=_doc_ids', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{}' });
    assert.equal(r.status, 415);
    r = await req('/bad1/_changes', { method: 'POST', headers: J, body: '[1]' });
    assert.equal(r.status, 400);
    r = await req('/bad1/_changes', { method: 'POST', headers: J, body: '{nope' });
    assert.equal(r.status, 400);
    r = await req('/bad1/_changes', { method: 'PUT' });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'GET,POST,HEAD');
    r = await req('/nosuchdb/_changes');
    assert.deepEqual([r.status, r.json], [404, { error: 'not_found', reason: 'Database does not exist.' }]);
  });

  test('longpoll answers at once when there are changes, else waits for a write', async () => {
    const revs = await abc('lp1');
    let r = await req('/lp1/_changes?feed=longpoll&since=1');
    assert.equal(r.text, normalBody([row(2, 'b', [revs.b]), row(3, 'c', [revs.c])], 3, 0));
    assert.equal(r.headers.get('etag'), null);
    const feed = openFeed(srv.url, '/lp1/_changes?feed=longpoll&since=now');
    // CouchDB sends a newline before it waits: the headers are out
    await feed.until((f) => f.text === '{"results":[\n\n');
    assert.equal(feed.status, 200);
    assert.equal(feed.done, false);
    const d = await put('/lp1/d', { late: true });
    await feed.ended;
    assert.equal(feed.text, `{"results":[\n\n${row(4, 'd', [d.rev])}\n],\n"last_seq":"4","pending":0}\n`);
  });

  test('longpoll ends empty at its timeout', async () => {
    await abc('lp2');
    const r = await req('/lp2/_changes?feed=longpoll&since=now&timeout=150');
    assert.equal(r.text, '{"results":[\n\n\n],\n"last_seq":"3","pending":0}\n');
  });

  test('continuous: old rows, live writes, newline heartbeats', async () => {
    const revs = await abc('ct1');
    const feed = openFeed(srv.url, '/ct1/_changes?feed=continuous&heartbeat=50&since=1');
    const old = `${row(2, 'b', [revs.b])}\n${row(3, 'c', [revs.c])}\n`;
    await feed.until((f) => f.text.startsWith(old));
    assert.equal(feed.headers['content-type'], 'application/json');
    const d = await put('/ct1/d', {});
    await feed.until((f) => f.text.includes(`${row(4, 'd', [d.rev])}\n`));
    const tail = () => feed.text.slice(feed.text.indexOf(row(4, 'd', [d.rev])) + row(4, 'd', [d.rev]).length + 1);
    await feed.until(() => /^\n\n/.test(tail()));
    assert.match(tail(), /^\n+$/, 'heartbeats are bare newlines');
    const e = await put('/ct1/e', {});
    await feed.until((f) => f.text.includes(`${row(5, 'e', [e.rev])}\n`));
    assert.equal(feed.done, false);
    feed.close();
  });

  test('continuous ends at its timeout with last_seq and pending; live is its alias; limit ends it', async () => {
    const revs = await abc('ct2');
    let feed = openFeed(srv.url, '/ct2/_changes?feed=continuous&timeout=100&since=2');
    await feed.ended;
    assert.equal(feed.text, `${row(3, 'c', [revs.c])}\n{"last_seq":"3","pending":0}\n`);
    feed = openFeed(srv.url, '/ct2/_changes?feed=live&timeout=100&since=now');
    await feed.ended;
    assert.equal(feed.text, '\n{"last_seq":"3","pending":0}\n');
    feed = openFeed(srv.url, '/ct2/_changes?feed=continuous&limit=2');
    await feed.ended;
    assert.equal(feed.text, `${row(1, 'a', [revs.a])}\n${row(2, 'b', [revs.b])}\n{"last_seq":"2","pending":1}\n`);
    // heartbeat=true is CouchDB's 60 s: accepted, and a write still arrives
    feed = openFeed(srv.url, '/ct2/_changes?feed=continuous&heartbeat=true&since=now');
    await feed.until((f) => f.text === '\n');
    const d = await put('/ct2/d', {});
    await feed.until((f) => f.text === `\n${row(4, 'd', [d.rev])}\n`);
    feed.close();
  });

  test('eventsource framing, heartbeat events, Last-Event-ID', async () => {
    const revs = await abc('es1');
    let feed = openFeed(srv.url, '/es1/_changes?feed=eventsource&since=1&heartbeat=50');
    const ev = (seq, id, rev) => `data: ${row(seq, id, [rev])}\nid: "${seq}"\n\n`;
    await feed.until((f) => f.text.startsWith(ev(2, 'b', revs.b) + ev(3, 'c', revs.c)));
    assert.equal(feed.headers['content-type'], 'text/event-stream');
    assert.equal(feed.headers['cache-control'], 'no-cache');
    await feed.until((f) => f.text.includes('event: heartbeat\ndata: \n\n'));
    const d = await put('/es1/d', {});
    await feed.until((f) => f.text.includes(ev(4, 'd', d.rev)));
    feed.close();
    // a reconnecting browser's Last-Event-ID wins over since
    feed = openFeed(srv.url, '/es1/_changes?feed=eventsource&since=0&timeout=50', { headers: { 'Last-Event-ID': '"3"' } });
    await feed.ended;
    assert.equal(feed.text, ev(4, 'd', d.rev));
  });

  test('a long feed streams in parts and stays exact', async () => {
    await req('/big1', { method: 'PUT' });
    const docs = Array.from({ length: 3000 }, (_, i) => ({ _id: `doc${String(i).padStart(5, '0')}`, pad: 'p'.repeat(50) }));
    const w = await req('/big1/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs }) });
    assert.equal(w.status, 201);
    const feed = openFeed(srv.url, '/big1/_changes?include_docs=true');
    await feed.until((f) => f.done, 20000);
    const body = JSON.parse(feed.text);
    assert.equal(body.results.length, 3000);
    assert.deepEqual(body.results.map((x) => x.id), docs.map((d) => d._id));
    assert.ok(body.results.every((x, i) => x.seq === String(i + 1) && x.doc.pad === docs[i].pad));
    assert.equal(body.last_seq, '3000');
    const lim = await req('/big1/_changes?limit=2500&since=100');
    assert.equal(lim.json.results.length, 2500);
    assert.equal(lim.json.last_seq, '2600');
    assert.equal(lim.json.pending, 400);
  });
});

// A server of its own: the counts of open feeds are exact here.
describe('_changes: open feeds, deleted databases, scale, stop', () => {
  let srv;
  const req = (p, init) => request(srv.url, p, init);
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('deleting the database ends a waiting feed; open feeds are counted', async () => {
    assert.equal((await req('/gone1', { method: 'PUT' })).status, 201);
    for (const id of ['a', 'b', 'c']) assert.equal((await req(`/gone1/${id}`, { method: 'PUT', headers: J, body: '{}' })).status, 201);
    const stat = async () => (await req('/_node/_local/_stats/couchdb/httpd/clients_requesting_changes')).json.value;
    const before = await stat();
    assert.equal(before, 0);
    const feed = openFeed(srv.url, '/gone1/_changes?feed=continuous&since=now&heartbeat=60000');
    const lp = openFeed(srv.url, '/gone1/_changes?feed=longpoll&since=now');
    await feed.until((f) => f.text === '\n');
    await lp.until((f) => f.text === '{"results":[\n\n');
    assert.equal(await stat(), before + 2);
    assert.equal((await req('/gone1', { method: 'DELETE' })).status, 200);
    await feed.ended;
    await lp.ended;
    assert.equal(feed.text, '\n{"last_seq":"3","pending":0}\n');
    assert.equal(lp.text, '{"results":[\n\n\n],\n"last_seq":"3","pending":0}\n');
    // a finished request is released just after its last byte is written
    for (let i = 0; i < 100 && await stat() !== before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await stat(), before);
  });

  test('hundreds of open continuous feeds: all get the write, the server stays responsive, few threads, stop ends them', async () => {
    assert.equal((await req('/many', { method: 'PUT' })).status, 201);
    const N = 300;
    const feeds = [];
    for (let i = 0; i < N; i++) feeds.push(openFeed(srv.url, '/many/_changes?feed=continuous&since=now'));
    await Promise.all(feeds.map((f) => f.until((x) => x.text === '\n', 20000)));
    const stat = await req('/_node/_local/_stats/couchdb/httpd/clients_requesting_changes');
    assert.equal(stat.json.value, N);
    const status = readFileSync(`/proc/${srv.child.pid}/status`, 'utf8');
    const threads = Number(/^Threads:\s+(\d+)$/m.exec(status)[1]);
    assert.ok(threads < 20, `divan runs ${threads} threads with ${N} feeds open`);
    // a normal request is answered while every feed waits
    let r = await req('/many');
    assert.equal(r.status, 200);
    const d = await req('/many/one', { method: 'PUT', headers: J, body: '{"x":1}' });
    assert.equal(d.status, 201);
    const line = `${JSON.stringify({ seq: '1', id: 'one', changes: [{ rev: d.json.rev }] })}\n`;
    await Promise.all(feeds.map((f) => f.until((x) => x.text === `\n${line}`, 20000)));
    r = await req('/many/_changes');
    assert.equal(r.json.results.length, 1);
    // a stop ends every waiting feed with its last line, then the process exits 0
    const stopped = srv.stop();
    await Promise.all(feeds.map((f) => f.ended));
    for (const f of feeds) assert.equal(f.text, `\n${line}{"last_seq":"1","pending":0}\n`);
    assert.equal((await stopped).code, 0);
  });
});
