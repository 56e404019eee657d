// bench_validate.mjs — the `validate` step of `make bench` (issue 5): what
// a validate_doc_update function costs on _bulk_docs, for divan and for
// pouchdb-server (whose express-pouchdb runs validation functions too),
// measured in the same run on the same machine.
//
//   node bench/http/bench_validate.mjs BUILD_DIR      (scripts/bench.sh runs it)
//
// Each server runs alone, with its data in a temporary directory under
// BUILD_DIR.  Two databases: `plain` (no design document) and `checked`
// (one design document whose function looks at two fields and accepts
// every benchmark document).  BENCH_VALIDATE_DOCS (10,000) ~1 KiB documents
// are written to each through _bulk_docs, batches of BENCH_VALIDATE_BATCH
// (1,000), one request in flight, timed; the order plain/checked
// alternates over BENCH_ROUNDS rounds (fresh databases each round) and the
// best round counts.  Every row must say ok.  It prints a markdown table on
// stdout (docs/s and the ratio checked/plain per server); progress goes to
// stderr.  Benchmarks are not tests: a slow figure fails nothing.
import http from 'node:http';
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import {
  NotAvailable, cleanupDirs, cpuModel, envInt, fmt, gitCommit, loadDocs, makeBody, request, rng, runMain, startDivan,
  startPouch, stopProcess,
} from './common.mjs';

const VDU = 'function (newDoc, oldDoc, userCtx, secObj) {\n' +
  '  if (newDoc.forbidden === true) throw({forbidden: "forbidden documents are refused"});\n' +
  '  if (oldDoc && oldDoc.frozen) throw({forbidden: "frozen"});\n' +
  '}';

async function measure(name, start, build, n, batch, rounds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const dir = mkdtempSync(path.join(build, `bench-validate-${name}-`));
  cleanupDirs.push(dir);
  const out = { plain: null, checked: null, note: '' };
  let srv;
  try {
    srv = await start(dir, agent);
    const r = rng(7);
    const bodies = Array.from({ length: n }, () => makeBody(r, 1));
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 ? ['checked', 'plain'] : ['plain', 'checked'];
      for (const kind of order) {
        const db = `${kind}${round}`;
        const u = new URL(db, srv.url);
        let res = await request(agent, u, { method: 'PUT' });
        if (res.status !== 201) throw new NotAvailable(`PUT /${db}: ${res.status}`);
        if (kind === 'checked') {
          res = await request(agent, new URL(`${db}/_design/v`, srv.url), {
            method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ validate_doc_update: VDU }),
          });
          if (res.status !== 201) throw new NotAvailable(`PUT /${db}/_design/v: ${res.status} ${res.text.slice(0, 100)}`);
        }
        const t0 = process.hrtime.bigint();
        await loadDocs(agent, srv.url, db, n, (i) => `{"_id":"d${String(i).padStart(6, '0')}",${bodies[i].slice(1)}`, { batch, conns: 1 });
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        const rate = n / s;
        process.stderr.write(`bench validate: ${name} ${db}: ${fmt(rate, 0)} docs/s\n`);
        out[kind] = Math.max(out[kind] ?? 0, rate);
      }
    }
  } catch (e) {
    if (!(e instanceof NotAvailable)) throw e;
    out.note = `${name}: ${e.message}`;
  } finally {
    if (srv) await stopProcess(srv.proc);
    agent.destroy();
  }
  return out;
}

runMain('bench_validate', async () => {
  const build = path.resolve(process.argv[2] ?? 'build');
  const n = envInt('BENCH_VALIDATE_DOCS', 10000);
  const batch = envInt('BENCH_VALIDATE_BATCH', 1000);
  const rounds = envInt('BENCH_ROUNDS', 3);
  const divan = await measure('divan', (dir, agent) => startDivan(dir, agent, { bin: path.join(build, 'divan') }), build, n, batch, rounds);
  let pouch;
  try {
    pouch = await measure('pouchdb-server', (dir, agent) => startPouch(dir, agent), build, n, batch, rounds);
  } catch (e) {
    pouch = { plain: null, checked: null, note: `pouchdb-server: ${e.message}` };
  }
  const cell = (v) => (v == null ? 'n/a' : fmt(v, 0));
  const ratio = (x) => (x.plain && x.checked ? fmt(x.checked / x.plain, 2) : 'n/a');
  console.log('## validate_doc_update on _bulk_docs: divan vs pouchdb-server');
  console.log();
  console.log(`${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${cpuModel()}, commit ${gitCommit()}.`);
  console.log(`${n} docs of ~1 KiB per database in _bulk_docs batches of ${batch}, one request in flight, best of ${rounds} rounds.`);
  console.log();
  console.log('| _bulk_docs, docs/s | divan | pouchdb-server |');
  console.log('| --- | ---: | ---: |');
  console.log(`| no design document | ${cell(divan.plain)} | ${cell(pouch.plain)} |`);
  console.log(`| one validate_doc_update | ${cell(divan.checked)} | ${cell(pouch.checked)} |`);
  console.log(`| ratio with / without | ${ratio(divan)} | ${ratio(pouch)} |`);
  const notes = [divan.note, pouch.note].filter(Boolean);
  if (notes.length) {
    console.log();
    for (const x of notes) console.log(`- ${x}`);
  }
});
