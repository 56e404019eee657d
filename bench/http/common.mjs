// common.mjs — what the HTTP benchmark drivers (bench_http.mjs, the `http`
// step; bench_views.mjs, the `views` step) share: seeded documents, a
// keep-alive HTTP client whose failures become "n/a" cells, starting and
// stopping divan and pouchdb-server, wrk runs with the lua scenarios here,
// peak RSS from /proc, percentiles and table formatting, and the clean-up of
// children and temporary directories on exit or interruption.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
export const POUCH_BIN = path.join(ROOT, 'node_modules', 'pouchdb-server', 'bin', 'pouchdb-server');
export const DOC_LEN = 1024; // bytes of a document body as loaded (before _id/_rev)

export function envInt(name, def) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${v}: want a positive number`);
  return n;
}

export const envWords = (name, def = '') => (process.env[name] || def).split(/[\s,]+/).filter(Boolean);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- documents

const WORDS = ('alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa ' +
  'quebec romeo sierra tango uniform victor whiskey xray yankee zulu amber basalt cedar dune ember fjord granite ' +
  'harbor island jasper kelp lagoon meadow nectar orchard prairie quartz river summit tundra upland valley willow ' +
  'yarrow zephyr parcel invoice courier express fragile returns pending shipped delivered customer warehouse ' +
  'priority standard').split(' ');

// A small seeded generator (mulberry32): ids and bodies depend only on the seed.
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// An order record like bench/workload.c's, exactly len bytes of JSON.
export function makeBody(r, n, len = DOC_LEN) {
  const w = () => WORDS[Math.floor(r() * 64)];
  const items = [];
  for (let i = 0, k = 1 + Math.floor(r() * 4); i < k; i++) {
    items.push({ sku: `SKU-${String(Math.floor(r() * 100000)).padStart(5, '0')}`, qty: 1 + Math.floor(r() * 9),
      price: Math.floor(r() * 50000) / 100 });
  }
  const doc = { type: 'order', number: n, customer: { name: `${w()} ${w()}`, city: w(), tier: WORDS[60 + Math.floor(r() * 4)] },
    status: WORDS[55 + Math.floor(r() * 4)], items, note: '' };
  const base = JSON.stringify(doc).length;
  let note = '';
  for (;;) {
    const word = w();
    if (base + note.length + word.length + 1 > len) break;
    note += word + ' ';
  }
  doc.note = note.padEnd(len - base, ' ');
  const s = JSON.stringify(doc);
  if (s.length !== len) throw new Error(`body is ${s.length} bytes`);
  return s;
}

// 16 random hex digits, as CouchDB's `random` uuids: random insertion order.
export function randomId(r) {
  return Math.floor(r() * 4294967296).toString(16).padStart(8, '0') + Math.floor(r() * 4294967296).toString(16).padStart(8, '0');
}

export function makeIds(r, n) {
  const seen = new Set();
  while (seen.size < n) seen.add(randomId(r));
  return [...seen];
}

// ---------------------------------------------------------------- HTTP client

// The default request timeout; a driver raises it for large runs.
export const httpDefaults = { timeoutMs: 60000 };

// One request on a keep-alive agent.  discard: count the body's bytes only
// (full scans, so that the client spends no CPU parsing what it times).  A
// failed or hung request is the server's failure: n/a for that phase.
export function request(agent, url, { method = 'GET', body, headers = {}, discard = false, timeoutMs = httpDefaults.timeoutMs } = {}) {
  const where = `${method} ${new URL(url).pathname}`;
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: { ...headers, ...(body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {}) } }, (res) => {
      const chunks = [];
      let bytes = 0;
      res.on('data', (d) => { bytes += d.length; if (!discard) chunks.push(d); });
      res.on('end', () => resolve({ status: res.statusCode, bytes, text: discard ? '' : Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (e) => reject(na(`${where}: ${e.message}`)));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`connection idle for ${timeoutMs / 1000} s`)));
    req.on('error', (e) => reject(na(`${where}: ${e.message}`)));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export function json(text) {
  try { return JSON.parse(text); } catch { return undefined; }
}

// "404 {"error":"not_found",...}" — a short reason for an n/a cell.
export function answer(r) {
  const t = r.text.replace(/\s+/g, ' ').trim();
  return `${r.status} ${t.length > 120 ? t.slice(0, 120) + '…' : t}`;
}

// A phase the server cannot do: its cell says n/a, with this as the reason.
export class NotAvailable extends Error {}
export const na = (msg) => new NotAvailable(msg);

// ---------------------------------------------------------------- processes

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

// Children alive right now, so that an interrupted run leaves none behind.
const live = new Set();

export function startProcess(name, bin, args, opts = {}) {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let tail = '';
  const keep = (d) => { tail = (tail + d).slice(-16384); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const proc = { name, child, exit: null, tail: () => tail };
  proc.exited = new Promise((resolve) => {
    child.on('error', (e) => { keep(String(e)); proc.exit = { code: null, signal: String(e) }; live.delete(proc); resolve(proc.exit); });
    child.on('exit', (code, signal) => { proc.exit = { code, signal }; live.delete(proc); resolve(proc.exit); });
  });
  live.add(proc);
  return proc;
}

export function exitText(e) {
  return e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`;
}

export async function stopProcess(proc) {
  if (proc.exit) return;
  proc.child.kill('SIGTERM');
  const t = setTimeout(() => proc.child.kill('SIGKILL'), 10000);
  await proc.exited;
  clearTimeout(t);
}

// Polls url until it answers 200 (or the process exits, or timeoutMs passes).
export async function waitReady(proc, agent, url, timeoutMs) {
  const t0 = Date.now();
  for (;;) {
    if (proc.exit) throw new Error(`${proc.name} exited (${exitText(proc.exit)}) before it answered:\n${proc.tail()}`);
    try {
      const r = await request(agent, url, { timeoutMs: 2000 });
      if (r.status === 200) return;
    } catch { /* not listening yet */ }
    if (Date.now() - t0 > timeoutMs) throw new Error(`${proc.name} did not answer ${url} within ${timeoutMs / 1000} s:\n${proc.tail()}`);
    await sleep(50);
  }
}

// VmHWM (the kernel's high-water mark of the resident set) of one process,
// in bytes; null when it is gone.
export function vmHWM(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

// The direct children of pid, whichever of its threads started them.
export function childPids(pid) {
  const out = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
        if (kids) out.push(...kids.split(/\s+/).map(Number));
      } catch { /* thread gone */ }
    }
  } catch { /* process gone */ }
  return out;
}

// Peak resident set of a process and its descendants: the sum of VmHWM, in
// bytes.  Shared pages count once per process, so for nginx's master +
// workers this overstates a little.
export function peakRss(pid) {
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    total += vmHWM(p) ?? 0;
    stack.push(...childPids(p));
  }
  return total || null;
}

// ---------------------------------------------------------------- servers

// divan: started like tests/http/helpers.mjs does — `--data DIR --port 0`
// and a server admin (divan, like CouchDB 3, refuses to start without one),
// ready when it logs "divan listening on http://…/" and GET /_up says 200.
// The URL it resolves carries the admin's credentials: node's http.request
// sends them as Basic auth, runWrk passes them to the lua scenarios.
export async function startDivan(dir, agent, { bin, args = [] }) {
  if (!existsSync(bin)) throw new Error(`${bin} missing (make build)`);
  // cwd: the data directory, so that whatever it drops there (a core file)
  // goes away with the run's temporary directory.
  const proc = startProcess('divan', bin, ['--data', dir, '--port', '0', '--admin', 'bench:bench', ...args], { cwd: dir });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`divan did not start within 10 s:\n${proc.tail()}`)), 10000);
    const look = () => {
      const m = /divan listening on (http:\/\/\S+\/)/.exec(proc.tail());
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    proc.child.stderr.on('data', look);
    proc.child.stdout.on('data', look);
    proc.exited.then((e) => { clearTimeout(timer); reject(new Error(`divan exited (${exitText(e)}) before listening:\n${proc.tail()}`)); });
  });
  const authed = new URL(url);
  authed.username = 'bench';
  authed.password = 'bench';
  await waitReady(proc, agent, new URL('_up', authed), 10000);
  return { proc, url: authed.href };
}

// pouchdb-server: its default LevelDB adapter, data and config.json in DIR,
// its request log to DIR/log.txt (cwd) and not to stdout (-n).
export async function startPouch(dir, agent, { args = [] } = {}) {
  if (!existsSync(POUCH_BIN)) throw new Error(`${POUCH_BIN} missing (npm ci)`);
  const port = await freePort();
  const proc = startProcess('pouchdb-server', process.execPath,
    [POUCH_BIN, '-p', String(port), '-o', '127.0.0.1', '-d', dir, '-c', path.join(dir, 'config.json'), '-n', ...args],
    { cwd: dir });
  const url = `http://127.0.0.1:${port}/`;
  await waitReady(proc, agent, url, 30000);
  return { proc, url };
}

// ---------------------------------------------------------------- load

// Runs the async functions concurrently; if one fails, calls stop() so the
// others end at their next check, waits for all of them, rethrows the first error.
export async function allOrFirstError(fns, stop) {
  const settled = await Promise.allSettled(fns.map((f) => f().catch((e) => { stop(); throw e; })));
  const failed = settled.find((x) => x.status === 'rejected');
  if (failed) throw failed.reason;
}

// Loads n documents into database db via _bulk_docs, batches of `batch`,
// `conns` requests in flight; docOf(i) is the JSON text of document i.
// Every row must say ok.
export async function loadDocs(agent, base, db, n, docOf, { batch = 1000, conns = 2 } = {}) {
  const url = new URL(`${db}/_bulk_docs`, base);
  let next = 0;
  const worker = async () => {
    while (next < n && next >= 0) {
      const from = next;
      next += batch;
      const parts = [];
      for (let i = from; i < Math.min(from + batch, n); i++) parts.push(docOf(i));
      const r = await request(agent, url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"docs":[${parts.join(',')}]}` });
      const j = json(r.text);
      if ((r.status !== 201 && r.status !== 202) || !Array.isArray(j)) throw na(`POST /${db}/_bulk_docs: ${answer(r)}`);
      const bad = j.find((x) => !x.ok);
      if (bad || j.length !== parts.length) throw na(`POST /${db}/_bulk_docs: ${JSON.stringify(bad ?? j.length).slice(0, 100)}`);
    }
  };
  await allOrFirstError(Array.from({ length: conns }, () => worker), () => { next = -1; });
}

// ---------------------------------------------------------------- wrk

// Runs wrk with a lua scenario of this folder; resolves the figures its
// done() printed (common.lua).  luaArgs go after `--` as key=value words.
export async function runWrk(base, script, { conns, threads, seconds, seed, luaArgs = [] }) {
  const t = Math.max(1, Math.min(threads, conns));
  // wrk ignores credentials in the URL: they go to the scenario (auth=).
  const u = new URL(base);
  if (u.username) {
    luaArgs = [...luaArgs, `auth=${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`];
    u.username = '';
    u.password = '';
    base = u.href;
  }
  const args = ['-t', String(t), '-c', String(conns), '-d', `${seconds}s`, '--timeout', '60s',
    '-s', path.join(HERE, script), base, '--', `seed=${seed}`, ...luaArgs];
  const proc = startProcess('wrk', 'wrk', args, { env: { ...process.env, BENCH_HTTP_LUA: HERE } });
  const e = await proc.exited;
  const m = /BENCH_JSON (\{.*\})/.exec(proc.tail());
  if (e.code !== 0 || !m) throw new Error(`wrk ${args.join(' ')} failed (${exitText(e)}):\n${proc.tail()}`);
  return JSON.parse(m[1]);
}

// wrk figures -> a result cell, or n/a when the answers were mostly errors.
export function wrkResult(w) {
  const failed = w.err_status + w.err_connect + w.err_read + w.err_write + w.err_timeout;
  if (w.requests === 0) throw na(`no request completed (${failed} errors)`);
  if (w.err_status > 0.01 * w.requests) throw na(`${w.err_status} of ${w.requests} answers were not 2xx/3xx`);
  if (failed > 0.01 * w.requests) throw na(`${failed} socket errors or timeouts for ${w.requests} answers`);
  const res = { rate: w.requests / (w.duration_us / 1e6), p50: w.p50_us / 1000, p99: w.p99_us / 1000, requests: w.requests };
  if (failed) res.note = `${failed} errors in ${w.requests} requests`;
  return res;
}

export function checkWrk() {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (e) {
    if (e.code === 'ENOENT') throw new Error('wrk is not installed (scripts/deps.sh installs it)');
  }
}

// ---------------------------------------------------------------- report

// Nearest-rank percentile of a list of milliseconds.
export function percentile(list, p) {
  const s = [...list].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export function fmt(v, digits) {
  if (v === undefined || v === null) return 'n/a';
  if (digits !== undefined) return v.toFixed(digits);
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function ratio(a, b) {
  if (a === undefined || a === null || !b) return 'n/a';
  return `${(a / b).toFixed(2)}x`;
}

// A version from `cmd args` (stdout or stderr: nginx -v writes to stderr).
export function versionOf(cmd, args, re) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return re.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? '?';
}

export function cpuModel() {
  return (/model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8')) ?? [])[1] ?? '?';
}

export function gitCommit() {
  try { return execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return 'unknown'; }
}

export function fsType(dir) {
  return execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim();
}

export function pouchVersion() {
  try {
    return JSON.parse(readFileSync(path.join(ROOT, 'node_modules', 'pouchdb-server', 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}

// ---------------------------------------------------------------- clean-up

// Temporary directories to remove when the driver ends, however it ends.
export const cleanupDirs = [];

export function cleanup() {
  for (const p of live) { try { p.child.kill('SIGKILL'); } catch { /* gone */ } }
  for (const d of cleanupDirs) rmSync(d, { recursive: true, force: true });
}

// Runs main(), cleans up, prints a failure as `name: stack` and exits 1.
export function runMain(name, main) {
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { cleanup(); process.exit(130); });
  main().then(cleanup, (e) => {
    cleanup();
    console.error(`${name}: ${e.stack ?? e}`);
    process.exit(1);
  });
}
