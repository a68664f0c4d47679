#!/usr/bin/env bash
# The benchmark table of issue 11, measured by the shipped load generator (`stocksync
# loadgen`, `stocksync bench memory`) with release builds, each row next to its same-run
# baseline:  bash scripts/bench.sh
#
# Writes bench-results/<UTC time>/: one JSON file and one log per row, SVG plots, and
# summary.txt. Scale with environment variables (defaults = the issue's table):
#   SECS=30            seconds per offered rate (REST and in-process sweeps)
#   REST_RATES=...     offered movements/s of the REST sweep
#   INPROC_RATES=...   offered movements/s of the in-process sweep
#   PREFILL=10000000   events in the store before the in-process sweep
#   KAFKA_MOVEMENTS=2000000
#   MEMORY_SKUS=100000,250000,500000,1000000
#   SKIP_ROWLOCK=1     skip the PostgreSQL row-lock peer (it installs PostgreSQL)
#   SKIP_KAFKA=1       skip the Kafka row (needs tansu, see scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-30}
REST_RATES=${REST_RATES:-25000,50000,87500,125000,175000}
REST_NEW_RATES=${REST_NEW_RATES:-20000,50000,100000}
INPROC_RATES=${INPROC_RATES:-100000,200000,300000}
PREFILL=${PREFILL:-10000000}
KAFKA_MOVEMENTS=${KAFKA_MOVEMENTS:-2000000}
MEMORY_SKUS=${MEMORY_SKUS:-100000,250000,500000,1000000}
SKUS=${SKUS:-100000}

out="bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
echo "==> results in $out"

echo "==> cargo build --release"
cargo build --release --bin stocksync
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/release/stocksync"
"$bin" --version | tee "$out/version.txt"
git rev-parse HEAD >> "$out/version.txt" 2>/dev/null || true

run() { # name, then the stocksync arguments
    local name=$1
    shift
    echo "==> $name: stocksync $*"
    "$bin" "$@" 2>&1 | tee "$out/$name.log"
}

run memory bench memory --sweep "$MEMORY_SKUS" \
    --out "$out/memory.json" --plot "$out/memory.svg"
run memory-week bench memory --skus "${MEMORY_WEEK_SKUS:-100000}" --movements-per-sku 100 \
    --out "$out/memory-week.json"

run in-process loadgen in-process --prefill-events "$PREFILL" --skus "$SKUS" \
    --rates "$INPROC_RATES" --secs "$SECS" --batch 500 --connections 16 \
    --out "$out/in-process.json" --plot "$out/in-process.svg"

run rest loadgen rest --skus "$SKUS" --rates "$REST_RATES" --secs "$SECS" \
    --batch 100 --connections 8 --out "$out/rest.json" --plot "$out/rest.svg"

run rest-new-skus loadgen rest --new-skus-only --rates "$REST_NEW_RATES" --secs "$SECS" \
    --batch 500 --connections 8 --out "$out/rest-new-skus.json"

if [[ -z "${SKIP_KAFKA:-}" ]]; then
    # A tansu broker as scripts/test.sh installs it (in-memory storage, loopback port).
    tansu="${TANSU_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}"
    port=${KAFKA_PORT:-19092}
    "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$out/tansu.log" 2>&1 &
    tansu_pid=$!
    trap 'kill "$tansu_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
    done
    run kafka loadgen kafka --brokers "127.0.0.1:$port" --movements "$KAFKA_MOVEMENTS" \
        --partitions 6 --skus "$SKUS" --out "$out/kafka.json"
    kill "$tansu_pid" 2>/dev/null || true
fi

if [[ -z "${SKIP_ROWLOCK:-}" ]]; then
    echo "==> row-lock peer: ../shared/bench/rowlock-peer.sh"
    bash ../shared/bench/rowlock-peer.sh 2>&1 | tee "$out/rowlock-peer.log"
fi

{
    echo "benchmark run $(date -u) on $(nproc) cores"
    cat "$out/version.txt"
    for log in "$out"/*.log; do
        [[ "$(basename "$log")" == tansu.log ]] && continue
        echo
        echo "## $(basename "$log" .log)"
        cat "$log"
    done
} >"$out/summary.txt"
echo "==> done: $out/summary.txt"
