// CORS as CouchDB 3 (chttpd_cors): [chttpd] enable_cors (or [httpd]),
// [cors] origins / credentials / methods / headers / max_age; preflights
// answered with 204 before anything else, simple requests from an accepted
// origin get Access-Control-Allow-Origin (+ -Credentials) and
// Access-Control-Expose-Headers, any other origin gets no CORS header.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { request, startServer, tempDir } from './helpers.mjs';

function configFile(text) {
  const f = path.join(tempDir('divan-cors-'), 'cors.ini');
  writeFileSync(f, text);
  return f;
}

const corsHeaders = (h) => [...h.keys()].filter((k) => k.startsWith('access-control-'));

describe('CORS with a list of origins', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      args: ['--config', configFile('[chttpd]\nenable_cors = true\nmax_http_request_size = 4096\n' +
        '[cors]\norigins = http://a.example, https://b.example:8443\n' +
        'credentials = true\nmax_age = 3600\n')],
    });
  });
  after(() => srv.stop());

  test('preflight from an accepted origin: 204 with the Allow headers', async () => {
    const r = await request(srv.url, '/db/doc', {
      method: 'OPTIONS',
      headers: { Origin: 'http://a.example', 'Access-Control-Request-Method': 'PUT',
        'Access-Control-Request-Headers': 'Content-Type, X-Requested-With' },
    });
    assert.equal(r.status, 204);
    assert.equal(r.text, '');
    assert.equal(r.headers.get('access-control-allow-origin'), 'http://a.example');
    assert.equal(r.headers.get('access-control-allow-credentials'), 'true');
    assert.equal(r.headers.get('access-control-max-age'), '3600');
    assert.equal(r.headers.get('access-control-allow-methods'), 'CONNECT, COPY, DELETE, GET, HEAD, OPTIONS, POST, PUT, TRACE');
    assert.equal(r.headers.get('access-control-allow-headers'), 'Content-Type, X-Requested-With');
    assert.equal(r.headers.get('content-type'), null);
  });

  test('preflight needs no credentials and works on any path', async () => {
    const r = await request(srv.url, '/_session', {
      method: 'OPTIONS',
      headers: { Origin: 'https://b.example:8443', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://b.example:8443');
    assert.equal(r.headers.get('access-control-allow-headers'), '');
  });

  // Not a preflight: the OPTIONS request goes on like any other (405 here),
  // with the simple-request CORS headers when its origin is accepted, as
  // CouchDB does; the preflight-only headers never appear.
  test('preflights the config refuses are ordinary OPTIONS requests', async () => {
    const cases = [
      { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'GET' }, // origin not listed
      { Origin: 'http://A.example', 'Access-Control-Request-Method': 'GET' }, // case-sensitive match
      { Origin: 'http://a.example' }, // no requested method
      { Origin: 'http://a.example', 'Access-Control-Request-Method': 'get' }, // methods are case-sensitive
      { Origin: 'http://a.example', 'Access-Control-Request-Method': 'PATCH' },
      { Origin: 'http://a.example', 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'x-secret' },
      { 'Access-Control-Request-Method': 'GET' }, // no origin
    ];
    for (const headers of cases) {
      const r = await request(srv.url, '/', { method: 'OPTIONS', headers });
      const what = JSON.stringify(headers);
      assert.equal(r.status, 405, what);
      assert.equal(r.headers.get('access-control-allow-methods'), null, what);
      assert.equal(r.headers.get('access-control-max-age'), null, what);
      if (headers.Origin === 'http://a.example') assert.equal(r.headers.get('access-control-allow-origin'), 'http://a.example');
      else assert.deepEqual(corsHeaders(r.headers), [], what);
    }
  });

  test('simple request from an accepted origin', async () => {
    const r = await request(srv.url, '/', { headers: { Origin: 'http://a.example' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), 'http://a.example');
    assert.equal(r.headers.get('access-control-allow-credentials'), 'true');
    assert.equal(r.headers.get('access-control-expose-headers'),
      'content-type, cache-control, accept-ranges, etag, server, x-couch-request-id, x-couch-update-newrev, x-couchdb-body-time');
    // errors and streamed responses carry them too
    const e = await request(srv.url, '/nope', { headers: { Origin: 'http://a.example' } });
    assert.equal(e.status, 404);
    assert.equal(e.headers.get('access-control-allow-origin'), 'http://a.example');
    await request(srv.url, '/corsdb', { method: 'PUT' });
    const s = await request(srv.url, '/corsdb/_all_docs', { headers: { Origin: 'https://b.example:8443' } });
    assert.equal(s.status, 200);
    assert.equal(s.headers.get('access-control-allow-origin'), 'https://b.example:8443');
    // h2o's own answers too: a body over max_http_request_size
    const big = await request(srv.url, '/corsdb/big', { method: 'PUT', headers: { Origin: 'http://a.example' }, body: 'x'.repeat(10000) });
    assert.equal(big.status, 413);
    assert.equal(big.json.error, 'too_large');
    assert.equal(big.headers.get('access-control-allow-origin'), 'http://a.example');
    const bigEvil = await request(srv.url, '/corsdb/big', { method: 'PUT', headers: { Origin: 'http://evil.example' }, body: 'x'.repeat(10000) });
    assert.equal(bigEvil.status, 413);
    assert.deepEqual(corsHeaders(bigEvil.headers), []);
  });

  test('a disallowed or absent origin gets no CORS header', async () => {
    for (const headers of [{ Origin: 'http://evil.example' }, { Origin: 'null' }, {}]) {
      const r = await request(srv.url, '/', { headers });
      assert.equal(r.status, 200);
      assert.deepEqual(corsHeaders(r.headers), []);
    }
  });
});

describe('CORS with origins = * and custom lists', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      args: ['--config', configFile('[httpd]\nenable_cors = true\n[cors]\norigins = *\ncredentials = true\n' +
        'methods = GET, POST\nheaders = accept, content-type\n')],
    });
  });
  after(() => srv.stop());

  test('any origin is echoed back; credentials never for the literal origin *', async () => {
    let r = await request(srv.url, '/', { headers: { Origin: 'http://anything.example' } });
    assert.equal(r.headers.get('access-control-allow-origin'), 'http://anything.example');
    assert.equal(r.headers.get('access-control-allow-credentials'), 'true');
    r = await request(srv.url, '/', { headers: { Origin: '*' } });
    assert.equal(r.headers.get('access-control-allow-origin'), '*');
    assert.equal(r.headers.get('access-control-allow-credentials'), null);
  });

  test('preflight checks the configured methods and headers', async () => {
    let r = await request(srv.url, '/', { method: 'OPTIONS',
      headers: { Origin: 'http://x.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'ACCEPT,content-type' } });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-methods'), 'GET, POST');
    assert.equal(r.headers.get('access-control-max-age'), '600');
    assert.equal(r.headers.get('access-control-allow-headers'), 'ACCEPT,content-type');
    r = await request(srv.url, '/', { method: 'OPTIONS',
      headers: { Origin: 'http://x.example', 'Access-Control-Request-Method': 'PUT' } });
    assert.notEqual(r.status, 204);
    r = await request(srv.url, '/', { method: 'OPTIONS',
      headers: { Origin: 'http://x.example', 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' } });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('access-control-allow-methods'), null);
  });
});

test('CORS is off by default', async () => {
  const srv = await startServer({ args: ['--config', configFile('[cors]\norigins = *\n')] });
  try {
    const r = await request(srv.url, '/', { method: 'OPTIONS',
      headers: { Origin: 'http://x.example', 'Access-Control-Request-Method': 'GET' } });
    assert.notEqual(r.status, 204);
    const g = await request(srv.url, '/', { headers: { Origin: 'http://x.example' } });
    assert.deepEqual(corsHeaders(g.headers), []);
  } finally {
    await srv.stop();
  }
});
