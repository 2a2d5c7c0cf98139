//! The handler end to end against a real S3-protocol server (s3s-fs over HTTP on loopback).

mod common;

use common::{LocalS3, invocation, read_parquet, same_data};
use rows_to_parquet::store::s3::CONTENT_TYPE;
use serde_json::{Value, json};

const BUCKET: &str = "my-bucket";

fn seed_rows() -> Value {
    json!([
        {"name": "John Doe", "age": 30, "city": "New York"},
        {"name": "Jane Smith", "age": 25, "city": "Los Angeles"},
        {"name": "Mike Johnson", "age": 35, "city": "Chicago"}
    ])
}

fn two_targets() -> Value {
    json!([
        {"prefix": "s3://my-bucket/out/parquet/", "compression": "uncompressed"},
        {"prefix": "s3://my-bucket/out/parquet-snappy", "compression": "snappy"}
    ])
}

fn codec_of(meta: &parquet::file::metadata::ParquetMetaData) -> String {
    format!("{:?}", meta.row_group(0).column(0).compression())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_rows_become_an_uncompressed_and_a_snappy_object() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let event = json!({"rows": seed_rows(), "targets": two_targets()});
    let response = s3
        .function(&[])
        .handle(invocation(&event.to_string(), "req-1"))
        .await
        .unwrap()
        .converted()
        .unwrap();

    assert_eq!(response.rows, 3);
    let keys = [
        "out/parquet-snappy/part-00000-req-1-c000.snappy.parquet",
        "out/parquet/part-00000-req-1-c000.parquet",
    ];
    assert_eq!(s3.keys(BUCKET).await, keys);
    let reported: Vec<_> = response
        .objects
        .iter()
        .map(|o| (o.key.as_str(), o.compression))
        .collect();
    assert_eq!(reported, [(keys[1], "uncompressed"), (keys[0], "snappy")]);

    for (object, codec) in response.objects.iter().zip(["UNCOMPRESSED", "SNAPPY"]) {
        assert_eq!(object.uri, format!("s3://{BUCKET}/{}", object.key));
        assert_eq!(object.bucket, BUCKET);
        assert_eq!(object.rows, 3);
        assert!(object.etag.as_deref().is_some_and(|e| !e.is_empty()));
        // The PUT carried a CRC32C that the server verified and reports back on GET.
        let checksum = object.checksum_crc32c.as_deref().expect("a CRC32C");
        let got = s3
            .client
            .get_object()
            .bucket(BUCKET)
            .key(&object.key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(got.checksum_crc32_c(), Some(checksum));
        let (bytes, content_type) = s3.get(BUCKET, &object.key).await;
        assert_eq!(bytes.len(), object.bytes);
        assert_eq!(content_type.as_deref(), Some(CONTENT_TYPE));
        let (rows, meta) = read_parquet(bytes);
        assert_eq!(Value::Array(rows), seed_rows());
        assert_eq!(codec_of(&meta), codec);
        let names: Vec<_> = meta
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        assert_eq!(names, ["name", "age", "city"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_sparse_unicode_rows_round_trip_in_every_codec() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let rows = json!([
        {"id": 1, "user": {"name": "Zoë 🚀", "geo": {"lat": 40.7, "lon": -74.0}}, "tags": ["a", "b"], "note": "tab\there \"quoted\" \u{1}"},
        {"id": 2, "user": null, "tags": [], "score": 0.5},
        {"id": 3, "user": {"name": null, "geo": {"lat": -33.9}}, "tags": null, "flag": false}
    ]);
    let codecs = ["uncompressed", "snappy", "zstd", "gzip", "lz4", "brotli"];
    let targets: Vec<Value> = codecs
        .iter()
        .map(|c| json!({"prefix": format!("s3://{BUCKET}/all/{c}/"), "compression": c.to_uppercase()}))
        .collect();
    let event = json!({"rows": rows, "targets": targets});
    let response = s3
        .function(&[])
        .handle(invocation(&event.to_string(), "req-2"))
        .await
        .unwrap()
        .converted()
        .unwrap();

    assert_eq!(response.objects.len(), codecs.len());
    for (object, codec) in response.objects.iter().zip(codecs) {
        assert_eq!(object.compression, codec);
        let (rows_back, meta) = read_parquet(s3.get(BUCKET, &object.key).await.0);
        assert!(same_data(&Value::Array(rows_back), &rows), "{codec}");
        let expected = if codec == "lz4" {
            "LZ4_RAW".to_owned()
        } else {
            codec.to_uppercase()
        };
        assert!(
            codec_of(&meta).starts_with(&expected),
            "{codec}: {}",
            codec_of(&meta)
        );
    }
}

/// Each of these is refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_refused_and_write_nothing() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let function = s3.function(&[("ALLOWED_PREFIXES", "s3://my-bucket/out/")]);
    let targets = two_targets();
    let cases = [
        (json!({"targets": targets}), "InvalidEvent", "no `rows`"),
        (
            json!({"rows": [], "targets": targets}),
            "InvalidEvent",
            "empty",
        ),
        (
            json!({"rows": {"a": 1}, "targets": targets}),
            "InvalidEvent",
            "array",
        ),
        (
            json!({"rows": [{"a": 1}, 7], "targets": targets}),
            "InvalidEvent",
            "row 1",
        ),
        (
            json!({"rows": [{"age": 30}, {"age": "thirty"}], "targets": targets}),
            "InvalidEvent",
            "`age` at row 1",
        ),
        (
            json!({"rows": seed_rows()}),
            "InvalidEvent",
            "DEFAULT_TARGETS",
        ),
        (
            json!("just a string"),
            "InvalidEvent",
            "must be a JSON object",
        ),
        (
            json!({"rows": seed_rows(), "targets": [{"prefix": "s3://my-bucket/out/x/", "compression": "lzo"}]}),
            "InvalidTarget",
            "lzo",
        ),
        (
            json!({"rows": seed_rows(), "targets": [{"prefix": "my-bucket/out/x/", "compression": "snappy"}]}),
            "InvalidTarget",
            "targets[0].prefix",
        ),
        (
            json!({"rows": seed_rows(), "targets": [
            {"prefix": "s3://my-bucket/out/ok/", "compression": "snappy"},
            {"prefix": "s3://my-bucket/elsewhere/", "compression": "snappy"}]}),
            "TargetNotAllowed",
            "s3://my-bucket/elsewhere/",
        ),
        (
            json!({"rows": seed_rows(), "targets": [{"prefix": "s3://my-bucket/out/../x/", "compression": "snappy"}]}),
            "TargetNotAllowed",
            "..",
        ),
        (
            json!({"rows": seed_rows(), "targets": [{"prefix": format!("s3://my-bucket/out/{}/", "k".repeat(1000)), "compression": "snappy"}]}),
            "InvalidTarget",
            "1024",
        ),
    ];
    for (event, error_type, word) in cases {
        let err = function
            .handle(invocation(&event.to_string(), "req-bad"))
            .await
            .expect_err(&event.to_string());
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(
            diagnostic.error_type, error_type,
            "{event}: {}",
            diagnostic.error_message
        );
        assert!(
            diagnostic.error_message.contains(word),
            "{event}: {}",
            diagnostic.error_message
        );
    }
    assert_eq!(s3.keys(BUCKET).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_fails_the_write_before_anything_is_written() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let event = json!({"rows": seed_rows(), "targets": [
        {"prefix": "s3://my-bucket/out/a/", "compression": "snappy"},
        {"prefix": "s3://my-bucket/out/b/", "compression": "zstd"},
        {"prefix": "s3://missing-bucket/out/", "compression": "snappy"}
    ]});
    let err = s3
        .function(&[])
        .handle(invocation(&event.to_string(), "req-3"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "S3WriteFailed");
    let message = err.to_string();
    // Its lease there is the first request the write makes in that bucket.
    assert!(
        message.contains("s3://missing-bucket/out/_leases/"),
        "{message}"
    );
    assert!(
        message.contains("nothing of this invocation was left"),
        "{message}"
    );
    assert!(message.contains("NoSuchBucket (HTTP 404)"), "{message}");
    assert!(
        message.len() < 500,
        "a one-line account, not a dump: {message}"
    );
    assert_eq!(s3.keys(BUCKET).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_overwrites_its_own_objects() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let function = s3.function(&[]);
    let event = json!({"rows": seed_rows(), "targets": two_targets()}).to_string();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let reply = function.handle(invocation(&event, "req-4")).await.unwrap();
        assert_eq!(reply.converted().unwrap().objects.len(), 2);
        seen.push(s3.keys(BUCKET).await);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].len(), 2);
    function
        .handle(invocation(&event, "req-5"))
        .await
        .unwrap()
        .converted()
        .unwrap();
    assert_eq!(
        s3.keys(BUCKET).await.len(),
        4,
        "a new request is a new object per prefix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_targets_serve_events_without_targets_within_allowed_prefixes() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let defaults = two_targets().to_string();
    let function = s3.function(&[
        ("DEFAULT_TARGETS", &defaults),
        ("ALLOWED_PREFIXES", "s3://my-bucket/out/"),
    ]);
    let response = function
        .handle(invocation(
            &json!({"rows": seed_rows()}).to_string(),
            "req-6",
        ))
        .await
        .unwrap()
        .converted()
        .unwrap();
    let uris: Vec<_> = response.objects.iter().map(|o| o.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "s3://my-bucket/out/parquet/part-00000-req-6-c000.parquet",
            "s3://my-bucket/out/parquet-snappy/part-00000-req-6-c000.snappy.parquet"
        ]
    );
    assert_eq!(s3.keys(BUCKET).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_and_describes_what_would_be_written() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let function = s3.function(&[]);
    let mut event = json!({
        "rows": seed_rows(),
        "targets": two_targets(),
        "schema": "name STRING NOT NULL, age INT, city STRING",
        "dry_run": true
    });
    let dry = function
        .handle(invocation(&event.to_string(), "req-7"))
        .await
        .unwrap()
        .converted()
        .unwrap();
    assert_eq!(s3.keys(BUCKET).await, Vec::<String>::new());

    let json = serde_json::to_value(&dry).unwrap();
    assert_eq!(json["dry_run"], true);
    assert_eq!(
        json["schema"]["ddl"],
        "name STRING NOT NULL, age INT, city STRING"
    );
    assert_eq!(
        json["schema"]["fields"][1],
        json!({"name": "age", "type": "INT", "nullable": true})
    );
    assert_eq!(
        dry.objects[0].key,
        "out/parquet/part-00000-req-7-c000.parquet"
    );
    assert!(dry.objects.iter().all(|o| o.etag.is_none() && o.bytes > 0));
    let athena = dry.objects[1].athena_ddl.as_deref().unwrap();
    assert!(
        athena.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `parquet_snappy` ("),
        "{athena}"
    );
    assert!(athena.contains("  age int,\n"), "{athena}");
    assert!(
        athena.ends_with("LOCATION 's3://my-bucket/out/parquet-snappy/'"),
        "{athena}"
    );

    // The real run writes exactly what the dry run described.
    event["dry_run"] = json!(false);
    let real = function
        .handle(invocation(&event.to_string(), "req-7"))
        .await
        .unwrap()
        .converted()
        .unwrap();
    let json = serde_json::to_value(&real).unwrap();
    assert!(
        json.get("dry_run").is_none() && json.get("schema").is_none(),
        "{json}"
    );
    for (d, r) in dry.objects.iter().zip(&real.objects) {
        assert_eq!((&d.key, d.bytes), (&r.key, r.bytes));
        let (_, meta) = read_parquet(s3.get(BUCKET, &r.key).await.0);
        let age = meta.file_metadata().schema_descr().column(1);
        assert_eq!(format!("{:?}", age.physical_type()), "INT32");
        assert!(r.athena_ddl.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_violation_writes_nothing() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let event = json!({"rows": seed_rows(), "targets": two_targets(), "schema": "name STRING, age TINYINT"});
    let err = s3
        .function(&[])
        .handle(invocation(&event.to_string(), "req-8"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidEvent");
    assert!(
        err.to_string().contains("key `city` is not in the schema"),
        "{err}"
    );
    assert_eq!(s3.keys(BUCKET).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invocation_deadline_is_respected() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let function = s3.function(&[]);
    let event = json!({"rows": seed_rows(), "targets": two_targets()}).to_string();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;

    // Too little time left to write and still clean up: refused before any PUT.
    let mut late = invocation(&event, "req-9");
    late.context.deadline = now_ms + 1_000;
    let err = function.handle(late).await.unwrap_err();
    assert_eq!(err.error_type(), "S3WriteFailed");
    assert!(
        err.to_string().contains("before the invocation deadline"),
        "{err}"
    );
    assert_eq!(s3.keys(BUCKET).await, Vec::<String>::new());

    // Enough time: the PUTs run within the budget.
    let mut timely = invocation(&event, "req-10");
    timely.context.deadline = now_ms + 60_000;
    assert_eq!(
        function
            .handle(timely)
            .await
            .unwrap()
            .converted()
            .unwrap()
            .objects
            .len(),
        2
    );
    assert_eq!(s3.keys(BUCKET).await.len(), 2);
}
