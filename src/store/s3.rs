//! S3 writes: concurrent PUTs of whole objects, and removal of this invocation's objects when
//! any of them fails, so a reader never sees half an output.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::SharedHttpClient;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::delete_object::DeleteObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_smithy_http_client::tls;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::Error;

/// The media type registered for Parquet.
pub const CONTENT_TYPE: &str = "application/vnd.apache.parquet";

/// One object to write.
#[derive(Debug, Clone)]
pub struct Object {
    pub bucket: String,
    pub key: String,
    pub body: Bytes,
}

impl Object {
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// `(bucket, key)` of an `s3://bucket/key` URI (also `s3a://`, `s3n://`, as Hadoop writes
/// them), both non-empty.
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    ["s3://", "s3a://", "s3n://"]
        .iter()
        .find_map(|scheme| uri.strip_prefix(scheme))?
        .split_once('/')
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
}

/// Time to open a connection to S3.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for one attempt of a request (a 6 MB PUT takes well under a second in-region).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time for a request with all its retries (the SDK's standard mode: 3 attempts).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(40);

/// The SDK's HTTPS client on rustls with ring. Connections, and the read of the system's root
/// certificates, wait for the first request: nothing here slows the cold start.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// What S3 said about a stored object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub etag: Option<String>,
    /// The CRC32C that S3 verified against the body (base64).
    pub checksum_crc32c: Option<String>,
    /// An object was at its key before this write (an earlier or twin delivery of the same
    /// work): a clean-up after a later failure leaves it.
    pub existed: bool,
}

impl Stored {
    pub(super) fn new(etag: Option<String>, checksum_crc32c: Option<String>) -> Stored {
        Stored {
            etag,
            checksum_crc32c,
            existed: false,
        }
    }
}

/// One object of a conversion: where it goes, what it holds, and (once committed) what S3
/// stored.
#[derive(Debug)]
pub struct Output {
    /// The index of its target.
    pub target: usize,
    /// `dt=2024-01-01/`, or empty without `partition_by`.
    pub partition: String,
    pub key: String,
    pub bytes: usize,
    pub rows: usize,
    pub stored: Stored,
}

impl Output {
    /// An object of target `target` with nothing in it yet.
    pub fn new(target: usize, partition: &str, key: String) -> Output {
        Output {
            target,
            partition: partition.to_owned(),
            key,
            bytes: 0,
            rows: 0,
            stored: Stored::default(),
        }
    }
}

/// An object as a listing gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Quoted, as S3 gives it.
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
}

/// A listing in progress: see [`S3Store::listing`].
pub struct Listing<'a> {
    store: &'a S3Store,
    bucket: &'a str,
    prefix: &'a str,
    token: Option<String>,
    done: bool,
}

impl Listing<'_> {
    /// The next page (up to 1,000 objects, in key order); `None` after the last. Why not, for
    /// the caller's error.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Listed>>, String> {
        if self.done {
            return Ok(None);
        }
        let page = (self.store.client.list_objects_v2())
            .bucket(self.bucket)
            .prefix(self.prefix)
            .set_continuation_token(self.token.take())
            .set_expected_bucket_owner(self.store.expected_bucket_owner.clone())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        self.token = page.next_continuation_token().map(str::to_owned);
        self.done = page.is_truncated() != Some(true) || self.token.is_none();
        let listed = page.contents().iter().filter_map(|o| {
            Some(Listed {
                key: o.key()?.to_owned(),
                size: o.size().map_or(0, |n| n.max(0).unsigned_abs()),
                etag: o.e_tag().map(str::to_owned),
                last_modified: o
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok()),
            })
        });
        Ok(Some(listed.collect()))
    }
}

/// A multipart upload in progress: its parts are stored (and billed) until it is completed or
/// aborted, and no listing of objects shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub key: String,
    pub upload_id: String,
    /// When it was started (S3 always says; `None` only for a server that does not).
    pub initiated: Option<SystemTime>,
}

/// The S3 client, built once per process and shared by every invocation.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub(super) client: Client,
    /// Sent with every request, so a bucket that changed hands is refused.
    pub(super) expected_bucket_owner: Option<String>,
}

/// The standard AWS configuration (credentials, region, `AWS_ENDPOINT_URL_<SERVICE>`) with
/// this function's HTTP client and explicit timeouts, for every AWS client it builds (S3 at
/// start, Glue on the first table target), so a request that hangs fails the same way.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts)
        .load()
        .await
}

impl S3Store {
    /// Loads the standard AWS configuration (credentials, region, `AWS_ENDPOINT_URL_S3`) and
    /// sets explicit timeouts. `path_style` is needed by local and most S3-compatible servers.
    pub async fn from_env(path_style: bool, expected_bucket_owner: Option<String>) -> S3Store {
        let shared = sdk_config().await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            .build();
        S3Store::new(Client::from_conf(config), expected_bucket_owner)
    }

    pub fn new(client: Client, expected_bucket_owner: Option<String>) -> S3Store {
        S3Store {
            client,
            expected_bucket_owner,
        }
    }

    /// Opens a source object for reading as a stream: `version_id` if given, else the
    /// latest; with `if_match`, only while its ETag is still that one.
    ///
    /// # Errors
    /// `SourceNotFound` for a missing object, version or bucket; `SourceReadFailed` for any
    /// other refusal (access denied, the object changed) or a network failure.
    pub async fn open(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<Opened, Error> {
        let uri = format!("s3://{bucket}/{key}");
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .set_if_match(if_match.map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                let status = match &e {
                    SdkError::ServiceError(service) => service.raw().status().as_u16(),
                    _ => 0,
                };
                let code = e.code().unwrap_or_default();
                let what = describe(&e);
                if status == 404 || matches!(code, "NoSuchKey" | "NoSuchBucket" | "NoSuchVersion") {
                    Error::SourceNotFound(format!("source {uri} does not exist: {what}"))
                } else if status == 412 {
                    Error::SourceReadFailed(format!(
                        "source {uri} changed while it was being converted (its ETag is no longer {}); the new object is converted by its own notification",
                        if_match.unwrap_or_default()
                    ))
                } else {
                    Error::SourceReadFailed(format!("reading source {uri} failed: {what}"))
                }
            })?;
        Ok(Opened {
            uri,
            etag: out.e_tag.clone(),
            version_id: out.version_id.clone(),
            content_encoding: out.content_encoding.clone(),
            size: out.content_length.unwrap_or_default().max(0) as u64,
            body: out.body,
        })
    }
}

impl S3Store {
    /// The whole of a small object (a map run's results), at most `limit` bytes.
    ///
    /// # Errors
    /// As [`S3Store::open`]; `SourceReadFailed` past `limit`.
    pub async fn read_all(&self, bucket: &str, key: &str, limit: usize) -> Result<Vec<u8>, Error> {
        let mut opened = self.open(bucket, key, None, None).await?;
        let mut all = Vec::new();
        while let Some(bytes) = opened.next().await? {
            all.extend_from_slice(&bytes);
            if all.len() > limit {
                return Err(Error::SourceReadFailed(format!(
                    "{} is larger than the {limit} bytes read from such an object",
                    opened.uri
                )));
            }
        }
        Ok(all)
    }

    /// The size of `s3://bucket/key`; `None` when there is no such object.
    ///
    /// # Errors
    /// `SourceReadFailed` for any other refusal or a network failure.
    pub async fn size(&self, bucket: &str, key: &str) -> Result<Option<u64>, Error> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(out.content_length.unwrap_or_default().max(0) as u64)),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(Error::SourceReadFailed(format!(
                "looking up s3://{bucket}/{key} failed: {}",
                describe(&e)
            ))),
        }
    }

    /// The bytes `range` of `s3://bucket/key`.
    ///
    /// # Errors
    /// As [`S3Store::open`].
    pub async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, Error> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let uri = format!("s3://{bucket}/{key}");
        let failed =
            |what: String| Error::SourceReadFailed(format!("reading {uri} failed: {what}"));
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await
            .map_err(|e| failed(describe(&e)))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(body.into_bytes())
    }

    /// Every multipart upload in progress under `s3://bucket/prefix`, every page of S3's
    /// listing.
    ///
    /// # Errors
    /// `S3WriteFailed` naming the prefix.
    pub async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<Upload>, Error> {
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .set_expected_bucket_owner(self.expected_bucket_owner.clone())
                .send()
                .await
                .map_err(|e| {
                    Error::S3WriteFailed(format!(
                        "listing the multipart uploads under s3://{bucket}/{prefix} failed: {}",
                        describe(&e)
                    ))
                })?;
            for upload in page.uploads() {
                if let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) {
                    uploads.push(Upload {
                        key: key.to_owned(),
                        upload_id: upload_id.to_owned(),
                        initiated: upload
                            .initiated()
                            .and_then(|t| SystemTime::try_from(*t).ok()),
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(uploads);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(uploads);
            }
        }
    }

    /// Aborts the multipart upload `upload_id` of `s3://bucket/key`: its parts are gone and
    /// no object is made of them. One already completed or aborted is no error.
    ///
    /// # Errors
    /// What went wrong, in a line.
    pub async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), String> {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await;
        match aborted {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(describe(&e)),
        }
    }

    /// Every object's key under `s3://bucket/prefix`, every page of S3's listing.
    ///
    /// # Errors
    /// `S3WriteFailed` naming the prefix (a listing serves a write's removals).
    pub async fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, Error> {
        let mut listing = self.listing(bucket, prefix);
        let mut keys = Vec::new();
        loop {
            match listing.next_page().await {
                Ok(Some(page)) => keys.extend(page.into_iter().map(|o| o.key)),
                Ok(None) => return Ok(keys),
                Err(why) => {
                    return Err(Error::S3WriteFailed(format!(
                        "listing s3://{bucket}/{prefix} failed: {why}"
                    )));
                }
            }
        }
    }

    /// Whether `s3://bucket/key` exists, from a listing of that one key (the function may
    /// list its folders, not read its output).
    ///
    /// # Errors
    /// `S3WriteFailed` naming the key (a look-up serves a write).
    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, Error> {
        let page = (self.client.list_objects_v2())
            .bucket(bucket)
            .prefix(key)
            .max_keys(1)
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await
            .map_err(|e| {
                Error::S3WriteFailed(format!(
                    "looking up s3://{bucket}/{key} failed: {}",
                    describe(&e)
                ))
            })?;
        Ok(page.contents().first().and_then(|o| o.key()) == Some(key))
    }

    /// The objects under `s3://bucket/prefix`, a page at a time (for a listing too long to
    /// hold).
    pub fn listing<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> Listing<'a> {
        Listing {
            store: self,
            bucket,
            prefix,
            token: None,
            done: false,
        }
    }

    /// Deletes `keys` of `bucket`, [`DELETES_PER_CALL`] a request; the keys it could not
    /// delete, each with why.
    pub async fn delete_keys(&self, bucket: &str, keys: &[String]) -> Vec<String> {
        let mut left = Vec::new();
        for chunk in keys.chunks(DELETES_PER_CALL) {
            let objects = chunk
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>();
            let request = objects.and_then(|objects| {
                Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()
            });
            let Ok(request) = request else {
                left.extend(
                    chunk
                        .iter()
                        .map(|k| format!("s3://{bucket}/{k} (not a valid key)")),
                );
                continue;
            };
            let deleted = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(request)
                .set_expected_bucket_owner(self.expected_bucket_owner.clone())
                .send()
                .await;
            match deleted {
                Ok(out) => left.extend(out.errors().iter().map(|e| {
                    format!(
                        "s3://{bucket}/{} ({})",
                        e.key().unwrap_or_default(),
                        e.code().unwrap_or("an error")
                    )
                })),
                Err(e) => {
                    let why = describe(&e);
                    left.extend(chunk.iter().map(|k| format!("s3://{bucket}/{k} ({why})")));
                }
            }
        }
        left
    }

    /// Deletes `s3://bucket/key` (a missing key is no error).
    ///
    /// # Errors
    /// `S3WriteFailed` naming the object.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), Error> {
        delete_object(
            &self.client,
            self.expected_bucket_owner.clone(),
            bucket,
            key,
        )
        .await
        .map_err(|e| {
            Error::S3WriteFailed(format!(
                "deleting s3://{bucket}/{key} failed: {}",
                describe(&e)
            ))
        })
    }

    /// Copies `s3://bucket/from` to `s3://bucket/to` inside S3 (up to 5 GB, `CopyObject`'s
    /// limit).
    ///
    /// # Errors
    /// `S3WriteFailed` naming both objects.
    pub async fn copy(&self, bucket: &str, from: &str, to: &str) -> Result<(), Error> {
        self.client
            .copy_object()
            .bucket(bucket)
            .key(to)
            .copy_source(format!("{bucket}/{}", url_path(from)))
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::S3WriteFailed(format!(
                    "copying s3://{bucket}/{from} to {to} failed: {}",
                    describe(&e)
                ))
            })
    }
}

/// `key` URL-encoded as `CopyObject`'s source wants it (`/` kept).
fn url_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// S3's `DeleteObjects` takes at most this many keys a request.
pub const DELETES_PER_CALL: usize = 1000;

/// A source object being read.
#[derive(Debug)]
pub struct Opened {
    pub uri: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub content_encoding: Option<String>,
    /// Its size in bytes as stored (compressed, if it is).
    pub size: u64,
    body: ByteStream,
}

impl Opened {
    /// The next bytes of the object; `None` at its end.
    ///
    /// # Errors
    /// `SourceReadFailed` when the connection fails mid-object.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Error> {
        self.body.next().await.transpose().map_err(|e| {
            Error::SourceReadFailed(format!(
                "reading source {} failed: {}",
                self.uri,
                DisplayErrorContext(e)
            ))
        })
    }
}

/// One DELETE of `s3://bucket/key` (S3 answers a missing key with success).
pub(super) async fn delete_object(
    client: &Client,
    owner: Option<String>,
    bucket: &str,
    key: &str,
) -> Result<(), SdkError<DeleteObjectError, HttpResponse>> {
    client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .set_expected_bucket_owner(owner)
        .send()
        .await
        .map(|_| ())
}

/// A one-line account of an SDK failure: S3's error code and message and the HTTP status for
/// a refusal, the cause chain for a network failure or timeout.
pub(super) fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(service) => {
            let meta = service.err().meta();
            format!(
                "{} (HTTP {}){}",
                meta.code().unwrap_or("unknown S3 error"),
                service.raw().status().as_u16(),
                meta.message().map(|m| format!(": {m}")).unwrap_or_default()
            )
        }
        other => DisplayErrorContext(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_source_is_url_encoded_but_its_slashes() {
        assert_eq!(
            url_path("out/k=eu%2Fwest/a b+c.parquet"),
            "out/k%3Deu%252Fwest/a%20b%2Bc.parquet"
        );
    }
}
