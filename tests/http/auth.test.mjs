// auth.test.mjs — authentication and authorization as a client sees them:
// a permission matrix (who × endpoint class → status, CouchDB 3's rules),
// /_session cookies (login, GET, DELETE, refresh, expiry), the _users
// database (password hashing, sign-up and self-service rules), start-up
// without an admin, --first-admin, require_valid_user.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ADMIN, request, runToExit, startServer, tempDir } from './helpers.mjs';

const J = { 'Content-Type': 'application/json' };
const basic = (name, pw) => `Basic ${Buffer.from(`${name}:${pw}`).toString('base64')}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A request as `who`: null = anonymous, else {name, password}.
function as(srv, who) {
  return (p, init = {}) => {
    const headers = { ...J, ...(init.headers ?? {}) };
    if (who) headers.authorization = basic(who.name, who.password);
    return request(srv.url, p, { ...init, headers, auth: who ? undefined : false });
  };
}

async function createUser(req, name, password, roles = []) {
  const r = await req(`/_users/org.couchdb.user:${name}`, {
    method: 'PUT', headers: J, body: JSON.stringify({ name, password, roles, type: 'user' }),
  });
  assert.equal(r.status, 201, r.text);
}

function cookieOf(res) {
  const sc = res.headers.get('set-cookie');
  const m = sc && /AuthSession=([^;]*)/.exec(sc);
  return m ? m[1] : null;
}

describe('permission matrix', () => {
  let srv;
  const admin = () => as(srv, ADMIN);
  const users = {
    outsider: { name: 'outsider', password: 'o-pw', roles: [] },
    member: { name: 'member', password: 'm-pw', roles: [] },
    memberRole: { name: 'mrole', password: 'mr-pw', roles: ['readers'] },
    dbAdmin: { name: 'dadmin', password: 'da-pw', roles: [] },
    dbAdminRole: { name: 'drole', password: 'dr-pw', roles: ['dbadmins'] },
  };
  const sec = { admins: { names: ['dadmin'], roles: ['dbadmins'] }, members: { names: ['member'], roles: ['readers'] } };
  // principal → requester
  const who = {
    anonymous: () => as(srv, null),
    wrongPassword: () => as(srv, { name: ADMIN.name, password: 'nope' }), // lockout is off on this server
    unknownUser: () => as(srv, { name: 'ghost', password: 'x' }),
    outsider: () => as(srv, users.outsider),
    memberByName: () => as(srv, users.member),
    memberByRole: () => as(srv, users.memberRole),
    dbAdminByName: () => as(srv, users.dbAdmin),
    dbAdminByRole: () => as(srv, users.dbAdminRole),
    serverAdmin: () => as(srv, ADMIN),
  };
  const P = Object.keys(who);
  const row = (...codes) => Object.fromEntries(P.map((p, i) => [p, codes[i]]));
  let n = 0;
  const uniq = () => `x${++n}`;
  // endpoint class → [request maker, expected status per principal]
  const matrix = {
    'welcome GET /': [(r) => r('/'), row(200, 401, 401, 200, 200, 200, 200, 200, 200)],
    'member read GET /sec': [(r) => r('/sec'), row(401, 401, 401, 403, 200, 200, 200, 200, 200)],
    'member read GET /sec/doc': [(r) => r('/sec/doc'), row(401, 401, 401, 403, 200, 200, 200, 200, 200)],
    'member read _all_docs': [(r) => r('/sec/_all_docs'), row(401, 401, 401, 403, 200, 200, 200, 200, 200)],
    'member read _changes': [(r) => r('/sec/_changes'), row(401, 401, 401, 403, 200, 200, 200, 200, 200)],
    'member write PUT doc': [(r) => r(`/sec/${uniq()}`, { method: 'PUT', body: '{}' }),
      row(401, 401, 401, 403, 201, 201, 201, 201, 201)],
    'member write _bulk_docs': [(r) => r('/sec/_bulk_docs', { method: 'POST', body: JSON.stringify({ docs: [{ _id: uniq() }] }) }),
      row(401, 401, 401, 403, 201, 201, 201, 201, 201)],
    'member _revs_diff': [(r) => r('/sec/_revs_diff', { method: 'POST', body: '{}' }),
      row(401, 401, 401, 403, 200, 200, 200, 200, 200)],
    'member GET _security': [(r) => r('/sec/_security'), row(401, 401, 401, 403, 200, 200, 200, 200, 200)],
    'db admin PUT design doc': [(r) => r(`/sec/_design/${uniq()}`, { method: 'PUT', body: '{}' }),
      row(401, 401, 401, 403, 403, 403, 201, 201, 201)],
    'db admin PUT _security': [(r) => r('/sec/_security', { method: 'PUT', body: JSON.stringify(sec) }),
      row(401, 401, 401, 403, 403, 403, 200, 200, 200)],
    'db admin PUT _revs_limit': [(r) => r('/sec/_revs_limit', { method: 'PUT', body: '1000' }),
      row(401, 401, 401, 403, 403, 403, 200, 200, 200)],
    'db admin _compact': [(r) => r('/sec/_compact', { method: 'POST' }),
      row(401, 401, 401, 403, 403, 403, 202, 202, 202)],
    'db admin _view_cleanup': [(r) => r('/sec/_view_cleanup', { method: 'POST' }),
      row(401, 401, 401, 403, 403, 403, 202, 202, 202)],
    'server admin PUT /db': [(r) => r(`/${uniq()}`, { method: 'PUT' }), row(401, 401, 401, 403, 403, 403, 403, 403, 201)],
    'server admin DELETE /db': [(r) => r('/nosuchdb', { method: 'DELETE' }), row(401, 401, 401, 403, 403, 403, 403, 403, 404)],
    'server admin _purge': [(r) => r('/sec/_purge', { method: 'POST', body: '{}' }), row(401, 401, 401, 403, 403, 403, 403, 403, 201)],
    'server admin /_all_dbs': [(r) => r('/_all_dbs'), row(401, 401, 401, 403, 403, 403, 403, 403, 200)],
    'server admin /_dbs_info': [(r) => r('/_dbs_info'), row(401, 401, 401, 403, 403, 403, 403, 403, 200)],
    'server admin /_active_tasks': [(r) => r('/_active_tasks'), row(401, 401, 401, 403, 403, 403, 403, 403, 200)],
    'server admin _-prefixed path': [(r) => r('/_nothing'), row(401, 401, 401, 403, 403, 403, 403, 403, 404)],
    'public db GET': [(r) => r('/pub/doc'), row(200, 401, 401, 200, 200, 200, 200, 200, 200)],
    'public db PUT doc': [(r) => r(`/pub/${uniq()}`, { method: 'PUT', body: '{}' }), row(201, 401, 401, 201, 201, 201, 201, 201, 201)],
    'public db PUT design doc': [(r) => r(`/pub/_design/${uniq()}`, { method: 'PUT', body: '{}' }),
      row(401, 401, 401, 403, 403, 403, 403, 403, 201)],
    'new db (admin_only) GET': [(r) => r('/fresh'), row(401, 401, 401, 403, 403, 403, 403, 403, 200)],
    'missing db GET': [(r) => r('/missing/doc'), row(404, 401, 401, 404, 404, 404, 404, 404, 404)],
  };

  before(async () => {
    // Every wrong-password probe below would lock the admin out after 5
    // (the lockout has its own test).
    const dir = tempDir();
    const ini = path.join(dir, 'nolockout.ini');
    writeFileSync(ini, '[chttpd_auth_lockout]\nmode = off\n');
    srv = await startServer({ args: ['--config', ini] });
    const a = admin();
    for (const u of Object.values(users)) await createUser(a, u.name, u.password, u.roles);
    for (const db of ['sec', 'pub', 'fresh']) assert.equal((await a(`/${db}`, { method: 'PUT' })).status, 201);
    assert.equal((await a('/sec/_security', { method: 'PUT', body: JSON.stringify(sec) })).status, 200);
    assert.equal((await a('/pub/_security', { method: 'PUT', body: '{}' })).status, 200);
    await a('/sec/doc', { method: 'PUT', body: '{}' });
    await a('/pub/doc', { method: 'PUT', body: '{}' });
  });
  after(async () => { await srv.stop(); });

  for (const [name, [make, expected]] of Object.entries(matrix)) {
    test(name, async () => {
      const got = {};
      for (const p of P) got[p] = (await make(who[p]())).status;
      assert.deepEqual(got, expected);
    });
  }

  test('error bodies are CouchDB\'s', async () => {
    let r = await who.anonymous()('/sec');
    assert.deepEqual(r.json, { error: 'unauthorized', reason: 'You are not authorized to access this db.' });
    r = await who.outsider()('/sec');
    assert.deepEqual(r.json, { error: 'forbidden', reason: 'You are not allowed to access this db.' });
    r = await who.wrongPassword()('/');
    assert.deepEqual(r.json, { error: 'unauthorized', reason: 'Name or password is incorrect.' });
    r = await who.memberByName()('/sec/_design/zz', { method: 'PUT', body: '{}' });
    assert.deepEqual(r.json, { error: 'forbidden', reason: 'You are not a db or server admin.' });
    r = await who.outsider()('/_all_dbs');
    assert.deepEqual(r.json, { error: 'forbidden', reason: 'You are not a server admin.' });
    r = await who.anonymous()('/_all_dbs');
    assert.deepEqual(r.json, { error: 'unauthorized', reason: 'You are not a server admin.' });
    r = await who.memberByName()('/sec/_compact', { method: 'POST' });
    assert.deepEqual(r.json, { error: 'forbidden', reason: 'You are not a server or db admin.' });
  });

  test('_bulk_docs: a design document needs a db admin, per document', async () => {
    const r = await who.memberByName()('/sec/_bulk_docs', { method: 'POST', body: JSON.stringify({ docs: [{ _id: 'bd-plain' }, { _id: '_design/bd' }] }) });
    assert.equal(r.status, 201);
    assert.equal(r.json[0].ok, true);
    assert.deepEqual({ id: r.json[1].id, error: r.json[1].error, reason: r.json[1].reason },
      { id: '_design/bd', error: 'forbidden', reason: 'You are not a db or server admin.' });
    assert.equal((await who.serverAdmin()('/sec/_design/bd')).status, 404);
    const ok = await who.dbAdminByRole()('/sec/_bulk_docs', { method: 'POST', body: JSON.stringify({ docs: [{ _id: '_design/bd' }] }) });
    assert.equal(ok.json[0].ok, true);
  });

  test('a denied write changes nothing', async () => {
    const before = (await who.serverAdmin()('/sec')).json.doc_count;
    await who.outsider()('/sec/denied', { method: 'PUT', body: '{}' });
    await who.anonymous()('/sec/_bulk_docs', { method: 'POST', body: '{"docs":[{"_id":"d2"}]}' });
    assert.equal((await who.serverAdmin()('/sec')).json.doc_count, before);
    assert.equal((await who.serverAdmin()('/sec/denied')).status, 404);
  });

  test('a repeated Basic request does not pay PBKDF2 again (cache)', async () => {
    const r = as(srv, users.member);
    await r('/sec');
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 20; i++) assert.equal((await r('/sec')).status, 200);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    // 20 × PBKDF2 (50000 rounds) would take about a second; cached, a few ms each.
    assert.ok(ms < 20 * 40, `20 cached requests took ${ms} ms`);
  });
});

describe('/_session', () => {
  let srv;
  let dir;
  before(async () => {
    dir = tempDir();
    const ini = path.join(dir, 'short.ini');
    writeFileSync(ini, '[chttpd_auth]\ntimeout = 6\n');
    srv = await startServer({ args: ['--config', ini] });
    const a = as(srv, ADMIN);
    await createUser(a, 'carol', 'c-pw', ['staff']);
    await a('/staffdb', { method: 'PUT' });
    await a('/staffdb/_security', { method: 'PUT', body: JSON.stringify({ members: { roles: ['staff'] } }) });
  });
  after(async () => { await srv.stop(); });

  const anon = (p, init = {}) => request(srv.url, p, { ...init, auth: false });

  test('login with JSON and form bodies, cookie authenticates, GET reports it', async () => {
    let r = await anon('/_session', { method: 'POST', headers: J, body: JSON.stringify({ name: 'carol', password: 'c-pw' }) });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { ok: true, name: 'carol', roles: ['staff'] });
    const sc = r.headers.get('set-cookie');
    assert.match(sc, /AuthSession=[A-Za-z0-9_-]+; Version=1; Path=\/; Expires=.*; Max-Age=6; HttpOnly/);
    const cookie = cookieOf(r);
    r = await anon('/_session', { headers: { cookie: `AuthSession=${cookie}` } });
    assert.deepEqual(r.json, {
      ok: true, userCtx: { name: 'carol', roles: ['staff'] },
      info: { authentication_handlers: ['cookie', 'default'], authenticated: 'cookie' },
    });
    assert.equal((await anon('/staffdb', { headers: { cookie: `other=1; AuthSession=${cookie}` } })).status, 200);
    r = await anon('/_session', {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=carol&password=c-pw',
    });
    assert.equal(r.status, 200);
    assert.equal(r.json.name, 'carol');
    assert.ok(cookieOf(r));
  });

  test('cookie format: base64url of name:HEXTIME:hmac', async () => {
    const r = await anon('/_session', { method: 'POST', headers: J, body: JSON.stringify({ name: 'carol', password: 'c-pw' }) });
    const raw = Buffer.from(cookieOf(r), 'base64url');
    const [name, hex] = raw.toString('latin1').split(':');
    assert.equal(name, 'carol');
    assert.ok(Math.abs(parseInt(hex, 16) - Date.now() / 1000) < 5);
    assert.equal(raw.length, 'carol'.length + 1 + hex.length + 1 + 20);
  });

  test('wrong password: 401 and a cleared cookie; next and fail redirect', async () => {
    let r = await anon('/_session', { method: 'POST', headers: J, body: JSON.stringify({ name: 'carol', password: 'bad' }) });
    assert.equal(r.status, 401);
    assert.deepEqual(r.json, { error: 'unauthorized', reason: 'Name or password is incorrect.' });
    r = await anon('/_session?next=/staffdb', { method: 'POST', headers: J, body: JSON.stringify({ name: 'carol', password: 'c-pw' }), redirect: 'manual' });
    assert.equal(r.status, 302);
    assert.match(r.headers.get('location'), /^http:\/\/127\.0\.0\.1:\d+\/staffdb$/);
    r = await anon('/_session?fail=/login', { method: 'POST', headers: J, body: JSON.stringify({ name: 'carol', password: 'x' }), redirect: 'manual' });
    assert.equal(r.status, 302);
  });

  test('anonymous GET, basic=true, DELETE clears the cookie, Basic shows as default', async () => {
    let r = await anon('/_session');
    assert.deepEqual(r.json.userCtx, { name: null, roles: [] });
    assert.equal(r.json.info.authenticated, undefined);
    r = await anon('/_session?basic=true');
    assert.equal(r.status, 401);
    r = await request(srv.url, '/_session');
    assert.equal(r.json.userCtx.name, ADMIN.name);
    assert.deepEqual(r.json.userCtx.roles, ['_admin']);
    assert.equal(r.json.info.authenticated, 'default');
    r = await anon('/_session', { method: 'DELETE' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { ok: true });
    assert.match(r.headers.get('set-cookie'), /^AuthSession=;/);
  });

  test('a malformed cookie is 400, a forged one is anonymous', async () => {
    let r = await anon('/_session', { headers: { cookie: 'AuthSession=bm9jb2xvbg' } });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'bad_request', reason: 'Malformed AuthSession cookie. Please clear your cookies.' });
    const forged = Buffer.concat([Buffer.from(`${ADMIN.name}:${Math.floor(Date.now() / 1000).toString(16).toUpperCase()}:`), Buffer.alloc(20)]);
    r = await anon('/_session', { headers: { cookie: `AuthSession=${forged.toString('base64url')}` } });
    assert.equal(r.status, 200);
    assert.equal(r.json.userCtx.name, null);
    assert.equal((await anon('/_all_dbs', { headers: { cookie: `AuthSession=${forged.toString('base64url')}` } })).status, 401);
  });

  test('the cookie is refreshed after 10% of its life and ignored once expired', async () => {
    // Cookie times are whole seconds: start just after a second begins so
    // that each step below lands on a known side of the boundaries.
    await sleep(1050 - (Date.now() % 1000));
    const r = await anon('/_session', { method: 'POST', headers: J, body: JSON.stringify({ name: 'carol', password: 'c-pw' }) });
    const cookie = cookieOf(r);
    let g = await anon('/staffdb', { headers: { cookie: `AuthSession=${cookie}` } });
    assert.equal(g.headers.get('set-cookie'), null); // fresh: no refresh yet
    await sleep(2100); // > 10% of 6 s (timestamps have one-second resolution)
    g = await anon('/staffdb', { headers: { cookie: `AuthSession=${cookie}` } });
    assert.equal(g.status, 200);
    const fresh = cookieOf(g);
    assert.ok(fresh && fresh !== cookie);
    await sleep(4500); // the first cookie is now past 6 s, the fresh one is not
    g = await anon('/staffdb', { headers: { cookie: `AuthSession=${cookie}` } });
    assert.equal(g.status, 401);
    g = await anon('/_session', { headers: { cookie: `AuthSession=${cookie}` } });
    assert.equal(g.json.userCtx.name, null);
    g = await anon('/staffdb', { headers: { cookie: `AuthSession=${fresh}` } });
    assert.equal(g.status, 200);
  });

  test('a password change invalidates cookies (the salt is in the HMAC key)', async () => {
    const a = as(srv, ADMIN);
    await createUser(a, 'dave', 'd-pw');
    let r = await anon('/_session', { method: 'POST', headers: J, body: JSON.stringify({ name: 'dave', password: 'd-pw' }) });
    const cookie = cookieOf(r);
    assert.equal((await anon('/_session', { headers: { cookie: `AuthSession=${cookie}` } })).json.userCtx.name, 'dave');
    const doc = (await a('/_users/org.couchdb.user:dave')).json;
    r = await a('/_users/org.couchdb.user:dave', { method: 'PUT', body: JSON.stringify({ ...doc, password: 'd-pw2' }) });
    assert.equal(r.status, 201);
    assert.equal((await anon('/_session', { headers: { cookie: `AuthSession=${cookie}` } })).json.userCtx.name, null);
  });
});

describe('_users', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });
  const admin = () => as(srv, ADMIN);

  test('a password is stored as a PBKDF2 hash and logs in', async () => {
    await createUser(admin(), 'erin', 'e-pw', ['team']);
    const doc = (await admin()('/_users/org.couchdb.user:erin')).json;
    assert.equal(doc.password, undefined);
    assert.equal(doc.password_scheme, 'pbkdf2');
    assert.equal(doc.pbkdf2_prf, 'sha256');
    assert.equal(typeof doc.iterations, 'number');
    assert.match(doc.derived_key, /^[0-9a-f]{64}$/);
    assert.match(doc.salt, /^[0-9a-f]{32}$/);
    assert.deepEqual(doc.roles, ['team']);
    const r = await as(srv, { name: 'erin', password: 'e-pw' })('/_session');
    assert.deepEqual(r.json.userCtx, { name: 'erin', roles: ['team'] });
    assert.equal((await as(srv, { name: 'erin', password: 'wrong' })('/_session')).status, 401);
  });

  test('anonymous sign-up; no roles; own document only', async () => {
    const anon = as(srv, null);
    let r = await anon('/_users/org.couchdb.user:frank', { method: 'PUT', body: JSON.stringify({ name: 'frank', password: 'f', roles: [], type: 'user' }) });
    assert.equal(r.status, 201, r.text);
    r = await anon('/_users/org.couchdb.user:gina', { method: 'PUT', body: JSON.stringify({ name: 'gina', password: 'g', roles: ['boss'], type: 'user' }) });
    assert.equal(r.status, 403);
    assert.deepEqual(r.json, { error: 'forbidden', reason: 'Only _admin may set roles' });
    const frank = as(srv, { name: 'frank', password: 'f' });
    r = await frank('/_users/org.couchdb.user:frank');
    assert.equal(r.status, 200);
    assert.equal(r.json.name, 'frank');
    r = await frank('/_users/org.couchdb.user:erin');
    assert.equal(r.status, 404);
    assert.equal((await anon('/_users/org.couchdb.user:frank')).status, 404);
    // cannot change own roles, can change own password
    r = await frank('/_users/org.couchdb.user:frank', { method: 'PUT', body: JSON.stringify({ _rev: (await frank('/_users/org.couchdb.user:frank')).json._rev, name: 'frank', roles: ['boss'], type: 'user' }) });
    assert.equal(r.status, 403);
    assert.deepEqual(r.json, { error: 'forbidden', reason: 'Only _admin may edit roles' });
    r = await frank('/_users/org.couchdb.user:frank', { method: 'PUT', body: JSON.stringify({ _rev: (await frank('/_users/org.couchdb.user:frank')).json._rev, name: 'frank', roles: [], type: 'user', password: 'f2' }) });
    assert.equal(r.status, 201);
    assert.equal((await frank('/_session')).status, 401); // the old password (cached) no longer works
    assert.equal((await as(srv, { name: 'frank', password: 'f2' })('/_session')).json.userCtx.name, 'frank');
    // another user's document cannot be written
    r = await as(srv, { name: 'frank', password: 'f2' })('/_users/org.couchdb.user:erin', { method: 'PUT', body: JSON.stringify({ name: 'erin', roles: [], type: 'user' }) });
    assert.equal(r.status, 404);
  });

  test('validation reasons', async () => {
    const a = admin();
    const put = (id, body) => a(`/_users/${id}`, { method: 'PUT', body: JSON.stringify(body) });
    const cases = [
      ['org.couchdb.user:h', { name: 'h', roles: [] }, 'doc.type must be user'],
      ['org.couchdb.user:h', { type: 'user', roles: [] }, 'doc.name is required'],
      ['org.couchdb.user:h', { type: 'user', name: 'h' }, 'doc.roles must exist'],
      ['org.couchdb.user:h', { type: 'user', name: 'h', roles: 'x' }, 'doc.roles must be an array'],
      ['org.couchdb.user:h', { type: 'user', name: 'h', roles: [1] }, 'doc.roles can only contain strings'],
      ['org.couchdb.user:h', { type: 'user', name: 'other', roles: [] }, 'Doc ID must be of the form org.couchdb.user:name'],
      ['org.couchdb.user:h', { type: 'user', name: 'h', roles: ['_admin'] }, 'No system roles (starting with underscore) in users db.'],
      ['org.couchdb.user:_h', { type: 'user', name: '_h', roles: [] }, 'Username may not start with underscore.'],
      ['org.couchdb.user:a:b', { type: 'user', name: 'a:b', roles: [] }, 'Character `:` is not allowed in usernames.'],
      ['org.couchdb.user:h', { type: 'user', name: 'h', roles: [], password_sha: 'x' }, 'Users with password_sha must have a salt.'],
    ];
    for (const [id, body, reason] of cases) {
      const r = await put(id, body);
      assert.equal(r.status, 403, reason);
      assert.deepEqual(r.json, { error: 'forbidden', reason });
    }
  });

  test('_bulk_docs into _users hashes passwords and validates each document', async () => {
    const r = await admin()('/_users/_bulk_docs', {
      method: 'POST',
      body: JSON.stringify({ docs: [
        { _id: 'org.couchdb.user:bulk1', name: 'bulk1', password: 'b1', roles: [], type: 'user' },
        { _id: 'org.couchdb.user:bulk2', name: 'wrong', roles: [], type: 'user' },
      ] }),
    });
    assert.equal(r.status, 201);
    assert.equal(r.json[0].ok, true);
    assert.deepEqual({ error: r.json[1].error, reason: r.json[1].reason },
      { error: 'forbidden', reason: 'Doc ID must be of the form org.couchdb.user:name' });
    const doc = (await admin()('/_users/org.couchdb.user:bulk1')).json;
    assert.equal(doc.password, undefined);
    assert.equal(doc.password_scheme, 'pbkdf2');
    assert.equal((await as(srv, { name: 'bulk1', password: 'b1' })('/_session')).json.userCtx.name, 'bulk1');
  });

  test('listing _users is for server admins', async () => {
    await createUser(admin(), 'ivan', 'i');
    const ivan = as(srv, { name: 'ivan', password: 'i' });
    for (const p of ['/_users/_all_docs', '/_users/_changes']) {
      assert.equal((await ivan(p)).status, 403, p);
      assert.equal((await as(srv, null)(p)).status, 401, p);
      assert.equal((await admin()(p)).status, 200, p);
    }
    assert.equal((await ivan('/_users/_bulk_docs', { method: 'POST', body: '{"docs":[]}' })).status, 403);
    assert.equal((await ivan('/_users/_local/x', { method: 'PUT', body: '{}' })).status, 403);
    assert.equal((await as(srv, null)('/_users/_local/x', { method: 'PUT', body: '{}' })).status, 401);
    assert.equal((await as(srv, null)('/_users/_design/x', { method: 'PUT', body: '{}' })).status, 401);
    assert.equal((await ivan('/_users')).status, 403);
  });
});

describe('failed-login lockout', () => {
  test('enforce: after 5 failures from one client the right password is refused too, other users are not', async () => {
    const srv = await startServer();
    try {
      const a = as(srv, ADMIN);
      await createUser(a, 'lock', 'right');
      await createUser(a, 'free', 'pw');
      const wrong = as(srv, { name: 'lock', password: 'wrong' });
      for (let i = 0; i < 5; i++) assert.equal((await wrong('/_session')).status, 401);
      let r = await wrong('/_session');
      assert.equal(r.status, 403);
      assert.deepEqual(r.json, { error: 'forbidden', reason: 'Account is temporarily locked due to multiple authentication failures' });
      assert.equal((await as(srv, { name: 'lock', password: 'right' })('/_session')).status, 403);
      r = await as(srv, null)('/_session', { method: 'POST', body: JSON.stringify({ name: 'lock', password: 'right' }) });
      assert.equal(r.status, 403);
      assert.equal((await as(srv, { name: 'free', password: 'pw' })('/_session')).status, 200);
      // a new password (a new salt) lifts the lock
      const doc = (await a('/_users/org.couchdb.user:lock')).json;
      assert.equal((await a('/_users/org.couchdb.user:lock', { method: 'PUT', body: JSON.stringify({ ...doc, password: 'new' }) })).status, 201);
      assert.equal((await as(srv, { name: 'lock', password: 'new' })('/_session')).status, 200);
    } finally { await srv.stop(); }
  });

  test('the count expires after max_lifetime; mode = warn only logs', async () => {
    const dir = tempDir();
    const ini = path.join(dir, 'lk.ini');
    writeFileSync(ini, '[chttpd_auth_lockout]\nthreshold = 2\nmax_lifetime = 1500\n');
    let srv = await startServer({ args: ['--config', ini] });
    try {
      const wrong = as(srv, { name: ADMIN.name, password: 'x' });
      await wrong('/');
      await wrong('/');
      assert.equal((await as(srv, ADMIN)('/')).status, 403);
      await sleep(1700);
      assert.equal((await as(srv, ADMIN)('/')).status, 200);
    } finally { await srv.stop(); }
    writeFileSync(ini, '[chttpd_auth_lockout]\nthreshold = 2\nmode = warn\n');
    srv = await startServer({ args: ['--config', ini] });
    try {
      const wrong = as(srv, { name: ADMIN.name, password: 'x' });
      for (let i = 0; i < 3; i++) assert.equal((await wrong('/')).status, 401);
      assert.equal((await as(srv, ADMIN)('/')).status, 200);
      assert.match(srv.log(), /authentication failure threshold reached for admin/);
    } finally { await srv.stop(); }
  });
});

describe('proxy authentication', () => {
  test('off unless listed; with proxy_use_secret only a valid token counts', async () => {
    let srv = await startServer();
    try {
      const r = await as(srv, null)('/_session', { headers: { 'X-Auth-CouchDB-UserName': 'eve', 'X-Auth-CouchDB-Roles': '_admin' } });
      assert.equal(r.json.userCtx.name, null);
      assert.deepEqual(r.json.info.authentication_handlers, ['cookie', 'default']);
    } finally { await srv.stop(); }
    const dir = tempDir();
    const ini = path.join(dir, 'proxy.ini');
    writeFileSync(ini, '[chttpd]\nauthentication_handlers = {chttpd_auth, cookie_authentication_handler}, '
      + '{chttpd_auth, proxy_authentication_handler}, {chttpd_auth, default_authentication_handler}\n'
      + '[chttpd_auth]\nproxy_use_secret = true\nsecret = proxysecret\n');
    srv = await startServer({ args: ['--config', ini] });
    try {
      const token = createHmac('sha1', 'proxysecret').update('pat').digest('hex');
      const hdr = { 'X-Auth-CouchDB-UserName': 'pat', 'X-Auth-CouchDB-Roles': 'staff , ops', 'X-Auth-CouchDB-Token': token };
      let r = await as(srv, null)('/_session', { headers: hdr });
      assert.deepEqual(r.json.userCtx, { name: 'pat', roles: ['staff', 'ops'] });
      assert.equal(r.json.info.authenticated, 'proxy');
      assert.deepEqual(r.json.info.authentication_handlers, ['cookie', 'proxy', 'default']);
      r = await as(srv, null)('/_session', { headers: { ...hdr, 'X-Auth-CouchDB-Token': token.replace(/^./, (c) => (c === '0' ? '1' : '0')) } });
      assert.equal(r.json.userCtx.name, null);
      r = await as(srv, null)('/_session', { headers: { 'X-Auth-CouchDB-UserName': 'pat' } });
      assert.equal(r.json.userCtx.name, null);
      // proxy comes before Basic here: a valid proxy user wins
      r = await as(srv, ADMIN)('/_session', { headers: hdr });
      assert.equal(r.json.userCtx.name, 'pat');
      const admin = createHmac('sha1', 'proxysecret').update('root').digest('hex');
      r = await as(srv, null)('/_all_dbs', { headers: { 'X-Auth-CouchDB-UserName': 'root', 'X-Auth-CouchDB-Roles': '_admin', 'X-Auth-CouchDB-Token': admin } });
      assert.equal(r.status, 200);
    } finally { await srv.stop(); }
  });
});

describe('start-up and require_valid_user', () => {
  test('no admin: refuses to start, naming the ways to configure one', async () => {
    const r = await runToExit(['--data', tempDir(), '--port', '0']);
    assert.equal(r.code, 1);
    assert.match(r.log, /no server admin is configured/);
    assert.match(r.log, /--first-admin/);
  });

  test('--first-admin creates one admin once and prints its password once', async () => {
    const dir = tempDir();
    let srv = await startServer({ dataDir: dir, admin: false, args: ['--first-admin', 'boss'] });
    let pw;
    try {
      const m = /created the server admin "boss" with password (\S+)/.exec(srv.log());
      assert.ok(m, srv.log());
      pw = m[1];
      const boss = as(srv, { name: 'boss', password: pw });
      assert.equal((await boss('/_all_dbs')).status, 200);
    } finally { await srv.stop(); }
    srv = await startServer({ dataDir: dir, admin: false, args: ['--first-admin', 'boss'] });
    try {
      assert.doesNotMatch(srv.log(), /created the server admin/);
      assert.equal((await as(srv, { name: 'boss', password: pw })('/_all_dbs')).status, 200);
    } finally { await srv.stop(); }
  });

  test('require_valid_user: anonymous requests get 401, credentials work', async () => {
    const dir = tempDir();
    const ini = path.join(dir, 'rvu.ini');
    writeFileSync(ini, '[chttpd]\nrequire_valid_user = true\n');
    const srv = await startServer({ args: ['--config', ini] });
    try {
      for (const p of ['/', '/_up', '/_session', '/_uuids']) {
        const r = await as(srv, null)(p);
        assert.equal(r.status, 401, p);
        assert.deepEqual(r.json, { error: 'unauthorized', reason: 'Authentication required.' });
      }
      assert.equal((await as(srv, ADMIN)('/')).status, 200);
      assert.equal((await as(srv, { name: ADMIN.name, password: 'bad' })('/')).status, 401);
    } finally { await srv.stop(); }
  });

  test('default_security: admin_only (the default) or everyone, from the database\'s first commit', async () => {
    const dir = tempDir();
    const ini = path.join(dir, 'everyone.ini');
    writeFileSync(ini, '[couchdb]\ndefault_security = everyone\n');
    let srv = await startServer({ args: ['--config', ini] });
    try {
      assert.equal((await as(srv, ADMIN)('/open', { method: 'PUT' })).status, 201);
      assert.deepEqual((await as(srv, ADMIN)('/open/_security')).json, {});
      assert.equal((await as(srv, null)('/open')).status, 200);
    } finally { await srv.stop(); }
    const data = tempDir();
    srv = await startServer({ dataDir: data });
    try {
      assert.equal((await as(srv, ADMIN)('/closed', { method: 'PUT' })).status, 201);
      assert.equal((await as(srv, null)('/closed')).status, 401);
    } finally { await srv.stop('SIGKILL'); } // no clean shutdown: the security came with the creating commit
    srv = await startServer({ dataDir: data });
    try {
      assert.deepEqual((await as(srv, ADMIN)('/closed/_security')).json, { members: { roles: ['_admin'] }, admins: { roles: ['_admin'] } });
      assert.equal((await as(srv, null)('/closed')).status, 401);
    } finally { await srv.stop(); }
  });

  test('require_valid_user_except_for_up leaves /_up open', async () => {
    const dir = tempDir();
    const ini = path.join(dir, 'rvu.ini');
    writeFileSync(ini, '[chttpd]\nrequire_valid_user_except_for_up = true\n');
    const srv = await startServer({ args: ['--config', ini] });
    try {
      assert.equal((await as(srv, null)('/_up')).status, 200);
      assert.equal((await as(srv, null)('/')).status, 401);
    } finally { await srv.stop(); }
  });
});
