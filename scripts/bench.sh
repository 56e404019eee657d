#!/usr/bin/env bash
# Runs divan's benchmarks (`make bench`): each step prints a markdown table of
# figures and ratios against peers measured in the same run, and keeps it in
# BUILD_DIR/bench-<step>.md.  Benchmarks are never tests: nothing here fails
# on a slow figure, only on a benchmark that cannot run.
#
#   scripts/bench.sh BUILD_DIR
#   BENCH_STEPS="store http views"   which steps to run (default: all, in order)
#   BENCH_DOCS, BENCH_SECONDS, BENCH_SEED, BENCH_ENGINES: see bench/bench_store.c
#   BENCH_HTTP_DOCS, BENCH_SECONDS, BENCH_HTTP_SERVERS, ...: see bench/http/bench_http.mjs
#   BENCH_VIEWS_DOCS, BENCH_VIEWS_POUCHDB_DOCS, ...: see bench/http/bench_views.mjs
#   BENCH_VALIDATE_DOCS, BENCH_VALIDATE_BATCH: see bench/http/bench_validate.mjs
#
# Data lives in a temporary directory under BUILD_DIR (a real disk: sync
# figures from tmpfs mean nothing), removed afterwards.
set -euo pipefail
build=${1:?build dir}
build=$(cd "$build" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)

# The list of benchmark steps, run in this order.  A step is a function
# bench_<name> that writes its markdown to stdout.
STEPS=(store http views validate)

bench_store() {
  local bin="$build/bench_store"
  if [ ! -x "$bin" ]; then
    echo "bench: $bin missing (are liblmdb-dev and libsqlite3-dev installed? run scripts/deps.sh)" >&2
    return 1
  fi
  echo "## Storage engines: divan store_dbfile vs LMDB vs SQLite"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"\
       "data on $(stat -f -c %T "$build") ($(df -P "$build" | awk 'NR==2 {print $1}')), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Command: \`BENCH_DOCS=${BENCH_DOCS:-100000} BENCH_SECONDS=${BENCH_SECONDS:-2} BENCH_ROUNDS=${BENCH_ROUNDS:-3} make bench\`"
  echo
  "$bin" "$build"
}

# divan's HTTP API vs pouchdb-server (npm), nginx as the static-GET
# reference; bench/http/bench_http.mjs writes the whole table.
bench_http() {
  if ! command -v node >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1; then
    echo "bench: the http step needs node and wrk (run scripts/deps.sh)" >&2
    return 1
  fi
  if [ ! -d "$root/node_modules/pouchdb-server" ]; then
    echo "bench: warning: node_modules/pouchdb-server missing (npm ci); its column will be n/a" >&2
  fi
  node "$root/bench/http/bench_http.mjs" "$build"
}

# divan's views (index builds through divan-js, queries) vs pouchdb-server's;
# bench/http/bench_views.mjs writes the whole table.
bench_views() {
  if ! command -v node >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1; then
    echo "bench: the views step needs node and wrk (run scripts/deps.sh)" >&2
    return 1
  fi
  if [ ! -x "$build/divan-js" ]; then
    echo "bench: warning: $build/divan-js missing; divan's views will be n/a" >&2
  fi
  if [ ! -d "$root/node_modules/pouchdb-server" ]; then
    echo "bench: warning: node_modules/pouchdb-server missing (npm ci); its column will be n/a" >&2
  fi
  node "$root/bench/http/bench_views.mjs" "$build"
}

# _bulk_docs with and without a validate_doc_update function, divan and
# pouchdb-server; bench/http/bench_validate.mjs writes the whole table.
bench_validate() {
  if ! command -v node >/dev/null 2>&1; then
    echo "bench: the validate step needs node (run scripts/deps.sh)" >&2
    return 1
  fi
  if [ ! -d "$root/node_modules/pouchdb-server" ]; then
    echo "bench: warning: node_modules/pouchdb-server missing (npm ci); its column will be n/a" >&2
  fi
  node "$root/bench/http/bench_validate.mjs" "$build"
}

fstype=$(stat -f -c %T "$build")
if [ "$fstype" = tmpfs ] || [ "$fstype" = ramfs ]; then
  echo "bench: warning: $build is on $fstype; sync figures will be meaningless" >&2
fi

steps=${BENCH_STEPS:-${STEPS[*]}}
for step in $steps; do
  if ! declare -F "bench_$step" >/dev/null; then
    echo "bench: unknown step '$step' (have: ${STEPS[*]})" >&2
    exit 2
  fi
  out="$build/bench-$step.md"
  echo "bench: $step -> $out" >&2
  "bench_$step" | tee "$out.tmp"
  mv "$out.tmp" "$out"
done
