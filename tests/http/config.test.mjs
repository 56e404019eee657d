// config.test.mjs — /_node/{node}/_config (CouchDB 3's configuration API)
// and JWT authentication, against a real server.
//
// The server is started with [chttpd] authentication_handlers naming the
// JWT handler and [jwt_keys] holding an HMAC secret, an RSA and an EC
// public key; admin requests carry a JWT with the role _admin, signed in
// the test with node:crypto.  Anonymous requests go through fetch directly
// (no default credentials), so the 401 checks hold whatever credentials
// helpers.mjs may send by default.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, request, tempDir } from './helpers.mjs';

const SECRET = crypto.randomBytes(32);
const RSA = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const EC = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const EC384 = crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' });
const pemLine = (k) => k.export({ type: 'spki', format: 'pem' }).trim().replace(/\n/g, '\\n');
const HANDLERS = '{chttpd_auth, jwt_authentication_handler}, {chttpd_auth, cookie_authentication_handler}, {chttpd_auth, default_authentication_handler}';

const b64u = (buf) => Buffer.from(buf).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

// A compact JWS signed with the key the alg calls for.
function jwt(claims, { alg = 'HS256', kid, key, header = {} } = {}) {
  const h = { alg, typ: 'JWT', ...header };
  if (kid) h.kid = kid;
  const input = `${b64u(JSON.stringify(h))}.${b64u(JSON.stringify(claims))}`;
  let sig;
  const bits = alg.slice(2);
  if (alg.startsWith('HS')) sig = crypto.createHmac(`sha${bits}`, key ?? SECRET).update(input).digest();
  else if (alg.startsWith('RS')) sig = crypto.sign(`sha${bits}`, Buffer.from(input), key ?? RSA.privateKey);
  else if (alg.startsWith('ES')) sig = crypto.sign(`sha${bits}`, Buffer.from(input), { key: key ?? EC.privateKey, dsaEncoding: 'ieee-p1363' });
  else sig = Buffer.alloc(0);
  return `${input}.${b64u(sig)}`;
}

const ADMIN = () => jwt({ sub: 'jwtadmin', exp: now() + 600, '_couchdb.roles': ['_admin'] });
const bearer = (token) => ({ authorization: `Bearer ${token}` });

let srv;
let dir;
let iniPath;

function iniText() {
  return [
    '[chttpd]',
    `authentication_handlers = ${HANDLERS}`,
    '[jwt_keys]',
    `hmac:_default = ${SECRET.toString('base64')}`,
    `rsa:rkey = ${pemLine(RSA.publicKey)}`,
    `ec:ekey = ${pemLine(EC.publicKey)}`,
    `ec:ekey384 = ${pemLine(EC384.publicKey)}`,
    '[vendor]',
    'from_file = yes ; an inline comment',
    '',
  ].join('\n');
}

before(async () => {
  dir = tempDir('divan-config-');
  iniPath = path.join(dir, 'test.ini');
  writeFileSync(iniPath, iniText());
  srv = await startServer({ dataDir: path.join(dir, 'data'), args: ['--config', iniPath] });
});

after(async () => {
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// As admin (JWT unless other headers are given).
const admin = (p, init = {}) => request(srv.url, p, { ...init, headers: { ...bearer(ADMIN()), ...(init.headers ?? {}) } });
const anon = async (p, init = {}) => {
  const res = await fetch(new URL(srv.url).origin + p, init);
  return { status: res.status, headers: res.headers, json: await res.json() };
};

test('the config API is for server admins only: 401 without credentials, 403 without _admin', async () => {
  const a = await anon('/_node/_local/_config');
  assert.equal(a.status, 401);
  assert.deepEqual(a.json, { error: 'unauthorized', reason: 'You are not a server admin.' });
  const u = await request(srv.url, '/_node/_local/_config', {
    headers: bearer(jwt({ sub: 'bob', exp: now() + 600, '_couchdb.roles': ['reader'] })),
  });
  assert.equal(u.status, 403);
  assert.deepEqual(u.json, { error: 'forbidden', reason: 'You are not a server admin.' });
  const put = await anon('/_node/_local/_config/log/level', { method: 'PUT', body: '"debug"' });
  assert.equal(put.status, 401);
});

test('GET the whole config, a section, a key', async () => {
  const all = await admin('/_node/_local/_config');
  assert.equal(all.status, 200);
  assert.equal(all.json.chttpd.authentication_handlers, HANDLERS);
  assert.equal(all.json.vendor.from_file, 'yes', 'inline comment stripped');
  assert.equal(all.json.jwt_keys['hmac:_default'], SECRET.toString('base64'), 'keys keep their colon');
  assert.equal(all.json.jwt_keys['rsa:rkey'], pemLine(RSA.publicKey), 'long PEM lines are read whole');
  assert.match(all.json.couchdb.uuid, /^[0-9a-f]{32}$/);
  const sec = await admin('/_node/nonode@nohost/_config/jwt_keys');
  assert.equal(sec.status, 200);
  assert.deepEqual(Object.keys(sec.json).sort(), ['ec:ekey', 'ec:ekey384', 'hmac:_default', 'rsa:rkey']);
  const none = await admin('/_node/_local/_config/no_such_section');
  assert.equal(none.status, 200);
  assert.deepEqual(none.json, {});
  const key = await admin('/_node/_local/_config/chttpd/authentication_handlers');
  assert.equal(key.status, 200);
  assert.equal(key.text, `${JSON.stringify(HANDLERS)}\n`);
  const missing = await admin('/_node/_local/_config/vendor/nope');
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.json, { error: 'not_found', reason: 'unknown_config_value' });
  const node = await admin('/_node/other@host/_config');
  assert.equal(node.status, 404);
  assert.deepEqual(node.json, { error: 'not_found', reason: 'no such node: other@host' });
});

test('wrong methods get 405 with the Allow list; deeper paths 404', async () => {
  let r = await admin('/_node/_local/_config', { method: 'POST' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET');
  r = await admin('/_node/_local/_config/_reload');
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'POST');
  r = await admin('/_node/_local/_config/vendor', { method: 'PUT', body: '"x"' });
  assert.equal(r.status, 405);
  r = await admin('/_node/_local/_config/couchdb/uuid', { method: 'POST', body: '"x"' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET,PUT,DELETE');
  r = await admin('/_node/_local/_config/a/b/c');
  assert.equal(r.status, 404);
});

test('PUT answers the old value, persists to DATA/.divan.ini, survives a restart; DELETE answers the old value', async () => {
  let r = await admin('/_node/_local/_config/divan_test/k1', { method: 'PUT', body: '"  first  "' });
  assert.equal(r.status, 200);
  assert.equal(r.json, '', 'no old value');
  r = await admin('/_node/_local/_config/divan_test/k1', { method: 'PUT', body: JSON.stringify('second') });
  assert.equal(r.status, 200);
  assert.equal(r.json, 'first', 'the value was trimmed');
  assert.equal((await admin('/_node/_local/_config/divan_test/k1')).json, 'second');
  assert.match(readFileSync(path.join(srv.dir, '.divan.ini'), 'utf8'), /\[divan_test\]\nk1 = second\n/);
  // A key that came from the --config file is written back to that file.
  r = await admin('/_node/_local/_config/vendor/from_file', { method: 'PUT', body: '"changed"' });
  assert.equal(r.json, 'yes');
  assert.match(readFileSync(iniPath, 'utf8'), /from_file = changed/);

  await srv.stop();
  srv = await startServer({ dataDir: path.join(dir, 'data'), args: ['--config', iniPath] });
  assert.equal((await admin('/_node/_local/_config/divan_test/k1')).json, 'second');
  assert.equal((await admin('/_node/_local/_config/vendor/from_file')).json, 'changed');

  r = await admin('/_node/_local/_config/divan_test/k1', { method: 'DELETE' });
  assert.equal(r.status, 200);
  assert.equal(r.json, 'second');
  r = await admin('/_node/_local/_config/divan_test/k1', { method: 'DELETE' });
  assert.equal(r.status, 404);
  assert.deepEqual(r.json, { error: 'not_found', reason: 'unknown_config_value' });
  assert.doesNotMatch(readFileSync(path.join(srv.dir, '.divan.ini'), 'utf8'), /k1 =/);
  r = await admin('/_node/_local/_config/vendor/from_file', { method: 'DELETE' });
  assert.equal(r.json, 'changed');
  assert.doesNotMatch(readFileSync(iniPath, 'utf8'), /from_file/);
  writeFileSync(iniPath, iniText()); // back as the other tests expect
  r = await admin('/_node/_local/_config/_reload', { method: 'POST' });
  assert.deepEqual(r.json, { ok: true });
  assert.equal((await admin('/_node/_local/_config/vendor/from_file')).json, 'yes');
});

test('X-Couch-Persist: false changes memory only, and _reload drops it', async () => {
  let r = await admin('/_node/_local/_config/divan_test/volatile', {
    method: 'PUT', body: '"v"', headers: { 'x-couch-persist': 'false' },
  });
  assert.equal(r.status, 200);
  assert.equal((await admin('/_node/_local/_config/divan_test/volatile')).json, 'v');
  assert.doesNotMatch(readFileSync(path.join(srv.dir, '.divan.ini'), 'utf8'), /volatile/);
  r = await admin('/_node/_local/_config/_reload', { method: 'POST' });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { ok: true });
  assert.equal((await admin('/_node/_local/_config/divan_test/volatile')).status, 404);
});

test('an [admins] password is stored as its PBKDF2 hash', async () => {
  const r = await admin('/_node/_local/_config/admins/carol', { method: 'PUT', body: '"s3cret-pw"' });
  assert.equal(r.status, 200);
  const v = (await admin('/_node/_local/_config/admins/carol')).json;
  assert.match(v, /^-pbkdf2:sha256-[0-9a-f]+,[0-9a-f]{32},\d+$/);
  const file = readFileSync(path.join(srv.dir, '.divan.ini'), 'utf8');
  assert.ok(file.includes(`carol = ${v}`));
  assert.ok(!file.includes('s3cret-pw'));
  // Changing it answers the old hash, never a clear text.
  const again = await admin('/_node/_local/_config/admins/carol', { method: 'PUT', body: '"other-pw"' });
  assert.equal(again.json, v);
  await admin('/_node/_local/_config/admins/carol', { method: 'DELETE' });
});

test('bad PUT bodies and blacklisted sections change nothing', async () => {
  let r = await admin('/_node/_local/_config/divan_test/n', { method: 'PUT', body: '12' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'bad_request');
  r = await admin('/_node/_local/_config/divan_test/n', { method: 'PUT', body: '{"a"' });
  assert.equal(r.status, 400);
  r = await admin('/_node/_local/_config/divan_test/n', { method: 'PUT', body: '"a\\nb"' });
  assert.equal(r.status, 400);
  r = await admin('/_node/_local/_config/divan_test/a%3Db', { method: 'PUT', body: '"x"' });
  assert.equal(r.status, 400);
  r = await admin('/_node/_local/_config/divan_test/n', { method: 'PUT', body: '"a ; b"' });
  assert.equal(r.status, 400, 'would be cut at the comment when read back');
  r = await admin('/_node/_local/_config/query_servers/javascript', { method: 'PUT', body: '"/bin/sh"' });
  assert.equal(r.status, 403);
  assert.deepEqual(r.json, { error: 'forbidden', reason: 'Config section blacklisted for modification over HTTP API.' });
  r = await admin('/_node/_local/_config/divan/query_server_path', { method: 'PUT', body: '"/bin/sh"' });
  assert.equal(r.status, 403);
  assert.equal((await admin('/_node/_local/_config/divan_test/n')).status, 404);
  assert.equal((await admin('/_node/_local/_config/divan/query_server_path')).status, 404);
});

test('concurrent changes and reads: every answer is whole, the last write wins', async () => {
  const token = ADMIN();
  const puts = Array.from({ length: 16 }, (_, i) => request(srv.url, '/_node/_local/_config/divan_test/race', {
    method: 'PUT', body: JSON.stringify(`v${i}`), headers: { ...bearer(token), 'x-couch-persist': i % 2 ? 'false' : 'true' },
  }));
  const gets = Array.from({ length: 32 }, () => request(srv.url, '/_node/_local/_config', { headers: bearer(token) }));
  const res = await Promise.all([...puts, ...gets]);
  for (const r of res) assert.equal(r.status, 200, r.text);
  const olds = res.slice(0, 16).map((r) => r.json);
  const final = (await admin('/_node/_local/_config/divan_test/race')).json;
  // The writes were serialised: the old values are '' once and every other value once, except the last one written.
  const seen = new Set(olds);
  assert.equal(olds.length, seen.size);
  assert.ok(seen.has(''));
  assert.ok(!seen.has(final));
  await admin('/_node/_local/_config/divan_test/race', { method: 'DELETE' });
});

test('[log] level applies without a restart', async () => {
  let r = await admin('/_node/_local/_config/log/level', { method: 'PUT', body: '"debug"', headers: { 'x-couch-persist': 'false' } });
  assert.equal(r.status, 200);
  const before = srv.log().length;
  // A malformed body is logged at debug level (http/hutil.c).
  assert.equal((await admin('/_node/_local/_config/divan_test/x', { method: 'PUT', body: '{"a"' })).status, 400);
  await new Promise((res) => setTimeout(res, 100));
  r = await admin('/_node/_local/_config/log/level', { method: 'DELETE', headers: { 'x-couch-persist': 'false' } });
  assert.equal(r.json, 'debug');
  assert.ok(srv.log().slice(before).includes('[debug]'), 'debug lines appear once the level is debug');
});

test('authentication and CORS settings apply without a restart', async () => {
  const np = { 'x-couch-persist': 'false' };
  const set = async (k, v) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'PUT', body: JSON.stringify(v), headers: np })).status, 200);
  const unset = async (k) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'DELETE', headers: np })).status, 200);
  const raw = (p, init = {}) => fetch(new URL(srv.url).origin + p, init).then(async (r) => { await r.arrayBuffer(); return r; });
  // [chttpd] require_valid_user
  assert.equal((await raw('/')).status, 200);
  await set('chttpd/require_valid_user', 'true');
  assert.equal((await raw('/')).status, 401);
  await unset('chttpd/require_valid_user');
  assert.equal((await raw('/')).status, 200);
  // [chttpd] admin_only_all_dbs
  assert.equal((await raw('/_all_dbs')).status, 401);
  await set('chttpd/admin_only_all_dbs', 'false');
  assert.equal((await raw('/_all_dbs')).status, 200);
  await unset('chttpd/admin_only_all_dbs');
  assert.equal((await raw('/_all_dbs')).status, 401);
  // CORS: off, then on for one origin, then off again
  const preflight = { method: 'OPTIONS', headers: { origin: 'http://app.example', 'access-control-request-method': 'GET' } };
  assert.equal((await raw('/', preflight)).headers.get('access-control-allow-origin'), null);
  await set('cors/origins', 'http://app.example');
  await set('chttpd/enable_cors', 'true');
  let r = await raw('/', preflight);
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), 'http://app.example');
  r = await raw('/', { headers: { origin: 'http://app.example' } });
  assert.equal(r.headers.get('access-control-allow-origin'), 'http://app.example');
  await unset('chttpd/enable_cors');
  await unset('cors/origins');
  assert.equal((await raw('/', { headers: { origin: 'http://app.example' } })).headers.get('access-control-allow-origin'), null);
  // a value that does not parse keeps the settings in force
  await set('chttpd/require_valid_user', 'true');
  await set('chttpd/require_valid_user', 'maybe');
  assert.equal((await raw('/')).status, 401);
  await unset('chttpd/require_valid_user');
  assert.equal((await raw('/')).status, 200);
});

test('JWT: every algorithm, with a kid naming the key', async () => {
  const claims = { sub: 'alg-user', exp: now() + 600, '_couchdb.roles': ['_admin'] };
  const cases = [
    ['HS256', {}], ['HS384', {}], ['HS512', {}],
    ['RS256', { kid: 'rkey' }], ['RS384', { kid: 'rkey' }], ['RS512', { kid: 'rkey' }],
    ['ES256', { kid: 'ekey' }], ['ES384', { kid: 'ekey384', key: EC384.privateKey }],
  ];
  for (const [alg, o] of cases) {
    const r = await request(srv.url, '/_node/_local/_config/couchdb/uuid', { headers: bearer(jwt(claims, { alg, ...o })) });
    assert.equal(r.status, 200, `${alg}: ${r.text}`);
  }
});

test('JWT: expired, not yet valid, bad signature, wrong alg, malformed, no sub', async () => {
  const cases = [
    [jwt({ sub: 'a', exp: now() - 10, '_couchdb.roles': ['_admin'] }), 401, 'unauthorized', 'exp not in future'],
    [jwt({ sub: 'a', exp: now() + 600, nbf: now() + 300 }), 401, 'unauthorized', 'nbf not in past'],
    [jwt({ sub: 'a', exp: now() + 600, '_couchdb.roles': ['_admin'] }, { key: Buffer.from('wrong') }), 400, 'bad_request', 'Bad HMAC'],
    [jwt({ sub: 'a', exp: now() + 600 }, { alg: 'RS256', kid: 'rkey', key: crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey }), 400, 'bad_request', 'Bad signature'],
    // An RS256 token whose kid names the HMAC key: looked up as rsa:_default, which does not exist.
    [jwt({ sub: 'a', exp: now() + 600 }, { alg: 'RS256' }), 400, 'bad_request', 'Unknown kid'],
    // HS256 signed with the RSA public key's PEM as the secret (alg confusion): hmac:rkey does not exist.
    [jwt({ sub: 'a', exp: now() + 600 }, { alg: 'HS256', kid: 'rkey', key: Buffer.from(RSA.publicKey.export({ type: 'spki', format: 'pem' })) }), 400, 'bad_request', 'Unknown kid'],
    // ES256 signature checked against the P-384 key
    [jwt({ sub: 'a', exp: now() + 600 }, { alg: 'ES256', kid: 'ekey384' }), 400, 'bad_request', 'Bad signature'],
    [jwt({ sub: 'a', exp: now() + 600 }, { alg: 'none' }), 400, 'bad_request', 'Invalid alg header parameter'],
    ['not-a-token', 400, 'bad_request', 'Malformed token'],
    [jwt({ exp: now() + 600 }), 401, 'unauthorized', 'Token missing sub claim.'],
    [jwt({ sub: 'a' }), 400, 'bad_request', 'Missing exp claim'],
  ];
  for (const [token, status, error, reason] of cases) {
    const r = await request(srv.url, '/_node/_local/_config', { headers: bearer(token) });
    assert.equal(r.status, status, `${reason}: ${r.text}`);
    assert.deepEqual(r.json, { error, reason });
  }
  // Authentication comes before routing, as in CouchDB: any path refuses a bad token.
  const expired = jwt({ sub: 'a', exp: now() - 10 });
  const welcome = await request(srv.url, '/', { headers: bearer(expired) });
  assert.equal(welcome.status, 401);
  assert.deepEqual(welcome.json, { error: 'unauthorized', reason: 'exp not in future' });
  assert.equal((await request(srv.url, '/', { headers: bearer(ADMIN()) })).status, 200);
  // The server is still there for everyone else.
  assert.equal((await admin('/_node/_local/_config/couchdb/uuid')).status, 200);
});

test('JWT settings apply without a restart: roles_claim_name, required_claims, authentication_handlers', async () => {
  const np = { 'x-couch-persist': 'false' };
  const token = jwt({ sub: 'r', exp: now() + 600, roles: ['_admin'] });
  assert.equal((await request(srv.url, '/_node/_local/_config', { headers: bearer(token) })).status, 403);
  await admin('/_node/_local/_config/jwt_auth/roles_claim_name', { method: 'PUT', body: '"roles"', headers: np });
  assert.equal((await request(srv.url, '/_node/_local/_config', { headers: bearer(token) })).status, 200);
  // The admin token with _couchdb.roles is no admin now: the new claim name decides.
  assert.equal((await admin('/_node/_local/_config/jwt_auth/roles_claim_name')).status, 403);
  const del = await request(srv.url, '/_node/_local/_config/jwt_auth/roles_claim_name', { method: 'DELETE', headers: { ...bearer(token), ...np } });
  assert.equal(del.json, 'roles');

  await admin('/_node/_local/_config/jwt_auth/roles_claim_path', { method: 'PUT', body: '"realm.access\\\\.roles"', headers: np });
  const nested = jwt({ sub: 'r', exp: now() + 600, realm: { 'access.roles': '_admin, other' } });
  assert.equal((await request(srv.url, '/_node/_local/_config', { headers: bearer(nested) })).status, 200);
  // A path that names nothing: CouchDB's 404.
  const r404 = await admin('/_node/_local/_config');
  assert.deepEqual(r404.json, { error: 'not_found', reason: 'missing json key: realm' });
  await request(srv.url, '/_node/_local/_config/jwt_auth/roles_claim_path', { method: 'DELETE', headers: { ...bearer(nested), ...np } });
  assert.equal((await admin('/_node/_local/_config/jwt_auth/roles_claim_path')).status, 404);

  await admin('/_node/_local/_config/jwt_auth/required_claims', { method: 'PUT', body: '"exp, {iss, \\"me\\"}"', headers: np });
  let r = await request(srv.url, '/_node/_local/_config', { headers: bearer(ADMIN()) });
  assert.deepEqual(r.json, { error: 'bad_request', reason: 'Missing iss claim' });
  const withIss = jwt({ sub: 'x', iss: 'me', exp: now() + 600, '_couchdb.roles': ['_admin'] });
  assert.equal((await request(srv.url, '/_node/_local/_config', { headers: bearer(withIss) })).status, 200);
  await request(srv.url, '/_node/_local/_config/jwt_auth/required_claims', { method: 'DELETE', headers: { ...bearer(withIss), ...np } });

  // JWT off: a Bearer token is ignored, the request is anonymous.
  r = await admin('/_node/_local/_config/chttpd/authentication_handlers', {
    method: 'PUT', body: JSON.stringify('{chttpd_auth, cookie_authentication_handler}, {chttpd_auth, default_authentication_handler}'), headers: np,
  });
  assert.equal(r.json, HANDLERS);
  r = await anon('/_node/_local/_config', { headers: bearer(ADMIN()) });
  assert.equal(r.status, 401);
  r = await anon('/_node/_local/_config', { headers: bearer('garbage') });
  assert.equal(r.status, 401, 'not parsed at all while JWT is off');
  assert.equal(r.json.reason, 'You are not a server admin.');
  // Back on at once when it is listed again (Basic admin credentials: JWT is off).
  r = await request(srv.url, '/_node/_local/_config/chttpd/authentication_handlers', { method: 'PUT', body: JSON.stringify(HANDLERS), headers: np });
  assert.equal(r.status, 200);
  assert.equal((await admin('/_node/_local/_config/couchdb/uuid')).status, 200);
  r = await anon('/_node/_local/_config', { headers: bearer('garbage') });
  assert.deepEqual(r.json, { error: 'bad_request', reason: 'Malformed token' });
});

test('Basic admin credentials; admins added, changed and removed through the API count at once', async () => {
  const d = tempDir('divan-config-basic-');
  const s = await startServer({ dataDir: d, args: ['--admin', 'cfgadmin:cfgpass'] });
  const basic = (n, p) => ({ authorization: `Basic ${Buffer.from(`${n}:${p}`).toString('base64')}` });
  const at = (p, init = {}) => fetch(new URL(s.url).origin + p, init);
  try {
    const auth = basic('cfgadmin', 'cfgpass');
    const res = await at('/_node/_local/_config/admins/cfgadmin', { headers: auth });
    assert.equal(res.status, 200);
    assert.match(await res.json(), /^-pbkdf2/);
    const put = await at('/_node/_local/_config/divan_test/b', { method: 'PUT', body: '"1"', headers: auth });
    assert.equal(put.status, 200);
    // a new admin logs in at once; a new password replaces the old one at once
    assert.equal((await at('/_all_dbs', { headers: basic('newbie', 'n1') })).status, 401);
    assert.equal((await at('/_node/_local/_config/admins/newbie', { method: 'PUT', body: '"n1"', headers: auth })).status, 200);
    assert.equal((await at('/_all_dbs', { headers: basic('newbie', 'n1') })).status, 200);
    assert.equal((await at('/_node/_local/_config/admins/newbie', { method: 'PUT', body: '"n2"', headers: auth })).status, 200);
    assert.equal((await at('/_all_dbs', { headers: basic('newbie', 'n1') })).status, 401);
    assert.equal((await at('/_all_dbs', { headers: basic('newbie', 'n2') })).status, 200);
    // removed: no longer an admin
    assert.equal((await at('/_node/_local/_config/admins/newbie', { method: 'DELETE', headers: auth })).status, 200);
    assert.equal((await at('/_all_dbs', { headers: basic('newbie', 'n2') })).status, 401);
  } finally {
    await s.stop();
    rmSync(d, { recursive: true, force: true });
  }
});

test('request limits apply without a restart: max_document_size, max_http_request_size, max_json_depth, [purge]', async () => {
  const np = { 'x-couch-persist': 'false' };
  const set = async (k, v) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'PUT', body: JSON.stringify(v), headers: np })).status, 200);
  const unset = async (k) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'DELETE', headers: np })).status, 200);
  const put = (id, body) => admin(`/cfglimits/${id}`, { method: 'PUT', body, headers: { 'content-type': 'application/json' } });
  assert.equal((await admin('/cfglimits', { method: 'PUT' })).status, 201);
  const big = JSON.stringify({ v: 'x'.repeat(3000) });
  assert.equal((await put('a', big)).status, 201);
  // [couchdb] max_document_size
  await set('couchdb/max_document_size', '1000');
  let r = await put('b', big);
  assert.equal(r.status, 413);
  assert.deepEqual(r.json, { error: 'document_too_large', reason: 'b' });
  assert.equal((await put('small', '{"v":1}')).status, 201);
  await unset('couchdb/max_document_size');
  assert.equal((await put('b', big)).status, 201);
  // [chttpd] max_http_request_size: the body itself, before any parsing
  await set('chttpd/max_http_request_size', '2000');
  r = await put('c', big);
  assert.equal(r.status, 413);
  assert.deepEqual(r.json, { error: 'too_large', reason: 'the request entity is too large' });
  await unset('chttpd/max_http_request_size');
  assert.equal((await put('c', big)).status, 201);
  // [chttpd] max_json_depth
  const deep = JSON.stringify({ a: { b: { c: { d: 1 } } } });
  await set('chttpd/max_json_depth', '3');
  r = await put('d', deep);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'bad_request');
  await unset('chttpd/max_json_depth');
  assert.equal((await put('d', deep)).status, 201);
  // [purge] max_document_id_number, max_revisions_number
  const purge = (body) => admin('/cfglimits/_purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const three = { x: ['1-a'], y: ['1-b'], z: ['1-c'] };
  assert.equal((await purge(three)).status, 201);
  await set('purge/max_document_id_number', '2');
  await set('purge/max_revisions_number', '1');
  r = await purge(three);
  assert.deepEqual([r.status, r.json], [400, { error: 'bad_request', reason: 'Exceeded maximum number of documents.' }]);
  r = await purge({ x: ['1-a', '1-b'] });
  assert.deepEqual([r.status, r.json], [400, { error: 'bad_request', reason: 'Exceeded maximum number of revisions.' }]);
  await unset('purge/max_document_id_number');
  await unset('purge/max_revisions_number');
  assert.equal((await purge(three)).status, 201);
  // A value that does not parse keeps the limit in force.
  await set('couchdb/max_document_size', '1000');
  await set('couchdb/max_document_size', 'lots');
  assert.equal((await put('e', big)).status, 413);
  await unset('couchdb/max_document_size');
  assert.equal((await put('e', big)).status, 201);
});

test('cookie and proxy settings apply without a restart: secret, same_site, proxy handler, header names, proxy_use_secret', async () => {
  const np = { 'x-couch-persist': 'false' };
  const set = async (k, v) => assert.equal((await request(srv.url, `/_node/_local/_config/${k}`, { method: 'PUT', body: JSON.stringify(v), headers: np })).status, 200);
  const unset = async (k) => assert.equal((await request(srv.url, `/_node/_local/_config/${k}`, { method: 'DELETE', headers: np })).status, 200);
  const session = async () => {
    const res = await fetch(new URL(srv.url).origin + '/_session', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'admin', password: 'test-admin-pw' }),
    });
    assert.equal(res.status, 200);
    return res.headers.get('set-cookie');
  };
  const whoami = async (headers) => (await anon('/_session', { headers })).json.userCtx;
  const cookieOf = (sc) => sc.split(';')[0];

  // [chttpd_auth] secret: a new one voids every cookie issued before, at once.
  const old = cookieOf(await session());
  assert.equal((await whoami({ cookie: old })).name, 'admin');
  const prev = (await request(srv.url, '/_node/_local/_config/chttpd_auth/secret')).json;
  await set('chttpd_auth/secret', 'a-brand-new-secret');
  assert.equal((await whoami({ cookie: old })).name, null, 'the old cookie no longer names anyone');
  const fresh = cookieOf(await session());
  assert.equal((await whoami({ cookie: fresh })).name, 'admin');
  await set('chttpd_auth/secret', prev);
  assert.equal((await whoami({ cookie: fresh })).name, null);
  assert.equal((await whoami({ cookie: old })).name, 'admin', 'the old secret back: its cookies count again');
  // No secret at all: a random one, so cookies from before are void and logins still work.
  await unset('chttpd_auth/secret');
  assert.equal((await whoami({ cookie: old })).name, null);
  const underRandom = cookieOf(await session());
  assert.equal((await whoami({ cookie: underRandom })).name, 'admin');
  // other authentication changes keep that random secret (and its cookies)
  await set('chttpd_auth/allow_persistent_cookies', 'false');
  await unset('chttpd_auth/allow_persistent_cookies');
  assert.equal((await whoami({ cookie: underRandom })).name, 'admin');
  await set('chttpd_auth/secret', prev);

  // [chttpd_auth] same_site on the next cookie.
  assert.doesNotMatch(await session(), /SameSite/);
  await set('chttpd_auth/same_site', 'strict');
  assert.match(await session(), /; SameSite=Strict/);
  await unset('chttpd_auth/same_site');
  assert.doesNotMatch(await session(), /SameSite/);

  // The proxy handler: added to authentication_handlers, it counts at once.
  const proxied = { 'x-auth-couchdb-username': 'bob', 'x-auth-couchdb-roles': 'a, b' };
  assert.equal((await whoami(proxied)).name, null);
  await set('chttpd/authentication_handlers', `${HANDLERS}, {chttpd_auth, proxy_authentication_handler}`);
  assert.deepEqual(await whoami(proxied), { name: 'bob', roles: ['a', 'b'] });
  // Other header names.
  await set('chttpd_auth/x_auth_username', 'X-Proxy-User');
  await set('chttpd_auth/x_auth_roles', 'X-Proxy-Roles');
  assert.equal((await whoami(proxied)).name, null);
  assert.deepEqual(await whoami({ 'x-proxy-user': 'carol', 'x-proxy-roles': 'c' }), { name: 'carol', roles: ['c'] });
  // proxy_use_secret: only with the token, HMAC-SHA1(secret, name) in hex.
  await set('chttpd_auth/proxy_use_secret', 'true');
  assert.equal((await whoami({ 'x-proxy-user': 'carol' })).name, null);
  const token = crypto.createHmac('sha1', prev).update('carol').digest('hex');
  await set('chttpd_auth/x_auth_token', 'X-Proxy-Token');
  assert.equal((await whoami({ 'x-proxy-user': 'carol', 'x-auth-couchdb-token': token })).name, null);
  assert.equal((await whoami({ 'x-proxy-user': 'carol', 'x-proxy-token': token })).name, 'carol');
  for (const k of ['proxy_use_secret', 'x_auth_username', 'x_auth_roles', 'x_auth_token']) await unset(`chttpd_auth/${k}`);
  await set('chttpd/authentication_handlers', HANDLERS);
  assert.equal((await whoami(proxied)).name, null);
});

test('public_fields and users_db_public apply without a restart: other users\' documents show only public fields', async () => {
  const np = { 'x-couch-persist': 'false' };
  const set = async (k, v) => assert.equal((await request(srv.url, `/_node/_local/_config/${k}`, { method: 'PUT', body: JSON.stringify(v), headers: np })).status, 200);
  const unset = async (k) => assert.equal((await request(srv.url, `/_node/_local/_config/${k}`, { method: 'DELETE', headers: np })).status, 200);
  const basic = (n, p) => ({ authorization: `Basic ${Buffer.from(`${n}:${p}`).toString('base64')}` });
  for (const [name, city] of [['pf-alice', 'Oslo'], ['pf-bob', 'Lima']]) {
    const r = await request(srv.url, `/_users/org.couchdb.user:${name}`, {
      method: 'PUT', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, password: `${name}-pw`, roles: [], type: 'user', city }),
    });
    assert.equal(r.status, 201, r.text);
  }
  const alice = basic('pf-alice', 'pf-alice-pw');
  const bobDoc = '/_users/org.couchdb.user:pf-bob';
  const missing = { error: 'not_found', reason: 'missing' };
  // Nothing public: another user's document is not there.
  let r = await anon(bobDoc, { headers: alice });
  assert.equal(r.status, 404);
  assert.deepEqual(r.json, missing);
  assert.equal((await anon(`/_users/org.couchdb.user:pf-alice`, { headers: alice })).json.city, 'Oslo', 'one\'s own document, whole');

  await set('chttpd_auth/public_fields', 'name, city');
  r = await anon(bobDoc, { headers: alice });
  assert.equal(r.status, 200);
  assert.deepEqual(Object.keys(r.json).sort(), ['_id', '_rev', 'city', 'name']);
  assert.equal(r.json.city, 'Lima');
  assert.equal(r.json._id, 'org.couchdb.user:pf-bob');
  // Anonymous users still see nothing; admins see everything.
  assert.deepEqual((await anon(bobDoc)).json, missing);
  assert.ok((await request(srv.url, bobDoc)).json.derived_key);
  // _all_docs needs users_db_public too.
  assert.equal((await anon('/_users/_all_docs?include_docs=true', { headers: alice })).status, 403);
  await set('chttpd_auth/users_db_public', 'true');
  r = await anon('/_users/_all_docs?include_docs=true', { headers: alice });
  assert.equal(r.status, 200);
  const bobRow = r.json.rows.find((row) => row.id === 'org.couchdb.user:pf-bob');
  assert.deepEqual(bobRow.doc, { name: 'pf-bob', city: 'Lima' }, 'CouchDB strips _id and _rev too');
  assert.ok(r.json.rows.every((row) => !row.doc || !('derived_key' in row.doc || 'salt' in row.doc)));
  await unset('chttpd_auth/users_db_public');
  assert.equal((await anon('/_users/_all_docs', { headers: alice })).status, 403);

  // A field list bob's document has none of: not found.
  await set('chttpd_auth/public_fields', 'nickname');
  assert.deepEqual((await anon(bobDoc, { headers: alice })).json, missing);
  await unset('chttpd_auth/public_fields');
  r = await anon(bobDoc, { headers: alice });
  assert.equal(r.status, 404);
  assert.deepEqual(r.json, missing);

  // A document stored under a higher [chttpd] max_json_depth than the
  // default keeps showing its public fields: the server reads back what it
  // wrote itself, whatever the nesting.
  await set('chttpd/max_json_depth', '2000');
  const deep = JSON.parse(`${'{"d":'.repeat(600)}1${'}'.repeat(600)}`);
  r = await request(srv.url, '/_users/org.couchdb.user:pf-carol', {
    method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'pf-carol', password: 'pf-carol-pw', roles: [], type: 'user', deep }),
  });
  assert.equal(r.status, 201, r.text);
  await set('chttpd_auth/public_fields', 'name');
  r = await anon('/_users/org.couchdb.user:pf-carol', { headers: alice });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.name, 'pf-carol');
  assert.equal(r.json.deep, undefined);
  await unset('chttpd_auth/public_fields');
  await unset('chttpd/max_json_depth');
  // And its owner still logs in with the limit back at the default.
  r = await anon('/_session', { headers: basic('pf-carol', 'pf-carol-pw') });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.userCtx.name, 'pf-carol');
});

test('a design document and a _security object stored under a higher max_json_depth keep working once it is lowered', async () => {
  const np = { 'x-couch-persist': 'false' };
  const set = async (k, v) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'PUT', body: JSON.stringify(v), headers: np })).status, 200);
  const unset = async (k) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'DELETE', headers: np })).status, 200);
  const put = (id, body) => admin(`/cfgdeep/${id}`, { method: 'PUT', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  assert.equal((await admin('/cfgdeep', { method: 'PUT' })).status, 201);
  assert.equal((await put('one', { n: 1 })).status, 201);
  assert.equal((await put('two', { n: 2 })).status, 201);
  await set('chttpd/max_json_depth', '2000');
  const deep = JSON.parse(`${'{"d":'.repeat(600)}1${'}'.repeat(600)}`);
  let r = await put('_design/dd', { deep, views: { byn: { map: 'function(doc) { if (doc.n) emit(doc.n, null); }' } } });
  assert.equal(r.status, 201, r.text);
  r = await put('_security', { deep, members: { names: ['cfgdeep-member'], roles: [] } });
  assert.equal(r.status, 200, r.text);
  await unset('chttpd/max_json_depth');
  // The view reads the design document back.
  r = await admin('/cfgdeep/_design/dd/_view/byn');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.rows.map((row) => row.key), [1, 2]);
  // The members list still keeps an anonymous reader out.
  r = await anon('/cfgdeep/one');
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json.error, 'unauthorized');
});

test('[uuids] algorithm, utc_id_suffix and max_count apply without a restart', async () => {
  const np = { 'x-couch-persist': 'false' };
  const set = async (k, v) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'PUT', body: JSON.stringify(v), headers: np })).status, 200);
  const unset = async (k) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'DELETE', headers: np })).status, 200);
  const uuids = async (q = '') => (await anon(`/_uuids${q}`)).json.uuids;
  let ids = await uuids('?count=3');
  assert.ok(ids.every((id) => /^[0-9a-f]{32}$/.test(id) && id.slice(0, 26) === ids[0].slice(0, 26)), 'sequential: one prefix');
  await set('uuids/utc_id_suffix', '-cfgtest');
  await set('uuids/algorithm', 'utc_id');
  ids = await uuids('?count=2');
  assert.ok(ids.every((id) => /^[0-9a-f]{14}-cfgtest$/.test(id)), ids.join());
  await set('uuids/algorithm', 'random');
  ids = await uuids('?count=2');
  assert.ok(ids.every((id) => /^[0-9a-f]{32}$/.test(id)) && ids[0].slice(0, 26) !== ids[1].slice(0, 26));
  // an unknown algorithm keeps the [uuids] settings in force
  await set('uuids/algorithm', 'bogus');
  assert.match((await uuids())[0], /^[0-9a-f]{32}$/);
  await unset('uuids/algorithm');
  await set('uuids/max_count', '2');
  const r = await anon('/_uuids?count=3');
  assert.equal(r.status, 400);
  assert.deepEqual(r.json, { error: 'bad_request', reason: 'count parameter too large' });
  for (const k of ['utc_id_suffix', 'max_count']) await unset(`uuids/${k}`);
  assert.equal((await uuids('?count=3')).length, 3);
});

test('[attachments] compressible_types and compression_level apply without a restart', async () => {
  const np = { 'x-couch-persist': 'false' };
  const set = async (k, v) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'PUT', body: JSON.stringify(v), headers: np })).status, 200);
  const unset = async (k) => assert.equal((await admin(`/_node/_local/_config/${k}`, { method: 'DELETE', headers: np })).status, 200);
  const data = Buffer.from('compress me '.repeat(200)).toString('base64');
  let n = 0;
  // The stored encoding of a new attachment of type ctype ('gzip' or undefined).
  const encodingOf = async (ctype) => {
    const id = `att${n++}`;
    const put = await admin(`/cfgatts/${id}`, {
      method: 'PUT', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ _attachments: { a: { content_type: ctype, data } } }),
    });
    assert.equal(put.status, 201, put.text);
    return (await admin(`/cfgatts/${id}?att_encoding_info=true`)).json._attachments.a.encoding;
  };
  assert.equal((await admin('/cfgatts', { method: 'PUT' })).status, 201);
  assert.equal(await encodingOf('text/plain'), 'gzip');
  assert.equal(await encodingOf('image/x-test'), undefined);
  await set('attachments/compression_level', '0');
  assert.equal(await encodingOf('text/plain'), undefined, 'level 0 stores as sent');
  await unset('attachments/compression_level');
  await set('attachments/compressible_types', 'image/*');
  assert.equal(await encodingOf('text/plain'), undefined);
  assert.equal(await encodingOf('image/x-test'), 'gzip');
  await unset('attachments/compressible_types');
  assert.equal(await encodingOf('text/plain'), 'gzip');
});

test('[vendor] applies without a restart', async () => {
  const np = { 'x-couch-persist': 'false' };
  assert.deepEqual((await anon('/')).json.vendor, { from_file: 'yes' });
  assert.equal((await admin('/_node/_local/_config/vendor/version', { method: 'PUT', body: '"9.9"', headers: np })).status, 200);
  assert.deepEqual((await anon('/')).json.vendor, { from_file: 'yes', version: '9.9' });
  assert.equal((await admin('/_node/_local/_config/vendor/version', { method: 'DELETE', headers: np })).status, 200);
  assert.equal((await admin('/_node/_local/_config/vendor/from_file', { method: 'DELETE', headers: np })).status, 200);
  assert.deepEqual((await anon('/')).json.vendor, { name: 'divan' }, 'an empty [vendor] is divan\'s default');
  assert.equal((await admin('/_node/_local/_config/_reload', { method: 'POST' })).status, 200);
  assert.deepEqual((await anon('/')).json.vendor, { from_file: 'yes' });
});

test('[couchdb] default_security applies to the next database created, without a restart', async () => {
  const np = { 'x-couch-persist': 'false' };
  assert.equal((await admin('/cfgsec1', { method: 'PUT' })).status, 201);
  assert.equal((await anon('/cfgsec1')).status, 401, 'admin_only by default');
  assert.equal((await admin('/_node/_local/_config/couchdb/default_security', { method: 'PUT', body: '"everyone"', headers: np })).status, 200);
  assert.equal((await admin('/cfgsec2', { method: 'PUT' })).status, 201);
  assert.deepEqual((await admin('/cfgsec2/_security')).json, {});
  assert.equal((await anon('/cfgsec2')).status, 200);
  assert.equal((await anon('/cfgsec1')).status, 401, 'databases created before keep their _security');
  // a value that is neither admin_only nor everyone keeps the one in force
  assert.equal((await admin('/_node/_local/_config/couchdb/default_security', { method: 'PUT', body: '"nobody"', headers: np })).status, 200);
  assert.equal((await admin('/cfgsec3', { method: 'PUT' })).status, 201);
  assert.equal((await anon('/cfgsec3')).status, 200);
  assert.equal((await admin('/_node/_local/_config/couchdb/default_security', { method: 'DELETE', headers: np })).status, 200);
  assert.equal((await admin('/cfgsec4', { method: 'PUT' })).status, 201);
  assert.equal((await anon('/cfgsec4')).status, 401);
});

test('[couchdb] os_process_timeout applies to the next query-server call, without a restart', async () => {
  const np = { 'x-couch-persist': 'false' };
  const put = (p, body) => admin(p, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal((await admin('/cfgtimeout', { method: 'PUT' })).status, 201);
  assert.equal((await put('/cfgtimeout/_design/spin', { validate_doc_update: 'function (n) { if (n.spin) while (true) {} }' })).status, 201);
  assert.equal((await put('/cfgtimeout/warm', { v: 1 })).status, 201); // the process is up and has compiled the function
  assert.equal((await admin('/_node/_local/_config/couchdb/os_process_timeout', { method: 'PUT', body: '"200"', headers: np })).status, 200);
  const t0 = Date.now();
  const r = await put('/cfgtimeout/s', { spin: true });
  const took = Date.now() - t0;
  assert.equal(r.status, 500);
  // The default (5000 ms) would still be running: the lowered one ended it.
  assert.ok(took < 4500, `stopped after ${took} ms`);
  assert.equal((await admin('/_node/_local/_config/couchdb/os_process_timeout', { method: 'DELETE', headers: np })).status, 200);
  assert.equal((await put('/cfgtimeout/t', { v: 2 })).status, 201);
});

test('[query_server_config] reduce_limit applies to the query servers without a restart', async () => {
  const np = { 'x-couch-persist': 'false' };
  const put = (p, body) => admin(p, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  // A reduce that does not reduce, in a fresh database each time (an index keeps what it computed).
  const grow = async (db) => {
    assert.equal((await admin(`/${db}`, { method: 'PUT' })).status, 201);
    const docs = Array.from({ length: 100 }, (_, i) => ({ _id: `x${i}`, s: 'y'.repeat(200) }));
    assert.equal((await admin(`/${db}/_bulk_docs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ docs }) })).status, 201);
    assert.equal((await put(`/${db}/_design/r`, { views: { grow: { map: 'function(doc){ emit(null, doc.s); }', reduce: 'function(k, v){ return v.join(""); }' } } })).status, 201);
    const r = await admin(`/${db}/_design/r/_view/grow`);
    assert.equal(r.status, 200, r.text);
    return JSON.stringify(r.json.rows[0].value);
  };
  assert.match(await grow('cfgrl1'), /reduce_overflow_error/);
  assert.equal((await admin('/_node/_local/_config/query_server_config/reduce_limit', { method: 'PUT', body: '"false"', headers: np })).status, 200);
  const v = await grow('cfgrl2');
  assert.doesNotMatch(v, /reduce_overflow_error/);
  assert.equal(v.length, 100 * 200 + 2, 'the whole concatenation');
  assert.equal((await admin('/_node/_local/_config/query_server_config/reduce_limit', { method: 'DELETE', headers: np })).status, 200);
  assert.match(await grow('cfgrl3'), /reduce_overflow_error/);
});
