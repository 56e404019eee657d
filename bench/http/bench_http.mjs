// bench_http.mjs — the `http` step of `make bench` (issue 3): divan's HTTP
// document API against pouchdb-server, the CouchDB-compatible server from
// npm, measured in the same run on the same machine, with nginx serving a
// static file of the same size as the reference for GET.
//
//   node bench/http/bench_http.mjs BUILD_DIR      (scripts/bench.sh runs it)
//
// Each server runs alone (one at a time, so they never share the 2 cores),
// with its data in a temporary directory under BUILD_DIR (a real disk), and
// goes through the same phases:
//
//   create database `bench`, load BENCH_HTTP_DOCS ~1 KiB docs via _bulk_docs
//   GET a random doc, 64 keep-alive connections          (wrk + get.lua)
//   _all_docs full scan, _changes?since=0 full feed       (this script, 1 client)
//   PUT new docs, 1 connection, then 64 connections      (wrk + put.lua)
//   POST _bulk_docs, 1,000-doc batches, 2 in flight       (this script)
//   peak RSS of the server process tree (VmHWM)
//
// Then divan once more, unsynced ([divan] durability = never), for the PUT
// with one connection only: pouchdb-server's LevelDB does not sync, so the
// default row compares a synced commit with an unsynced one; this row
// compares like with like (skipped when BENCH_HTTP_DIVAN_ARGS is set).
//
// The _bulk_docs phase and the scans run here rather than in wrk because a
// request can take a second on the peer: wrk drops the requests in flight
// when its time is up, which would understate a rate measured in a few
// requests; here every request started is finished and counted.
// nginx only serves GET of one static file.  It prints a markdown table of
// figures and ratios (divan / peer) on stdout; progress goes to stderr.
// Benchmarks are not tests: a slow figure fails nothing.  A phase the server
// cannot do yet (404/405, wrong answer, crash) prints "n/a" with the reason
// in the notes, so the harness runs before and after divan's endpoints land.
// Only a benchmark that cannot run at all (no wrk, no divan binary) exits
// non-zero.  docs/benchmarks.md describes the rows and the peers' settings.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import {
  DOC_LEN, ROOT, NotAvailable, allOrFirstError, answer, checkWrk, cleanupDirs, cpuModel, envInt, envWords, exitText,
  fmt, freePort, fsType, gitCommit, httpDefaults, json, loadDocs, makeBody, makeIds, na, peakRss, percentile,
  pouchVersion, ratio, request, rng, runMain, runWrk, startDivan, startPouch, startProcess, stopProcess,
  versionOf, waitReady, wrkResult,
} from './common.mjs';

const DB = 'bench';
const POOL = 1000; // distinct bodies; doc n of the load uses body n % POOL
const BATCH = 1000; // documents per _bulk_docs request (load and bulk phase)

const cfg = {
  build: path.resolve(process.argv[2] ?? path.join(ROOT, 'build')),
  docs: Math.floor(envInt('BENCH_HTTP_DOCS', 100000)),
  seconds: Math.ceil(envInt('BENCH_SECONDS', 3)),
  seed: Math.floor(envInt('BENCH_SEED', 42)),
  wrkThreads: Math.floor(envInt('BENCH_HTTP_WRK_THREADS', 2)),
  bulkConns: Math.floor(envInt('BENCH_HTTP_BULK_CONNECTIONS', 2)),
  servers: envWords('BENCH_HTTP_SERVERS', 'divan,pouchdb-server,nginx'),
  divanBin: path.resolve(ROOT, process.env.DIVAN_BIN || path.join(process.argv[2] ?? 'build', 'divan')),
  divanArgs: envWords('BENCH_HTTP_DIVAN_ARGS'),
  pouchArgs: envWords('BENCH_HTTP_POUCHDB_ARGS'),
};
// The default timeout allows the peer's slowest full scan (~20 s per
// 100,000 rows here) with a wide margin.
httpDefaults.timeoutMs = Math.max(60000, cfg.docs);

const log = (...a) => console.error('  http:', ...a);

// ---------------------------------------------------------------- servers

const startDivanHere = (dir, agent) => startDivan(dir, agent, { bin: cfg.divanBin, args: cfg.divanArgs });
const startPouchHere = (dir, agent) => startPouch(dir, agent, { args: cfg.pouchArgs });

// nginx: its own config and prefix in DIR, run in the foreground as the
// current user on a free loopback port, serving www/doc.json.
async function startNginx(dir, agent, size) {
  const port = await freePort();
  const www = path.join(dir, 'www');
  mkdirSync(www);
  mkdirSync(path.join(dir, 'tmp'));
  writeFileSync(path.join(www, 'doc.json'), staticDoc(size));
  const t = (n) => path.join(dir, 'tmp', n);
  const conf = `# written by bench/http/bench_http.mjs
daemon off;
master_process on;
worker_processes auto;
${process.getuid() === 0 ? 'user root;' : ''}
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  keepalive_requests 100000000;
  client_body_temp_path ${t('body')};
  proxy_temp_path ${t('proxy')};
  fastcgi_temp_path ${t('fastcgi')};
  uwsgi_temp_path ${t('uwsgi')};
  scgi_temp_path ${t('scgi')};
  types { }
  default_type application/json;
  server {
    listen 127.0.0.1:${port};
    root ${www};
  }
}
`;
  writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const proc = startProcess('nginx', 'nginx', ['-p', dir + '/', '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')]);
  const url = `http://127.0.0.1:${port}/`;
  await waitReady(proc, agent, new URL('doc.json', url), 10000);
  return { proc, url };
}

// A JSON object of exactly `size` bytes, for nginx to serve.
function staticDoc(size) {
  const head = '{"_id":"0000000000000000","pad":"';
  return head + 'x'.repeat(Math.max(0, size - head.length - 2)) + '"}';
}

// ---------------------------------------------------------------- phases

const SCENARIOS = [
  { key: 'get', label: 'GET random doc, 64 connections', unit: 'req/s' },
  { key: 'alldocs', label: '_all_docs full scan, 1 client', unit: 'rows/s' },
  { key: 'changes', label: '_changes?since=0 full feed, 1 client', unit: 'rows/s' },
  { key: 'put1', label: 'PUT new doc, 1 connection', unit: 'req/s' },
  { key: 'put64', label: 'PUT new doc, 64 connections', unit: 'req/s' },
  { key: 'bulk', label: () => `_bulk_docs, ${BATCH.toLocaleString('en')}-doc batches, ${cfg.bulkConns} in flight`, unit: 'docs/s', per: 'batch' },
];
// Each phase seeds its own ids (PUT phases must not collide with each other).
const PHASE_SEED = { get: 1, put1: 2, put64: 3, bulk: 4 };

let wrkFiles; // { ids, docs, nginxIds } written once per run

// wrk with a lua scenario for BENCH_SECONDS; each phase has its own seed.
const wrk = (base, script, conns, phase, luaArgs) =>
  runWrk(base, script, { conns, threads: cfg.wrkThreads, seconds: cfg.seconds, seed: cfg.seed * 16 + PHASE_SEED[phase], luaArgs });

// Full reads until BENCH_SECONDS have passed (at least one, and on the peer
// one can take many seconds).  The first is parsed and checked (it must
// return every loaded doc) after its time is taken; the others are only
// counted in bytes, which must match the first's (nothing writes meanwhile).
async function scanPhase(agent, base, pathq, field) {
  const url = new URL(pathq, base);
  const t0 = performance.now();
  const first = await request(agent, url);
  const times = [performance.now() - t0];
  let total = times[0];
  const j = json(first.text);
  if (first.status !== 200 || !j || !Array.isArray(j[field])) throw na(`GET ${pathq}: ${answer(first)}`);
  const rows = j[field].length;
  if (rows < cfg.docs) throw na(`GET ${pathq} returned ${rows} ${field}, not ${cfg.docs}`);
  while (total < cfg.seconds * 1000) {
    const t0 = performance.now();
    const r = await request(agent, url, { discard: true });
    const ms = performance.now() - t0;
    if (r.status !== 200) throw na(`GET ${pathq}: status ${r.status} on a later read`);
    if (r.bytes < 0.99 * first.bytes) throw na(`GET ${pathq}: a later read returned ${r.bytes} bytes, the first ${first.bytes}`);
    times.push(ms);
    total += ms;
  }
  return { rate: (rows * times.length) / (total / 1000), p50: percentile(times, 50), p99: percentile(times, 99),
    note: `${times.length} scan${times.length === 1 ? '' : 's'} of ${rows} rows` };
}

async function getPhase(agent, base, ids) {
  const r = await request(agent, new URL(`${DB}/${ids[0]}`, base));
  const j = json(r.text);
  if (r.status !== 200 || !j || j._id !== ids[0]) throw na(`GET /${DB}/{id}: ${answer(r)}`);
  const res = wrkResult(await wrk(base, 'get.lua', 64, 'get', [`path=/${DB}/`, `ids=${wrkFiles.ids}`]));
  res.docBytes = r.bytes;
  return res;
}

async function putPhase(agent, base, conns, pool) {
  const r = await request(agent, new URL(`${DB}/probe-put-${conns}`, base), { method: 'PUT', headers: { 'content-type': 'application/json' }, body: pool[0] });
  if ((r.status !== 201 && r.status !== 202) || !json(r.text)?.ok) throw na(`PUT /${DB}/{id}: ${answer(r)}`);
  return wrkResult(await wrk(base, 'put.lua', conns, `put${conns}`, [`path=/${DB}/`, `docs=${wrkFiles.docs}`]));
}

// The bulk phase's request bodies, built as bytes: for each doc a random id
// (randomId's digits) and a pool body picked at random, the same bytes as
// `{"docs":[{"_id":"<id>",<body minus its "{">,...]}` built as a string.
// The string way (1,000 template strings, then a 1 MB UTF-8 encode) took the
// client 2.8 ms a batch against 0.43 ms (node 20, this machine), on the path
// of each request in flight: the phase measured the client as much as the
// server.  Pool bodies are ASCII JSON.
const HEX = Buffer.from('0123456789abcdef');
function batchBuilder(pool, n) {
  const bodies = pool.map((b) => Buffer.from(b.slice(1)));
  if (bodies.some((b, i) => b.length !== pool[i].length - 1)) throw new Error('batchBuilder: pool bodies must be ASCII');
  const head = Buffer.from('{"docs":['), pre = Buffer.from('{"_id":"'), mid = Buffer.from('",');
  const pick = new Array(n);
  return (rand) => {
    let len = head.length + (n - 1) + 2;
    for (let i = 0; i < n; i++) {
      const hi = Math.floor(rand() * 4294967296), lo = Math.floor(rand() * 4294967296); // as randomId
      const b = bodies[Math.floor(rand() * bodies.length)];
      pick[i] = { hi, lo, b };
      len += pre.length + 16 + mid.length + b.length;
    }
    const out = Buffer.allocUnsafe(len);
    let o = head.copy(out, 0);
    for (let i = 0; i < n; i++) {
      const { hi, lo, b } = pick[i];
      if (i) out[o++] = 0x2c; // ,
      o += pre.copy(out, o);
      for (let s = 28; s >= 0; s -= 4) out[o++] = HEX[(hi >>> s) & 15];
      for (let s = 28; s >= 0; s -= 4) out[o++] = HEX[(lo >>> s) & 15];
      o += mid.copy(out, o);
      o += b.copy(out, o);
    }
    out[o++] = 0x5d; // ]
    out[o++] = 0x7d; // }
    return out;
  };
}

async function bulkPhase(agent, base, pool) {
  const body = `{"docs":[{"_id":"probe-bulk-1",${pool[1].slice(1)},{"_id":"probe-bulk-2",${pool[2].slice(1)}]}`;
  const r = await request(agent, new URL(`${DB}/_bulk_docs`, base), { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const j = json(r.text);
  if ((r.status !== 201 && r.status !== 202) || !Array.isArray(j) || j.length !== 2 || !j.every((x) => x.ok)) {
    throw na(`POST /${DB}/_bulk_docs: ${answer(r)}`);
  }
  // BENCH_HTTP_BULK_CONNECTIONS requests in flight, each BATCH new docs with
  // random ids; new requests start until BENCH_SECONDS have passed, and the
  // rate counts every request to its end.  Every row must say ok.
  const rand = rng(cfg.seed * 16 + PHASE_SEED.bulk);
  const build = batchBuilder(pool, BATCH);
  const url = new URL(`${DB}/_bulk_docs`, base);
  const times = [];
  let docs = 0;
  let stopped = false;
  const t0 = performance.now();
  const worker = async () => {
    while (!stopped && performance.now() - t0 < cfg.seconds * 1000) {
      const body = build(rand);
      const t = performance.now();
      const res = await request(agent, url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      times.push(performance.now() - t);
      const a = json(res.text);
      if ((res.status !== 201 && res.status !== 202) || !Array.isArray(a)) throw na(`POST /${DB}/_bulk_docs: ${answer(res)}`);
      const bad = a.find((x) => !x.ok);
      if (bad || a.length !== BATCH) throw na(`POST /${DB}/_bulk_docs: ${JSON.stringify(bad ?? a.length).slice(0, 100)}`);
      docs += BATCH;
    }
  };
  await allOrFirstError(Array.from({ length: cfg.bulkConns }, () => worker), () => { stopped = true; });
  const secs = (performance.now() - t0) / 1000;
  return { rate: docs / secs, p50: percentile(times, 50), p99: percentile(times, 99), note: `${times.length} batches in ${secs.toFixed(1)} s` };
}

// Runs every phase against one database server; returns { results, rss, load, ... }.
// only: the phase keys to run (all when absent).
async function runDbServer(name, start, dir, ids, pool, only) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(4, cfg.bulkConns) });
  const out = { results: {}, notes: [] };
  const fail = (key, e) => {
    if (!(e instanceof NotAvailable)) throw e;
    out.results[key] = { na: e.message };
  };
  let srv;
  try {
    srv = await start(dir, agent);
  } catch (e) {
    for (const s of SCENARIOS) out.results[s.key] = { na: 'server did not start' };
    out.notes.push(`${name} did not start: ${e.message.split('\n')[0]}`);
    log(e.message);
    return out;
  }
  let ran = 0;
  try {
    let ready = true;
    try {
      const r = await request(agent, new URL(DB, srv.url), { method: 'PUT' });
      if (r.status !== 201 && r.status !== 202) throw na(`PUT /${DB}: ${answer(r)}`);
    } catch (e) {
      if (!(e instanceof NotAvailable)) throw e;
      ready = false;
      for (const s of SCENARIOS) out.results[s.key] = { na: e.message };
    }
    if (ready) {
      log(`${name}: loading ${cfg.docs} docs via _bulk_docs...`);
      const t0 = performance.now();
      try {
        await loadDocs(agent, srv.url, DB, ids.length, (i) => `{"_id":"${ids[i]}",${pool[i % POOL].slice(1)}`,
          { batch: BATCH, conns: 2 });
        const s = (performance.now() - t0) / 1000;
        out.load = { seconds: s, rate: cfg.docs / s };
      } catch (e) {
        if (!(e instanceof NotAvailable)) throw e;
        ready = false;
        for (const s of ['get', 'alldocs', 'changes']) out.results[s] = { na: `load failed: ${e.message}` };
      }
    }
    const phases = [
      ['get', () => getPhase(agent, srv.url, ids), ready],
      ['alldocs', () => scanPhase(agent, srv.url, `/${DB}/_all_docs?include_docs=false`, 'rows'), ready],
      ['changes', () => scanPhase(agent, srv.url, `/${DB}/_changes?since=0`, 'results'), ready],
      ['put1', () => putPhase(agent, srv.url, 1, pool), !out.results.put1],
      ['put64', () => putPhase(agent, srv.url, 64, pool), !out.results.put64],
      ['bulk', () => bulkPhase(agent, srv.url, pool), !out.results.bulk],
    ];
    for (const [key, fn, runIt] of phases) {
      if (!runIt || (only && !only.includes(key))) continue;
      if (srv.proc.exit) {
        out.results[key] = { na: `server ${exitText(srv.proc.exit)} earlier` };
        continue;
      }
      log(`${name}: ${key}...`);
      try {
        out.results[key] = await fn();
        ran++;
      } catch (e) {
        if (srv.proc.exit) e = na(`server ${exitText(srv.proc.exit)}: ${e.message.split('\n')[0]}`);
        fail(key, e);
      }
    }
    if (srv.proc.exit) log(`${name} ${exitText(srv.proc.exit)}; the end of its log:\n${srv.proc.tail()}`);
    if (srv.proc.exit) out.notes.push(`${name} ${exitText(srv.proc.exit)} during the run; last log lines:\n\n\`\`\`\n${srv.proc.tail().split('\n').slice(-8).join('\n')}\n\`\`\``);
    else if (ran > 0 && !only) {
      out.rss = peakRss(srv.proc.child.pid);
      if (ran < SCENARIOS.length) out.notes.push(`peak RSS after ${ran} of ${SCENARIOS.length} phases only (the others were n/a): not comparable`);
    }
  } finally {
    agent.destroy();
    await stopProcess(srv.proc);
  }
  return out;
}

async function runNginx(dir, size) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const out = { results: {}, notes: [] };
  let srv;
  try {
    srv = await startNginx(dir, agent, size);
  } catch (e) {
    out.results.get = { na: 'nginx did not start' };
    out.notes.push(`nginx did not start: ${e.message.split('\n')[0]}`);
    log(e.message);
    agent.destroy();
    return out;
  }
  try {
    log(`nginx: get (${size}-byte file)...`);
    out.results.get = wrkResult(await wrk(srv.url, 'get.lua', 64, 'get', ['path=/', `ids=${wrkFiles.nginxIds}`]));
    out.rss = peakRss(srv.proc.child.pid);
  } catch (e) {
    if (!(e instanceof NotAvailable)) throw e;
    out.results.get = { na: e.message };
  } finally {
    agent.destroy();
    await stopProcess(srv.proc);
  }
  return out;
}

// ---------------------------------------------------------------- report

function report(res, info) {
  const L = [];
  const cpu = cpuModel();
  const commit = gitCommit();
  const d = res.divan, p = res['pouchdb-server'], n = res.nginx;
  const cell = (r, key, field) => (r?.results[key] && !r.results[key].na ? r.results[key][field] : undefined);

  L.push('## HTTP: divan vs pouchdb-server, nginx static file as the GET reference', '');
  L.push(`${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${os.cpus().length} cores (${cpu}), ` +
    `data on ${info.fstype}, commit ${commit}. Servers run one at a time on 127.0.0.1; load from wrk ${info.wrk} ` +
    `(bench/http/*.lua, ${cfg.wrkThreads} threads for 64 connections) on the same cores; load average ` +
    `${info.loadavg.toFixed(2)} at the start (figures from a busy machine are noise).`);
  L.push(`Command: \`BENCH_STEPS=http BENCH_HTTP_DOCS=${cfg.docs} BENCH_SECONDS=${cfg.seconds} make bench\``, '');

  L.push('| scenario | divan | pouchdb-server | divan/pouchdb-server | nginx | divan/nginx | target |');
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const s of SCENARIOS) {
    const label = typeof s.label === 'function' ? s.label() : s.label;
    const isGet = s.key === 'get';
    const nx = (f) => (isGet ? fmt(cell(n, 'get', f)) : '');
    const nr = (f) => (isGet ? ratio(cell(d, 'get', f), cell(n, 'get', f)) : '');
    L.push(`| ${label}: ${s.unit} | ${fmt(cell(d, s.key, 'rate'))} | ${fmt(cell(p, s.key, 'rate'))} | ` +
      `${ratio(cell(d, s.key, 'rate'), cell(p, s.key, 'rate'))} | ${nx('rate')} | ${nr('rate')} | ` +
      `${isGet ? '>= 10x pouchdb-server, >= 0.5x nginx' : '>= 10x pouchdb-server'} |`);
    for (const [f, name] of [['p50', 'p50'], ['p99', 'p99']]) {
      L.push(`| ${label}: ${name} ms per ${s.per ?? (s.unit === 'rows/s' ? 'scan' : 'request')} (lower is better) | ` +
        `${fmt(cell(d, s.key, f))} | ${fmt(cell(p, s.key, f))} | ${ratio(cell(d, s.key, f), cell(p, s.key, f))} | ` +
        `${nx(f)} | ${nr(f)} | |`);
    }
    const u = res.divanUnsynced;
    if (s.key === 'put1' && u) {
      L.push(`| ${label}, divan unsynced (\`[divan] durability = never\`, as pouchdb-server's LevelDB): req/s | ` +
        `${fmt(cell(u, 'put1', 'rate'))} | ${fmt(cell(p, 'put1', 'rate'))} | ${ratio(cell(u, 'put1', 'rate'), cell(p, 'put1', 'rate'))} | | | ` +
        'same durability as the peer; the target is on the synced row |');
    }
  }
  const mib = (r) => (r?.rss ? r.rss / 1048576 : undefined);
  L.push(`| peak RSS, MiB (lower is better) | ${fmt(mib(d), 1)} | ${fmt(mib(p), 1)} | ${ratio(mib(d), mib(p))} | ` +
    `${n ? fmt(mib(n), 1) : ''} | | <= 0.2x pouchdb-server |`);
  L.push('');

  L.push(`Documents: ${cfg.docs} of ${DOC_LEN}-byte JSON bodies (order records, 16-hex-digit random ids) loaded ` +
    `into database \`${DB}\` via _bulk_docs before the timed phases, in the order of the table; each phase lasts ` +
    `${cfg.seconds} s (scans: full reads until then, at least one). PUT and _bulk_docs add new ` +
    `docs to the same database. nginx serves one static JSON file of ${info.staticSize} bytes (the size of ` +
    `${info.staticFrom}'s GET answer for a loaded doc) through the same lua script. Ratios are divan / peer: above 1 ` +
    'is better for divan, except rows marked "lower is better".');
  L.push('');
  const rel = path.relative(ROOT, cfg.divanBin);
  L.push(`Peers: divan \`${rel.startsWith('..') ? cfg.divanBin : rel} --data DIR --port 0${cfg.divanArgs.length ? ' ' + cfg.divanArgs.join(' ') : ''}\`` +
    (cfg.divanArgs.length ? ' (its settings as BENCH_HTTP_DIVAN_ARGS gives them; by default every commit is synced). '
      : ' (default configuration: every commit synced). ') + `pouchdb-server ${info.pouchVersion} ` +
    `\`-d DIR -c DIR/config.json -n${cfg.pouchArgs.length ? ' ' + cfg.pouchArgs.join(' ') : ''}\`, ` +
    `${cfg.pouchArgs.some((x) => x === '--in-memory' || x === '-m') ? 'in-memory adapter' : 'LevelDB adapter (LevelDB writes are not synced)'}` +
    `, request log to DIR/log.txt. nginx ${info.nginx}: worker_processes auto, ` +
    'access_log off, sendfile on, keepalive_requests 100000000. Peak RSS: VmHWM of the server process (and children) ' +
    'after its last phase.');
  const notes = [];
  for (const [name, r] of Object.entries(res)) {
    if (!r) continue;
    if (r.load && name !== 'divanUnsynced') notes.push(`${name}: loaded ${cfg.docs} docs in ${r.load.seconds.toFixed(1)} s (${fmt(r.load.rate)} docs/s, 1,000-doc batches, 2 requests in flight).`);
    const reasons = new Set(SCENARIOS.map((s) => r.results[s.key]?.na));
    const allNa = r.results.get && reasons.size === 1 && !reasons.has(undefined);
    if (allNa) notes.push(`${name}: n/a everywhere — ${[...reasons][0]}`);
    for (const s of SCENARIOS) {
      const x = r.results[s.key];
      if (!x || allNa) continue;
      const label = typeof s.label === 'function' ? s.label() : s.label;
      if (x.na) notes.push(`${name}, ${label}: n/a — ${x.na}`);
      else if (x.note) notes.push(`${name}, ${label}: ${x.note}`);
    }
    notes.push(...r.notes.map((t) => `${name}: ${t}`));
  }
  if (notes.length) {
    L.push('');
    for (const t of notes) L.push(`- ${t}`);
  }
  return L.join('\n');
}

// ---------------------------------------------------------------- main

async function main() {
  checkWrk();
  for (const s of cfg.servers) {
    if (!['divan', 'pouchdb-server', 'nginx'].includes(s)) throw new Error(`BENCH_HTTP_SERVERS: unknown server ${s}`);
  }
  if (cfg.servers.includes('divan') && !existsSync(cfg.divanBin)) throw new Error(`${cfg.divanBin} missing (make build)`);

  const root = mkdtempSync(path.join(cfg.build, 'bench-http-'));
  cleanupDirs.push(root);
  const r = rng(cfg.seed);
  const pool = Array.from({ length: POOL }, (_, i) => makeBody(r, i));
  const ids = makeIds(r, cfg.docs);
  wrkFiles = { ids: path.join(root, 'ids.txt'), docs: path.join(root, 'docs.txt'), nginxIds: path.join(root, 'nginx-ids.txt') };
  writeFileSync(wrkFiles.ids, ids.join('\n') + '\n');
  writeFileSync(wrkFiles.docs, pool.join('\n') + '\n');
  writeFileSync(wrkFiles.nginxIds, 'doc.json\n');

  const info = {
    loadavg: os.loadavg()[0],
    fstype: fsType(root),
    wrk: versionOf('wrk', ['--version'], /wrk (?:debian\/)?(\d[\w.]*)/),
    nginx: versionOf('nginx', ['-v'], /nginx\/(\S+)/),
    pouchVersion: pouchVersion(),
  };
  const res = {};
  // nginx last: its file takes the size of a GET answer measured before it.
  for (const name of ['divan', 'pouchdb-server']) {
    if (!cfg.servers.includes(name)) continue;
    const dir = path.join(root, name);
    mkdirSync(dir);
    log(`${name}: starting`);
    res[name] = await runDbServer(name, name === 'divan' ? startDivanHere : startPouchHere, dir, ids, pool);
    rmSync(dir, { recursive: true, force: true });
  }
  // PUT with one connection waits for each commit's sync in divan's
  // default configuration, and pouchdb-server's LevelDB does not sync:
  // the same phase again with divan not syncing either, as a like-for-like
  // row beside the default one (docs/benchmarks.md).
  if (cfg.servers.includes('divan') && !cfg.divanArgs.length) {
    const dir = path.join(root, 'divan-unsynced');
    mkdirSync(dir);
    const ini = path.join(root, 'unsynced.ini');
    writeFileSync(ini, '[divan]\ndurability = never\n');
    log('divan, unsynced: starting');
    const start = (d, agent) => startDivan(d, agent, { bin: cfg.divanBin, args: ['--config', ini] });
    res.divanUnsynced = await runDbServer('divan (unsynced)', start, dir, ids, pool, ['put1']);
    rmSync(dir, { recursive: true, force: true });
  }
  const sized = ['divan', 'pouchdb-server'].find((s) => res[s]?.results.get?.docBytes);
  info.staticFrom = sized ?? 'an estimate of a';
  info.staticSize = sized ? res[sized].results.get.docBytes : DOC_LEN + 70;
  if (cfg.servers.includes('nginx')) {
    const dir = path.join(root, 'nginx');
    mkdirSync(dir);
    res.nginx = await runNginx(dir, info.staticSize);
  }
  console.log(report(res, info));
}


runMain('bench_http', main);
