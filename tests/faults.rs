//! S3 faults injected on loopback: a proxy between the SDK and the local S3 server answers
//! chosen requests with errors, drops them mid-body or never answers. Whatever happens, the
//! function either writes exactly one object per target or reports `S3WriteFailed` and leaves
//! nothing behind (or names what it could not remove).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::timeout::TimeoutConfig;
use common::proxy::{Fault, Proxy};
use common::{CapturedLogs, LocalS3, invocation, read_parquet};
use http::Method;
use rows_to_parquet::handler::Function;
use rows_to_parquet::store::budget::CLEANUP_RESERVE;
use serde_json::{Value, json};

const BUCKET: &str = "my-bucket";
/// The first target's objects (not its leases); the second's are in `out/second/`.
const FIRST: &str = "/out/first/part-";
const SECOND: &str = "/out/second/part-";
/// Any object's (not a lease's).
const OBJECTS: &str = "/part-";

fn event(rows: usize) -> Value {
    let rows: Vec<Value> = (0..rows)
        .map(|i| json!({"id": i, "name": format!("name {i}"), "score": i as f64 / 4.0}))
        .collect();
    json!({
        "rows": rows,
        "targets": [
            {"prefix": "s3://my-bucket/out/first/", "compression": "uncompressed"},
            {"prefix": "s3://my-bucket/out/second/", "compression": "snappy"}
        ]
    })
}

/// A local S3 server, a proxy in front of it, and the function writing through the proxy.
async fn through_proxy(timeouts: TimeoutConfig) -> (LocalS3, Proxy, Function) {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let proxy = Proxy::start(&s3.endpoint).await;
    let function = s3.function_with(common::client(&proxy.endpoint, timeouts), &[]);
    (s3, proxy, function)
}

async fn run(function: &Function, event: &Value) -> Result<Vec<String>, rows_to_parquet::Error> {
    let response = function
        .handle(invocation(&event.to_string(), "req-fault"))
        .await?
        .converted()
        .expect("one conversion");
    Ok(response.objects.into_iter().map(|o| o.key).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried_into_one_object_per_target() {
    let (s3, proxy, function) = through_proxy(common::short_timeouts()).await;
    // Two failures per target: the third (last) attempt of each must get through.
    proxy.fault(Method::PUT, FIRST, Fault::Status(503, "SlowDown"), Some(2));
    proxy.fault(
        Method::PUT,
        SECOND,
        Fault::Status(500, "InternalError"),
        Some(2),
    );
    let sent = event(50);

    let keys = run(&function, &sent).await.unwrap();

    assert_eq!(proxy.count(Method::PUT, FIRST), (3, 2));
    assert_eq!(proxy.count(Method::PUT, SECOND), (3, 2));
    assert_eq!(
        proxy.count(Method::DELETE, OBJECTS).0,
        0,
        "nothing to clean up"
    );
    let mut stored = s3.keys(BUCKET).await;
    stored.sort();
    let mut reported = keys.clone();
    reported.sort();
    assert_eq!(stored, reported, "exactly one object per target");
    for key in &keys {
        let (rows, _) = read_parquet(s3.get(BUCKET, key).await.0);
        assert_eq!(rows.len(), 50);
        assert_eq!(rows[49]["name"], "name 49");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_outlasting_the_retries_on_the_second_target_removes_the_first() {
    let (s3, proxy, function) = through_proxy(common::short_timeouts()).await;
    proxy.fault(Method::PUT, SECOND, Fault::Status(503, "SlowDown"), None);

    let err = run(&function, &event(50)).await.unwrap_err();

    assert_eq!(err.error_type(), "S3WriteFailed");
    let message = err.to_string();
    assert!(
        message.contains("s3://my-bucket/out/second/part-00000-req-fault-c000.snappy.parquet")
            && message.contains("SlowDown (HTTP 503)")
            && message.contains("nothing of this invocation was left"),
        "{message}"
    );
    assert!(!message.contains("out/first/"), "{message}");
    // The first target's PUT landed, then its DELETE removed it.
    assert_eq!(proxy.count(Method::PUT, FIRST), (1, 0));
    assert_eq!(proxy.count(Method::PUT, SECOND), (3, 3));
    assert_eq!(proxy.count(Method::DELETE, FIRST), (1, 0));
    assert_eq!(s3.keys(BUCKET).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_body_is_retried_and_one_that_keeps_dropping_is_cleaned_up() {
    let (s3, proxy, function) = through_proxy(common::short_timeouts()).await;
    // Enough rows that the uncompressed body arrives in more than one piece.
    let sent = event(20_000);
    proxy.fault(Method::PUT, FIRST, Fault::DropMidBody, Some(1));

    let keys = run(&function, &sent).await.unwrap();

    let drops: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter_map(|s| s.body_read)
        .collect();
    assert_eq!(drops.len(), 1);
    let (read, announced) = drops[0];
    assert!(
        0 < read && (read as u64) < announced,
        "{read} of {announced}"
    );
    assert_eq!(proxy.count(Method::PUT, FIRST), (2, 1));
    assert_eq!(s3.keys(BUCKET).await.len(), 2);
    let (rows, _) = read_parquet(s3.get(BUCKET, &keys[0]).await.0);
    assert_eq!(rows.len(), 20_000);

    // Every attempt dropped: the write fails and the other target's object goes too.
    let (s3, proxy, function) = through_proxy(common::short_timeouts()).await;
    proxy.fault(Method::PUT, FIRST, Fault::DropMidBody, None);
    let err = run(&function, &sent).await.unwrap_err();
    assert_eq!(err.error_type(), "S3WriteFailed");
    assert!(err.to_string().contains("out/first/"), "{err}");
    assert_eq!(proxy.count(Method::PUT, FIRST), (3, 3));
    assert_eq!(s3.keys(BUCKET).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_never_comes_ends_in_the_attempt_timeout() {
    let (s3, proxy, function) = through_proxy(common::short_timeouts()).await;
    proxy.fault(Method::PUT, SECOND, Fault::Hang, None);

    let started = Instant::now();
    let err = run(&function, &event(50)).await.unwrap_err();

    assert_eq!(err.error_type(), "S3WriteFailed");
    assert!(err.to_string().contains("timeout"), "{err}");
    // Three attempts of 500 ms each, not the proxy's two minutes.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(proxy.count(Method::PUT, SECOND), (3, 3));
    assert_eq!(s3.keys(BUCKET).await, Vec::<String>::new());
}

// One thread, so the captured subscriber sees the store's log line.
#[tokio::test(flavor = "current_thread")]
async fn a_failing_clean_up_lists_every_key_it_could_not_remove_and_logs_it() {
    let (logs, _guard) = CapturedLogs::start();
    let (s3, proxy, function) = through_proxy(common::short_timeouts()).await;
    proxy.fault(
        Method::PUT,
        SECOND,
        Fault::Status(500, "InternalError"),
        None,
    );
    proxy.fault(
        Method::DELETE,
        OBJECTS,
        Fault::Status(503, "SlowDown"),
        None,
    );

    let err = run(&function, &event(50)).await.unwrap_err();

    assert_eq!(err.error_type(), "S3WriteFailed");
    let message = err.to_string();
    let first = "s3://my-bucket/out/first/part-00000-req-fault-c000.parquet";
    let second = "s3://my-bucket/out/second/part-00000-req-fault-c000.snappy.parquet";
    let (_, left) = message
        .split_once("could not be removed")
        .unwrap_or_else(|| panic!("{message}"));
    assert!(left.contains(first) && left.contains(second), "{message}");
    assert!(!message.contains("nothing of this invocation was left"));
    // The first object really is still there: the error is the only record of it.
    assert_eq!(
        s3.keys(BUCKET).await,
        ["out/first/part-00000-req-fault-c000.parquet"]
    );
    let logs = logs.text();
    assert!(
        logs.contains("could not delete") && logs.contains("out/first/part-00000-req-fault"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_deadline_the_puts_stop_and_are_cleaned_up_with_time_to_spare() {
    // Attempts may take a minute: only the invocation's deadline can stop the hung PUT.
    let patient = TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(60))
        .build();
    let (s3, proxy, function) = through_proxy(patient).await;
    proxy.fault(Method::PUT, SECOND, Fault::Hang, None);
    let deadline = SystemTime::now() + CLEANUP_RESERVE + Duration::from_secs(1);
    let deadline_ms = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;

    let err = function
        .invoke(event(50).to_string().as_bytes(), "req-fault", deadline_ms)
        .await
        .unwrap_err();

    let spare = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(spare > Duration::from_secs(1), "only {spare:?} to spare");
    assert_eq!(err.error_type(), "S3WriteFailed");
    assert!(
        err.to_string().contains("deadline") && err.to_string().contains("nothing"),
        "{err}"
    );
    assert_eq!(proxy.count(Method::DELETE, OBJECTS).0, 2);
    assert_eq!(s3.keys(BUCKET).await, Vec::<String>::new());
}

/// NDJSON whose column `a` holds integers for more than the first chunk, then one float.
fn types_change_late() -> String {
    let mut text: String = (0..200_000).map(|i| format!("{{\"a\": {i}}}\n")).collect();
    text.push_str("{\"a\": 1.5}\n");
    text
}

fn source_event(key: &str) -> Value {
    json!({
        "source": {"uri": format!("s3://my-bucket/{key}")},
        "targets": [{"prefix": "s3://my-bucket/out/first/", "compression": "snappy"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_read_once_unless_a_later_chunk_changes_its_types() {
    let (s3, proxy, function) = through_proxy(common::short_timeouts()).await;
    s3.put(BUCKET, "in/same.ndjson", "{\"a\": 1}\n{\"a\": 2}\n", None)
        .await;
    run(&function, &source_event("in/same.ndjson"))
        .await
        .unwrap();
    assert_eq!(proxy.count(Method::GET, "/in/same.ndjson"), (1, 0));

    // Integers, then a float after the first chunk: the first read's upload is dropped and
    // a second read converts the column as a float, as inference over every row says.
    s3.put(BUCKET, "in/late.ndjson", types_change_late(), None)
        .await;
    let keys = run(&function, &source_event("in/late.ndjson"))
        .await
        .unwrap();
    assert_eq!(proxy.count(Method::GET, "/in/late.ndjson"), (2, 0));
    let (rows, _) = read_parquet(s3.get(BUCKET, &keys[0]).await.0);
    assert_eq!(rows.len(), 200_001);
    assert_eq!(
        (rows[1]["a"].as_f64(), rows[200_000]["a"].as_f64()),
        (Some(1.0), Some(1.5))
    );
    assert!(rows[1]["a"].is_f64(), "{}", rows[1]);
    assert!(s3.uploads(BUCKET).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_changes_or_is_refused_mid_conversion_leaves_nothing() {
    const SOURCE: &str = "/my-bucket/in/a.ndjson";
    let event = source_event("in/a.ndjson");
    // The types change late, so a second read is needed; it finds another ETag: S3 answers
    // 412 to its If-Match.
    let (s3, proxy, function) = through_proxy(common::short_timeouts()).await;
    s3.put(BUCKET, "in/a.ndjson", types_change_late(), None)
        .await;
    proxy.fault_after(
        Method::GET,
        SOURCE,
        1,
        Fault::Status(412, "PreconditionFailed"),
        Some(1),
    );
    let err = run(&function, &event).await.unwrap_err();
    assert_eq!(err.error_type(), "SourceReadFailed", "{err}");
    assert!(
        err.to_string()
            .contains("changed while it was being converted"),
        "{err}"
    );
    assert_eq!(proxy.count(Method::GET, SOURCE), (2, 1));
    assert_eq!(s3.keys(BUCKET).await, ["in/a.ndjson"]);
    assert!(s3.uploads(BUCKET).await.is_empty());

    // Refused outright (not missing): SourceReadFailed, with S3's code, nothing written.
    let (s3, proxy, function) = through_proxy(common::short_timeouts()).await;
    s3.put(BUCKET, "in/a.ndjson", "{\"a\": 1}\n", None).await;
    proxy.fault(
        Method::GET,
        SOURCE,
        Fault::Status(403, "AccessDenied"),
        None,
    );
    let err = run(&function, &event).await.unwrap_err();
    assert_eq!(err.error_type(), "SourceReadFailed", "{err}");
    assert!(err.to_string().contains("AccessDenied (HTTP 403)"), "{err}");
    assert_eq!(s3.keys(BUCKET).await, ["in/a.ndjson"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_cut_midway_after_parts_went_up_leaves_nothing() {
    // Time for 8 MiB parts through the proxy in a debug build.
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(20))
        .build();
    let (s3, proxy, function) = through_proxy(timeouts).await;
    // Distinct values, so the uncompressed file passes one part well before the end.
    let text: String = (0..400_000u64)
        .map(|i| {
            format!(
                "{{\"id\": {i}, \"name\": \"customer-{i:08}-{:016x}\"}}\n",
                i * 7919
            )
        })
        .collect();
    let cut_at = text.len() * 9 / 10;
    s3.put(BUCKET, "in/big.ndjson", text, None).await;
    proxy.fault(
        Method::GET,
        "/in/big.ndjson",
        Fault::CutAnswerAfter(cut_at),
        Some(1),
    );
    let event = json!({
        "source": {"uri": "s3://my-bucket/in/big.ndjson"},
        "schema": "id BIGINT, name STRING",
        // Row groups of 2 MiB: parts go up long before the cut.
        "row_group_bytes": 2_097_152,
        "targets": [{"prefix": "s3://my-bucket/out/first/", "compression": "uncompressed"}]
    });
    let err = run(&function, &event).await.unwrap_err();
    assert_eq!(err.error_type(), "SourceReadFailed", "{err}");
    assert!(
        err.to_string()
            .contains("reading source s3://my-bucket/in/big.ndjson failed"),
        "{err}"
    );
    // Only UploadPart PUTs to the target: no object was ever made visible.
    let (parts, _) = proxy.count(Method::PUT, FIRST);
    assert!(parts >= 1, "no part went up before the cut");
    assert_eq!(s3.keys(BUCKET).await, ["in/big.ndjson"]);
    assert!(s3.uploads(BUCKET).await.is_empty());
}
