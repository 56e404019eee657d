// HTTPS as CouchDB 3's [ssl] section: enable, port, cert_file, key_file.
// The certificate is self-signed, made here with the openssl command; the
// client is node's https module trusting exactly that certificate.  Both
// listeners serve the same routes and data; garbage on the TLS port does
// not disturb anyone else.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { request, runToExit, startServer, tempDir } from './helpers.mjs';

function makeCert(dir, name) {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  return { key, cert, pem: readFileSync(cert) };
}

// The HTTPS URL the server logs once it listens (port 0 picks a free one).
async function httpsUrl(srv) {
  for (let i = 0; i < 100; i++) {
    const m = /divan listening on (https:\/\/\S+\/)/.exec(srv.log());
    if (m) return m[1];
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no https line in the log:\n${srv.log()}`);
}

// One HTTPS exchange; resolves {status, headers, text, json}.
// Basic credentials of the admin the server is started with (ignored by a
// server without authentication).
function httpsRequest(base, pathname, { method = 'GET', body, ca, headers = {} } = {}) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = https.request({ host: u.hostname, port: u.port, path: pathname, method, ca, agent: false, auth: 'tlsadmin:tls-pw',
      headers: { ...headers, ...(body ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {}) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json, protocol: req.socket.getProtocol?.() });
      });
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

describe('HTTPS listener', () => {
  let srv;
  let surl;
  let cert;
  before(async () => {
    const dir = tempDir('divan-tls-');
    cert = makeCert(dir, 'server');
    const ini = path.join(dir, 'tls.ini');
    writeFileSync(ini, `[ssl]\nenable = true\nport = 0\ncert_file = ${cert.cert}\nkey_file = ${cert.key}\n`);
    srv = await startServer({ args: ['--admin', 'tlsadmin:tls-pw', '--config', ini] });
    surl = await httpsUrl(srv);
  });
  after(() => srv.stop());

  test('serves the same routes as plain HTTP, on its own port', async () => {
    assert.notEqual(new URL(surl).port, new URL(srv.url).port);
    const welcome = await httpsRequest(surl, '/', { ca: cert.pem });
    assert.equal(welcome.status, 200);
    assert.equal(welcome.json.couchdb, 'Welcome');
    assert.match(welcome.headers.server, /^CouchDB\//);
    assert.equal((await httpsRequest(surl, '/tlsdb', { method: 'PUT', ca: cert.pem })).status, 201);
    const put = await httpsRequest(surl, '/tlsdb/doc', { method: 'PUT', ca: cert.pem, body: JSON.stringify({ over: 'tls' }) });
    assert.equal(put.status, 201);
    // the same database seen over plain HTTP, and the other way round
    const plain = await request(srv.url, '/tlsdb/doc');
    assert.equal(plain.json.over, 'tls');
    await request(srv.url, '/tlsdb/doc2', { method: 'PUT', body: JSON.stringify({ over: 'http' }) });
    const back = await httpsRequest(surl, '/tlsdb/doc2', { ca: cert.pem });
    assert.equal(back.json.over, 'http');
    const missing = await httpsRequest(surl, '/tlsdb/nope', { ca: cert.pem });
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, { error: 'not_found', reason: 'missing' });
  });

  test('negotiates TLS 1.2 or later and presents the configured certificate', async () => {
    const u = new URL(surl);
    const info = await new Promise((resolve, reject) => {
      const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: cert.pem }, () => {
        resolve({ protocol: s.getProtocol(), fp: s.getPeerCertificate().fingerprint256 });
        s.end();
      });
      s.on('error', reject);
    });
    assert.match(info.protocol, /^TLSv1\.[23]$/);
    assert.equal(info.fp, new (await import('node:crypto')).X509Certificate(cert.pem).fingerprint256);
    // a client that does not trust the certificate refuses it
    await assert.rejects(httpsRequest(surl, '/', {}), /self[- ]signed|unable to verify/i);
    // TLS 1.1 is refused by the server
    await assert.rejects(new Promise((resolve, reject) => {
      const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: cert.pem, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }, resolve);
      s.on('error', reject);
    }));
  });

  test('garbage, plain HTTP and stalled handshakes on the TLS port hurt no one else', async () => {
    const port = Number(new URL(surl).port);
    const bad = [];
    const open = (bytes) => {
      const s = net.connect(port, '127.0.0.1');
      const c = { s, closed: new Promise((resolve) => s.on('close', resolve)) };
      s.on('error', () => {});
      if (bytes) s.write(bytes);
      bad.push(c);
      return c;
    };
    for (let i = 0; i < 20; i++) open(Buffer.from(Array.from({ length: 512 }, (_, k) => (k * 131 + i * 17) & 0xff)));
    for (let i = 0; i < 10; i++) open('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    // a ClientHello cut off half way, and connections that send nothing
    const hello = Buffer.from('16030100c4010000c00303', 'hex');
    for (let i = 0; i < 10; i++) open(hello);
    for (let i = 0; i < 10; i++) open(null);
    for (let i = 0; i < 5; i++) {
      const r = await httpsRequest(surl, '/_up', { ca: cert.pem });
      assert.equal(r.status, 200);
      assert.equal((await request(srv.url, '/_up')).status, 200);
    }
    // the garbage and plain-HTTP connections are closed by the server at once
    await Promise.race([
      Promise.all(bad.slice(0, 30).map((c) => c.closed)),
      new Promise((_, reject) => setTimeout(() => reject(new Error('garbage connections still open')), 5000)),
    ]);
    const r = await httpsRequest(surl, '/tlsdb/doc', { ca: cert.pem });
    assert.equal(r.json.over, 'tls');
    // the stalled handshakes stay open (h2o's handshake timeout is 10 s)
    // until the stop below, which must not wait for them
    const stalled = bad.slice(30);
    assert.equal((await Promise.race([Promise.any(stalled.map((c) => c.closed)).then(() => 'closed'),
      new Promise((res) => setTimeout(() => res('open'), 300))])), 'open');
    const t0 = Date.now();
    const st = await srv.stop();
    assert.equal(st.code, 0);
    assert.ok(Date.now() - t0 < 5000, `stop took ${Date.now() - t0} ms`);
    await Promise.all(stalled.map((c) => c.closed));
  });
});

test('[ssl] enable without a usable certificate stops start-up', async () => {
  const dir = tempDir('divan-tls-bad-');
  const a = makeCert(dir, 'a');
  const b = makeCert(dir, 'b');
  const encrypted = path.join(dir, 'enc.key');
  execFileSync('openssl', ['pkey', '-in', a.key, '-aes256', '-passout', 'pass:sesame', '-out', encrypted]);
  const cases = [
    ['[ssl]\nenable = true\n', /cert_file and key_file/],
    [`[ssl]\nenable = true\ncert_file = ${path.join(dir, 'missing.crt')}\nkey_file = ${a.key}\n`, /certificate chain/],
    [`[ssl]\nenable = true\ncert_file = ${a.cert}\nkey_file = ${b.key}\n`, /key values mismatch|does not match/],
    // an encrypted key is refused, not prompted for on a terminal
    [`[ssl]\nenable = true\ncert_file = ${a.cert}\nkey_file = ${encrypted}\n`, /cannot load the private key/],
  ];
  for (const [text, re] of cases) {
    const ini = path.join(dir, 'bad.ini');
    writeFileSync(ini, text);
    const r = await runToExit(['--data', path.join(dir, 'data'), '--port', '0', '--config', ini]);
    assert.notEqual(r.code, 0);
    assert.match(r.log, re);
    assert.doesNotMatch(r.log, /BEGIN|PRIVATE KEY|sesame/);
  }
});
