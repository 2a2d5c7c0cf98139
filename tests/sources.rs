//! Source objects and notifications end to end against the embedded S3 server: objects read
//! as streams (plain, gzip, zstd; NDJSON and JSON arrays), written as multipart uploads when
//! large, all or nothing, with keys that follow the object's identity.

mod common;

use std::io::Write;

use common::{LocalS3, invocation, many_rows, read_parquet};
use rows_to_parquet::handler::reply::{ItemFailure, Reply, Response};
use rows_to_parquet::handler::stream::identity;
use rows_to_parquet::store::transaction::PART_BYTES;
use serde_json::{Value, json};

const IN: &str = "in-bucket";
const OUT: &str = "out-bucket";
const DEFAULT_TARGETS: &str = r#"[{"prefix":"s3://out-bucket/out/parquet/","compression":"uncompressed"},{"prefix":"s3://out-bucket/out/parquet-snappy/","compression":"snappy"}]"#;

fn seed_rows() -> Vec<Value> {
    vec![
        json!({"name": "John Doe", "age": 30, "city": "New York"}),
        json!({"name": "Jane Smith", "age": 25, "city": "Los Angeles"}),
        json!({"name": "Mike Johnson", "age": 35, "city": "Chicago"}),
    ]
}

fn ndjson(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn source_event(uri: &str, extra: Value) -> String {
    let mut event = json!({"source": {"uri": uri}, "targets": serde_json::from_str::<Value>(DEFAULT_TARGETS).unwrap()});
    for (k, v) in extra.as_object().unwrap() {
        event[k] = v.clone();
    }
    event.to_string()
}

async fn converted(s3: &LocalS3, vars: &[(&str, &str)], body: &str, id: &str) -> Response {
    s3.function(vars)
        .handle(invocation(body, id))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", e.error_type()))
        .converted()
        .expect("one conversion")
}

/// Every object in `response` read back: its rows, and the codec of its first column.
async fn read_all(s3: &LocalS3, response: &Response) -> Vec<(Vec<Value>, String)> {
    let mut out = Vec::new();
    for object in &response.objects {
        let (bytes, _) = s3.get(&object.bucket, &object.key).await;
        assert_eq!(bytes.len(), object.bytes, "{}", object.key);
        let (rows, meta) = read_parquet(bytes);
        out.push((
            rows,
            format!("{:?}", meta.row_group(0).column(0).compression()),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ndjson_source_converts_like_inline_rows_with_keys_from_the_object() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    let key = "in/day 1/a+b.ndjson";
    let text = format!("\n{}\n", ndjson(&seed_rows()));
    let etag = s3.put(IN, key, text.clone(), None).await;
    let body = source_event(&format!("s3://{IN}/{key}"), json!({}));

    let response = converted(&s3, &[], &body, "req-1").await;
    assert_eq!(response.rows, 3);
    let source = response.source.as_ref().unwrap();
    assert_eq!(source.uri, format!("s3://{IN}/{key}"));
    assert_eq!(source.bytes, text.len() as u64);
    assert_eq!(source.etag.as_deref(), Some(etag.as_str()));
    let id = identity(IN, key, None, Some(&etag));
    let keys: Vec<_> = response.objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(
        keys,
        [
            format!("out/parquet/part-00000-{id}-c000.parquet"),
            format!("out/parquet-snappy/part-00000-{id}-c000.snappy.parquet")
        ]
    );
    for ((rows, codec), expected) in read_all(&s3, &response)
        .await
        .into_iter()
        .zip(["UNCOMPRESSED", "SNAPPY"])
    {
        assert_eq!(rows, seed_rows());
        assert_eq!(codec, expected);
    }

    // Delivered again (another request id): the same keys, overwritten.
    let again = converted(&s3, &[], &body, "req-2").await;
    assert_eq!(
        again
            .objects
            .iter()
            .map(|o| o.key.clone())
            .collect::<Vec<_>>(),
        keys
    );
    assert_eq!(s3.keys(OUT).await.len(), 2);

    // A new version of the object is a new identity: new keys beside the old.
    s3.put(IN, key, ndjson(&seed_rows()[..1]), None).await;
    let newer = converted(&s3, &[], &body, "req-3").await;
    assert_eq!(newer.rows, 1);
    assert_eq!(s3.keys(OUT).await.len(), 4);
    assert!(s3.uploads(OUT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_sources_and_json_arrays_read_the_same() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    let rows = seed_rows();
    let array = serde_json::to_string_pretty(&rows).unwrap();
    let cases: Vec<(&str, Vec<u8>, Option<&str>, Value)> = vec![
        (
            "in/a.ndjson.gz",
            gzip(ndjson(&rows).as_bytes()),
            None,
            json!({}),
        ),
        (
            "in/b.json.zst",
            zstd::encode_all(array.as_bytes(), 3).unwrap(),
            None,
            json!({}),
        ),
        ("in/c.json", gzip(array.as_bytes()), Some("gzip"), json!({})),
        (
            "in/export",
            ndjson(&rows).into_bytes(),
            None,
            json!({"source": {"uri": "s3://in-bucket/in/export", "format": "ndjson"}}),
        ),
        // With a schema: one pass, the declared types.
        (
            "in/d.jsonl",
            ndjson(&rows).into_bytes(),
            None,
            json!({"schema": "name STRING NOT NULL, age INT, city STRING"}),
        ),
    ];
    for (key, bytes, encoding, extra) in cases {
        s3.put(IN, key, bytes, encoding).await;
        let response = converted(
            &s3,
            &[],
            &source_event(&format!("s3://{IN}/{key}"), extra),
            key,
        )
        .await;
        assert_eq!(response.rows, 3, "{key}");
        for (back, _) in read_all(&s3, &response).await {
            assert_eq!(back, rows, "{key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_source_goes_up_in_parts_and_leaves_no_upload_behind() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    let rows = 400_000;
    s3.put(IN, "in/big.ndjson", many_rows(rows), None).await;
    let vars = [("ROW_GROUP_ROWS", "100000")];
    let response = converted(
        &s3,
        &vars,
        &source_event("s3://in-bucket/in/big.ndjson", json!({})),
        "big",
    )
    .await;
    assert_eq!(response.rows, rows);
    let plain = &response.objects[0];
    assert!(
        plain.bytes > PART_BYTES,
        "{} bytes: not a multipart upload",
        plain.bytes
    );
    // A multipart object's ETag is `"<md5 of the parts' md5s>-<parts>"`.
    assert!(
        plain.etag.as_deref().unwrap().contains('-'),
        "{:?}",
        plain.etag
    );
    for object in &response.objects {
        let (bytes, _) = s3.get(OUT, &object.key).await;
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 4, "{}", object.key);
        let mut next = 0i64;
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap();
            for id in ids.values() {
                assert_eq!(*id, next);
                next += 1;
            }
        }
        assert_eq!(next as usize, rows);
    }
    assert!(s3.uploads(OUT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_after_parts_went_up_leaves_nothing_behind() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    let rows = 400_000;
    let mut text = many_rows(rows);
    text.push_str("{\"id\": \"secret-not-a-number\", \"name\": \"x\", \"score\": 1.5}\n");
    s3.put(IN, "in/bad-end.ndjson", text, None).await;
    let event = source_event(
        "s3://in-bucket/in/bad-end.ndjson",
        json!({"schema": "id BIGINT, name STRING, score DOUBLE"}),
    );
    let err = s3
        .function(&[("ROW_GROUP_ROWS", "100000")])
        .handle(invocation(&event, "bad"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidEvent");
    let message = err.to_string();
    assert!(
        message.contains("source s3://in-bucket/in/bad-end.ndjson")
            && message.contains(&format!("line {}", rows + 1))
            && !message.contains("secret"),
        "{message}"
    );
    assert_eq!(s3.keys(OUT).await, Vec::<String>::new());
    assert!(s3.uploads(OUT).await.is_empty());

    // Without a schema, inference over every row names the same line, and what the read had
    // already uploaded on the first chunk's types is removed.
    let event = source_event("s3://in-bucket/in/bad-end.ndjson", json!({}));
    let err = s3
        .function(&[("ROW_GROUP_ROWS", "100000")])
        .handle(invocation(&event, "bad"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "type conflict in column `id` at line {}",
            rows + 1
        )),
        "{err}"
    );
    assert_eq!(s3.keys(OUT).await, Vec::<String>::new());
    assert!(s3.uploads(OUT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_outside_the_policy_missing_or_unreadable_are_refused() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    s3.put(IN, "in/a.ndjson", ndjson(&seed_rows()), None).await;
    s3.put(IN, "elsewhere/a.ndjson", ndjson(&seed_rows()), None)
        .await;
    s3.put(IN, "in/a.parquet", "PAR1", None).await;
    s3.put(IN, "in/empty.ndjson", "\n\n", None).await;
    let policy = [("ALLOWED_SOURCES", "s3://in-bucket/in/")];
    for (uri, error_type, word) in [
        (
            "s3://in-bucket/elsewhere/a.ndjson",
            "SourceNotAllowed",
            "outside ALLOWED_SOURCES",
        ),
        (
            "s3://in-bucket/in/missing.ndjson",
            "SourceNotFound",
            "does not exist",
        ),
        (
            "s3://in-bucket/in/a.parquet",
            "InvalidEvent",
            "cannot tell its format",
        ),
        (
            "s3://in-bucket/in/empty.ndjson",
            "InvalidEvent",
            "holds no rows",
        ),
    ] {
        let err = s3
            .function(&policy)
            .handle(invocation(&source_event(uri, json!({})), "r"))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), error_type, "{uri}: {err}");
        assert!(
            err.to_string().contains(word) && err.to_string().contains(uri),
            "{uri}: {err}"
        );
    }
    let err = s3
        .function(&[])
        .handle(invocation(
            &source_event("s3://no-such-bucket/a.ndjson", json!({})),
            "r",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "SourceNotFound", "{err}");
    assert_eq!(s3.keys(OUT).await, Vec::<String>::new());
}

fn s3_notification(key: &str) -> String {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-28T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "rows",
               "bucket": {"name": IN, "arn": "arn:aws:s3:::in-bucket"},
               "object": {"key": key, "size": 10, "eTag": "0", "sequencer": "0A"}}
    }]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_convert_their_object_once_whatever_way_they_arrive() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    let key = "in/day 1/a+b.ndjson";
    s3.put(IN, key, ndjson(&seed_rows()), None).await;
    let vars = [("DEFAULT_TARGETS", DEFAULT_TARGETS)];

    let direct = converted(
        &s3,
        &vars,
        &source_event(&format!("s3://{IN}/{key}"), json!({})),
        "a",
    )
    .await;
    let keys: Vec<_> = direct.objects.iter().map(|o| o.key.clone()).collect();
    let notification = s3_notification("in/day+1/a%2Bb.ndjson");
    let by_s3 = converted(&s3, &vars, &notification, "b").await;
    assert_eq!(
        by_s3
            .objects
            .iter()
            .map(|o| o.key.clone())
            .collect::<Vec<_>>(),
        keys
    );
    let eventbridge = json!({
        "version": "0", "id": "e", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-28T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:s3:::in-bucket"],
        "detail": {"version": "0", "bucket": {"name": IN}, "object": {"key": key, "size": 10, "etag": "0"}, "reason": "PutObject"}
    });
    let by_eventbridge = converted(&s3, &vars, &eventbridge.to_string(), "c").await;
    assert_eq!(
        by_eventbridge
            .objects
            .iter()
            .map(|o| o.key.clone())
            .collect::<Vec<_>>(),
        keys
    );
    assert_eq!(
        s3.keys(OUT).await.len(),
        2,
        "three deliveries, one set of objects"
    );

    // An object inside a target folder would loop: refused, nothing read or written.
    s3.put(
        OUT,
        "out/parquet/dropped.ndjson",
        ndjson(&seed_rows()),
        None,
    )
    .await;
    let looping = s3_notification("x")
        .replace(IN, OUT)
        .replace("\"x\"", "\"out/parquet/dropped.ndjson\"");
    let err = s3
        .function(&vars)
        .handle(invocation(&looping, "d"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "RecursiveTrigger", "{err}");
    assert_eq!(s3.keys(OUT).await.len(), 3);

    let test_event = r#"{"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-28T00:00:00.000Z", "Bucket": "in-bucket", "RequestId": "r", "HostId": "h"}"#;
    let reply = s3
        .function(&vars)
        .handle(invocation(test_event, "e"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&reply).unwrap(),
        json!({"ignored": "s3:TestEvent"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_batch_fails_only_its_bad_messages() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    s3.put(IN, "in/q.ndjson", ndjson(&seed_rows()), None).await;
    let vars = [("DEFAULT_TARGETS", DEFAULT_TARGETS)];
    let message = |id: &str, body: &str| {
        json!({"messageId": id, "receiptHandle": "r", "body": body, "attributes": {},
               "messageAttributes": {}, "md5OfBody": "0", "eventSource": "aws:sqs",
               "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:rows", "awsRegion": "us-east-1"})
    };
    let rows_event = json!({"rows": seed_rows()}).to_string();
    let batch = json!({"Records": [
        message("m-rows", &rows_event),
        message("m-bad", "{\"rows\": [1, 2]}"),
        message("m-s3", &s3_notification("in/q.ndjson")),
        message("m-missing", &s3_notification("in/missing.ndjson")),
    ]});
    let reply = s3
        .function(&vars)
        .handle(invocation(&batch.to_string(), "sqs"))
        .await
        .unwrap();
    let Reply::Batch {
        batch_item_failures,
    } = reply
    else {
        panic!("{reply:?}")
    };
    let failed = |id: &str| ItemFailure {
        item_identifier: id.into(),
    };
    assert_eq!(batch_item_failures, [failed("m-bad"), failed("m-missing")]);
    let keys = s3.keys(OUT).await;
    assert_eq!(keys.len(), 4, "{keys:?}");
    // Inline rows are keyed by the message id: a redelivery overwrites.
    assert!(
        keys.iter().any(|k| k.contains("part-00000-m-rows-c000")),
        "{keys:?}"
    );
    s3.function(&vars)
        .handle(invocation(&batch.to_string(), "sqs-again"))
        .await
        .unwrap();
    assert_eq!(s3.keys(OUT).await, keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_deadline_a_streamed_conversion_stops_and_cleans_up() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    s3.put(IN, "in/slow.ndjson", many_rows(400_000), None).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // One second of work before the 3 s clean-up reserve: far less than two passes need.
    let deadline_ms = now_ms + 4_000;
    let event = source_event("s3://in-bucket/in/slow.ndjson", json!({}));
    let err = s3
        .function(&[("ROW_GROUP_ROWS", "100000")])
        .invoke(event.as_bytes(), "late", deadline_ms)
        .await
        .unwrap_err();
    let finished_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(err.error_type(), "S3WriteFailed", "{err}");
    assert!(err.to_string().contains("was abandoned"), "{err}");
    assert!(
        finished_ms < deadline_ms,
        "answered {} ms late",
        finished_ms - deadline_ms
    );
    assert_eq!(s3.keys(OUT).await, Vec::<String>::new());
    assert!(s3.uploads(OUT).await.is_empty());
}
