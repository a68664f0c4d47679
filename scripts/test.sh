#!/usr/bin/env bash
# The one test command (what the README and CI run):  bash scripts/test.sh
#
# Works on a brand-new machine with a Rust toolchain, python3 and pip:
#  1. installs the tansu 0.6.0 Kafka-protocol broker used by the Kafka tests (a source build,
#     about 12 minutes on 2 cores; skipped when ~/.cargo/bin/tansu is already 0.6.0);
#  2. installs the pinned kafka-python (tests/kafka_python/requirements.txt) if missing, and
#     Debian's chromium (tests/integration/dashboard_browser.rs) if missing;
#  3. checks formatting, runs clippy with warnings denied, and runs every test target;
#  4. with STOCKSYNC_FUZZ=1 and a nightly toolchain (`cargo +nightly --version` works):
#     installs the pinned cargo-fuzz (skipped when present), builds every fuzz target (fuzz/)
#     in one `cargo fuzz build` and runs each for FUZZ_SECONDS (default 15, at optimisation
#     level 1) from its seed corpus; a crash fails the script. Otherwise the step is skipped
#     (the proptest fuzzing in step 3 still ran): on a fresh 2-core machine the fuzz build
#     alone takes about 17 minutes, which would take CI past its 40-minute budget.
#     README "Fuzzing" says which runs where.
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION=0.6.0
KAFKA_PYTHON_REQUIREMENTS=tests/kafka_python/requirements.txt
KAFKA_PYTHON_VERSION=$(sed -n 's/^kafka-python==//p' "$KAFKA_PYTHON_REQUIREMENTS")

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
tansu="$cargo_bin/tansu"
if [[ "$("$tansu" --version 2>/dev/null || true)" != "tansu $TANSU_VERSION" ]]; then
    echo "==> installing tansu $TANSU_VERSION into $cargo_bin (a source build, ~12 minutes)"
    cargo install tansu --version "$TANSU_VERSION" --features dynostore --locked \
        || cargo install tansu --version "$TANSU_VERSION" --features dynostore
fi
export TANSU_BIN="$tansu"
"$TANSU_BIN" --version

if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('kafka-python') != '$KAFKA_PYTHON_VERSION')" 2>/dev/null; then
    echo "==> installing kafka-python $KAFKA_PYTHON_VERSION"
    export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
    python3 -m pip install --quiet -r "$KAFKA_PYTHON_REQUIREMENTS" \
        || python3 -m pip install --quiet --user --break-system-packages -r "$KAFKA_PYTHON_REQUIREMENTS"
fi

if ! command -v chromium >/dev/null; then
    echo "==> installing Debian's chromium (dashboard browser test)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium
fi

# --- PostgreSQL for the store tests (issue 12) ------------------------------------------
# Installs Debian's postgresql when missing, starts a cluster when none runs, and creates
# the role and database the tests use (idempotent). The store tests read the URL from
# STOCKSYNC_TEST_POSTGRES; each works in a schema of its own. Set it yourself to use
# another server; this block then leaves the machine alone.
if [[ -z "${STOCKSYNC_TEST_POSTGRES:-}" ]]; then
    if ! command -v pg_ctlcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "==> installing Debian's postgresql (store tests)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq postgresql
    fi
    if ! pg_lsclusters --no-header | awk '$4 == "online" { found = 1 } END { exit !found }'; then
        read -r pg_version pg_cluster < <(pg_lsclusters --no-header | awk 'NR == 1 { print $1, $2 }') || true
        if [[ -z "${pg_version:-}" ]]; then
            pg_version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
            pg_cluster=main
            pg_createcluster "$pg_version" "$pg_cluster"
        fi
        echo "==> starting PostgreSQL cluster $pg_version/$pg_cluster"
        pg_ctlcluster "$pg_version" "$pg_cluster" start
    fi
    pg_port=$(pg_lsclusters --no-header | awk '$4 == "online" { print $3; exit }')
    pg_password=stocksync-test-only
    (cd / && su postgres -c "psql -p $pg_port -v ON_ERROR_STOP=1 -qtA") <<SQL
SELECT 'CREATE ROLE stocksync_test LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stocksync_test')\gexec
ALTER ROLE stocksync_test WITH LOGIN PASSWORD '$pg_password';
SELECT 'CREATE DATABASE stocksync_test OWNER stocksync_test' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'stocksync_test')\gexec
SQL
    export STOCKSYNC_TEST_POSTGRES="postgres://stocksync_test:$pg_password@127.0.0.1:$pg_port/stocksync_test"
fi
echo "==> store tests use PostgreSQL at ${STOCKSYNC_TEST_POSTGRES%%:*}://…@${STOCKSYNC_TEST_POSTGRES#*@}"
# --- end PostgreSQL -------------------------------------------------------------------------

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings
echo "==> cargo test"
log=$(mktemp)
status=0
cargo test --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (the bench targets run last, in test mode).
read -r passed failed < <(awk '/^test result: / { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
# Store backends whose tests were skipped (each writes "skipped: BACKEND TEST (VARIABLE not
# set)" to stderr, e.g. ScyllaDB without STOCKSYNC_TEST_SCYLLA): one line naming them.
skipped=$(grep -oE 'skipped: [a-z]+ [^(]*\([A-Z_]+ not set\)' "$log" | awk '{ print $2, substr($(NF - 2), 2) }' \
    | sort | uniq -c | awk '{ printf "%s%s (%d tests, %s not set)", sep, $2, $1, $3; sep = "; " }' || true)
rm -f "$log"
echo "summary: ${passed:-0} passed, ${failed:-0} failed"
echo "store backends skipped: ${skipped:-none}"
echo "==> schemathesis (the OpenAPI contract against a running instance)"
bash scripts/schemathesis.sh || status=$?

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
FUZZ_FLAGS=(--sanitizer none --debug-assertions)
if [[ "${STOCKSYNC_FUZZ:-0}" != 1 ]]; then
    echo "==> cargo fuzz: skipped (set STOCKSYNC_FUZZ=1 to run it, nightly needed); the decoders were fuzzed by the proptest run of cargo test"
elif cargo +nightly --version >/dev/null 2>&1; then
    echo "==> cargo fuzz: every target for ${FUZZ_SECONDS} s (fuzz/, nightly)"
    fuzz_started=$SECONDS
    if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
        cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
    fi
    # Optimisation level 1 instead of 3 for the smoke build: the build is most of the step
    # (it compiles every dependency again with coverage instrumentation), and 15 s of
    # fuzzing per target needs no more. Longer runs (README) use the default level.
    export CARGO_PROFILE_RELEASE_OPT_LEVEL=${FUZZ_OPT_LEVEL:-1}
    cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"
    fuzz_failed=()
    for target in $(cargo +nightly fuzz list); do
        # New inputs go to a scratch corpus; the checked-in seeds stay as they are.
        scratch=$(mktemp -d)
        fuzz_log="$scratch.log"
        if cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$target" "$scratch" "$PWD/fuzz/corpus/$target" \
            -- -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 >"$fuzz_log" 2>&1; then
            echo "$target: $(sed -n 's/^stat::number_of_executed_units: *//p' "$fuzz_log") inputs, no crash"
        else
            fuzz_failed+=("$target")
            tail -n 60 "$fuzz_log"
        fi
        rm -f "$fuzz_log"
        rm -rf "$scratch"
    done
    echo "fuzz: ${FUZZ_SECONDS} s per target, step took $((SECONDS - fuzz_started)) s; crashed: ${fuzz_failed[*]:-none}"
    [[ ${#fuzz_failed[@]} -eq 0 ]] || status=1
    unset CARGO_PROFILE_RELEASE_OPT_LEVEL
else
    echo "==> cargo fuzz: skipped, no nightly toolchain (cargo +nightly --version fails); the decoders were fuzzed by the proptest run of cargo test"
fi
exit "$status"
