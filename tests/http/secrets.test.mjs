// No secret in logs or error bodies: a server logging at debug level gets
// admin passwords from a config file and from --admin, then requests that
// carry a password every way a client might send one (Basic auth, a URL
// with user:password@, a query parameter, JSON and form bodies, broken
// bodies, wrong passwords); neither its log nor any answer may contain one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { startServer, tempDir } from './helpers.mjs';

const FILE_PW = 'FilePw-7c1e5a';
const FLAG_PW = 'FlagPw-92bd04';
const USER_PW = 'UserPw-44aa71';
const SECRETS = [FILE_PW, FLAG_PW, USER_PW];

// One exchange with node:http (which turns `auth` into Basic
// credentials); resolves the status and the whole answer as text.
function send(url, pathname, { method = 'GET', auth, headers = {}, body } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: pathname, method, auth, headers, agent: false }, (res) => {
      let text = JSON.stringify(res.headers);
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function raw(port, text) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => { out += d; });
    s.on('error', () => {});
    s.on('close', () => resolve(out));
    s.end(text);
  });
}

function filesUnder(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

test('passwords never reach the log, the answers or the data directory in clear', async () => {
  const dir = tempDir('divan-secrets-');
  const ini = path.join(dir, 'admins.ini');
  writeFileSync(ini, `[log]\nlevel = debug\n[admins]\nfileadmin = ${FILE_PW}\n`);
  const srv = await startServer({ dataDir: path.join(dir, 'data'), args: ['--config', ini, '--admin', `flagadmin:${FLAG_PW}`] });
  const port = Number(new URL(srv.url).port);
  const answers = [];
  const keep = async (p) => { const r = await p; answers.push(r.text); return r; };
  try {
    for (const [name, pw] of [['fileadmin', FILE_PW], ['flagadmin', FLAG_PW], ['fileadmin', 'wrong-' + FILE_PW]]) {
      const auth = `${name}:${pw}`;
      await keep(send(srv.url, '/', { auth }));
      await keep(send(srv.url, '/_all_dbs', { auth }));
      await keep(send(srv.url, '/secretsdb', { method: 'PUT', auth }));
      await keep(send(srv.url, `/secretsdb/doc?password=${pw}`, { method: 'PUT', auth, body: '{}' }));
      await keep(send(srv.url, '/nope/nope', { auth }));
      await keep(send(srv.url, '/_session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name, password: pw }) }));
      await keep(send(srv.url, '/_session', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: `name=${name}&password=${pw}` }));
      // a body that is not JSON, with the password inside it
      await keep(send(srv.url, '/secretsdb/bad', { method: 'PUT', auth, headers: { 'Content-Type': 'application/json' }, body: `{"password": "${pw}"` }));
      await keep(send(srv.url, '/secretsdb/_bulk_docs', { method: 'POST', auth, headers: { 'Content-Type': 'application/json' }, body: `{"docs": [{"p": "${pw}"}` }));
      // credentials in the URL, as an absolute-form request target
      answers.push(await raw(port, `GET http://${auth}@127.0.0.1:${port}/_all_dbs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
      answers.push(await raw(port, `GET /_all_dbs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${Buffer.from(auth).toString('base64')}\r\nX-Password: ${pw}\r\nConnection: close\r\n\r\n`));
    }
    // a user document carrying a password (hashed by CouchDB's _users)
    await keep(send(srv.url, '/_users/org.couchdb.user:bob', { method: 'PUT', auth: `flagadmin:${FLAG_PW}`,
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'bob', password: USER_PW, roles: [], type: 'user' }) }));
    await keep(send(srv.url, '/', { auth: `bob:${USER_PW}` }));
  } finally {
    await srv.stop();
  }
  const log = srv.log();
  assert.match(log, /divan listening/); // the log was captured
  for (const s of SECRETS) {
    assert.ok(!log.includes(s), `the log contains ${s}:\n${log}`);
    for (const a of answers) assert.ok(!a.includes(s), `an answer contains ${s}: ${a}`);
  }
  // Basic credentials in base64 are as good as clear text
  for (const s of [FILE_PW, FLAG_PW]) {
    for (const name of ['fileadmin', 'flagadmin']) assert.ok(!log.includes(Buffer.from(`${name}:${s}`).toString('base64')));
  }
  // the config file and the persisted state hold hashes only
  assert.ok(!readFileSync(ini, 'utf8').includes(FILE_PW));
  for (const f of filesUnder(srv.dir)) {
    const bytes = readFileSync(f);
    for (const s of [FILE_PW, FLAG_PW]) assert.ok(!bytes.includes(s), `${f} contains ${s}`);
  }
});
