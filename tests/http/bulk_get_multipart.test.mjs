// bulk_get_multipart.test.mjs — POST /{db}/_bulk_get answered as
// multipart/mixed or multipart/related (CouchDB 3's bulk_get_ret_multipart)
// when Accept does not accept application/json but accepts a multipart
// type; JSON for everyone else (PouchDB, CouchDB's replicator).
//
// Answers are read as raw bytes (node:http) and split by the parser below,
// written for these tests from RFC 2046 and independent of the server's
// code: it checks the framing (delimiters, CRLFs, the closing delimiter)
// as well as returning the parts.  Expected documents come from what the
// test wrote, attachments are compared byte for byte.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { request, smallQuarantineEnv, startServer, tempDir, withAuth } from './helpers.mjs';

const J = { 'Content-Type': 'application/json' };
const b64 = (b) => Buffer.from(b).toString('base64');
const md5b64 = (b) => createHash('md5').update(b).digest('base64');

// POST with the exact bytes of the answer: {status, headers, body: Buffer}.
function rawPost(base, pathname, headers, body) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const rq = http.request({ host: u.hostname, port: u.port, path: pathname, method: 'POST', headers: withAuth(headers) }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    rq.on('error', reject);
    rq.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

// The boundary parameter of a Content-Type (quoted or token).
function boundary(ctype) {
  const m = /;\s*boundary=(?:"([^"]*)"|([^;\s]+))/i.exec(ctype);
  assert.ok(m, `no boundary in ${ctype}`);
  return m[1] ?? m[2];
}

// RFC 2046 §5.1.1: delimiter = CRLF "--" boundary (the CRLF belongs to the
// delimiter; the very first one may stand at the start of the body);
// after a delimiter comes "--" (the close) or optional whitespace and
// CRLF, then header lines, an empty line, and the body up to the next
// delimiter.  Returns {parts: [{headers, body}], closed, epilogue}.
function splitMultipart(buf, b) {
  const delim = Buffer.from(`\r\n--${b}`);
  let at;
  if (buf.subarray(0, delim.length - 2).equals(delim.subarray(2))) at = delim.length - 2;
  else {
    const i = buf.indexOf(delim);
    if (i < 0) return { parts: [], closed: false, epilogue: buf };
    at = i + delim.length;
  }
  const parts = [];
  for (;;) {
    if (buf.subarray(at, at + 2).toString('latin1') === '--') {
      return { parts, closed: true, epilogue: buf.subarray(at + 2) };
    }
    while (buf[at] === 0x20 || buf[at] === 0x09) at++;
    assert.equal(buf.subarray(at, at + 2).toString('latin1'), '\r\n', `CRLF after the delimiter at ${at}`);
    at += 2;
    const headers = {};
    for (;;) {
      const eol = buf.indexOf('\r\n', at);
      assert.ok(eol >= 0, 'header line ends');
      const line = buf.subarray(at, eol).toString('utf8');
      at = eol + 2;
      if (line === '') break;
      const colon = line.indexOf(':');
      assert.ok(colon > 0, `header line with a colon: ${JSON.stringify(line)}`);
      const name = line.slice(0, colon).toLowerCase();
      assert.equal(headers[name], undefined, `header ${name} once`);
      headers[name] = line.slice(colon + 1).trim();
    }
    const next = buf.indexOf(delim, at);
    assert.ok(next >= 0, 'part closed by a delimiter');
    parts.push({ headers, body: buf.subarray(at, next) });
    at = next + delim.length;
  }
}

// One outer part as the test sees it: {kind: 'json'|'error'|'related', …}.
function readPart(p) {
  const ct = p.headers['content-type'];
  if (ct === 'application/json') return { kind: 'json', doc: JSON.parse(p.body), headers: p.headers };
  if (ct === 'application/json; error="true"') return { kind: 'error', error: JSON.parse(p.body), headers: p.headers };
  assert.match(ct, /^multipart\/related; boundary=--[0-9a-f]{32}$/, 'CouchDB\'s inner Content-Type, boundary unquoted');
  const inner = splitMultipart(p.body, boundary(ct));
  assert.ok(inner.closed, 'inner multipart closed');
  assert.equal(inner.epilogue.length, 0, 'nothing after the inner close');
  assert.ok(inner.parts.length >= 2, 'JSON and at least one attachment');
  assert.deepEqual(inner.parts[0].headers, { 'content-type': 'application/json' });
  const doc = JSON.parse(inner.parts[0].body);
  const atts = inner.parts.slice(1).map((a) => {
    const fn = /^attachment; filename="(.*)"$/.exec(a.headers['content-disposition']);
    assert.ok(fn, `Content-Disposition ${a.headers['content-disposition']}`);
    assert.equal(Number(a.headers['content-length']), a.body.length, 'Content-Length is the part size');
    return { name: fn[1], type: a.headers['content-type'], encoding: a.headers['content-encoding'], body: a.body };
  });
  return { kind: 'related', doc, atts, headers: p.headers };
}

// The whole answer: status 200, Content-Type, framing as CouchDB sends it.
async function bulkGet(srv, query, body, accept) {
  const r = await rawPost(srv.url, `/mp/_bulk_get${query}`, { ...J, Accept: accept }, body);
  assert.equal(r.status, 200, r.body.toString());
  const type = accept.includes('multipart/mixed') ? 'multipart/mixed' : 'multipart/related';
  assert.match(r.headers['content-type'], new RegExp(`^${type}; boundary="--[0-9a-f]{32}"$`));
  assert.equal(r.headers['transfer-encoding'], 'chunked');
  const b = boundary(r.headers['content-type']);
  if (body.docs.length === 0) {
    assert.equal(r.body.length, 0, 'no docs: no part and no closing delimiter');
    return [];
  }
  assert.ok(r.body.subarray(0, b.length + 4).equals(Buffer.from(`\r\n--${b}`)), 'the first part opens with CRLF --B');
  const { parts, closed, epilogue } = splitMultipart(r.body, b);
  assert.ok(closed, 'closing delimiter');
  assert.equal(epilogue.toString(), '\r\n', 'CRLF after the closing delimiter, then nothing');
  return parts.map(readPart);
}

describe('_bulk_get multipart', () => {
  let srv;
  const req = (p, init) => request(srv.url, p, init);
  const put = async (p, body) => {
    const r = await req(p, { method: 'PUT', headers: J, body: JSON.stringify(body) });
    assert.ok(r.status === 201 || r.status === 200, r.text);
    return r.json.rev;
  };
  const big = randomBytes(300 * 1024);
  const text = 'a compressible text attachment, '.repeat(50);
  const revs = {};
  let gDoc;

  before(async () => {
    srv = await startServer();
    await req('/mp', { method: 'PUT' });
    // big: a 300 KiB binary attachment (stored as is) and a text one (stored gzip)
    revs.big = await put('/mp/big', {
      v: 'big',
      _attachments: {
        'blob.bin': { content_type: 'application/octet-stream', data: b64(big) },
        'notes.txt': { content_type: 'text/plain', data: b64(text) },
      },
    });
    revs.plain = await put('/mp/plain', { v: 'plain' });
    // att: rev1 has one.bin, rev2 adds two.bin
    revs.att1 = await put('/mp/att', { _attachments: { 'one.bin': { content_type: 'application/x-one', data: b64('first') } } });
    revs.att2 = await put(`/mp/att?rev=${revs.att1}`, {
      n: 2,
      _attachments: { 'one.bin': { stub: true }, 'two.bin': { content_type: 'application/x-two', data: b64('second') } },
    });
    // c: two conflicting leaves written as a replicator does; one has an attachment
    await put('/mp/c?new_edits=false', { _id: 'c', v: 'x', _revisions: { start: 2, ids: ['bbbb', 'aaaa'] } });
    await put('/mp/c?new_edits=false', {
      _id: 'c', v: 'y', _revisions: { start: 2, ids: ['cccc', 'aaaa'] },
      _attachments: { 'c.bin': { content_type: 'application/octet-stream', data: b64('conflict bytes') } },
    });
    // g: deleted
    const g = await put('/mp/g', { v: 1 });
    await req(`/mp/g?rev=${g}`, { method: 'DELETE' });
    gDoc = (await req('/mp/g?open_revs=all&revs=true', { headers: { Accept: 'application/json' } })).json[0].ok;
    assert.equal(gDoc._deleted, true);
  });
  after(async () => { await srv.stop(); });

  test('documents, attachments byte-exact, conflicts, deleted leaves', async () => {
    const parts = await bulkGet(srv, '?revs=true', {
      docs: [{ id: 'big' }, { id: 'plain', rev: revs.plain }, { id: 'c' }, { id: 'g' }],
    }, 'multipart/mixed');
    assert.equal(parts.length, 5, 'big, plain, two leaves of c, g');
    const [bigPart, plainPart, c1, c2, gPart] = parts;

    assert.equal(bigPart.kind, 'related');
    assert.equal(bigPart.headers['x-doc-id'], 'big');
    assert.equal(bigPart.headers['x-rev-id'], revs.big);
    assert.equal(bigPart.doc._id, 'big');
    assert.equal(bigPart.doc._rev, revs.big);
    assert.equal(bigPart.doc.v, 'big');
    assert.deepEqual(bigPart.doc._revisions, { start: 1, ids: [revs.big.split('-')[1]] });
    const ba = bigPart.doc._attachments;
    assert.deepEqual(ba['blob.bin'], {
      content_type: 'application/octet-stream', revpos: 1, digest: `md5-${md5b64(big)}`, length: big.length, follows: true,
    });
    assert.equal(ba['notes.txt'].follows, true);
    assert.equal(ba['notes.txt'].encoding, 'gzip');
    assert.equal(ba['notes.txt'].length, text.length);
    assert.deepEqual(bigPart.atts.map((a) => a.name), Object.keys(ba), 'one part per attachment, in document order');
    const blob = bigPart.atts[0];
    assert.equal(blob.type, 'application/octet-stream');
    assert.equal(blob.encoding, undefined);
    assert.equal(blob.body.length, big.length);
    assert.ok(blob.body.equals(big), 'the 300 KiB attachment byte for byte');
    const notes = bigPart.atts[1];
    assert.equal(notes.type, 'text/plain');
    assert.equal(notes.encoding, 'gzip', 'sent as stored, as CouchDB');
    assert.equal(notes.body.length, ba['notes.txt'].encoded_length);
    assert.equal(gunzipSync(notes.body).toString(), text);

    assert.deepEqual(plainPart, {
      kind: 'json',
      doc: { _id: 'plain', _rev: revs.plain, v: 'plain', _revisions: { start: 1, ids: [revs.plain.split('-')[1]] } },
      headers: { 'content-type': 'application/json' },
    });

    const byRev = Object.fromEntries([c1, c2].map((p) => [p.doc._rev, p]));
    assert.deepEqual(Object.keys(byRev).sort(), ['2-bbbb', '2-cccc']);
    assert.equal(byRev['2-bbbb'].kind, 'json');
    assert.deepEqual(byRev['2-bbbb'].doc, { _id: 'c', _rev: '2-bbbb', v: 'x', _revisions: { start: 2, ids: ['bbbb', 'aaaa'] } });
    assert.equal(byRev['2-cccc'].kind, 'related');
    assert.equal(byRev['2-cccc'].headers['x-rev-id'], '2-cccc');
    assert.equal(byRev['2-cccc'].doc.v, 'y');
    assert.deepEqual(byRev['2-cccc'].atts.map((a) => [a.name, a.body.toString()]), [['c.bin', 'conflict bytes']]);

    assert.equal(gPart.kind, 'json');
    assert.deepEqual(gPart.doc, gDoc, 'a deleted leaf is sent');
  });

  test('atts_since: only newer attachments follow; all stubs is a JSON part', async () => {
    const parts = await bulkGet(srv, '', {
      docs: [{ id: 'att', atts_since: [revs.att1] }, { id: 'att', atts_since: [revs.att2] }, { id: 'att', rev: revs.att1 }, { id: 'att' }],
    }, 'multipart/related');
    assert.equal(parts.length, 4);
    const [since1, since2, old, all] = parts;
    assert.equal(since1.kind, 'related');
    assert.equal(since1.doc._rev, revs.att2);
    assert.equal(since1.doc._attachments['one.bin'].stub, true, 'unchanged since rev1: a stub');
    assert.equal(since1.doc._attachments['one.bin'].follows, undefined);
    assert.equal(since1.doc._attachments['two.bin'].follows, true);
    assert.deepEqual(since1.atts.map((a) => [a.name, a.type, a.body.toString()]), [['two.bin', 'application/x-two', 'second']]);
    // every attachment a stub: application/json, no nested multipart (CouchDB issue #3328)
    assert.equal(since2.kind, 'json');
    assert.equal(since2.doc._attachments['one.bin'].stub, true);
    assert.equal(since2.doc._attachments['two.bin'].stub, true);
    assert.equal(old.kind, 'related');
    assert.equal(old.doc._rev, revs.att1);
    assert.deepEqual(old.atts.map((a) => [a.name, a.body.toString()]), [['one.bin', 'first']]);
    // without atts_since every attachment follows, as GET ?open_revs
    assert.deepEqual(all.atts.map((a) => [a.name, a.body.toString()]), [['one.bin', 'first'], ['two.bin', 'second']]);
  });

  test('missing revisions and bad items are error parts', async () => {
    const parts = await bulkGet(srv, '', {
      docs: [{ id: 'nope' }, { id: 'nope', rev: '1-z' }, { id: 'plain', rev: '9-x' }, { id: 'c', rev: '1-aaaa' }, 5, {},
        { rev: '1-a' }, { id: '_bad' }, { id: 7 }, { id: 'plain', rev: 'zz' }, { id: 'plain', atts_since: 'x' },
        { id: 'plain', atts_since: ['1-a', 'bad'] }, { id: 'plain' }],
    }, 'multipart/mixed');
    const item = (id, rev, error, reason) => ({ id, rev, error, reason });
    const missing = (rev) => ({ rev, error: 'not_found', reason: 'missing' });
    assert.deepEqual(parts.slice(0, -1).map((p) => [p.kind, p.error]), [
      item('nope', 'undefined', 'not_found', 'missing'),
      missing('1-z'),
      missing('9-x'),
      missing('1-aaaa'), // in the tree, but its body is not kept
      item(null, null, 'bad_request', 'document must be a JSON object'),
      item(null, null, 'bad_request', 'document must be a JSON object'),
      item(null, null, 'bad_request', 'document id missed'),
      item('_bad', null, 'illegal_docid', 'Only reserved document ids may start with underscore.'),
      item(7, null, 'illegal_docid', 'Document id must be a string'),
      item('plain', 'zz', 'bad_request', 'Invalid rev format'),
      item('plain', 'x', 'bad_request', 'att_since value must be array of revs.'),
      item('plain', 'bad', 'bad_request', 'Invalid rev format'),
    ].map((e) => ['error', e]));
    assert.equal(parts.at(-1).kind, 'json', 'a good item after the bad ones');
    // the same request as JSON names the id in every error, as CouchDB's JSON answer
    const r = await req('/mp/_bulk_get', { method: 'POST', headers: { ...J, Accept: 'application/json' }, body: JSON.stringify({ docs: [{ id: 'plain', rev: '9-x' }] }) });
    assert.deepEqual(r.json.results[0].docs[0].error, item('plain', '9-x', 'not_found', 'missing'));
  });

  test('Accept decides as CouchDB\'s bulk_get_is_multipart; request errors stay JSON', async () => {
    const body = JSON.stringify({ docs: [{ id: 'big' }] });
    const cases = [
      [undefined, 'application/json'],
      ['application/json', 'application/json'],
      ['*/*', 'application/json'],
      ['multipart/mixed, application/json', 'application/json'],
      ['multipart/related;q=0.9, application/*', 'application/json'],
      ['text/html', 'application/json'],
      ['multipart/mixed', 'multipart/mixed'],
      ['multipart/*', 'multipart/mixed'],
      ['multipart/related', 'multipart/related'],
      ['multipart/related, multipart/mixed;q=0.1', 'multipart/mixed'],
      ['multipart/related, application/json;q=0', 'multipart/related'],
    ];
    for (const [accept, want] of cases) {
      const headers = { ...J };
      if (accept !== undefined) headers.Accept = accept;
      const r = await rawPost(srv.url, '/mp/_bulk_get', headers, body);
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'].split(';')[0], want, `Accept: ${accept}`);
      if (want === 'application/json') assert.equal(JSON.parse(r.body).results[0].docs[0].ok._id, 'big');
    }
    const mp = { Accept: 'multipart/mixed' };
    let r = await rawPost(srv.url, '/mp/_bulk_get?rev=1-a', { ...J, ...mp }, { docs: [] });
    assert.deepEqual([r.status, r.headers['content-type'], JSON.parse(r.body).error], [400, 'application/json', 'bad_request']);
    r = await rawPost(srv.url, '/mp/_bulk_get', { ...J, ...mp }, {});
    assert.deepEqual([r.status, JSON.parse(r.body).reason], [400, "Missing JSON list of 'docs'."]);
    r = await rawPost(srv.url, '/nodb/_bulk_get', { ...J, ...mp }, { docs: [] });
    assert.equal(r.status, 404);
    // no docs: an empty multipart body
    assert.deepEqual(await bulkGet(srv, '', { docs: [] }, 'multipart/mixed'), []);
    // a long answer streams: many items, many attachment parts
    const docs = [];
    for (let i = 0; i < 40; i++) docs.push(i % 2 ? { id: 'big' } : { id: 'plain' });
    const parts = await bulkGet(srv, '', { docs }, 'multipart/mixed');
    assert.equal(parts.length, 40);
    for (const p of parts.filter((x) => x.kind === 'related')) assert.ok(p.atts[0].body.equals(big));
  });

  // Ids and attachment content types are any JSON string: written into a
  // header they must not end its line (CouchDB writes them raw).  The
  // standalone GET, a multi-range answer, GET ?attachments=true and the
  // multipart _bulk_get all flatten CR and LF to spaces.
  test('CR and LF in ids and content types cannot forge headers', async () => {
    const id = 'evil\r\nX-Evil: 1';
    const type = 'application/x\r\nX-Injected: yes';
    await put(`/mp/${encodeURIComponent(id)}`, { _attachments: { 'a.bin': { content_type: type, data: b64('0123456789') } } });
    const flat = 'application/x  X-Injected: yes';
    const get = (p, headers = {}) => new Promise((resolve, reject) => {
      const u = new URL(srv.url);
      http.get({ host: u.hostname, port: u.port, path: p, headers: withAuth(headers) }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      }).on('error', reject);
    });
    const path = `/mp/${encodeURIComponent(id)}`;
    let r = await get(`${path}/a.bin`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], flat);
    assert.equal(r.headers['x-injected'], undefined);
    r = await get(`${path}/a.bin`, { Range: 'bytes=0-1,4-5' });
    assert.equal(r.status, 206);
    const ranges = splitMultipart(r.body, boundary(r.headers['content-type']));
    assert.deepEqual(ranges.parts.map((p) => [p.headers['content-type'], p.headers['x-injected'], p.body.toString()]),
      [[flat, undefined, '01'], [flat, undefined, '45']]);
    r = await get(`${path}?attachments=true`, { Accept: 'multipart/related' });
    const inner = splitMultipart(r.body, boundary(r.headers['content-type']));
    assert.deepEqual([inner.parts[1].headers['content-type'], inner.parts[1].headers['x-injected']], [flat, undefined]);
    const [part] = await bulkGet(srv, '', { docs: [{ id }] }, 'multipart/mixed');
    assert.equal(part.headers['x-doc-id'], 'evil  X-Evil: 1');
    assert.equal(part.headers['x-evil'], undefined);
    assert.equal(part.doc._id, id, 'the JSON keeps the id exact');
    assert.deepEqual([part.atts[0].type, part.atts[0].body.toString()], [flat, '0123456789']);
  });

  // CouchDB's replicator (3.3, couch_replicator_api_wrap:bulk_get, PR #4144)
  // reads only the JSON answer: Content-Type and Accept application/json,
  // ?latest=true&revs=true, items {id, rev, atts_since}; it fetches
  // documents with attachments again with GET ?open_revs.  PouchDB sends
  // Accept: application/json too.  Both must keep getting JSON.
  test('replicator-style and PouchDB-style requests get JSON', async () => {
    let r = await req('/mp/_bulk_get?latest=true&revs=true', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ docs: [{ id: 'att', rev: revs.att1, atts_since: [] }, { id: 'c', rev: '1-aaaa', atts_since: ['1-aaaa'] }] }),
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(r.json.results[0].docs[0].ok._rev, revs.att2, 'latest=true: the leaf below rev1');
    assert.deepEqual(r.json.results[1].docs.map((d) => d.ok._rev).sort(), ['2-bbbb', '2-cccc']);
    const withAtt = r.json.results[1].docs.find((d) => d.ok._rev === '2-cccc').ok;
    assert.equal(Buffer.from(withAtt._attachments['c.bin'].data, 'base64').toString(), 'conflict bytes', 'atts_since inlines newer data');
    r = await req('/mp/_bulk_get?revs=true&attachments=true', {
      method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ docs: [{ id: 'big', rev: revs.big }] }),
    });
    assert.ok(Buffer.from(r.json.results[0].docs[0].ok._attachments['blob.bin'].data, 'base64').equals(big));
  });
});

// The multipart answer streams attachments in bounded memory: a fresh
// server (so its peak RSS before the request is that of a process that
// never held the attachment) answers two items naming a 16 MiB attachment;
// an answer built whole would raise the peak by 32 MiB, a whole read of
// one attachment by 16 MiB.  The bound is half of one attachment (see
// attachments.test.mjs for the reasoning and the ASan quarantine setting).
test('multipart _bulk_get streams a 16 MiB attachment twice in bounded memory', async () => {
  const dir = tempDir();
  const size = 16 * 1024 * 1024;
  const data = randomBytes(size);
  let srv = await startServer({ dataDir: dir });
  await request(srv.url, '/big', { method: 'PUT' });
  let r = await request(srv.url, '/big/doc/blob.bin', { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: data });
  assert.equal(r.status, 201, r.text);
  await srv.stop();
  srv = await startServer({ dataDir: dir, env: smallQuarantineEnv() });
  try {
    const kb = () => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${srv.child.pid}/status`, 'utf8'))[1]);
    // warm up the loops and the multipart path on a small document
    await request(srv.url, '/big/small', { method: 'PUT', body: JSON.stringify({ _attachments: { a: { content_type: 'x/y', data: b64('warm') } } }) });
    r = await rawPost(srv.url, '/big/_bulk_get', { ...J, Accept: 'multipart/mixed' }, { docs: [{ id: 'small' }] });
    assert.equal(r.status, 200);
    const before = kb();
    r = await rawPost(srv.url, '/big/_bulk_get', { ...J, Accept: 'multipart/mixed' }, { docs: [{ id: 'doc' }, { id: 'doc' }] });
    const peak = kb();
    const { parts, closed } = splitMultipart(r.body, boundary(r.headers['content-type']));
    assert.ok(closed);
    assert.equal(parts.length, 2);
    for (const p of parts.map(readPart)) assert.ok(p.atts[0].body.equals(data), 'byte-exact');
    const grew = (peak - before) / 1024;
    assert.ok(grew < 8, `peak RSS grew by ${grew.toFixed(1)} MiB streaming 32 MiB of attachments`);
  } finally {
    await srv.stop();
  }
});
