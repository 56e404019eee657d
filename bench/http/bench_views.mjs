// bench_views.mjs — the `views` step of `make bench` (issue 4): divan's
// map/reduce views (index builds through the divan-js query server, then
// queries) against pouchdb-server's, measured in the same run on the same
// machine.
//
//   node bench/http/bench_views.mjs BUILD_DIR      (scripts/bench.sh runs it)
//
// Each server runs alone, with its data in a temporary directory under
// BUILD_DIR, and goes through the same phases:
//
//   create database `bench`, load N ~1 KiB docs via _bulk_docs (untimed)
//   for each design document (a) (b) (c) (d), a fresh one each time:
//     PUT it, then time the first query (limit=1, reduce=false): the build
//   query latencies, one connection (wrk + get.lua, a file of query paths):
//     key lookup and 100-row range on (a), group=true&limit=100 on (b) and
//     (c), group_level=1 and group_level=2&limit=100 on (d)
//   peak RSS (VmHWM): the server process, and for divan, separately, its
//   divan-js query-server children (found through /proc/PID/task/*/children,
//   sampled all along so that a child that exits still counts)
//
// The first answer of each build and each query is checked against a model
// computed here from the same documents (row counts, keys, sums); a wrong
// answer is "n/a" with the reason in the notes, not a figure.  pouchdb-server
// may be given fewer documents (BENCH_VIEWS_POUCHDB_DOCS): its builds are
// slow, so the build rows compare rates (docs/s), and the notes say so.  It
// prints a markdown table of figures and ratios on stdout; progress goes to
// stderr.  Benchmarks are not tests: a slow figure fails nothing.
// docs/benchmarks.md describes the rows.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import {
  DOC_LEN, NotAvailable, ROOT, answer, checkWrk, childPids, cleanupDirs, cpuModel, envInt, envWords, exitText, fmt,
  fsType, gitCommit, httpDefaults, json, loadDocs, makeBody, makeIds, na, percentile, pouchVersion, ratio, request, rng, runMain,
  runWrk, startDivan, startPouch, stopProcess, versionOf, vmHWM, wrkResult,
} from './common.mjs';

const DB = 'bench';
const POOL = 1000; // distinct bodies; doc i uses body i % POOL, plus its own x
const BATCH = 1000; // documents per _bulk_docs request of the load
const X_FIELD_LEN = '"x":"k0000000",'.length; // bodies are shorter by this, so a doc is DOC_LEN bytes
const ROWS_PER_KEY = 10; // x takes n / 10 distinct values: ~10 rows per key

const cfg = {
  build: path.resolve(process.argv[2] ?? path.join(ROOT, 'build')),
  docs: Math.floor(envInt('BENCH_VIEWS_DOCS', 100000)),
  pouchDocs: Math.floor(envInt('BENCH_VIEWS_POUCHDB_DOCS', 10000)),
  seconds: Math.ceil(envInt('BENCH_SECONDS', 3)),
  seed: Math.floor(envInt('BENCH_SEED', 42)),
  servers: envWords('BENCH_VIEWS_SERVERS', 'divan,pouchdb-server'),
  divanBin: path.resolve(ROOT, process.env.DIVAN_BIN || path.join(process.argv[2] ?? 'build', 'divan')),
  divanArgs: envWords('BENCH_VIEWS_DIVAN_ARGS'),
  pouchArgs: envWords('BENCH_VIEWS_POUCHDB_ARGS'),
};
cfg.pouchDocs = Math.min(cfg.pouchDocs, cfg.docs);
// A build or a grouped query of the peer can take minutes at large sizes.
httpDefaults.timeoutMs = Math.max(600000, cfg.docs * 10);

const log = (...a) => console.error('  views:', ...a);

// ---------------------------------------------------------------- views

const JS_SUM = 'function (keys, values, rereduce) { return sum(values); }';
const DDOCS = [
  { key: 'a', label: '(a) `emit(doc.x, null)`', map: 'function (doc) { emit(doc.x, null); }' },
  { key: 'b', label: '(b) `emit(doc.x, doc.number)`, `_sum`', map: 'function (doc) { emit(doc.x, doc.number); }', reduce: '_sum' },
  { key: 'c', label: '(c) the same, JavaScript reduce `sum(values)`', map: 'function (doc) { emit(doc.x, doc.number); }', reduce: JS_SUM },
  { key: 'd', label: '(d) `emit([doc.customer.city, doc.status, doc.x], doc.number)`, `_sum`',
    map: 'function (doc) { emit([doc.customer.city, doc.status, doc.x], doc.number); }', reduce: '_sum' },
];

// Query scenarios: the view, the query paths (one picked at random per
// request), and the model's answer to the first path.
const QUERIES = [
  { key: 'lookup', ddoc: 'a', label: 'key lookup on (a), `key=` a random key (~10 rows)' },
  { key: 'range', ddoc: 'a', label: '100-row range on (a), `startkey=` a random key `&limit=100`' },
  { key: 'group_sum', ddoc: 'b', label: 'grouped `_sum` on (b), `group=true&limit=100`' },
  { key: 'group_js', ddoc: 'c', label: 'grouped JavaScript reduce on (c), `group=true&limit=100`' },
  { key: 'level1', ddoc: 'd', label: 'array keys (d), `group_level=1` (every city)' },
  { key: 'level2', ddoc: 'd', label: 'array keys (d), `group_level=2&limit=100`' },
];

const viewPath = (ddoc) => `/${DB}/_design/${ddoc}/_view/v`;
const q = (v) => encodeURIComponent(JSON.stringify(v));

// ---------------------------------------------------------------- data and model

// The n documents a server gets: ids, bodies of the seeded pool and x, whose
// n / ROWS_PER_KEY distinct values depend on n (so that a key holds ~10 rows
// on either server whatever each was given).  The model holds what the views
// must answer.
function dataset(n, ids, pool, bodies) {
  const r = rng(cfg.seed * 31 + n);
  const nkeys = Math.max(1, Math.round(n / ROWS_PER_KEY));
  const xs = Array.from({ length: n }, () => 'k' + String(Math.floor(r() * nkeys)).padStart(7, '0'));
  const docOf = (i) => `{"_id":"${ids[i]}","x":"${xs[i]}",${pool[i % POOL].slice(1)}`;
  // model: x -> [count, sum of number]; [city] and [city, status] -> sum
  const byX = new Map();
  const l1 = new Map();
  const l2 = new Map();
  const add = (m, k, v) => m.set(k, (m.get(k) ?? 0) + v);
  for (let i = 0; i < n; i++) {
    const b = bodies[i % POOL];
    const e = byX.get(xs[i]) ?? [0, 0];
    e[0]++;
    e[1] += b.number;
    byX.set(xs[i], e);
    add(l1, JSON.stringify([b.customer.city]), b.number);
    add(l2, JSON.stringify([b.customer.city, b.status]), b.number);
  }
  // Keys are "k" + 7 digits, cities and statuses lower-case ASCII words: in
  // CouchDB's (ICU) order these sort as JavaScript sorts them by code unit.
  const keys = [...byX.keys()].sort();
  const sortArr = (m) => [...m.entries()].map(([k, v]) => ({ key: JSON.parse(k), value: v }))
    .sort((a, b) => (JSON.stringify(a.key) < JSON.stringify(b.key) ? -1 : 1));
  return { n, xs, docOf, byX, keys, level1: sortArr(l1), level2: sortArr(l2) };
}

// Query paths of each scenario (written to a file for wrk) and a check of
// the answer to the first one.
function queries(ds) {
  const r = rng(cfg.seed * 37 + ds.n);
  const pick = () => ds.keys[Math.floor(r() * ds.keys.length)];
  const lookups = Array.from({ length: 1000 }, () => `key=${q(pick())}`);
  const ranges = Array.from({ length: 1000 }, () => `startkey=${q(pick())}&limit=100`);
  const grouped = ds.keys.slice(0, 100).map((k) => ({ key: k, value: ds.byX.get(k)[1] }));
  const rowsOf = (j) => (j && Array.isArray(j.rows) ? j.rows : null);
  // (pouchdb-server writes "value" before "key": compare the pairs)
  const pairs = (rows) => JSON.stringify(rows?.map((x) => [x.key, x.value]));
  const same = (got, want) => got !== null && pairs(got) === pairs(want);
  return {
    lookup: { paths: lookups, check: (j) => {
      const k = JSON.parse(decodeURIComponent(lookups[0].slice(4)));
      const rows = rowsOf(j);
      if (!rows || rows.length !== ds.byX.get(k)[0] || rows.some((x) => x.key !== k || x.value !== null)) {
        return `want ${ds.byX.get(k)[0]} rows of key ${k}, got ${rows ? rows.length : 'none'}`;
      }
    } },
    range: { paths: ranges, check: (j) => {
      const k = JSON.parse(decodeURIComponent(ranges[0].slice(9, ranges[0].indexOf('&'))));
      const rows = rowsOf(j);
      const want = Math.min(100, ds.xs.filter((x) => x >= k).length);
      if (!rows || rows.length !== want || rows[0].key !== k || rows.some((x, i) => i && x.key < rows[i - 1].key)) {
        return `want ${want} rows from key ${k} in order, got ${rows ? rows.length : 'none'}`;
      }
    } },
    group_sum: { paths: ['group=true&limit=100'], check: (j) => (same(rowsOf(j), grouped) ? undefined : 'not the model\'s 100 groups and sums') },
    group_js: { paths: ['group=true&limit=100'], check: (j) => (same(rowsOf(j), grouped) ? undefined : 'not the model\'s 100 groups and sums') },
    level1: { paths: ['group_level=1'], check: (j) => (same(rowsOf(j), ds.level1) ? undefined : 'not the model\'s groups and sums') },
    level2: { paths: ['group_level=2&limit=100'], check: (j) => (same(rowsOf(j), ds.level2.slice(0, 100)) ? undefined : 'not the model\'s 100 groups and sums') },
  };
}

// ---------------------------------------------------------------- RSS and CPU

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

// CPU seconds (user + system, every thread) a process has used; null when gone.
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS;
  } catch {
    return null;
  }
}

// Samples VmHWM and CPU time of the server and of each of its children
// (divan-js query servers, spawned from divan's worker threads) every 100
// ms, so that a child that exits before the end still counts.  VmHWM is the
// kernel's high-water mark: sampling only has to see each process once near
// its end.  CPU time is what a busy machine does not distort much: a build
// that waits for a core shows in its seconds, not in its CPU seconds.
function procSampler(pid) {
  const kids = new Map(); // pid -> { hwm, cpu } last seen
  let self = 0;
  let selfCpu = 0;
  const sample = () => {
    self = Math.max(self, vmHWM(pid) ?? 0);
    selfCpu = cpuSeconds(pid) ?? selfCpu;
    for (const k of childPids(pid)) {
      const h = vmHWM(k);
      const c = cpuSeconds(k);
      const e = kids.get(k) ?? { hwm: 0, cpu: 0 };
      if (h) e.hwm = Math.max(e.hwm, h);
      if (c !== null) e.cpu = c;
      kids.set(k, e);
    }
  };
  const sum = (f) => [...kids.values()].reduce((a, e) => a + e[f], 0);
  const timer = setInterval(sample, 100);
  sample();
  return {
    now: () => { sample(); return self; },
    cpu: () => { sample(); return { self: selfCpu, kids: sum('cpu') }; },
    stop: () => { clearInterval(timer); sample(); return { self, kids: sum('hwm'), nkids: kids.size }; },
  };
}

// ---------------------------------------------------------------- phases

// PUT the design document, then time the first query: the index build
// (wall-clock seconds, and CPU seconds of the server and its children).
async function buildPhase(agent, base, ds, dd, procs) {
  const body = JSON.stringify({ _id: `_design/${dd.key}`, views: { v: { map: dd.map, ...(dd.reduce ? { reduce: dd.reduce } : {}) } } });
  const tp = performance.now();
  const p = await request(agent, new URL(`${DB}/_design/${dd.key}`, base), { method: 'PUT', headers: { 'content-type': 'application/json' }, body });
  const putMs = performance.now() - tp;
  if (p.status !== 201 && p.status !== 202) throw na(`PUT /${DB}/_design/${dd.key}: ${answer(p)}`);
  const qs = dd.reduce ? 'limit=1&reduce=false' : 'limit=1';
  const c0 = procs.cpu();
  const t0 = performance.now();
  const r = await request(agent, new URL(`${viewPath(dd.key)}?${qs}`, base));
  const secs = (performance.now() - t0) / 1000;
  const c1 = procs.cpu();
  const j = json(r.text);
  if (r.status !== 200 || !j || !Array.isArray(j.rows)) throw na(`GET ${viewPath(dd.key)}?${qs}: ${answer(r)}`);
  if (j.total_rows !== ds.n || j.rows.length !== 1) throw na(`the build's answer has total_rows ${j.total_rows}, ${j.rows.length} rows; want ${ds.n}, 1`);
  const cpu = { self: c1.self - c0.self, kids: c1.kids - c0.kids };
  return { rate: ds.n / secs, seconds: secs, putMs, cpu, cpuTotal: cpu.self + cpu.kids, perCpu: ds.n / (cpu.self + cpu.kids) };
}

// One connection, wrk picking a random path of the scenario per request,
// for BENCH_SECONDS; the first path's answer is checked beforehand.  When
// that first request took more than a twentieth of BENCH_SECONDS, wrk would
// fit few requests and drop the one in flight when its time is up: the
// driver then sends them itself, one at a time, until BENCH_SECONDS have
// passed and at least 3 were answered (the checked one among them).
async function queryPhase(agent, base, tmp, qd, spec, i) {
  const first = `${viewPath(qd.ddoc)}?${spec.paths[0]}`;
  const t0 = performance.now();
  const r = await request(agent, new URL(first, base));
  const firstMs = performance.now() - t0;
  if (r.status !== 200) throw na(`GET ${first}: ${answer(r)}`);
  const bad = spec.check(json(r.text));
  if (bad) throw na(`GET ${first}: wrong answer: ${bad}`);
  if (firstMs * 20 > cfg.seconds * 1000) {
    const rand = rng(cfg.seed * 16 + 8 + i);
    const times = [firstMs];
    let total = firstMs;
    while (total < cfg.seconds * 1000 || times.length < 3) {
      const p = `${viewPath(qd.ddoc)}?${spec.paths[Math.floor(rand() * spec.paths.length)]}`;
      const t = performance.now();
      const x = await request(agent, new URL(p, base), { discard: true });
      const ms = performance.now() - t;
      if (x.status !== 200) throw na(`GET ${p}: status ${x.status}`);
      times.push(ms);
      total += ms;
    }
    return { rate: times.length / (total / 1000), p50: percentile(times, 50), p99: percentile(times, 99), requests: times.length,
      bytes: r.bytes, note: `${times.length} requests timed by the driver, one at a time (${fmt(firstMs / 1000)} s each: too slow for wrk)` };
  }
  const file = path.join(tmp, `paths-${qd.key}.txt`);
  writeFileSync(file, spec.paths.join('\n') + '\n');
  const w = await runWrk(base, 'get.lua', { conns: 1, threads: 1, seconds: cfg.seconds, seed: cfg.seed * 16 + 8 + i,
    luaArgs: [`path=${viewPath(qd.ddoc)}?`, `ids=${file}`] });
  return { ...wrkResult(w), bytes: r.bytes };
}

// Runs every phase against one server; returns { results, rss, load, notes }.
async function runServer(name, start, dir, tmp, ds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const out = { results: {}, notes: [], n: ds.n };
  const keys = [...DDOCS.map((d) => `build_${d.key}`), ...QUERIES.map((x) => x.key)];
  let srv;
  try {
    srv = await start(dir, agent);
  } catch (e) {
    for (const k of keys) out.results[k] = { na: 'server did not start' };
    out.notes.push(`did not start: ${e.message.split('\n')[0]}`);
    log(e.message);
    return out;
  }
  const rss = procSampler(srv.proc.child.pid);
  let ran = 0;
  try {
    try {
      const r = await request(agent, new URL(DB, srv.url), { method: 'PUT' });
      if (r.status !== 201 && r.status !== 202) throw na(`PUT /${DB}: ${answer(r)}`);
      log(`${name}: loading ${ds.n} docs via _bulk_docs...`);
      const t0 = performance.now();
      await loadDocs(agent, srv.url, DB, ds.n, ds.docOf, { batch: BATCH, conns: 2 });
      out.load = { seconds: (performance.now() - t0) / 1000 };
      out.rssAfterLoad = rss.now();
    } catch (e) {
      if (!(e instanceof NotAvailable)) throw e;
      for (const k of keys) out.results[k] = { na: `load failed: ${e.message}` };
    }
    const specs = queries(ds);
    const phases = [
      ...DDOCS.map((dd) => [`build_${dd.key}`, () => buildPhase(agent, srv.url, ds, dd, rss)]),
      ...QUERIES.map((qd, i) => [qd.key, () => queryPhase(agent, srv.url, tmp, qd, specs[qd.key], i)]),
    ];
    for (const [key, fn] of phases) {
      if (out.results[key]) continue;
      const dd = /^build_(.)$/.exec(key)?.[1];
      const needs = dd ? null : `build_${QUERIES.find((x) => x.key === key).ddoc}`;
      if (needs && out.results[needs]?.na) {
        out.results[key] = { na: `no index: ${needs.slice(6)}'s build was n/a` };
        continue;
      }
      if (srv.proc.exit) {
        out.results[key] = { na: `server ${exitText(srv.proc.exit)} earlier` };
        continue;
      }
      log(`${name}: ${key}...`);
      try {
        out.results[key] = await fn();
        if (dd) log(`${name}: built (${dd}) in ${out.results[key].seconds.toFixed(2)} s`);
        ran++;
      } catch (e) {
        if (srv.proc.exit) e = na(`server ${exitText(srv.proc.exit)}: ${e.message.split('\n')[0]}`);
        if (!(e instanceof NotAvailable)) throw e;
        out.results[key] = { na: e.message };
      }
    }
    if (srv.proc.exit) {
      log(`${name} ${exitText(srv.proc.exit)}; the end of its log:\n${srv.proc.tail()}`);
      out.notes.push(`${exitText(srv.proc.exit)} during the run; last log lines:\n\n\`\`\`\n${srv.proc.tail().split('\n').slice(-8).join('\n')}\n\`\`\``);
    } else if (ran > 0) {
      out.rss = rss.stop();
      if (ran < keys.length) out.notes.push(`peak RSS after ${ran} of ${keys.length} phases only (the others were n/a): not comparable`);
    }
  } finally {
    rss.stop();
    agent.destroy();
    await stopProcess(srv.proc);
  }
  return out;
}

// ---------------------------------------------------------------- report

function report(res, info) {
  const L = [];
  const d = res.divan, p = res['pouchdb-server'];
  const cell = (r, key, field) => (r?.results[key] && !r.results[key].na ? r.results[key][field] : undefined);
  const row = (label, key, field, target = '') =>
    L.push(`| ${label} | ${fmt(cell(d, key, field))} | ${fmt(cell(p, key, field))} | ${ratio(cell(d, key, field), cell(p, key, field))} | ${target} |`);

  L.push('## Views: divan vs pouchdb-server', '');
  L.push(`${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${os.cpus().length} cores (${cpuModel()}), ` +
    `data on ${info.fstype}, commit ${gitCommit()}. Servers run one at a time on 127.0.0.1; query load from wrk ${info.wrk} ` +
    `(bench/http/get.lua, 1 connection) on the same cores; load average ${info.loadavg.toFixed(2)} at the start ` +
    '(figures from a busy machine are noise).');
  L.push(`Command: \`BENCH_STEPS=views BENCH_VIEWS_DOCS=${cfg.docs} BENCH_VIEWS_POUCHDB_DOCS=${cfg.pouchDocs} ` +
    `BENCH_SECONDS=${cfg.seconds} make bench\``, '');

  L.push('| scenario | divan | pouchdb-server | divan/pouchdb-server | target |');
  L.push('| --- | ---: | ---: | ---: | --- |');
  for (const dd of DDOCS) {
    row(`index build ${dd.label}: docs/s`, `build_${dd.key}`, 'rate', dd.key === 'a' ? '>= 50,000 docs/s, >= 20x pouchdb-server' : '');
    row(`index build ${dd.label}: docs per CPU-second (server + query servers)`, `build_${dd.key}`, 'perCpu');
  }
  for (const qd of QUERIES) {
    row(`${qd.label}: p50 ms (lower is better)`, qd.key, 'p50');
    row(`${qd.label}: p99 ms (lower is better)`, qd.key, 'p99');
    row(`${qd.label}: req/s`, qd.key, 'rate');
  }
  const mib = (v) => (v ? v / 1048576 : undefined);
  const rs = (r, f) => mib(r?.rss?.[f]);
  const tot = (r) => (r?.rss ? mib(r.rss.self + r.rss.kids) : undefined);
  L.push(`| peak RSS of the server process, MiB (lower is better) | ${fmt(rs(d, 'self'), 1)} | ${fmt(rs(p, 'self'), 1)} | ${ratio(rs(d, 'self'), rs(p, 'self'))} | |`);
  L.push(`| peak RSS of the query-server processes (sum over ${d?.rss ? d.rss.nkids : '?'} divan-js), MiB (lower is better) | ` +
    `${fmt(rs(d, 'kids'), 1)} | ${p?.rss ? (p.rss.nkids ? fmt(rs(p, 'kids'), 1) : 'none') : 'n/a'} | | |`);
  L.push(`| peak RSS, server + query servers, MiB (lower is better) | ${fmt(tot(d), 1)} | ${fmt(tot(p), 1)} | ${ratio(tot(d), tot(p))} | |`);
  L.push('');

  const n = (r) => (r ? r.n.toLocaleString('en') : 'n/a');
  L.push(`Documents: ${DOC_LEN}-byte JSON order records (16-hex-digit random ids) with a string \`x\` ("k" and 7 digits) ` +
    `taking n / ${ROWS_PER_KEY} distinct values, loaded into database \`${DB}\` via _bulk_docs (untimed): ` +
    `divan ${n(d)} docs, pouchdb-server ${n(p)} docs.` +
    (d && p && d.n !== p.n ? ' pouchdb-server gets fewer documents because its builds are slow: the build rows compare ' +
      'rates (docs/s), and its query latencies are over an index that many times smaller (its grouped queries read the ' +
      'whole index, so they would be slower over as many documents as divan\'s).' : '') +
    ' Each build is a fresh design document with one view `v`, PUT, then timed by its first query ' +
    '(`limit=1`, and `reduce=false` on reduce views; the build includes storing reductions on divan, not on pouchdb-server, ' +
    'which reduces at query time); rate = docs / that query\'s time. Query rows: one connection, a random path of the ' +
    `scenario per request for ${cfg.seconds} s; the first answer of each build and query is checked against a model ` +
    'computed by the driver. Ratios are divan / peer: above 1 is better for divan, except rows marked "lower is better".');
  L.push('');
  const rel = path.relative(ROOT, cfg.divanBin);
  L.push(`Peers: divan \`${rel.startsWith('..') ? cfg.divanBin : rel} --data DIR --port 0${cfg.divanArgs.length ? ' ' + cfg.divanArgs.join(' ') : ''}\`` +
    ' (default configuration: one divan-js process per core, 500-document map batches, every commit synced). ' +
    `pouchdb-server ${info.pouchVersion} \`-d DIR -c DIR/config.json -n${cfg.pouchArgs.length ? ' ' + cfg.pouchArgs.join(' ') : ''}\`, ` +
    `${cfg.pouchArgs.some((x) => x === '--in-memory' || x === '-m') ? 'in-memory adapter' : 'LevelDB adapter'}, ` +
    'views in-process (PouchDB\'s map/reduce, functions evaluated by Node). Peak RSS: VmHWM of the server process; for ' +
    'divan also the sum of VmHWM of its divan-js children (every one seen, sampled every 100 ms), after the last phase.');
  const notes = [];
  for (const [name, r] of Object.entries(res)) {
    if (!r) continue;
    if (r.load) notes.push(`${name}: loaded ${r.n} docs in ${r.load.seconds.toFixed(1)} s (${fmt(r.n / r.load.seconds)} docs/s); peak RSS after the load ${fmt(mib(r.rssAfterLoad), 1)} MiB.`);
    const builds = DDOCS.map((dd) => [dd.key, r.results[`build_${dd.key}`]]).filter(([, x]) => x && !x.na);
    if (builds.length) {
      notes.push(`${name}: builds took ${builds.map(([k, x]) => `(${k}) ${x.seconds.toFixed(2)} s`).join(', ')}; CPU seconds ` +
        `(server + query servers) ${builds.map(([k, x]) => `(${k}) ${x.cpu.self.toFixed(2)} + ${x.cpu.kids.toFixed(2)}`).join(', ')}; ` +
        `design document PUTs ${builds.map(([k, x]) => `${x.putMs.toFixed(0)}`).join(', ')} ms.`);
    }
    const qs = QUERIES.map((qd) => [qd, r.results[qd.key]]).filter(([, x]) => x && !x.na);
    if (qs.length) notes.push(`${name}: requests per query row: ${qs.map(([qd, x]) => `${qd.key} ${x.requests}`).join(', ')}.`);
    for (const [k, x] of Object.entries(r.results)) if (x?.na) notes.push(`${name}, ${k}: n/a — ${x.na}`);
    for (const [k, x] of Object.entries(r.results)) if (x?.note) notes.push(`${name}, ${k}: ${x.note}`);
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
    if (!['divan', 'pouchdb-server'].includes(s)) throw new Error(`BENCH_VIEWS_SERVERS: unknown server ${s}`);
  }
  if (cfg.servers.includes('divan') && !existsSync(cfg.divanBin)) throw new Error(`${cfg.divanBin} missing (make build)`);

  const root = mkdtempSync(path.join(cfg.build, 'bench-views-'));
  cleanupDirs.push(root);
  const r = rng(cfg.seed);
  const pool = Array.from({ length: POOL }, (_, i) => makeBody(r, i, DOC_LEN - X_FIELD_LEN));
  const bodies = pool.map((b) => JSON.parse(b));
  const ids = makeIds(r, cfg.docs);
  const info = {
    loadavg: os.loadavg()[0],
    fstype: fsType(root),
    wrk: versionOf('wrk', ['--version'], /wrk (?:debian\/)?(\d[\w.]*)/),
    pouchVersion: pouchVersion(),
  };
  const res = {};
  for (const name of ['divan', 'pouchdb-server']) {
    if (!cfg.servers.includes(name)) continue;
    const dir = path.join(root, name);
    const tmp = path.join(root, `${name}-paths`);
    mkdirSync(dir);
    mkdirSync(tmp);
    const ds = dataset(name === 'divan' ? cfg.docs : cfg.pouchDocs, ids, pool, bodies);
    log(`${name}: starting`);
    const start = name === 'divan'
      ? (dir, agent) => startDivan(dir, agent, { bin: cfg.divanBin, args: cfg.divanArgs })
      : (dir, agent) => startPouch(dir, agent, { args: cfg.pouchArgs });
    res[name] = await runServer(name, start, dir, tmp, ds);
    rmSync(dir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
  console.log(report(res, info));
}

runMain('bench_views', main);
