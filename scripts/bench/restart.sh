#!/usr/bin/env bash
# Restart after kill -9 with many SKUs stored (BENCHMARKS.md, issue 11 table):
#   bash scripts/bench/restart.sh [BIN] [SKUS]
# Starts a release `stocksync run` on scripts/bench/rest-e2e.toml (embedded store in a temp
# folder), stores SKUS SKUs through REST (`loadgen rest --new-skus-only`), kills the server
# with SIGKILL, starts it again and prints the milliseconds until /healthz answers 200 and
# until a first movement is acknowledged (201).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$here/../../target}/release/stocksync}
skus=${2:-1000000}
export E2E_DATA=$(mktemp -d)
export RUST_LOG=error
url=http://127.0.0.1:18080
start() { "$bin" run --config "$here/rest-e2e.toml" >"$E2E_DATA/server.log" 2>&1 & echo $!; }
wait_healthy() { until curl -sf "$url/healthz" >/dev/null; do sleep 0.005; done; }
now_ms() { date +%s%3N; }
pid=$(start); wait_healthy
rate=40000
secs=$(( (skus + rate - 1) / rate ))
"$bin" loadgen rest --url "$url" --new-skus-only --rates "$rate" --secs "$secs" --batch 500 \
    --connections 8 >"$E2E_DATA/load.log" 2>&1
stored=$(sqlite3 "$E2E_DATA/stocksync.db" "select count(*) from skus" 2>/dev/null || echo "?")
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
t0=$(now_ms); pid=$(start); wait_healthy; t1=$(now_ms)
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' "$url/api/v1/movements" \
    -d '{"schema_version":1,"sku":"RESTART-PROBE","idempotency_key":"restart-probe-1","source":"bench","type":"receipt","location":"WH-1","quantity":1}')
t2=$(now_ms)
echo "skus_stored $stored"
echo "healthy_after_ms $((t1 - t0))"
echo "first_movement_after_ms $((t2 - t0)) (HTTP $code)"
kill "$pid"; wait "$pid" 2>/dev/null || true
rm -rf "$E2E_DATA"
