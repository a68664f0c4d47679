#!/usr/bin/env bash
# The benchmark table of issue 11, measured by the shipped load generator (`stocksync
# loadgen`, `stocksync bench memory`) with release builds, each row next to its same-run
# baseline:  bash scripts/bench.sh
#
# Writes bench-results/<UTC time>/: one JSON file and one log per step, SVG plots,
# commands.txt (every command run), summary.txt (all logs) and summary.md (the issue's
# table: each row with its figure, baseline and command). Needs python3 for summary.md.
#
# Scale with environment variables (defaults = the issue's table):
#   SECS=30              seconds per offered rate (REST and in-process sweeps)
#   SUSTAIN_SECS=30      seconds of the closed-loop in-process row
#   PREFILL=10000000     events in the store before the closed-loop in-process row
#   MAX_IN_FLIGHT=200000 movements outstanding in the in-process runs
#   REST_RATES=...       offered movements/s of the REST sweep
#   REST_NEW_RATES=...   offered movements/s of the new-SKUs REST sweep
#   INPROC_RATES=...     offered movements/s of the in-process open-loop sweep
#   PUSH_RATE=20000      offered movements/s of the movement -> channel push run
#   KAFKA_MOVEMENTS=2000000
#   MEMORY_SKUS=100000,250000,500000,1000000
#   SKUS=100000          SKUs of the workloads
# Skip a step with SKIP_<STEP>=1, STEP one of BUILD (use $BIN or the last release build),
# MEMORY, MEMORY_WEEK, INPROC (closed-loop row), INPROC_SWEEP, REST, REST_NEW, PUSH,
# KAFKA (needs tansu, see scripts/test.sh), ROWLOCK (installs PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-30}
SUSTAIN_SECS=${SUSTAIN_SECS:-30}
PREFILL=${PREFILL:-10000000}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-200000}
REST_RATES=${REST_RATES:-25000,50000,87500,125000,175000}
REST_NEW_RATES=${REST_NEW_RATES:-20000,50000,100000}
INPROC_RATES=${INPROC_RATES:-100000,200000,300000}
PUSH_RATE=${PUSH_RATE:-20000}
KAFKA_MOVEMENTS=${KAFKA_MOVEMENTS:-2000000}
MEMORY_SKUS=${MEMORY_SKUS:-100000,250000,500000,1000000}
SKUS=${SKUS:-100000}

out="bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
echo "==> results in $out"

target_dir="${CARGO_TARGET_DIR:-target}"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    echo "==> cargo build --release"
    cargo build --release --bin stocksync
fi
bin="${BIN:-$target_dir/release/stocksync}"
"$bin" --version | tee "$out/version.txt"
git rev-parse HEAD >> "$out/version.txt" 2>/dev/null || true
: >"$out/commands.txt"

skip() { # step name: true when SKIP_<step>=1
    local var="SKIP_$1"
    [[ -n "${!var:-}" ]]
}

run() { # name, then the stocksync arguments
    local name=$1
    shift
    echo "==> $name: stocksync $*"
    echo "$name	stocksync $*" >>"$out/commands.txt"
    "$bin" "$@" 2>&1 | tee "$out/$name.log"
}

skip MEMORY || run memory bench memory --sweep "$MEMORY_SKUS" \
    --out "$out/memory.json" --plot "$out/memory.svg"
skip MEMORY_WEEK || run memory-week bench memory --skus "${MEMORY_WEEK_SKUS:-100000}" \
    --movements-per-sku 100 --out "$out/memory-week.json"

skip INPROC || run in-process loadgen in-process --closed-loop --prefill-events "$PREFILL" \
    --skus "$SKUS" --secs "$SUSTAIN_SECS" --max-in-flight "$MAX_IN_FLIGHT" \
    --out "$out/in-process.json"

skip INPROC_SWEEP || run in-process-sweep loadgen in-process --skus "$SKUS" \
    --rates "$INPROC_RATES" --secs "$SECS" --max-in-flight "$MAX_IN_FLIGHT" \
    --out "$out/in-process-sweep.json" --plot "$out/in-process-sweep.svg"

skip REST || run rest loadgen rest --skus "$SKUS" --rates "$REST_RATES" --secs "$SECS" \
    --batch 100 --connections 8 --out "$out/rest.json" --plot "$out/rest.svg"

skip REST_NEW || run rest-new-skus loadgen rest --new-skus-only --rates "$REST_NEW_RATES" \
    --secs "$SECS" --batch 500 --connections 8 --out "$out/rest-new-skus.json"

skip PUSH || run push loadgen rest --push --skus "${PUSH_SKUS:-10000}" --rates "$PUSH_RATE" \
    --secs "$SECS" --batch 100 --connections 8 --out "$out/push.json"

if ! skip KAFKA; then
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

if ! skip ROWLOCK; then
    echo "==> row-lock peer: ../shared/bench/rowlock-peer.sh"
    echo "rowlock-peer	bash ../shared/bench/rowlock-peer.sh" >>"$out/commands.txt"
    bash ../shared/bench/rowlock-peer.sh 2>&1 | tee "$out/rowlock-peer.log"
    # pgbench prints "tps = N (…)": REST ÷ row-lock, REST = the best all-2xx REST rate.
    peer_tps=$(grep -oE 'tps = [0-9.]+' "$out/rowlock-peer.log" | tail -1 | grep -oE '[0-9.]+' || true)
    if [[ -n "$peer_tps" && -f "$out/rest.json" ]]; then
        rest_best=$(jq '[.runs[] | select(.outcome.non_2xx == 0 and .outcome.errors == 0)
            | .throughput_per_sec] | max // 0' "$out/rest.json")
        ratio=$(awk -v r="$rest_best" -v p="$peer_tps" 'BEGIN { printf "%.1f", (p > 0 ? r / p : 0) }')
        echo "REST ${rest_best%.*} movements/s / row-lock peer $peer_tps tps = ${ratio}x" \
            | tee "$out/rowlock-ratio.txt"
    fi
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

python3 - "$out" <<'PY'
import json, os, re, sys

out = sys.argv[1]
def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None
commands = {}
for line in open(os.path.join(out, "commands.txt")):
    name, _, command = line.rstrip("\n").partition("\t")
    commands[name] = command
def cmd(*names):
    found = [f"`{commands[n]}`" for n in names if n in commands]
    return "<br>".join(found) if found else "skipped"
def best_rest(report):
    ok = [r for r in report["runs"] if r["outcome"]["non_2xx"] == 0 and r["outcome"]["errors"] == 0]
    return max(ok, key=lambda r: r["throughput_per_sec"]) if ok else None
rows = []

memory = load("memory.json")
week = load("memory-week.json")
if memory:
    parts = [f"{m['options']['skus']:,} SKUs: {m['bytes_per_sku']:.0f} B/SKU "
             f"(RSS {m['rss_loaded_bytes'] / 2**20:.0f} MB)" for m in memory]
    if week:
        parts += [f"week of {w['options']['movements_per_sku']} movements, "
                  f"{w['options']['skus']:,} SKUs: {w['bytes_per_sku']:.0f} B/SKU" for w in week]
    rows.append(("memory per live SKU", "≤ 1 KiB", "; ".join(parts), "—", cmd("memory", "memory-week")))
    parts = []
    for m in memory:
        share = 100 * m["rss_after_passivation_bytes"] / max(m["rss_loaded_bytes"], 1)
        reached = m["secs_to_30_percent"]
        parts.append(f"{m['options']['skus']:,} SKUs: {share:.0f} % of peak"
                     + (f", ≤ 30 % after {reached:.1f} s" if reached is not None else ", 30 % not reached"))
    rows.append(("memory after passivation", "≤ 30 % of peak within 60 s", "; ".join(parts), "—", cmd("memory")))
else:
    rows.append(("memory per live SKU", "≤ 1 KiB", "skipped", "—", "skipped"))

inproc = load("in-process.json")
if inproc:
    r = inproc["runs"][0]
    rows.append(("durable in-process pipeline (closed loop, store prefilled)", "≥ 300k/s sustained ≥ 30 s on 10M events",
                 f"{r['throughput_per_sec']:,.0f}/s over {r['wall_secs']:.0f} s, {inproc['prefilled_events']:,} events "
                 f"prefilled, {r['options']['connections']:,} in flight, p99 {r['latency']['p99_ms']:.0f} ms",
                 f"HashMap apply {inproc['hashmap_baseline_per_sec']:,.0f}/s", cmd("in-process")))
sweep = load("in-process-sweep.json")
if sweep:
    parts = [f"{r['options']['rate_per_sec']:,}/s offered → {r['throughput_per_sec']:,.0f}/s, p99 {r['latency']['p99_ms']:.1f} ms"
             for r in sweep["runs"]]
    rows.append(("in-process open-loop sweep", "latency curve", "; ".join(parts),
                 f"HashMap apply {sweep['hashmap_baseline_per_sec']:,.0f}/s", cmd("in-process-sweep")))

rest = load("rest.json")
if rest:
    best = best_rest(rest)
    parts = [f"{r['options']['rate_per_sec']:,}/s offered → {r['throughput_per_sec']:,.0f}/s, p99 {r['latency']['p99_ms']:.1f} ms"
             + (f", {r['outcome']['non_2xx']} non-2xx" if r["outcome"]["non_2xx"] else "") for r in rest["runs"]]
    head = f"best all-2xx {best['throughput_per_sec']:,.0f}/s" if best else "no all-2xx run"
    rows.append(("REST, batches of 100, 8 connections", "≥ 175k/s; p99 ≤ 20 ms at half",
                 head + " (" + "; ".join(parts) + ")", "—", cmd("rest")))
new = load("rest-new-skus.json")
if new:
    best = best_rest(new)
    rows.append(("REST, SKUs not yet loaded (batches of 500)", "≥ 100k/s",
                 f"best all-2xx {best['throughput_per_sec']:,.0f}/s" if best else "no all-2xx run", "—", cmd("rest-new-skus")))
push = load("push.json")
if push and push["runs"] and push["runs"][0].get("push"):
    p = push["runs"][0]["push"]
    rows.append(("movement → channel push (Shopify simulator)", "reported",
                 f"p50 {p['latency']['p50_ms']:.0f} ms, p99 {p['latency']['p99_ms']:.0f} ms, p999 {p['latency']['p999_ms']:.0f} ms "
                 f"({p['matched']:,} movements matched, {p['unmatched']:,} without a later set)", "—", cmd("push")))
kafka = load("kafka.json")
if kafka:
    rows.append(("Kafka, 6 partitions, consumed to durable", "≥ 150k/s and ≥ 75 % of raw",
                 f"{kafka['app_per_sec']:,.0f}/s ({kafka['movements']:,} movements, {kafka['app_secs_from_first_durable']:.1f} s), "
                 f"{100 * kafka['ratio_to_raw']:.0f} % of raw",
                 f"raw rdkafka consume {kafka['raw_consume_per_sec']:,.0f}/s", cmd("kafka")))
rows.append(("restart after kill -9", "≤ 2 s at 10M SKUs", "not measured by this script", "—", "—"))
ratio_path = os.path.join(out, "rowlock-ratio.txt")
if os.path.exists(ratio_path):
    rows.append(("row-lock peer (PostgreSQL, SELECT … FOR UPDATE)", "≥ 50× over REST",
                 open(ratio_path).read().strip(), "row-lock peer tps (same run)", cmd("rowlock-peer", "rest")))
else:
    rows.append(("row-lock peer", "≥ 50× over REST", "skipped (or no REST run)", "—", cmd("rowlock-peer")))

with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(f"# Benchmark run {os.path.basename(out)}\n\n")
    f.write(open(os.path.join(out, "version.txt")).read().replace("\n", "  \n") + "\n")
    f.write("| path | target | measured | same-run baseline | command |\n|---|---|---|---|---|\n")
    for row in rows:
        f.write("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |\n")
print(open(os.path.join(out, "summary.md")).read())
PY
echo "==> done: $out/summary.md, $out/summary.txt"
