#!/usr/bin/env bash
# The one test command (what the README and CI run):  bash scripts/test.sh
#
# Works on a brand-new machine with a Rust toolchain, python3 and pip:
#  1. installs the tansu 0.6.0 Kafka-protocol broker used by the Kafka tests (a source build,
#     about 12 minutes on 2 cores; skipped when ~/.cargo/bin/tansu is already 0.6.0);
#  2. installs the pinned kafka-python (tests/kafka_python/requirements.txt) if missing, and
#     Debian's chromium (tests/integration/dashboard_browser.rs) if missing;
#  3. checks formatting, runs clippy with warnings denied, and runs every test target.
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
rm -f "$log"
echo "summary: ${passed:-0} passed, ${failed:-0} failed"
echo "==> schemathesis (the OpenAPI contract against a running instance)"
bash scripts/schemathesis.sh || status=$?
exit "$status"
