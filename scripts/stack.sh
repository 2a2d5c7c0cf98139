# Sourced by scripts/demo and scripts/test: starts and stops the local loop, an embedded S3
# server (examples/local-s3.rs) and the function under `cargo lambda watch`, on loopback.
# Needs scripts/env.sh sourced first.

export S3_PORT="${S3_PORT:-9555}"
export INVOKE_PORT="${INVOKE_PORT:-9556}"
export FUNCTION_NAME=rows-to-parquet
export S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export INVOKE_ENDPOINT="http://127.0.0.1:$INVOKE_PORT"
# The local server's fixed credentials (tests/common/s3_server.rs) sign every call: the
# function's, and the AWS CLI's (any credentials do for `aws lambda invoke` against the watch).
export AWS_ACCESS_KEY_ID=local-test-key AWS_SECRET_ACCESS_KEY=local-test-secret
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
unset AWS_PROFILE AWS_SESSION_TOKEN
# The function's own configuration, as template.yaml sets it on AWS (exported for
# tests/e2e/test_arm64.py, which runs the function under the Runtime API emulator).
export STACK_DEFAULT_TARGETS STACK_ALLOWED_PREFIXES STACK_ALLOWED_SOURCES
STACK_DEFAULT_TARGETS='[{"prefix":"s3://my-bucket/out/parquet/","compression":"uncompressed"},{"prefix":"s3://my-bucket/out/parquet-snappy/","compression":"snappy"}]'
STACK_ALLOWED_PREFIXES='s3://my-bucket/'
STACK_ALLOWED_SOURCES='s3://in-bucket/in/'
STACK_PIDS=()

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() { # port, seconds, what, log
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        port_busy "$1" && return 0
        sleep 0.2
    done
    tail -n 30 "$4" >&2 || true
    fail "$3 did not listen on 127.0.0.1:$1 within $2 s (log above: $4)"
}

stack_stop() {
    local pid
    for pid in "${STACK_PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in "${STACK_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    STACK_PIDS=()
}

stack_start() { # work dir for logs and the S3 data
    local dir="$1"
    mkdir -p "$dir/s3"
    for port in "$S3_PORT" "$INVOKE_PORT"; do
        port_busy "$port" && fail "port $port is in use: stop what holds it, or set S3_PORT / INVOKE_PORT"
    done
    step "building the function and the local S3 server (minutes the first time)"
    # Two builds: the example brings the dev-dependencies' features, which the function built
    # alone (as cargo lambda watch builds it) does not have; each is cached on its own.
    cargo build --quiet --bin "$FUNCTION_NAME" || fail "cargo build of the function failed"
    cargo build --quiet --example local-s3 || fail "cargo build of the local S3 server failed"

    step "starting the local S3 server on $S3_ENDPOINT (data in $dir/s3)"
    setsid "$CARGO_TARGET_DIR/debug/examples/local-s3" --port "$S3_PORT" --root "$dir/s3" \
        --bucket my-bucket --bucket in-bucket >"$dir/local-s3.log" 2>&1 &
    STACK_PIDS+=($!)
    wait_for_port "$S3_PORT" 30 "the local S3 server" "$dir/local-s3.log"
    # The objects that events/'s source samples and notifications name.
    aws s3 cp --quiet --recursive --endpoint-url "$S3_ENDPOINT" events/objects/in-bucket s3://in-bucket/ \
        || fail "could not store events/objects in the local S3 server"

    step "starting the function under cargo lambda watch on $INVOKE_ENDPOINT"
    # An env file, not --env-var, which would split the JSON at its commas.
    cat >"$dir/function.env" <<ENV
AWS_ENDPOINT_URL_S3=$S3_ENDPOINT
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
AWS_REGION=$AWS_REGION
DEFAULT_TARGETS='$STACK_DEFAULT_TARGETS'
ALLOWED_PREFIXES='$STACK_ALLOWED_PREFIXES'
ALLOWED_SOURCES='$STACK_ALLOWED_SOURCES'
ENV
    setsid cargo lambda watch --invoke-port "$INVOKE_PORT" --ignore-changes \
        --env-file "$dir/function.env" >"$dir/watch.log" 2>&1 &
    STACK_PIDS+=($!)
    wait_for_port "$INVOKE_PORT" 120 "cargo lambda watch" "$dir/watch.log"
}
