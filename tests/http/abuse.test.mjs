// Abusive clients must not hurt the others: thousands of idle connections,
// slowloris senders (headers or body a few bytes at a time), oversized
// bodies and headers, connections beyond [divan] max_connections — all on
// loopback while a normal client keeps getting correct answers, with the
// server's memory staying bounded.  [divan] request_timeout_ms is short
// here so that the drops happen within the test.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { smallQuarantineEnv, startServer, tempDir } from './helpers.mjs';

const TIMEOUT_MS = 2000;

function configFile(text) {
  const f = path.join(tempDir('divan-abuse-'), 'abuse.ini');
  writeFileSync(f, text);
  return f;
}

function procStatus(pid, key) {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

// Descriptors this test process may open (the server raises its own).
function nofileSoft() {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? 1 << 20 : Number(m[1]);
}

// A raw TCP client: records what the server sends and when it hangs up.
function rawClient(port) {
  const c = { sock: net.connect(port, '127.0.0.1'), data: '', closedByServer: false, closedAt: 0, t0: Date.now() };
  c.connected = new Promise((resolve, reject) => { c.sock.once('connect', resolve); c.sock.once('error', reject); });
  c.sock.on('data', (d) => { c.data += d; });
  // The server's close is a FIN ('end'), or a reset when it closes with
  // bytes of ours unread (a partial body, a drip in flight): both are its
  // doing, since these clients never close first.
  c.sock.on('error', (e) => { if (e.code === 'ECONNRESET' || e.code === 'EPIPE') c.closedByServer = true; });
  c.sock.on('end', () => { c.closedByServer = true; });
  c.closed = new Promise((resolve) => c.sock.on('close', () => { c.closedAt = Date.now(); resolve(c); }));
  return c;
}

// Writes `chunk` every `ms` until the socket closes.
function drip(c, chunk, ms) {
  const t = setInterval(() => { if (!c.sock.destroyed) c.sock.write(chunk); }, ms);
  c.closed.then(() => clearInterval(t));
}

const within = (p, ms, what) => Promise.race([
  p, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)),
]);

// The normal client: one new connection per request (Connection: close),
// so that no reused keep-alive connection races the server's idle timeout,
// and Basic credentials of the admin every server here is started with.
const ADMIN = ['--admin', 'abuser:abuse-pw'];
function request(base, pathname, { method = 'GET', body } = {}) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: pathname, method, agent: false, auth: 'abuser:abuse-pw',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

// A normal client's session: create, read back, list; every answer checked.
async function normalRound(url, db, i) {
  const t0 = Date.now();
  const put = await request(url, `/${db}/doc${i}`, { method: 'PUT', body: JSON.stringify({ i }) });
  assert.equal(put.status, 201, put.text);
  const get = await request(url, `/${db}/doc${i}`);
  assert.equal(get.status, 200);
  assert.equal(get.json.i, i);
  const up = await request(url, '/_up');
  assert.equal(up.status, 200);
  return Date.now() - t0;
}

describe('abusive clients', () => {
  let srv;
  let port;
  before(async () => {
    srv = await startServer({
      env: smallQuarantineEnv(),
      args: [...ADMIN, '--config', configFile(`[divan]\nrequest_timeout_ms = ${TIMEOUT_MS}\nmax_connections = 8000\n` +
        '[chttpd]\nmax_http_request_size = 1048576\n')],
    });
    port = Number(new URL(srv.url).port);
    assert.equal((await request(srv.url, '/abuse', { method: 'PUT' })).status, 201);
  });
  after(() => srv.stop());

  test('idle connections, slowloris headers and bodies are dropped; a normal client is served meanwhile', async (t) => {
    const pid = srv.child.pid;
    await normalRound(srv.url, 'abuse', -1); // warm up before the baseline
    const rss0 = procStatus(pid, 'VmRSS');
    const nIdle = Math.max(100, Math.min(2000, Math.floor((nofileSoft() - 300) / 2)));
    const idle = [];
    for (let i = 0; i < nIdle; i++) idle.push(rawClient(port));
    await Promise.all(idle.map((c) => c.connected));
    const slowHeaders = [];
    for (let i = 0; i < 40; i++) {
      const c = rawClient(port);
      c.sock.write('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      drip(c, 'a', 50);
      slowHeaders.push(c);
    }
    const slowBodies = [];
    for (let i = 0; i < 40; i++) {
      const c = rawClient(port);
      c.sock.write(`PUT /abuse/slow${i} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"a":"`);
      drip(c, 'b'.repeat(50), 50);
      slowBodies.push(c);
    }
    // Large bodies that stop short of their Content-Length (buffered by h2o
    // until the timeout drops them).
    const bigPartial = [];
    for (let i = 0; i < 20; i++) {
      const c = rawClient(port);
      c.sock.write(`PUT /abuse/big${i} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n` + 'x'.repeat(900000));
      bigPartial.push(c);
    }
    const abusers = [...idle, ...slowHeaders, ...slowBodies, ...bigPartial];

    // The normal client, while all of the above is open.
    let worst = 0;
    let peak = 0;
    let rounds = 0;
    const until = Date.now() + TIMEOUT_MS / 2;
    while (Date.now() < until) {
      worst = Math.max(worst, await normalRound(srv.url, 'abuse', rounds++));
      peak = Math.max(peak, procStatus(pid, 'VmRSS'));
    }
    assert.ok(rounds >= 3, `only ${rounds} rounds`);
    // Served while the abusers were still there, not after they were dropped.
    assert.ok(worst < TIMEOUT_MS, `a normal round took ${worst} ms`);
    // Nothing is dropped before its own deadline (the clock starts at its
    // connect: on a slow run the first idle ones may pass it while the
    // others are still being opened), and most were still open throughout.
    const early = abusers.filter((c) => c.closedAt && c.closedAt - c.t0 < TIMEOUT_MS - 200);
    assert.equal(early.length, 0, `${early.length} dropped before their deadline`);
    const open = abusers.filter((c) => !c.closedAt).length;
    assert.ok(open >= abusers.length * 0.9, `only ${open} of ${abusers.length} abusers still open`);

    // Every abuser is dropped by the server once its deadline passes.
    await within(Promise.all(abusers.map((c) => c.closed)), TIMEOUT_MS + 8000, 'abusers dropped');
    assert.equal(abusers.filter((c) => !c.closedByServer).length, 0);
    for (const c of [...slowHeaders, ...slowBodies]) assert.equal(c.data, '', 'dropped without an answer');
    for (let i = 0; i < 3; i++) peak = Math.max(peak, procStatus(pid, 'VmRSS'));
    // Bounded memory: the connections, the dripped bytes and 20 x 900 KB
    // of partial bodies (held in memory: only bodies past 2 MiB go to a spill file).
    const grew = peak - rss0;
    t.diagnostic(`${nIdle} idle; worst normal round ${worst} ms over ${rounds}; RSS ${Math.round(rss0 / 1048576)} -> peak ${Math.round(peak / 1048576)} MiB`);
    assert.ok(grew < 256 * 1024 * 1024, `RSS grew by ${Math.round(grew / 1048576)} MiB`);
    // None of the slow writes happened.
    const all = await request(srv.url, '/abuse/_all_docs');
    assert.equal(all.json.rows.filter((r) => /^(slow|big)/.test(r.id)).length, 0);
    await normalRound(srv.url, 'abuse', rounds);
  });

  test('oversized bodies get 413 and oversized headers 400; the connection closes, others go on', async () => {
    const cases = [
      { req: 'PUT /abuse/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n', status: 413, json: { error: 'too_large', reason: 'the request entity is too large' } },
      { req: 'POST /abuse/_bulk_docs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' + `10000\r\n${'a'.repeat(65536)}\r\n`.repeat(20), status: 413, json: { error: 'too_large', reason: 'the request entity is too large' } },
      { req: `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'h'.repeat(500000)}\r\n\r\n`, status: 400 },
      // HTTP/1.1 only, as CouchDB: no prior-knowledge HTTP/2
      { req: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', status: 400 },
      { req: `GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 150 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`, status: 400 },
    ];
    let seq = 0;
    for (const { req, status, json } of cases) {
      const c = rawClient(port);
      c.sock.write(req);
      await within(c.closed, 5000, `closed after ${status}`);
      assert.match(c.data, new RegExp(`^HTTP/1.1 ${status} `));
      if (json) assert.deepEqual(JSON.parse(c.data.slice(c.data.indexOf('\r\n\r\n') + 4)), json);
      await normalRound(srv.url, 'abuse', `x${seq++}`);
    }
    // JSON nested beyond [chttpd] max_json_depth (512): 400, nothing stored
    const deep = await request(srv.url, '/abuse/deep', { method: 'PUT', body: `{"a":${'['.repeat(100000)}${']'.repeat(100000)}}` });
    assert.equal(deep.status, 400);
    assert.equal(deep.json.error, 'bad_request');
    assert.equal((await request(srv.url, '/abuse/deep')).status, 404);
    const deepBulk = await request(srv.url, '/abuse/_bulk_docs', { method: 'POST', body: `{"docs":[{"a":${'{"b":'.repeat(5000)}1${'}'.repeat(5000)}}]}` });
    assert.equal(deepBulk.status, 400);
    // and no h2c upgrade: the request is answered over HTTP/1.1
    const up = rawClient(port);
    up.sock.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n');
    await within(up.closed, 5000, 'h2c upgrade answered');
    assert.match(up.data, /^HTTP\/1.1 200 /);
    assert.match(up.data, /"couchdb":"Welcome"/);
    // Within the limit, a large body is fine.
    const big = await request(srv.url, '/abuse/large', { method: 'PUT', body: JSON.stringify({ s: 'z'.repeat(1000000) }) });
    assert.equal(big.status, 201);
    const back = await request(srv.url, '/abuse/large');
    assert.equal(back.json.s.length, 1000000);
  });
});

test('connections beyond [divan] max_connections are closed at once; service resumes', async () => {
  const srv = await startServer({
    args: [...ADMIN, '--config', configFile('[divan]\nrequest_timeout_ms = 1000\nmax_connections = 30\n')],
  });
  try {
    const port = Number(new URL(srv.url).port);
    await new Promise((r) => setTimeout(r, 1200)); // the start-up probe's keep-alive connection times out
    const held = [];
    for (let i = 0; i < 30; i++) held.push(rawClient(port));
    await Promise.all(held.map((c) => c.connected));
    await new Promise((r) => setTimeout(r, 100));
    const extra = [];
    for (let i = 0; i < 10; i++) extra.push(rawClient(port));
    await within(Promise.all(extra.map((c) => c.closed)), 900, 'extra connections closed');
    assert.equal(held.filter((c) => c.closedAt).length, 0, 'the 30 admitted ones are still open');
    assert.match(srv.log(), /max_connections/);
    // The held ones time out; then a normal client gets in again.
    await within(Promise.all(held.map((c) => c.closed)), 5000, 'held connections time out');
    const r = await request(srv.url, '/_up');
    assert.equal(r.status, 200);
  } finally {
    await srv.stop();
  }
});
