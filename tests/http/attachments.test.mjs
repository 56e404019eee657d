// attachments.test.mjs — attachments against a real divan, as CouchDB
// clients see them: inline base64 data and stubs, standalone
// PUT/GET/HEAD/DELETE (names with '/' and non-ASCII, design documents),
// ranges, ETags, gzip storage of compressible types and content
// negotiation, multipart/related documents both ways, open_revs as
// multipart/mixed, atts_since, a 20 MiB attachment streamed back in
// bounded memory, and bad input answered with CouchDB's 4xx.
//
// Raw bytes are read with node:http (fetch would inflate gzip bodies and
// hide what the server sent); multipart bodies are split by the small
// parser below, the way CouchDB's own tests do.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { request, smallQuarantineEnv, startServer, tempDir, withAuth } from './helpers.mjs';

const J = { 'Content-Type': 'application/json' };
const AJ = { Accept: 'application/json' };
const md5b64 = (b) => createHash('md5').update(b).digest('base64');
const b64 = (s) => Buffer.from(s).toString('base64');

// GET/PUT with the exact bytes on the wire: {status, headers, body: Buffer}.
function raw(base, pathname, { method = 'GET', headers = {}, body } = {}) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const rq = http.request({ host: u.hostname, port: u.port, path: pathname, method, headers: withAuth(headers) }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    rq.on('error', reject);
    rq.end(body);
  });
}

function boundaryOf(ctype) {
  const m = /boundary=("([^"]+)"|[^;\s]+)/.exec(ctype);
  assert.ok(m, `no boundary in ${ctype}`);
  return m[2] ?? m[1];
}

// Splits a multipart body into [{headers (lower-case names), body}].
function parseMultipart(buf, boundary) {
  const delim = Buffer.from(`\r\n--${boundary}`);
  let pos = buf.indexOf(`--${boundary}`);
  assert.ok(pos >= 0, 'opening boundary');
  pos += boundary.length + 2;
  const parts = [];
  for (;;) {
    if (buf.subarray(pos, pos + 2).toString() === '--') return parts;
    assert.equal(buf.subarray(pos, pos + 2).toString(), '\r\n', 'CRLF after a boundary');
    pos += 2;
    const headers = {};
    if (buf.subarray(pos, pos + 2).toString() === '\r\n') {
      pos += 2;
    } else {
      const end = buf.indexOf('\r\n\r\n', pos);
      for (const line of buf.subarray(pos, end).toString().split('\r\n')) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      pos = end + 4;
    }
    const next = buf.indexOf(delim, pos);
    assert.ok(next >= 0, 'part closed by a boundary');
    parts.push({ headers, body: buf.subarray(pos, next) });
    pos = next + delim.length;
  }
}

function multipartBody(boundary, parts) {
  const chunks = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\n`));
    for (const [k, v] of Object.entries(p.headers ?? {})) chunks.push(Buffer.from(`${k}: ${v}\r\n`));
    chunks.push(Buffer.from('\r\n'), Buffer.from(p.body), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--`));
  return Buffer.concat(chunks);
}

describe('attachments', () => {
  let srv;
  const req = (p, init) => request(srv.url, p, init);
  const put = (p, body, headers = J) => req(p, { method: 'PUT', headers, body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body) });
  const rawGet = (p, headers) => raw(srv.url, p, { headers });
  const revOf = async (p) => (await req(p, { headers: AJ })).json._rev;
  before(async () => {
    srv = await startServer();
    assert.equal((await req('/db', { method: 'PUT' })).status, 201);
  });
  after(async () => { await srv.stop(); });

  test('inline base64: round trip, stub fields, stubs kept across edits, missing stub 412', async () => {
    const bin = randomBytes(300);
    let r = await put('/db/inline', {
      v: 1,
      _attachments: {
        'a.bin': { content_type: 'application/octet-stream', data: bin.toString('base64') },
        'b.txt': { content_type: 'text/plain', data: b64('hello world') },
      },
    });
    assert.equal(r.status, 201);
    const rev1 = r.json.rev;
    r = await req('/db/inline');
    assert.deepEqual(r.json._attachments['a.bin'], {
      content_type: 'application/octet-stream', revpos: 1, digest: `md5-${md5b64(bin)}`, length: 300, stub: true,
    });
    assert.equal(r.json._attachments['b.txt'].length, 11, 'length is the identity length');
    r = await req('/db/inline?attachments=true', { headers: AJ });
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(Buffer.from(r.json._attachments['a.bin'].data, 'base64').compare(bin), 0);
    assert.equal(Buffer.from(r.json._attachments['b.txt'].data, 'base64').toString(), 'hello world', 'gzip-stored data inlined decoded');
    // an edit keeping both as stubs: same data, same revpos and digest
    const stubs = (await req('/db/inline')).json._attachments;
    r = await put('/db/inline', { _rev: rev1, v: 2, _attachments: { 'a.bin': { stub: true }, 'b.txt': stubs['b.txt'] } });
    assert.equal(r.status, 201);
    r = await req('/db/inline');
    assert.equal(r.json.v, 2);
    assert.deepEqual(r.json._attachments, stubs);
    assert.equal((await rawGet('/db/inline/a.bin')).body.compare(bin), 0);
    // a stub for an attachment the parent does not have
    r = await put('/db/inline', { _rev: r.json._rev, _attachments: { 'nope.txt': { stub: true } } });
    assert.equal(r.status, 412);
    assert.equal(r.json.error, 'missing_stub');
    // an edit without _attachments drops them
    r = await put('/db/inline', { _rev: await revOf('/db/inline'), v: 3 });
    assert.equal(r.status, 201);
    assert.equal((await req('/db/inline')).json._attachments, undefined);
    assert.equal((await req('/db/inline/a.bin')).status, 404);
  });

  test('standalone PUT / GET / HEAD / DELETE', async () => {
    // no rev: creates the document
    let r = await put('/db/sa/file.bin', 'This is a base64 encoded text', { 'Content-Type': 'application/octet-stream' });
    assert.equal(r.status, 201);
    assert.deepEqual(Object.keys(r.json), ['ok', 'id', 'rev']);
    assert.equal(r.json.id, 'sa');
    assert.match(r.headers.get('location'), /\/db\/sa\/file\.bin$/);
    assert.equal(r.headers.get('etag'), `"${r.json.rev}"`);
    const rev1 = r.json.rev;
    // again without a rev: the document exists
    r = await put('/db/sa/file.bin', 'x', { 'Content-Type': 'text/plain' });
    assert.equal(r.status, 409);
    assert.equal(r.json.error, 'conflict');
    r = await put('/db/sa/file.bin?rev=1-00000000000000000000000000000000', 'x');
    assert.deepEqual([r.status, r.json], [409, { error: 'not_found', reason: 'missing_rev' }]);
    // GET: CouchDB's own example, ETag is the md5 of the bytes
    r = await rawGet('/db/sa/file.bin');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'This is a base64 encoded text');
    assert.equal(r.headers['content-type'], 'application/octet-stream');
    assert.equal(r.headers['content-length'], '29');
    assert.equal(r.headers.etag, '"aEI7pOYCRBLTRQvvqYrrJQ=="');
    assert.equal(r.headers['accept-ranges'], 'bytes');
    const head = await raw(srv.url, '/db/sa/file.bin', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers['content-length'], '29');
    assert.equal(head.headers.etag, r.headers.etag);
    // a second attachment with If-Match; the first is kept
    r = await put('/db/sa/second.txt', 'two', { 'Content-Type': 'text/plain;charset=utf-8', 'If-Match': `"${rev1}"` });
    assert.equal(r.status, 201);
    const rev2 = r.json.rev;
    r = await req('/db/sa');
    assert.deepEqual(Object.keys(r.json._attachments), ['file.bin', 'second.txt']);
    assert.equal(r.json._attachments['file.bin'].revpos, 1);
    assert.equal(r.json._attachments['second.txt'].revpos, 2);
    assert.equal(r.json._attachments['second.txt'].content_type, 'text/plain;charset=utf-8');
    // no Content-Type: application/octet-stream; empty bodies are fine
    r = await raw(srv.url, `/db/sa/empty?rev=${rev2}`, { method: 'PUT' });
    assert.equal(r.status, 201);
    r = await rawGet('/db/sa/empty');
    assert.deepEqual([r.status, r.body.length, r.headers['content-type']], [200, 0, 'application/octet-stream']);
    const rev3 = await revOf('/db/sa');
    // DELETE: without rev 409 (CouchDB), bad rev 409, unknown name 404
    r = await req('/db/sa/file.bin', { method: 'DELETE' });
    assert.equal(r.status, 409);
    r = await req('/db/sa/file.bin?rev=9-00000000000000000000000000000000', { method: 'DELETE' });
    assert.deepEqual([r.status, r.json], [409, { error: 'not_found', reason: 'missing_rev' }]);
    r = await req(`/db/sa/nothere?rev=${rev3}`, { method: 'DELETE' });
    assert.deepEqual([r.status, r.json], [404, { error: 'not_found', reason: 'Document is missing attachment' }]);
    r = await req('/db/nodoc/att.pdf', { method: 'DELETE' });
    assert.deepEqual([r.status, r.json], [404, { error: 'not_found', reason: 'missing' }]);
    r = await req(`/db/sa/file.bin?rev=${rev3}`, { method: 'DELETE' });
    assert.equal(r.status, 200);
    assert.equal(r.json.ok, true);
    assert.equal(r.headers.get('location'), null);
    r = await req('/db/sa/file.bin');
    assert.deepEqual([r.status, r.json], [404, { error: 'not_found', reason: 'Document is missing attachment' }]);
    // older revisions keep their attachments until compaction
    r = await rawGet(`/db/sa/file.bin?rev=${rev1}`);
    assert.equal(r.body.toString(), 'This is a base64 encoded text');
    assert.equal((await req('/db/sa')).json._attachments['second.txt'].stub, true);
    assert.equal((await req('/db/nodoc/x')).status, 404);
    // a deleted document has no attachments to GET
    await req(`/db/sa?rev=${await revOf('/db/sa')}`, { method: 'DELETE' });
    r = await req('/db/sa/second.txt');
    assert.deepEqual([r.status, r.json.reason], [404, 'deleted']);
  });

  test('names with slashes, non-ASCII names, design documents', async () => {
    let r = await put('/db/names/a/b/c.txt', 'slashes', { 'Content-Type': 'application/octet-stream' });
    assert.equal(r.status, 201);
    assert.match(r.headers.get('location'), /\/db\/names\/a%2Fb%2Fc\.txt$/);
    let rev = r.json.rev;
    const uni = 'été/日本語 ✓.txt';
    r = await put(`/db/names/${encodeURIComponent(uni)}?rev=${rev}`, 'unicode', { 'Content-Type': 'application/octet-stream' });
    assert.equal(r.status, 201);
    rev = r.json.rev;
    r = await req('/db/names');
    assert.deepEqual(Object.keys(r.json._attachments).sort(), ['a/b/c.txt', uni].sort());
    assert.equal((await rawGet('/db/names/a/b/c.txt')).body.toString(), 'slashes');
    assert.equal((await rawGet('/db/names/a%2Fb%2Fc.txt')).body.toString(), 'slashes', '%2F names the same attachment');
    assert.equal((await rawGet(`/db/names/${encodeURIComponent(uni)}`)).body.toString(), 'unicode');
    assert.equal((await rawGet(`/db/names/${encodeURIComponent('été')}/${encodeURIComponent('日本語 ✓.txt')}`)).body.toString(), 'unicode');
    // design documents, both URL forms
    r = await put('/db/_design/app', { views: {} });
    r = await put(`/db/_design/app/index.html?rev=${r.json.rev}`, '<p>hi</p>', { 'Content-Type': 'text/html' });
    assert.equal(r.status, 201);
    assert.match(r.headers.get('location'), /\/db\/_design\/app\/index\.html$/);
    for (const p of ['/db/_design/app/index.html', '/db/_design%2Fapp/index.html']) {
      r = await rawGet(p, { 'Accept-Encoding': 'identity' });
      assert.deepEqual([r.status, r.body.toString(), r.headers['content-type']], [200, '<p>hi</p>', 'text/html']);
    }
    // _local documents have no attachments
    r = await put('/db/_local/x/y.txt', 'z', {});
    assert.deepEqual([r.status, r.json.reason], [400, '_local documents do not accept attachments.']);
  });

  test('Range: single, suffix, multiple, unsatisfiable, ignored', async () => {
    const data = Buffer.from('This is a base64 encoded text');
    const rev = (await put('/db/ranges/r.bin', data, { 'Content-Type': 'application/octet-stream' })).json.rev;
    assert.ok(rev);
    const get = (range) => rawGet('/db/ranges/r.bin', { Range: range });
    let r = await get('bytes=0-28');
    assert.deepEqual([r.status, r.headers['content-range'], r.headers['content-length']], [206, 'bytes 0-28/29', '29']);
    r = await get('bytes=10-15');
    assert.deepEqual([r.status, r.body.toString(), r.headers['content-range']], [206, 'base64', 'bytes 10-15/29']);
    r = await get('bytes=2-');
    assert.deepEqual([r.status, r.body.toString(), r.headers['content-length']], [206, 'is is a base64 encoded text', '27']);
    r = await get('bytes=-3');
    assert.deepEqual([r.status, r.body.toString(), r.headers['content-range']], [206, 'ext', 'bytes 26-28/29']);
    r = await get('bytes=20-999');
    assert.deepEqual([r.status, r.body.toString(), r.headers['content-range']], [206, 'oded text', 'bytes 20-28/29']);
    for (const whole of ['bytes=0-', 'bytes=0-,0-,0-', 'bytes:0-', 'bytes=0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1']) {
      r = await get(whole);
      assert.deepEqual([r.status, r.body.toString()], [200, data.toString()], whole);
    }
    for (const bad of ['bytes=5-3', 'bytes=300-310', 'bytes=29-', 'bytes=-0']) {
      r = await get(bad);
      assert.equal(r.status, 416, bad);
      assert.deepEqual(JSON.parse(r.body), { error: 'requested_range_not_satisfiable', reason: 'Requested range not satisfiable' });
    }
    r = await get('bytes=0-3,10-15,-4');
    assert.equal(r.status, 206);
    assert.match(r.headers['content-type'], /^multipart\/byteranges; boundary=/);
    const parts = parseMultipart(r.body, boundaryOf(r.headers['content-type']));
    assert.deepEqual(parts.map((p) => [p.headers['content-range'], p.body.toString(), p.headers['content-type']]), [
      ['bytes 0-3/29', 'This', 'application/octet-stream'],
      ['bytes 10-15/29', 'base64', 'application/octet-stream'],
      ['bytes 25-28/29', 'text', 'application/octet-stream'],
    ]);
    assert.equal(Number(r.headers['content-length']), r.body.length);
    // gzip-stored attachments are not ranged (CouchDB: Accept-Ranges none)
    await put(`/db/ranges/t.txt?rev=${rev}`, 'some text that is stored compressed', { 'Content-Type': 'text/plain' });
    r = await rawGet('/db/ranges/t.txt', { Range: 'bytes=0-3', 'Accept-Encoding': 'identity' });
    assert.deepEqual([r.status, r.headers['accept-ranges'], r.body.toString()], [200, 'none', 'some text that is stored compressed']);
  });

  test('ETag and If-None-Match', async () => {
    const data = randomBytes(1000);
    await put('/db/etag/e.bin', data, { 'Content-Type': 'image/png' });
    let r = await rawGet('/db/etag/e.bin');
    const etag = r.headers.etag;
    assert.equal(etag, `"${md5b64(data)}"`);
    assert.equal(r.headers['cache-control'], 'must-revalidate');
    r = await rawGet('/db/etag/e.bin', { 'If-None-Match': etag });
    assert.deepEqual([r.status, r.body.length, r.headers.etag], [304, 0, etag]);
    r = await rawGet('/db/etag/e.bin', { 'If-None-Match': `"other", ${etag}` });
    assert.equal(r.status, 304);
    r = await rawGet('/db/etag/e.bin', { 'If-None-Match': '"other"' });
    assert.equal(r.status, 200);
    assert.equal(r.body.compare(data), 0);
  });

  test('compressible types are stored gzip-encoded and served by Accept-Encoding', async () => {
    const text = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(200);
    let r = await put('/db/gz/lorem.txt', text, { 'Content-Type': 'text/plain;charset=utf-8' });
    const rev = r.json.rev;
    r = await put(`/db/gz/data.bin?rev=${rev}`, text, { 'Content-Type': 'application/octet-stream' });
    r = await req('/db/gz?att_encoding_info=true');
    const lorem = r.json._attachments['lorem.txt'];
    assert.equal(lorem.encoding, 'gzip');
    assert.equal(lorem.length, text.length, 'length: identity length');
    assert.ok(lorem.encoded_length < text.length / 10, `encoded_length ${lorem.encoded_length}`);
    assert.notEqual(lorem.digest, `md5-${md5b64(text)}`, 'digest of the stored (gzip) bytes');
    assert.equal(r.json._attachments['data.bin'].encoding, undefined, 'octet-stream stays identity');
    assert.equal(r.json._attachments['data.bin'].digest, `md5-${md5b64(text)}`);
    r = await req('/db/gz');
    assert.equal(r.json._attachments['lorem.txt'].encoding, undefined, 'encoding info only when asked');
    // a client without gzip gets identity bytes and the identity length
    r = await rawGet('/db/gz/lorem.txt', { 'Accept-Encoding': 'identity' });
    assert.equal(r.headers['content-encoding'], undefined);
    assert.equal(r.headers['content-length'], String(text.length));
    assert.equal(r.body.toString(), text);
    r = await rawGet('/db/gz/lorem.txt');
    assert.equal(r.body.toString(), text, 'no Accept-Encoding: identity');
    // one that accepts gzip gets the stored bytes
    r = await rawGet('/db/gz/lorem.txt', { 'Accept-Encoding': 'gzip, deflate' });
    assert.equal(r.headers['content-encoding'], 'gzip');
    assert.equal(r.headers['content-length'], String(lorem.encoded_length));
    assert.equal(`md5-${md5b64(r.body)}`, lorem.digest);
    assert.equal(gunzipSync(r.body).toString(), text);
    r = await rawGet('/db/gz/lorem.txt', { 'Accept-Encoding': 'gzip;q=0, identity' });
    assert.equal(r.headers['content-encoding'], undefined);
    // inline data of a compressible type is compressed the same way
    r = await put('/db/gz2', { _attachments: { 'x.json': { content_type: 'application/json', data: b64(JSON.stringify({ a: text })) } } });
    r = await req('/db/gz2?att_encoding_info=true');
    assert.equal(r.json._attachments['x.json'].encoding, 'gzip');
    r = await rawGet('/db/gz2/x.json', { 'Accept-Encoding': 'identity' });
    assert.equal(JSON.parse(r.body).a, text);
    // and so is data written through _bulk_docs
    r = await req('/db/_bulk_docs', { method: 'POST', headers: J, body: JSON.stringify({ docs: [{ _id: 'gzb', _attachments: { 'b.txt': { content_type: 'text/plain', data: b64(text) } } }] }) });
    assert.equal(r.status, 201);
    r = await req('/db/gzb?att_encoding_info=true');
    assert.deepEqual([r.json._attachments['b.txt'].encoding, r.json._attachments['b.txt'].length], ['gzip', text.length]);
    // Content-Encoding: gzip from the client: stored as sent, identity length measured
    const zipped = gzipSync(Buffer.from(text));
    r = await put('/db/gz3/pre.txt', zipped, { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip' });
    assert.equal(r.status, 201);
    r = await req('/db/gz3?att_encoding_info=true');
    assert.deepEqual([r.json._attachments['pre.txt'].length, r.json._attachments['pre.txt'].encoded_length], [text.length, zipped.length]);
    assert.equal(r.json._attachments['pre.txt'].digest, `md5-${md5b64(zipped)}`);
    assert.equal((await rawGet('/db/gz3/pre.txt', { 'Accept-Encoding': 'identity' })).body.toString(), text);
    assert.equal((await rawGet('/db/gz3/pre.txt', { 'Accept-Encoding': 'gzip' })).body.compare(zipped), 0);
  });

  test('multipart/related PUT: parts matched in order and by filename, length checks', async () => {
    const doc = {
      body: 'This is a body.',
      _attachments: {
        'foo.txt': { follows: true, content_type: 'application/test', length: 21 },
        'bar.txt': { follows: true, content_type: 'application/test', length: 20 },
        'baz.txt': { follows: true, content_type: 'text/plain', length: 19 },
      },
    };
    // CouchDB's attachments_multipart test body, epilogue included
    const body = `--abc123\r\ncontent-type: application/json\r\n\r\n${JSON.stringify(doc)}`
      + '\r\n--abc123\r\n\r\nthis is 21 chars long\r\n--abc123\r\n\r\nthis is 20 chars lon'
      + '\r\n--abc123\r\n\r\nthis is 19 chars lo\r\n--abc123--epilogue';
    let r = await put('/db/mp', body, { 'Content-Type': 'multipart/related;boundary="abc123"' });
    assert.equal(r.status, 201);
    assert.equal(r.json.ok, true);
    const rev1 = r.json.rev;
    for (const [n, v] of [['foo', 'this is 21 chars long'], ['bar', 'this is 20 chars lon'], ['baz', 'this is 19 chars lo']])
      assert.equal((await rawGet(`/db/mp/${n}.txt`, { 'Accept-Encoding': 'identity' })).body.toString(), v);
    r = await req('/db/mp?att_encoding_info=true');
    assert.equal(r.json.body, 'This is a body.');
    assert.equal(r.json._attachments['foo.txt'].encoding, undefined);
    assert.equal(r.json._attachments['baz.txt'].encoding, 'gzip', 'text/plain part compressed');
    // an update: a stub, one new part named by filename, out of order
    const doc2 = {
      _rev: rev1,
      _attachments: {
        'foo.txt': { stub: true },
        'one.bin': { follows: true, content_type: 'application/octet-stream', length: 3 },
        'two.bin': { follows: true, content_type: 'application/octet-stream' },
      },
    };
    r = await put('/db/mp', multipartBody('xyz', [
      { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(doc2) },
      { headers: { 'Content-Disposition': 'attachment; filename="two.bin"' }, body: 'second' },
      { headers: { 'Content-Disposition': 'attachment; filename="one.bin"' }, body: '1st' },
    ]), { 'Content-Type': 'multipart/related; boundary=xyz' });
    assert.equal(r.status, 201);
    assert.equal((await rawGet('/db/mp/one.bin')).body.toString(), '1st');
    assert.equal((await rawGet('/db/mp/two.bin')).body.toString(), 'second');
    assert.equal((await rawGet('/db/mp/foo.txt')).body.toString(), 'this is 21 chars long');
    assert.equal((await req('/db/mp/bar.txt')).status, 404);
    // rev from the query string, as with JSON bodies
    r = await put(`/db/mp?rev=${r.json.rev}`, multipartBody('q', [
      { headers: { 'Content-Type': 'application/json' }, body: '{"x":1}' },
    ]), { 'Content-Type': 'multipart/related; boundary=q' });
    assert.equal(r.status, 201);
    assert.match(r.json.rev, /^3-/);
    // replication form: new_edits=false, a gzip part with its encoding
    const text = 'replicated text '.repeat(50);
    const z = gzipSync(Buffer.from(text));
    const rdoc = {
      _id: 'mprep', _rev: '1-0123456789abcdef0123456789abcdef',
      _attachments: { 'r.txt': { follows: true, content_type: 'text/plain', length: text.length, encoding: 'gzip', encoded_length: z.length, revpos: 1 } },
    };
    r = await put('/db/mprep?new_edits=false', multipartBody('rep', [
      { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(rdoc) },
      { headers: { 'Content-Disposition': 'attachment; filename="r.txt"', 'Content-Encoding': 'gzip' }, body: z },
    ]), { 'Content-Type': 'multipart/related; boundary="rep"' });
    assert.equal(r.status, 201);
    r = await req('/db/mprep?att_encoding_info=true');
    assert.deepEqual([r.json._rev, r.json._attachments['r.txt'].length, r.json._attachments['r.txt'].encoded_length],
      ['1-0123456789abcdef0123456789abcdef', text.length, z.length]);
    assert.equal((await rawGet('/db/mprep/r.txt')).body.toString(), text);
  });

  test('multipart/related PUT: bad input is a 4xx and writes nothing', async () => {
    const ct = { 'Content-Type': 'multipart/related; boundary=b' };
    const jsonPart = (atts) => ({ headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ _attachments: atts }) });
    const cases = [
      ['length mismatch', multipartBody('b', [jsonPart({ a: { follows: true, length: 5 } }), { body: 'abc' }]), ct, 400],
      ['missing part', multipartBody('b', [jsonPart({ a: { follows: true, length: 3 }, c: { follows: true } }), { body: 'abc' }]), ct, 400],
      ['bad gzip part', multipartBody('b', [jsonPart({ a: { follows: true, encoding: 'gzip' } }), { body: 'not gzip' }]), ct, 400],
      ['first part not JSON', multipartBody('b', [{ headers: { 'Content-Type': 'text/plain' }, body: '{}' }]), ct, 415],
      ['invalid JSON', multipartBody('b', [{ headers: { 'Content-Type': 'application/json' }, body: '{"a":' }]), ct, 400],
      ['not closed', Buffer.from('--b\r\nContent-Type: application/json\r\n\r\n{}'), ct, 400],
      ['bad part header', Buffer.from('--b\r\nno colon\r\n\r\n{}\r\n--b--'), ct, 400],
      ['no opening boundary', Buffer.from('{}'), ct, 400],
      ['no boundary parameter', multipartBody('b', [jsonPart({})]), { 'Content-Type': 'multipart/related' }, 400],
      ['empty', Buffer.from('--b--'), ct, 400],
      ['follows in a JSON body', JSON.stringify({ _attachments: { a: { follows: true, length: 1 } } }), J, 400],
    ];
    for (const [what, body, headers, status] of cases) {
      const r = await put('/db/mpbad', body, headers);
      assert.equal(r.status, status, `${what}: ${r.text}`);
      assert.equal(typeof r.json.error, 'string', what);
      assert.equal(typeof r.json.reason, 'string', what);
    }
    assert.equal((await req('/db/mpbad')).status, 404, 'nothing was written');
  });

  test('GET attachments=true: multipart/related by default, JSON when asked', async () => {
    const text = 'compressible text '.repeat(30);
    let r = await put('/db/mpget', {
      _attachments: {
        'a.bin': { content_type: 'application/octet-stream', data: b64('binary-ish') },
        't.txt': { content_type: 'text/plain', data: b64(text) },
      },
    });
    const rev1 = r.json.rev;
    r = await put(`/db/mpget/new.bin?rev=${rev1}`, 'newer', { 'Content-Type': 'application/octet-stream' });
    const rev2 = r.json.rev;
    r = await raw(srv.url, '/db/mpget?attachments=true', { headers: { Accept: 'multipart/related,*/*;' } });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^multipart\/related; boundary="[0-9a-f]{32}"$/);
    assert.equal(Number(r.headers['content-length']), r.body.length);
    assert.equal(r.headers.etag, `"${rev2}"`);
    let parts = parseMultipart(r.body, boundaryOf(r.headers['content-type']));
    assert.equal(parts.length, 4);
    assert.equal(parts[0].headers['content-type'], 'application/json');
    const doc = JSON.parse(parts[0].body);
    assert.deepEqual(Object.keys(doc._attachments), ['a.bin', 't.txt', 'new.bin']);
    for (const a of Object.values(doc._attachments)) assert.equal(a.follows, true);
    assert.equal(doc._attachments['t.txt'].encoding, 'gzip');
    assert.equal(doc._attachments['t.txt'].length, text.length);
    assert.deepEqual(parts.slice(1).map((p) => p.headers['content-disposition']),
      ['attachment; filename="a.bin"', 'attachment; filename="t.txt"', 'attachment; filename="new.bin"']);
    assert.equal(parts[1].body.toString(), 'binary-ish');
    assert.equal(parts[1].headers['content-length'], '10');
    assert.equal(parts[2].headers['content-encoding'], 'gzip', 'stored bytes, as CouchDB sends them');
    assert.equal(Number(parts[2].headers['content-length']), doc._attachments['t.txt'].encoded_length);
    assert.equal(gunzipSync(parts[2].body).toString(), text);
    assert.equal(parts[3].body.toString(), 'newer');
    // atts_since: only what is newer than the given revision follows
    r = await raw(srv.url, `/db/mpget?atts_since=${encodeURIComponent(JSON.stringify([rev1]))}`, { headers: { Accept: 'multipart/related' } });
    parts = parseMultipart(r.body, boundaryOf(r.headers['content-type']));
    assert.equal(parts.length, 2);
    const since = JSON.parse(parts[0].body)._attachments;
    assert.deepEqual([since['a.bin'].stub, since['t.txt'].stub, since['new.bin'].follows], [true, true, true]);
    assert.equal(parts[1].body.toString(), 'newer');
    // the same as JSON: atts_since inlines only the newer data
    r = await req(`/db/mpget?atts_since=${encodeURIComponent(JSON.stringify(['1-0000', rev1]))}`, { headers: AJ });
    assert.equal(r.json._attachments['a.bin'].stub, true);
    assert.equal(Buffer.from(r.json._attachments['new.bin'].data, 'base64').toString(), 'newer');
    r = await req('/db/mpget?attachments=true', { headers: AJ });
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(Buffer.from(r.json._attachments['t.txt'].data, 'base64').toString(), text);
    // a document without attachments stays JSON
    await put('/db/plain', { a: 1 });
    r = await raw(srv.url, '/db/plain?attachments=true', { headers: { Accept: 'multipart/related' } });
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(JSON.parse(r.body).a, 1);
  });

  test('open_revs with Accept: multipart/mixed', async () => {
    const text = 'gzip me please '.repeat(40);
    let r = await put('/db/orv', { v: 1, _attachments: { 'a.txt': { content_type: 'text/plain', data: b64(text) } } });
    const rev1 = r.json.rev;
    r = await put(`/db/orv/b.bin?rev=${rev1}`, 'bee', { 'Content-Type': 'application/octet-stream' });
    const rev2 = r.json.rev;
    // a conflicting branch without attachments
    await put('/db/orv?new_edits=false', { _id: 'orv', v: 'x', _revisions: { start: 2, ids: ['ffff', rev1.split('-')[1]] } });
    const revs = JSON.stringify([rev2, '2-ffff', '9-nothere']);
    r = await raw(srv.url, `/db/orv?open_revs=${encodeURIComponent(revs)}&revs=true`, { headers: { Accept: 'multipart/mixed' } });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^multipart\/mixed; boundary="[0-9a-f]{32}"$/);
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    const outer = parseMultipart(r.body, boundaryOf(r.headers['content-type']));
    assert.equal(outer.length, 3);
    // 1: the revision with attachments, a nested multipart/related
    assert.match(outer[0].headers['content-type'], /^multipart\/related; boundary="[0-9a-f]{32}"$/);
    const inner = parseMultipart(outer[0].body, boundaryOf(outer[0].headers['content-type']));
    assert.equal(inner.length, 3);
    const d = JSON.parse(inner[0].body);
    assert.equal(d._rev, rev2);
    assert.deepEqual(d._revisions.ids.length, 2);
    assert.equal(d._attachments['a.txt'].follows, true);
    assert.equal(d._attachments['a.txt'].encoding, 'gzip');
    assert.equal(gunzipSync(inner[1].body).toString(), text);
    assert.equal(inner[1].headers['content-encoding'], 'gzip');
    assert.equal(inner[2].body.toString(), 'bee');
    // 2: the branch without attachments is plain JSON
    assert.equal(outer[1].headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(outer[1].body), { _id: 'orv', _rev: '2-ffff', v: 'x', _revisions: { start: 2, ids: ['ffff', rev1.split('-')[1]] } });
    // 3: a revision that does not exist
    assert.equal(outer[2].headers['content-type'], 'application/json; error="true"');
    assert.deepEqual(JSON.parse(outer[2].body), { missing: '9-nothere' });
    // open_revs=all, atts_since
    r = await raw(srv.url, `/db/orv?open_revs=all&atts_since=${encodeURIComponent(JSON.stringify([rev1]))}`, { headers: { Accept: 'multipart/mixed' } });
    const all = parseMultipart(r.body, boundaryOf(r.headers['content-type']));
    assert.equal(all.length, 2);
    const withAtts = all.find((p) => p.headers['content-type'].startsWith('multipart/related'));
    const in2 = parseMultipart(withAtts.body, boundaryOf(withAtts.headers['content-type']));
    assert.equal(in2.length, 2, 'only the attachment newer than atts_since');
    assert.equal(JSON.parse(in2[0].body)._attachments['a.txt'].stub, true);
    assert.equal(in2[1].body.toString(), 'bee');
    // JSON stays JSON
    r = await req(`/db/orv?open_revs=${encodeURIComponent(revs)}`, { headers: AJ });
    assert.equal(r.json.length, 3);
    assert.deepEqual(r.json[2], { missing: '9-nothere' });
    // a missing document: every revision missing
    r = await raw(srv.url, `/db/orvnone?open_revs=${encodeURIComponent('["1-a"]')}`, { headers: { Accept: 'multipart/mixed' } });
    const none = parseMultipart(r.body, boundaryOf(r.headers['content-type']));
    assert.deepEqual(none.map((p) => JSON.parse(p.body)), [{ missing: '1-a' }]);
  });

  test('bad input: bad base64, names starting with _, bad encodings', async () => {
    let r = await put('/db/bad1', { _attachments: { 'foo.txt': { content_type: 'text/plain', data: 'notBase64Encoded=' } } });
    assert.deepEqual([r.status, r.json.error], [400, 'bad_request']);
    r = await put('/db/bad1', { _attachments: { _foo: { data: 'AA==' } } });
    assert.deepEqual([r.status, r.json], [400, { error: 'bad_request', reason: "Attachment name '_foo' starts with prohibited character '_'" }]);
    r = await put('/db/bad1/_foo.txt', 'x', { 'Content-Type': 'text/plain' });
    assert.deepEqual([r.status, r.json], [400, { error: 'bad_request', reason: "Attachment name '_foo.txt' starts with prohibited character '_'" }]);
    r = await put('/db/bad1/a.txt', 'x', { 'Content-Type': 'text/plain', 'Content-Encoding': 'br' });
    assert.deepEqual([r.status, r.json.error], [415, 'bad_content_type']);
    r = await put('/db/bad1/a.txt', 'not gzip', { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip' });
    assert.deepEqual([r.status, r.json.error], [400, 'bad_request']);
    r = await put('/db/bad1/a.txt?rev=nonsense', 'x', {});
    assert.deepEqual([r.status, r.json.reason], [400, 'Invalid rev format']);
    r = await req('/db/bad1/a.txt', { method: 'POST' });
    assert.deepEqual([r.status, r.headers.get('allow')], [405, 'DELETE,GET,HEAD,PUT']);
    assert.equal((await req('/db/bad1')).status, 404, 'nothing was written');
    assert.equal((await req('/nodb/doc/a.txt')).status, 404);
  });
});

// A 20 MiB attachment comes back byte-exact while the server's peak RSS
// stays bounded.  The attachment is written by one server; a fresh server
// on the same data directory then serves it, so its peak resident size
// (VmHWM) before the GET is that of a process that never held the
// attachment.  An implementation reading the whole attachment before
// sending would raise that peak by at least 20 MiB (one buffer of it, more
// with a copy for the socket); streaming 64 KiB per step adds only a few
// chunks and h2o's buffers.  The bound, 10 MiB (half the attachment),
// leaves room for allocator noise and still fails any whole read.  Under
// ASan the quarantine is kept small (smallQuarantineEnv) so the measure is
// of live memory.
test('a 20 MiB attachment streams back byte-exact in bounded memory', async () => {
  const dir = tempDir();
  const size = 20 * 1024 * 1024;
  const data = randomBytes(size);
  const digest = createHash('md5').update(data).digest('hex');
  let srv = await startServer({ dataDir: dir });
  await request(srv.url, '/big', { method: 'PUT' });
  let r = await raw(srv.url, '/big/doc/blob.bin', { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: data });
  assert.equal(r.status, 201, r.body.toString());
  await srv.stop();
  srv = await startServer({ dataDir: dir, env: smallQuarantineEnv() });
  try {
    const status = () => readFileSync(`/proc/${srv.child.pid}/status`, 'utf8');
    const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status())[1]);
    // warm up the loops and the streaming path with small reads (a whole
    // read of 2 MiB at most, whatever the implementation)
    r = await request(srv.url, '/big/doc');
    assert.equal(r.json._attachments['blob.bin'].length, size);
    r = await raw(srv.url, '/big/doc/blob.bin', { headers: { Range: 'bytes=0-2097151' } });
    assert.equal(r.body.compare(data.subarray(0, 2097152)), 0);
    const before = kb('VmHWM');
    const got = await new Promise((resolve, reject) => {
      const u = new URL(srv.url);
      http.get({ host: u.hostname, port: u.port, path: '/big/doc/blob.bin', headers: withAuth() }, (res) => {
        const h = createHash('md5');
        let n = 0;
        res.on('data', (c) => { h.update(c); n += c.length; });
        res.on('end', () => resolve({ status: res.statusCode, n, md5: h.digest('hex'), len: res.headers['content-length'] }));
        res.on('error', reject);
      }).on('error', reject);
    });
    const peak = kb('VmHWM');
    assert.deepEqual([got.status, got.n, got.len, got.md5], [200, size, String(size), digest]);
    const grew = (peak - before) / 1024;
    assert.ok(grew < 10, `peak RSS grew by ${grew.toFixed(1)} MiB serving a 20 MiB attachment`);
  } finally {
    await srv.stop();
  }
});

// [attachments] compression_level = 0 turns compression off; the types
// list is configurable.
test('[attachments] config: compression_level 0, custom compressible_types', async () => {
  const dir = tempDir();
  const off = path.join(dir, 'off.ini');
  writeFileSync(off, '[attachments]\ncompression_level = 0\n');
  let srv = await startServer({ args: ['--config', off] });
  try {
    await request(srv.url, '/db', { method: 'PUT' });
    await request(srv.url, '/db/d/a.txt', { method: 'PUT', headers: { 'Content-Type': 'text/plain' }, body: 'plain text '.repeat(20) });
    const r = await request(srv.url, '/db/d?att_encoding_info=true');
    assert.equal(r.json._attachments['a.txt'].encoding, undefined);
  } finally {
    await srv.stop();
  }
  const custom = path.join(dir, 'custom.ini');
  writeFileSync(custom, '[attachments]\ncompressible_types = image/svg+xml, application/octet-*\n');
  srv = await startServer({ args: ['--config', custom] });
  try {
    await request(srv.url, '/db', { method: 'PUT' });
    let r = await request(srv.url, '/db/d/a.txt', { method: 'PUT', headers: { 'Content-Type': 'text/plain' }, body: 'plain text '.repeat(20) });
    r = await request(srv.url, `/db/d/b.bin?rev=${r.json.rev}`, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: 'bytes '.repeat(20) });
    r = await request(srv.url, '/db/d?att_encoding_info=true');
    assert.equal(r.json._attachments['a.txt'].encoding, undefined, 'text/* no longer listed');
    assert.equal(r.json._attachments['b.bin'].encoding, 'gzip');
  } finally {
    await srv.stop();
  }
});
