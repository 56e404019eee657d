// server.test.mjs — the server-level HTTP API against a real divan:
// welcome, /_up, /_uuids, CouchDB's error answers, headers, configuration
// files and flags, admin password hashing, signals.
import assert from 'node:assert/strict';
import { pbkdf2Sync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort, request, runToExit, startServer, tempDir } from './helpers.mjs';

const HEX32 = /^[0-9a-f]{32}$/;

// Checks a stored CouchDB admin hash against the password with Node's own
// PBKDF2 (an implementation independent of divan's).
function assertCouchHash(stored, password, iterations) {
  const m = /^-pbkdf2:sha256-([0-9a-f]{64}),([0-9a-f]{32}),(\d+)$/.exec(stored);
  assert.ok(m, `not a CouchDB pbkdf2 sha256 hash: ${stored}`);
  assert.equal(Number(m[3]), iterations);
  assert.equal(pbkdf2Sync(password, m[2], Number(m[3]), 32, 'sha256').toString('hex'), m[1]);
}

function iniValue(text, section, key) {
  let cur = null;
  for (const line of text.split('\n')) {
    const s = /^\s*\[([^\]]+)\]/.exec(line);
    if (s) { cur = s[1].trim(); continue; }
    const kv = /^\s*([^=;#\s][^=]*?)\s*=\s*(.*?)\s*$/.exec(line);
    if (kv && cur === section && kv[1] === key) return kv[2];
  }
  return undefined;
}

describe('one server', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('GET / answers the welcome object', async () => {
    const r = await request(srv.url, '/');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(r.headers.get('cache-control'), 'must-revalidate');
    assert.match(r.headers.get('server'), /^CouchDB\/3\.\d+\.\d+ \(divan\/\d+\.\d+\.\d+\)$/);
    assert.match(r.headers.get('x-couch-request-id'), /^[0-9a-f]{10}$/);
    assert.equal(Number(r.headers.get('content-length')), Buffer.byteLength(r.text));
    assert.ok(r.text.endsWith('}\n'), 'JSON ends with a newline');
    const b = r.json;
    assert.deepEqual(Object.keys(b), ['couchdb', 'version', 'git_sha', 'uuid', 'features', 'vendor']);
    assert.equal(b.couchdb, 'Welcome');
    assert.match(b.version, /^3\.\d+\.\d+$/);
    assert.equal(typeof b.git_sha, 'string');
    assert.match(b.uuid, HEX32);
    assert.ok(Array.isArray(b.features));
    assert.deepEqual(b.vendor, { name: 'divan' });
    // the uuid is the one persisted in the data directory
    const local = readFileSync(path.join(srv.dir, '.divan.ini'), 'utf8');
    assert.equal(iniValue(local, 'couchdb', 'uuid'), b.uuid);
  });

  test('HEAD / sends GET\'s headers and no body', async () => {
    const get = await request(srv.url, '/');
    const head = await request(srv.url, '/', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    assert.equal(head.headers.get('content-length'), get.headers.get('content-length'));
    assert.equal(head.headers.get('content-type'), 'application/json');
  });

  test('GET /_up', async () => {
    const r = await request(srv.url, '/_up');
    assert.equal(r.status, 200);
    assert.equal(r.json.status, 'ok');
    assert.ok(r.text.endsWith('\n'));
  });

  test('GET /_uuids: default one id, count=N distinct sequential ids', async () => {
    let r = await request(srv.url, '/_uuids');
    assert.equal(r.status, 200);
    assert.equal(r.json.uuids.length, 1);
    assert.match(r.json.uuids[0], HEX32);
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    assert.equal(r.headers.get('pragma'), 'no-cache');
    assert.equal(r.headers.get('expires'), 'Mon, 01 Jan 1990 00:00:00 GMT');
    assert.match(r.headers.get('etag'), /^"[0-9A-F]+"$/);
    assert.ok(r.text.endsWith('\n'));

    const seen = new Set();
    for (let i = 0; i < 5; i++) {
      r = await request(srv.url, '/_uuids?count=1000');
      assert.equal(r.status, 200);
      const ids = r.json.uuids;
      assert.equal(ids.length, 1000);
      const prefixes = new Set();
      for (let j = 0; j < ids.length; j++) {
        assert.match(ids[j], HEX32);
        seen.add(ids[j]);
        prefixes.add(ids[j].slice(0, 26));
        // sequential: same 26-digit prefix, growing 6-digit suffix
        if (j > 0 && ids[j].slice(0, 26) === ids[j - 1].slice(0, 26)) {
          assert.ok(ids[j] > ids[j - 1], `${ids[j]} after ${ids[j - 1]}`);
        }
      }
      assert.ok(prefixes.size <= 2, 'a prefix lasts thousands of ids');
    }
    assert.equal(seen.size, 5000, 'ids are unique');

    r = await request(srv.url, '/_uuids?count=0');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { uuids: [] });
    r = await request(srv.url, '/_uuids?count=%2B2&count=7');
    assert.equal(r.json.uuids.length, 2, 'first count wins, sign allowed');
    r = await request(srv.url, '/_uuids/anything?count=3');
    assert.equal(r.json.uuids.length, 3);
  });

  test('GET /_uuids rejects bad counts as CouchDB does', async () => {
    let r = await request(srv.url, '/_uuids?count=1001');
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'bad_request', reason: 'count parameter too large' });
    r = await request(srv.url, '/_uuids?count=99999999999999999999999');
    assert.deepEqual(r.json, { error: 'bad_request', reason: 'count parameter too large' });
    for (const bad of ['-1', 'abc', '', '1.5', '1e3', '%201', '0x10']) {
      r = await request(srv.url, `/_uuids?count=${bad}`);
      assert.equal(r.status, 400, `count=${bad}`);
      assert.deepEqual(r.json, { error: 'bad_request', reason: 'count must be a positive integer' });
      assert.ok(r.text.endsWith('\n'));
    }
  });

  test('methods not allowed: 405 with Allow and CouchDB\'s reason', async () => {
    const cases = [
      ['POST', '/', 'GET,HEAD'],
      ['DELETE', '/', 'GET,HEAD'],
      ['PUT', '/_up', 'GET,HEAD'],
      ['POST', '/_uuids', 'GET'],
      ['DELETE', '/_uuids', 'GET'],
    ];
    for (const [method, p, allow] of cases) {
      const r = await request(srv.url, p, { method });
      assert.equal(r.status, 405, `${method} ${p}`);
      assert.equal(r.headers.get('allow'), allow);
      assert.deepEqual(r.json, { error: 'method_not_allowed', reason: `Only ${allow} allowed` });
      assert.ok(r.text.endsWith('\n'));
    }
  });

  test('paths of a missing database answer 404 Database does not exist.', async () => {
    for (const p of ['/_nonexistent', '/somedb', '/somedb/docid', '/somedb/_design/x', '/db%2Fwith%2Fslash']) {
      const r = await request(srv.url, p);
      assert.equal(r.status, 404, p);
      assert.deepEqual(r.json, { error: 'not_found', reason: 'Database does not exist.' });
      assert.equal(r.headers.get('cache-control'), 'must-revalidate');
    }
    const del = await request(srv.url, '/somedb', { method: 'DELETE' });
    assert.equal(del.status, 404);
  });

  test('PUT /{db} checks the name, percent-decoded ("+" is a space)', async () => {
    const cases = [['/_foo', '_foo'], ['/Abc', 'Abc'], ['/Bad%20Name', 'Bad Name'], ['/a+b', 'a b'], ['/9lives', '9lives']];
    for (const [p, name] of cases) {
      const r = await request(srv.url, p, { method: 'PUT' });
      assert.equal(r.status, 400, p);
      assert.equal(r.json.error, 'illegal_database_name');
      assert.equal(r.json.reason, `Name: '${name}'. Only lowercase characters (a-z), digits (0-9), and any of the ` +
        'characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.');
    }
  });

  test('odd targets do not hurt the server', async () => {
    for (const p of ['/%', '/%zz', '/%00', '//', '/?&&;;=', '/_uuids?count', `/${'a/'.repeat(2000)}`]) {
      const r = await request(srv.url, p);
      assert.ok(r.status === 200 || r.status === 400 || r.status === 404, `${p}: ${r.status}`);
      assert.ok(r.json, `${p} answers JSON`);
    }
    const r = await request(srv.url, '/_up');
    assert.equal(r.status, 200);
  });
});

describe('configuration', () => {
  test('--config files in order, flags override files', async () => {
    const dir = tempDir();
    const data = path.join(dir, 'data');
    const [p1, p2] = [await freePort(), await freePort()];
    const a = path.join(dir, 'a.ini');
    const b = path.join(dir, 'b.ini');
    writeFileSync(a, `[couchdb]\ndatabase_dir = ${data}\n[chttpd]\nport = ${p1}\nbind_address = 127.0.0.1\n` +
      '[uuids]\nmax_count = 5\n[vendor]\nname = acme\nversion = 9\n');
    writeFileSync(b, '[vendor]\nname = acme2\n[log]\nlevel = info\n');

    // files only: port from a.ini, vendor name from b.ini (later file wins)
    let srv = await startServer({ dataDir: data, port: false, args: ['--config', a, '--config', b] });
    try {
      assert.equal(srv.url, `http://127.0.0.1:${p1}/`);
      const w = await request(srv.url, '/');
      assert.deepEqual(w.json.vendor, { name: 'acme2', version: '9' });
      assert.equal((await request(srv.url, '/_uuids?count=5')).status, 200);
      const r = await request(srv.url, '/_uuids?count=6');
      assert.deepEqual(r.json, { error: 'bad_request', reason: 'count parameter too large' });
    } finally {
      await srv.stop();
    }
    // a flag beats the file
    srv = await startServer({ dataDir: data, port: false, args: ['--config', a, '--config', b, '--port', String(p2)] });
    try {
      assert.equal(srv.url, `http://127.0.0.1:${p2}/`);
    } finally {
      await srv.stop();
    }
  });

  test('the server uuid survives restarts', async () => {
    const data = tempDir();
    let srv = await startServer({ dataDir: data });
    const u1 = (await request(srv.url, '/')).json.uuid;
    await srv.stop();
    srv = await startServer({ dataDir: data });
    const u2 = (await request(srv.url, '/')).json.uuid;
    await srv.stop();
    assert.equal(u1, u2);
  });

  test('[admins] plain passwords are hashed and written back; --admin is stored hashed', async () => {
    const dir = tempDir();
    const cfg = path.join(dir, 'local.ini');
    writeFileSync(cfg, '; my settings\n[admins]\nroot = plain pass;word\n\n[chttpd_auth]\niterations = 1000\n');
    const srv = await startServer({ args: ['--config', cfg, '--admin', 'ops:s3cr3t:colon'] });
    try {
      const text = readFileSync(cfg, 'utf8');
      assert.ok(!text.includes('plain pass'), 'clear text gone from the file');
      assert.ok(text.startsWith('; my settings\n[admins]\n'), 'comments and layout kept');
      assertCouchHash(iniValue(text, 'admins', 'root'), 'plain pass;word', 1000);
      const local = readFileSync(path.join(srv.dir, '.divan.ini'), 'utf8');
      assert.ok(!local.includes('s3cr3t'));
      assertCouchHash(iniValue(local, 'admins', 'ops'), 's3cr3t:colon', 1000);
      assert.ok(!srv.log().includes('s3cr3t') && !srv.log().includes('plain pass'), 'passwords never logged');
    } finally {
      await srv.stop();
    }
  });

  test('bad command lines and configs stop start-up', async () => {
    let r = await runToExit(['--bogus', 'x']);
    assert.equal(r.code, 2);
    assert.match(r.log, /usage:/);
    const dir = tempDir();
    const bad = path.join(dir, 'bad.ini');
    writeFileSync(bad, '[log]\nlevel = loud\n');
    r = await runToExit(['--data', path.join(dir, 'd'), '--config', bad]);
    assert.equal(r.code, 1);
    assert.match(r.log, /\[log\] level = loud/);
    r = await runToExit(['--data', path.join(dir, 'd'), '--port', '70000']);
    assert.equal(r.code, 1);
    r = await runToExit(['--data', path.join(dir, 'd'), '--config', path.join(dir, 'missing.ini')]);
    assert.equal(r.code, 1);
  });
});

describe('processes', () => {
  test('SIGTERM and SIGINT stop the server promptly with exit status 0', async () => {
    for (const sig of ['SIGTERM', 'SIGINT']) {
      const srv = await startServer();
      // keep-alive connections must not hold the exit back
      for (let i = 0; i < 5; i++) assert.equal((await request(srv.url, '/')).status, 200);
      const res = await srv.stop(sig);
      assert.equal(res.code, 0, `${sig}: ${srv.log()}`);
      assert.ok(res.ms < 5000, `${sig} took ${res.ms} ms`);
      assert.match(srv.log(), /stopped/);
    }
  });

  test('requests racing a SIGTERM get complete answers or a refused connection', async () => {
    const srv = await startServer();
    const inflight = [];
    for (let i = 0; i < 50; i++) inflight.push(request(srv.url, '/_uuids?count=100').catch((e) => e));
    const stopping = srv.stop();
    const results = await Promise.all(inflight);
    for (const r of results) {
      if (r instanceof Error) continue; // connection refused or reset after the listener closed
      assert.equal(r.status, 200);
      assert.equal(r.json.uuids.length, 100);
    }
    assert.equal((await stopping).code, 0);
  });

  test('two servers on two ports; a busy port is refused', async () => {
    const a = await startServer();
    const b = await startServer();
    try {
      assert.notEqual(a.url, b.url);
      const [wa, wb] = [await request(a.url, '/'), await request(b.url, '/')];
      assert.notEqual(wa.json.uuid, wb.json.uuid);
      const port = new URL(a.url).port;
      const r = await runToExit(['--data', tempDir(), '--port', port, '--admin', 'a:b']);
      assert.equal(r.code, 1);
      assert.match(r.log, /cannot listen/);
      assert.equal((await request(a.url, '/_up')).status, 200);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
