//! Row values never reach logs or error messages: a secret-looking value is placed where each
//! kind of failure (and a success) happens, and neither the captured log output (every level)
//! nor the error may contain it.

mod common;

use common::{CapturedLogs, LocalS3, invocation};
use serde_json::json;

const SECRET: &str = "AKIA-FAKE-SECRET!0123";

// One thread, so the subscriber set for this test sees the handler and the S3 calls.
#[tokio::test(flavor = "current_thread")]
async fn secrets_in_rows_appear_in_neither_logs_nor_errors() {
    let (logs, _guard) = CapturedLogs::start();

    let s3 = LocalS3::start(&["my-bucket"]).await;
    let function = s3.function(&[]);
    let targets = json!([{"prefix": "s3://my-bucket/out/", "compression": "snappy"}]);
    let missing = json!([{"prefix": "s3://no-such-bucket/out/", "compression": "snappy"}]);
    let cases = [
        (
            json!({"rows": [{"a": 1}, {"a": SECRET}], "targets": targets}),
            Some("InvalidEvent"),
        ),
        (
            json!({"rows": [{"a": SECRET}], "schema": "a INT", "targets": targets}),
            Some("InvalidEvent"),
        ),
        (
            json!({"rows": [{"a": SECRET}], "schema": "a DATE", "targets": targets}),
            Some("InvalidEvent"),
        ),
        (
            json!({"rows": [{"a": SECRET}], "schema": "a DECIMAL(5,2)", "targets": targets}),
            Some("InvalidEvent"),
        ),
        (
            json!({"rows": [{"a": SECRET}], "schema": "a BINARY", "targets": targets}),
            Some("InvalidEvent"),
        ),
        (
            json!({"rows": [{"a": SECRET}, [SECRET]], "targets": targets}),
            Some("InvalidEvent"),
        ),
        (
            json!({"rows": [{"a": SECRET}], "targets": missing}),
            Some("S3WriteFailed"),
        ),
        (json!({"rows": [{"a": SECRET}], "targets": targets}), None),
    ];
    for (event, error_type) in cases {
        let result = function
            .handle(invocation(&event.to_string(), "req-secret"))
            .await;
        match (result, error_type) {
            (Err(err), Some(kind)) => {
                assert_eq!(err.error_type(), kind, "{err}");
                assert!(
                    !err.to_string().contains(SECRET),
                    "the error quotes a row value: {err}"
                );
            }
            (Ok(_), None) => {}
            (other, _) => panic!("unexpected outcome for {event}: {other:?}"),
        }
    }
    let logs = logs.text();
    assert!(
        logs.contains("invocation failed") && logs.contains("built parquet"),
        "{logs}"
    );
    assert!(!logs.contains(SECRET), "the logs quote a row value");
}
