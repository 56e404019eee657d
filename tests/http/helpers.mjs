// helpers.mjs — start and stop a real divan for the HTTP tests.
//
// Each server gets its own temporary data directory and, unless the test
// asks otherwise, `--port 0`: the kernel picks a free port and the test reads
// it from the "divan listening on http://…/" line divan logs when ready, so
// tests never race each other for ports.  startServer resolves once GET /_up
// answers 200.  DIVAN_BIN selects the binary (default build/divan), so the
// same tests run against the ASan build.
//
// divan, like CouchDB 3, refuses to start without a server admin: every
// server starts with ADMIN (`--admin`) unless opts.admin is false, and
// request() and openFeed() send ADMIN's Basic credentials unless the caller
// passes its own Authorization header or `auth: false`.  ADMIN_AUTH is the
// header value and authUrl() a URL with the credentials in it (for PouchDB
// and nano).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.DIVAN_BIN ? path.resolve(ROOT, process.env.DIVAN_BIN) : path.join(ROOT, 'build', 'divan');

export const ADMIN = { name: 'admin', password: 'test-admin-pw' };
export const ADMIN_AUTH = `Basic ${Buffer.from(`${ADMIN.name}:${ADMIN.password}`).toString('base64')}`;

// base (a server URL) with ADMIN's credentials in it.
export function authUrl(base, name = ADMIN.name, password = ADMIN.password) {
  const u = new URL(base);
  u.username = encodeURIComponent(name);
  u.password = encodeURIComponent(password);
  return u.href;
}

// Whether headers (a plain object or Headers) already carry Authorization.
function hasAuth(headers) {
  if (!headers) return false;
  if (typeof headers.has === 'function') return headers.has('authorization');
  return Object.keys(headers).some((k) => k.toLowerCase() === 'authorization');
}

// Headers with ADMIN's Authorization added unless present or auth === false.
export function withAuth(headers = {}, auth = true) {
  if (auth === false || hasAuth(headers)) return headers;
  if (typeof headers.set === 'function') {
    const h = new Headers(headers);
    h.set('authorization', ADMIN_AUTH);
    return h;
  }
  return { ...headers, authorization: ADMIN_AUTH };
}

export function tempDir(tag = 'divan-http-') {
  return mkdtempSync(path.join(tmpdir(), tag));
}

// A port nobody listens on right now (for tests that must name a port).
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Runs divan to completion (for start-up failures); resolves {code, signal, log}.
export function runToExit(args, { timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (d) => { log += d; });
    child.stderr.on('data', (d) => { log += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`divan did not exit:\n${log}`)); }, timeoutMs);
    child.on('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, log }); });
  });
}

// Environment for a server whose peak RSS a test measures: under ASan
// freed chunks sit in a quarantine (256 MiB by default), so it is kept
// small for the measure to be of live memory.
export function smallQuarantineEnv() {
  const saved = process.env.ASAN_OPTIONS;
  return { ...process.env, ASAN_OPTIONS: `${saved ? `${saved}:` : ''}quarantine_size_mb=1:thread_local_quarantine_size_kb=64` };
}

// Starts divan.  opts.args are extra flags (after --data, --port 0 and
// --admin, so they override them); opts.port = false leaves the port to the
// config; opts.admin = false starts without ADMIN;
// opts.dataDir reuses a directory (kept on stop); opts.env replaces the
// environment.
export async function startServer(opts = {}) {
  const ownDir = !opts.dataDir;
  const dir = opts.dataDir ?? tempDir();
  const args = ['--data', dir];
  if (opts.port !== false) args.push('--port', '0');
  if (opts.admin !== false) args.push('--admin', `${ADMIN.name}:${ADMIN.password}`);
  args.push(...(opts.args ?? []));
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  let log = '';
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  child.stdout.on('data', (d) => { log += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`divan did not start within 10 s:\n${log}`)), 10000);
    child.stderr.on('data', (d) => {
      log += d;
      const m = /divan listening on (http:\/\/\S+\/)/.exec(log);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`divan exited (${code ?? signal}) before listening:\n${log}`));
    });
  });
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(new URL('_up', url), { headers: opts.admin !== false ? withAuth() : {} });
      await r.arrayBuffer();
      if (r.status === 200) break;
    } catch (e) {
      if (i > 100) throw e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopped = null;
  return {
    url,
    dir,
    child,
    log: () => log,
    // Sends `signal` and resolves {code, signal, ms} when the process exits.
    async stop(signal = 'SIGTERM') {
      if (!stopped) {
        const t0 = Date.now();
        child.kill(signal);
        const res = await exited;
        stopped = { ...res, ms: Date.now() - t0 };
        if (ownDir) rmSync(dir, { recursive: true, force: true });
      }
      return stopped;
    },
  };
}

// fetch + body text + parsed JSON (when the body is JSON).
export async function request(base, pathname, init = {}) {
  const { auth, ...rest } = init;
  rest.headers = withAuth(rest.headers ?? {}, auth);
  // origin + raw path: keeps '//' and odd escapes exactly as written
  const res = await fetch(new URL(base).origin + pathname, rest);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

// A streamed response read as it arrives (node:http, one socket each).
export function openFeed(base, path, { method = 'GET', headers = {}, body, auth } = {}) {
  const u = new URL(base);
  headers = withAuth(headers, auth);
  const feed = { text: '', status: 0, headers: null, done: false };
  const waiters = [];
  const poke = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i];
      if (w.pred(feed)) { clearTimeout(w.timer); waiters.splice(i, 1); w.resolve(feed); }
    }
  };
  let req;
  feed.ended = new Promise((resolve, reject) => {
    req = http.request({ host: u.hostname, port: u.port, path, method, headers, agent: false }, (res) => {
      feed.status = res.statusCode;
      feed.headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (d) => { feed.text += d; poke(); });
      res.on('end', () => { feed.done = true; poke(); resolve(feed); });
      res.on('error', (e) => (feed.closed ? resolve(feed) : reject(e)));
    });
    req.on('error', (e) => (feed.closed ? resolve(feed) : reject(e)));
    if (body !== undefined) req.write(body);
    req.end();
  });
  // Resolves once pred(feed) holds; rejects after ms with what arrived.
  feed.until = (pred, ms = 5000) => new Promise((resolve, reject) => {
    if (pred(feed)) { resolve(feed); return; }
    const w = { pred, resolve };
    waiters.push(w);
    w.timer = setTimeout(() => {
      const i = waiters.indexOf(w);
      if (i >= 0) { waiters.splice(i, 1); reject(new Error(`feed ${path} never got there; got ${JSON.stringify(feed.text)}`)); }
    }, ms);
  });
  // The client hangs up (the server notices when it next writes).
  feed.close = () => { feed.closed = true; req.destroy(); };
  return feed;
}
