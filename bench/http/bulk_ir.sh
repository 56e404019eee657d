#!/usr/bin/env bash
# bulk_ir.sh — instructions per `_bulk_docs` batch, for profiles a noisy
# shared machine cannot spoil (the HTTP step's wall-clock rates move by 2x
# with the machine's load; callgrind's counts do not move at all).
#
#   bench/http/bulk_ir.sh [DIVAN_BIN] [BATCHES]     (defaults: build/divan, 20)
#
# Writes BATCHES batches of 1,000 of the HTTP step's documents (the same
# ~1 KiB order records and 16-hex-digit ids, bench/http/common.mjs) into
# files, then runs divan under callgrind twice on a fresh data directory:
# once posting nothing, once posting the batches with curl, two requests in
# flight.  Prints (Ir(BATCHES) - Ir(0)) / BATCHES: every thread of the
# server (h2o, handler, writer, syncer), start-up (PBKDF2 of the admin
# password, ~0.7 G instructions) subtracted.  Kernel time (page faults,
# syscalls) is not in the count: see `perf record -e cpu-clock` for that.
# Keeps the callgrind files (bulk-ir-0.out, bulk-ir-N.out) in the work
# directory for callgrind_annotate.  Takes about a minute for 20 batches.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(cd "$(dirname "${1:-$root/build/divan}")" && pwd)/$(basename "${1:-$root/build/divan}")
batches=${2:-20}
work=$(mktemp -d "$root/build/bulk-ir.XXXXXX")
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$work/data"
}
trap cleanup EXIT

node --input-type=module -e "
import { rng, makeBody, randomId } from '$root/bench/http/common.mjs';
import { writeFileSync } from 'node:fs';
const r = rng(42), pool = [];
for (let i = 0; i < 1000; i++) pool.push(makeBody(r, i));
for (let b = 0; b < $batches; b++) {
  const parts = [];
  for (let i = 0; i < 1000; i++) parts.push('{\"_id\":\"' + randomId(r) + '\",' + pool[Math.floor(r() * 1000)].slice(1));
  writeFileSync('$work/b' + b + '.json', '{\"docs\":[' + parts.join(',') + ']}');
}"

# run N: divan under callgrind, N batches posted, stopped with SIGTERM.
run() {
    local n=$1 port='' i url
    rm -rf "$work/data" && mkdir -p "$work/data"
    valgrind --tool=callgrind --callgrind-out-file="$work/bulk-ir-$n.out" \
        "$bin" --data "$work/data" --port 0 --admin bench:bench >"$work/log-$n.txt" 2>&1 &
    server=$!
    for i in $(seq 1 600); do
        port=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/log-$n.txt" | head -1 | sed 's/.*://') || true
        [ -n "$port" ] && break
        kill -0 "$server" 2>/dev/null || { echo "divan did not start: $work/log-$n.txt" >&2; exit 1; }
        sleep 0.1
    done
    url=http://bench:bench@127.0.0.1:$port
    curl -sf -X PUT "$url/bench" >/dev/null
    post() {
        curl -sf -o /dev/null -H 'content-type: application/json' --data-binary "@$work/b$1.json" "$url/bench/_bulk_docs"
    }
    local pid
    for ((i = 0; i < n; i += 2)); do
        post "$i" &
        pid=$!
        if ((i + 1 < n)); then post $((i + 1)); fi
        wait "$pid"
    done
    kill -TERM "$server"
    wait "$server" || true
    server=
}
run 0
run "$batches"
ir() { callgrind_annotate "$work/bulk-ir-$1.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
a=$(ir 0)
b=$(ir "$batches")
echo "instructions per 1,000-doc batch: $(((b - a) / batches)) (Ir($batches) $b, Ir(0) $a; $bin; files in $work)"
