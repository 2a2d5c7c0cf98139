//! A real S3-protocol server for tests: `s3s-fs` serving a temporary directory over HTTP on
//! loopback, reached through `aws-sdk-s3` exactly as the function reaches S3.

#![allow(dead_code)] // each test binary uses a different part of this module

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use lambda_runtime::{Context, LambdaEvent};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use rows_to_parquet::handler::Function;
use rows_to_parquet::lambda::config::Config;
use rows_to_parquet::store::s3::S3Store;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod proxy;
mod s3_server;
pub use s3_server::{ACCESS_KEY, SECRET_KEY, serve};

/// A client for `endpoint` (the server, or a proxy in front of it) signing with the server's
/// credentials. `timeouts` as the function sets them in production, or shorter; the retry is
/// the SDK's standard one (3 attempts) with a short first backoff, so retry tests stay quick.
pub fn client(endpoint: &str, timeouts: TimeoutConfig) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "tests",
        ))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .http_client(rows_to_parquet::store::s3::http_client())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(20)))
        .build();
    Client::from_conf(config)
}

/// The production timeouts, but seconds instead of tens of seconds.
pub fn short_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// Log output captured from a `tracing_subscriber::fmt` subscriber (every level).
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Captures this thread's logs until the guard is dropped (use a current-thread runtime).
    pub fn start() -> (CapturedLogs, tracing::subscriber::DefaultGuard) {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An S3 server on a fresh directory with the given buckets, and a client for it.
pub struct LocalS3 {
    pub root: tempfile::TempDir,
    pub endpoint: String,
    pub client: Client,
}

impl LocalS3 {
    pub async fn start(buckets: &[&str]) -> LocalS3 {
        let root = tempfile::tempdir().unwrap();
        for bucket in buckets {
            std::fs::create_dir(root.path().join(bucket)).unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = serve(root.path(), listener);
        let client = client(&endpoint, TimeoutConfig::disabled());
        LocalS3 {
            root,
            endpoint,
            client,
        }
    }

    /// The function as `main` builds it, with `vars` as its environment.
    pub fn function(&self, vars: &[(&str, &str)]) -> Function {
        self.function_with(self.client.clone(), vars)
    }

    /// The function writing through `client` (to a proxy, say), with `vars` as its environment.
    pub fn function_with(&self, client: Client, vars: &[(&str, &str)]) -> Function {
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        Function::new(
            S3Store::new(client, config.expected_bucket_owner.clone()),
            config,
        )
    }

    /// Every key in `bucket`, sorted.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    /// Stores `body` at `s3://bucket/key`, with a `Content-Encoding` if given; its ETag.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
        content_encoding: Option<&str>,
    ) -> String {
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_content_encoding(content_encoding.map(str::to_owned))
            .body(body.into().into())
            .send()
            .await
            .unwrap();
        out.e_tag.unwrap()
    }

    /// The keys of the multipart uploads in progress in `bucket`.
    pub async fn uploads(&self, bucket: &str) -> Vec<String> {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
            .collect()
    }

    pub async fn get(&self, bucket: &str, key: &str) -> (Bytes, Option<String>) {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let content_type = out.content_type().map(str::to_owned);
        (out.body.collect().await.unwrap().into_bytes(), content_type)
    }
}

/// How an input must be refused, as its sibling `NAME.expect.json` says
/// (`{"errorType", "messageContains"}`; in `events/` and `tests/corpus/`).
pub struct Expectation {
    pub error_type: String,
    pub word: String,
}

impl Expectation {
    /// The refusal beside `input` (`x.json` → `x.expect.json`), if there is one (an
    /// expectation without `errorType` describes a reply instead: see tests/events.rs).
    pub fn beside(input: &std::path::Path) -> Option<Expectation> {
        let path = input.with_extension("expect.json");
        let expect: Value = serde_json::from_slice(&std::fs::read(&path).ok()?)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        expect.get("errorType")?;
        let field = |name: &str| {
            expect[name]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no {name}", path.display()))
                .to_owned()
        };
        Some(Expectation {
            error_type: field("errorType"),
            word: field("messageContains"),
        })
    }

    /// Asserts that `err` is this refusal; `what` names the input in the failure message.
    pub fn assert_matches(&self, err: &rows_to_parquet::Error, what: &str) {
        assert_eq!(err.error_type(), self.error_type, "{what}: {err}");
        assert!(
            err.to_string().contains(&self.word),
            "{what}: `{err}` lacks `{}`",
            self.word
        );
    }
}

/// An invocation as the Lambda runtime delivers it (the body's raw bytes).
pub fn invocation(payload: &str, request_id: &str) -> LambdaEvent<Bytes> {
    let mut context = Context::default();
    context.request_id = request_id.into();
    LambdaEvent::new(Bytes::from(payload.to_owned()), context)
}

/// A Parquet file's rows as JSON objects (null fields left out), and its metadata.
pub fn read_parquet(bytes: Bytes) -> (Vec<Value>, ParquetMetaData) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let meta = builder.metadata().as_ref().clone();
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    for batch in builder.build().unwrap() {
        writer.write(&batch.unwrap()).unwrap();
    }
    writer.finish().unwrap();
    let rows: Value = serde_json::from_slice(&writer.into_inner()).unwrap();
    let Value::Array(rows) = rows else {
        panic!("not an array")
    };
    (rows, meta)
}

/// The Arrow schema a Parquet file reads back as.
pub fn read_schema(bytes: Bytes) -> arrow_schema::SchemaRef {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .schema()
        .clone()
}

/// `value` without null object fields, the form `read_parquet` gives back.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Whether `back` (read from Parquet) holds the same data as `sent` (from the event): null
/// fields are absent from `back`, fields come in column order rather than the row's key order,
/// and an integer sent into a float column reads back as a
/// float of the same value.
pub fn same_data(back: &Value, sent: &Value) -> bool {
    match (back, without_nulls(sent)) {
        (Value::Number(b), Value::Number(s)) if b.is_f64() || s.is_f64() => {
            b.as_f64() == s.as_f64()
        }
        (Value::Array(b), Value::Array(s)) => {
            b.len() == s.len() && b.iter().zip(&s).all(|(b, s)| same_data(b, s))
        }
        (Value::Object(b), Value::Object(s)) => {
            b.len() == s.len()
                && s.iter()
                    .all(|(k, sv)| b.get(k).is_some_and(|bv| same_data(bv, sv)))
        }
        (b, s) => *b == s,
    }
}

/// About `rows` NDJSON rows of distinct values (so the uncompressed file passes one part).
pub fn many_rows(rows: usize) -> String {
    (0..rows)
        .map(|i| {
            format!(
                "{{\"id\": {i}, \"name\": \"customer-{i:08}-{:016x}\", \"score\": {}.5}}\n",
                i * 7919,
                i % 1000
            )
        })
        .collect()
}
