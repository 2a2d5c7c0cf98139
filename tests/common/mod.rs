//! A real S3-protocol server for tests: `s3s-fs` serving a temporary directory over HTTP on
//! loopback, reached through `aws-sdk-s3` exactly as the function reaches S3.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use lambda_runtime::{Context, LambdaEvent};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use rows_to_parquet::config::Config;
use rows_to_parquet::handler::Function;
use rows_to_parquet::store::S3Store;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::net::TcpListener;

pub const ACCESS_KEY: &str = "local-test-key";
pub const SECRET_KEY: &str = "local-test-secret";

/// Makes s3s-fs answer like S3 where it is lenient: a request without valid credentials is
/// `AccessDenied`, and one naming a bucket that does not exist is `NoSuchBucket` (s3s-fs would
/// otherwise create the directory on PUT).
struct LikeS3 {
    root: PathBuf,
}

#[async_trait::async_trait]
impl S3Access for LikeS3 {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "credentials required"));
        }
        let bucket = match cx.s3_path() {
            S3Path::Root => return Ok(()),
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket,
        };
        if !self.root.join(&**bucket).is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(())
    }
}

/// Serves `root` (one directory per bucket) on `127.0.0.1:<free port>` until the runtime ends;
/// returns the endpoint URL.
pub async fn serve(root: &Path) -> String {
    let service = {
        let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).unwrap());
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        builder.set_access(LikeS3 {
            root: root.to_owned(),
        });
        builder.build()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    endpoint
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
        let endpoint = serve(root.path()).await;
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "tests",
            ))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build();
        LocalS3 {
            root,
            endpoint,
            client: Client::from_conf(config),
        }
    }

    /// The function as `main` builds it, with `vars` as its environment.
    pub fn function(&self, vars: &[(&str, &str)]) -> Function {
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        Function::new(S3Store::new(self.client.clone()), config)
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

/// An invocation as the Lambda runtime delivers it.
pub fn invocation(payload: &str, request_id: &str) -> LambdaEvent<Box<RawValue>> {
    let mut context = Context::default();
    context.request_id = request_id.into();
    LambdaEvent::new(RawValue::from_string(payload.into()).unwrap(), context)
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

/// `value` without null object fields, the form `read_parquet` gives back.
pub fn without_nulls(value: &Value) -> Value {
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
