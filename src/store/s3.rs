//! S3 writes: concurrent PUTs of whole objects, and removal of this invocation's objects when
//! any of them fails, so a reader never sees half an output.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::SharedHttpClient;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::delete_object::DeleteObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;

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
}

impl Stored {
    fn new(etag: Option<String>, checksum_crc32c: Option<String>) -> Stored {
        Stored {
            etag,
            checksum_crc32c,
        }
    }
}

/// The S3 client, built once per process and shared by every invocation.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    /// Sent with every request, so a bucket that changed hands is refused.
    expected_bucket_owner: Option<String>,
}

impl S3Store {
    /// Loads the standard AWS configuration (credentials, region, `AWS_ENDPOINT_URL_S3`) and
    /// sets explicit timeouts. `path_style` is needed by local and most S3-compatible servers.
    pub async fn from_env(path_style: bool, expected_bucket_owner: Option<String>) -> S3Store {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            .timeout_config(timeouts)
            .load()
            .await;
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

    /// Writes every object concurrently, each with a CRC32C that S3 verifies, and returns what
    /// S3 stored, in the same order. Bodies (here and in uploaded parts) are not hashed into
    /// the request signature: the CRC32C already guards them end to end (and TLS in transit),
    /// and a SHA-256 over every byte cost more CPU than the CRC and the copy together.
    ///
    /// With a `budget`, PUTs still running when it is spent are abandoned (so the invocation
    /// ends cleanly before its deadline rather than being killed mid-write).
    ///
    /// # Errors
    /// `S3WriteFailed` naming each object that failed, or saying the budget ran out. Before it
    /// returns, every object of this call is deleted (a failed PUT may still have landed);
    /// keys that could not be deleted are listed in the message.
    pub async fn put_all(
        &self,
        objects: &[Object],
        budget: Option<Duration>,
    ) -> Result<Vec<Stored>, Error> {
        let mut transaction = Transaction::new(self);
        for object in objects {
            let index = transaction.add(object.bucket.clone(), object.key.clone());
            transaction.hold(index, object.body.clone());
        }
        transaction.commit(budget).await
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
}

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

/// Multipart parts are at least this large (S3's minimum is 5 MiB).
pub const PART_BYTES: usize = 8 << 20;

/// Small objects' bytes a [`Transaction`] keeps in memory until its commit, in all; past it,
/// a small object goes up at once as a multipart upload of one part.
pub const HELD_BYTES: usize = 8 << 20;

/// The objects of one invocation, written all or none: each is a multipart upload once its
/// first part is ready ([`Transaction::part`]), else one PUT; none becomes visible before
/// every object's data is complete ([`Transaction::commit`]); on failure every upload is
/// aborted and every object removed.
pub struct Transaction<'s> {
    store: &'s S3Store,
    objects: Vec<Pending>,
    /// Bytes of the small objects waiting for their PUT.
    held: usize,
}

struct Pending {
    bucket: String,
    key: String,
    upload: Option<Multipart>,
    /// A small object's whole bytes, PUT at the commit.
    held: Option<Bytes>,
}

impl Pending {
    fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

struct Multipart {
    upload_id: String,
    parts: Vec<CompletedPart>,
}

impl<'s> Transaction<'s> {
    /// An empty transaction; nothing is sent yet.
    pub fn new(store: &'s S3Store) -> Transaction<'s> {
        Transaction {
            store,
            objects: Vec::new(),
            held: 0,
        }
    }

    /// Adds the object `s3://bucket/key`; its index for [`Transaction::part`] and
    /// [`Transaction::last`].
    pub fn add(&mut self, bucket: String, key: String) -> usize {
        self.objects.push(Pending {
            bucket,
            key,
            upload: None,
            held: None,
        });
        self.objects.len() - 1
    }

    /// How many objects it holds: a mark for [`Transaction::abort_from`].
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Uploads the next part of object `index` (starting its multipart upload first if this
    /// is its first part); no object becomes visible.
    ///
    /// # Errors
    /// `S3WriteFailed`; the caller then calls [`Transaction::abort`].
    pub async fn part(&mut self, index: usize, body: Bytes) -> Result<(), Error> {
        self.upload_part(index, body)
            .await
            .map_err(|e| Error::S3WriteFailed(format!("writing to S3 failed: {e}")))
    }

    /// The last bytes of object `index` (the whole object if no part was sent): its last
    /// part, or kept for a PUT at the commit while the kept bytes stay within
    /// [`HELD_BYTES`], else sent as an upload of one part. Nothing becomes visible.
    ///
    /// # Errors
    /// As [`Transaction::part`].
    pub async fn last(&mut self, index: usize, body: Bytes) -> Result<(), Error> {
        if self.objects[index].upload.is_none() && self.held + body.len() <= HELD_BYTES {
            self.hold(index, body);
            return Ok(());
        }
        self.part(index, body).await
    }

    /// Keeps `body` as object `index`'s whole bytes, for a PUT at the commit.
    fn hold(&mut self, index: usize, body: Bytes) {
        self.held += body.len();
        self.objects[index].held = Some(body);
    }

    /// [`Transaction::part`], failing with `uri: what went wrong`.
    async fn upload_part(&mut self, index: usize, body: Bytes) -> Result<(), String> {
        let store = self.store;
        let object = &mut self.objects[index];
        let failed = |uri: String, what: String| format!("{uri}: {what}");
        if object.upload.is_none() {
            let out = store
                .client
                .create_multipart_upload()
                .bucket(&object.bucket)
                .key(&object.key)
                .content_type(CONTENT_TYPE)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .set_expected_bucket_owner(store.expected_bucket_owner.clone())
                .send()
                .await
                .map_err(|e| failed(object.uri(), describe(&e)))?;
            let upload_id = out
                .upload_id
                .ok_or_else(|| failed(object.uri(), "S3 returned no upload id".into()))?;
            object.upload = Some(Multipart {
                upload_id,
                parts: Vec::new(),
            });
        }
        let uri = object.uri();
        let upload = object.upload.as_mut().expect("started above");
        let number = upload.parts.len() as i32 + 1;
        let out = store
            .client
            .upload_part()
            .bucket(&object.bucket)
            .key(&object.key)
            .upload_id(&upload.upload_id)
            .part_number(number)
            .content_length(body.len() as i64)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .set_expected_bucket_owner(store.expected_bucket_owner.clone())
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| failed(format!("{uri} part {number}"), describe(&e)))?;
        upload.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .set_checksum_crc32_c(out.checksum_crc32_c)
                .build(),
        );
        Ok(())
    }

    /// Makes every object visible (each given its last bytes by [`Transaction::last`]):
    /// every multipart upload completed and every small object PUT, concurrently. Returns
    /// what S3 stored, in the order the objects were added.
    ///
    /// With a `budget`, requests still running when it is spent are abandoned.
    ///
    /// # Errors
    /// `S3WriteFailed` naming each object that failed, or saying the budget ran out. Before it
    /// returns, every upload is aborted and every object deleted; keys that could not be
    /// are listed in the message.
    pub async fn commit(&mut self, budget: Option<Duration>) -> Result<Vec<Stored>, Error> {
        let give_up = budget.map(|b| tokio::time::Instant::now() + b);
        let mut failures = match self.make_visible(give_up).await {
            Ok(stored) => return Ok(stored),
            Err(failed) => failed,
        };
        failures.sort();
        let mut message = format!("writing to S3 failed: {}", failures.join("; "));
        let left = self.abort().await;
        if left.is_empty() {
            message.push_str("; nothing of this invocation was left in S3");
        } else {
            message.push_str(&not_removed(&left));
        }
        Err(Error::S3WriteFailed(message))
    }

    /// Completes every multipart upload and PUTs every other object, concurrently: what S3
    /// stored, or every failure.
    async fn make_visible(
        &mut self,
        give_up: Option<tokio::time::Instant>,
    ) -> Result<Vec<Stored>, Vec<String>> {
        let store = self.store;
        let owner = store.expected_bucket_owner.clone();
        let mut requests = JoinSet::new();
        for (index, object) in self.objects.iter().enumerate() {
            let body = object.held.clone().unwrap_or_default();
            let client = store.client.clone();
            let (bucket, key, owner) = (object.bucket.clone(), object.key.clone(), owner.clone());
            match &object.upload {
                Some(upload) => {
                    let parts = CompletedMultipartUpload::builder()
                        .set_parts(Some(upload.parts.clone()))
                        .build();
                    let upload_id = upload.upload_id.clone();
                    requests.spawn(async move {
                        let out = client
                            .complete_multipart_upload()
                            .bucket(bucket)
                            .key(key)
                            .upload_id(upload_id)
                            .multipart_upload(parts)
                            .set_expected_bucket_owner(owner)
                            .send()
                            .await;
                        let stored = out.map(|o| Stored::new(o.e_tag, o.checksum_crc32_c));
                        (index, stored.map_err(|e| describe(&e)))
                    });
                }
                None => {
                    requests.spawn(async move {
                        let out = client
                            .put_object()
                            .bucket(bucket)
                            .key(key)
                            .content_type(CONTENT_TYPE)
                            .content_length(body.len() as i64)
                            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                            .set_expected_bucket_owner(owner)
                            .body(ByteStream::from(body))
                            .customize()
                            .disable_payload_signing()
                            .send()
                            .await;
                        let stored = out.map(|o| Stored::new(o.e_tag, o.checksum_crc32_c));
                        (index, stored.map_err(|e| describe(&e)))
                    });
                }
            }
        }
        let mut stored = vec![Stored::default(); self.objects.len()];
        let mut failures = Vec::new();
        loop {
            let next = match give_up {
                Some(at) => match tokio::time::timeout_at(at, requests.join_next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        requests.abort_all();
                        failures.push(format!(
                            "{} of {} objects had not been written when the time left before the invocation deadline ran out",
                            requests.len(),
                            self.objects.len()
                        ));
                        break;
                    }
                },
                None => requests.join_next().await,
            };
            let Some(joined) = next else { break };
            match joined {
                Ok((index, Ok(object))) => {
                    // Completed: nothing left to abort, only an object to delete.
                    self.objects[index].upload = None;
                    stored[index] = object;
                }
                Ok((index, Err(e))) => failures.push(format!("{}: {e}", self.objects[index].uri())),
                Err(e) => failures.push(format!("a write task failed: {e}")),
            }
        }
        if failures.is_empty() {
            Ok(stored)
        } else {
            Err(failures)
        }
    }

    /// Aborts every multipart upload not completed and deletes every object (a failed or
    /// abandoned write may still have landed; deleting a missing key is harmless); returns
    /// `uri (error)` for each that could not be removed. The transaction is empty afterwards,
    /// so a second call (after a failed [`Transaction::commit`], which aborts itself) sends
    /// nothing.
    pub async fn abort(&mut self) -> Vec<String> {
        self.abort_from(0).await
    }

    /// [`Transaction::abort`] for the objects added after `mark` (a [`Transaction::len`]);
    /// those before it stay.
    pub async fn abort_from(&mut self, mark: usize) -> Vec<String> {
        let store = self.store;
        let mut requests = JoinSet::new();
        let removed = self.objects.split_off(mark.min(self.objects.len()));
        self.held -= removed
            .iter()
            .filter_map(|o| o.held.as_ref().map(Bytes::len))
            .sum::<usize>();
        for mut object in removed {
            let client = store.client.clone();
            let (bucket, key) = (object.bucket.clone(), object.key.clone());
            let owner = store.expected_bucket_owner.clone();
            let uri = object.uri();
            let upload_id = object.upload.take().map(|u| u.upload_id);
            requests.spawn(async move {
                if let Some(upload_id) = upload_id {
                    let aborted = client
                        .abort_multipart_upload()
                        .bucket(&bucket)
                        .key(&key)
                        .upload_id(upload_id)
                        .set_expected_bucket_owner(owner.clone())
                        .send()
                        .await;
                    match aborted {
                        Ok(_) => {}
                        Err(e) if e.code() == Some("NoSuchUpload") => {}
                        Err(e) => {
                            return Err(format!("{uri} (upload not aborted: {})", describe(&e)));
                        }
                    }
                }
                match delete_object(&client, owner, &bucket, &key).await {
                    Ok(()) => Ok(()),
                    // Nothing can be left where there is no bucket.
                    Err(e) if e.code() == Some("NoSuchBucket") => Ok(()),
                    Err(e) => Err(format!("{uri} ({})", describe(&e))),
                }
            });
        }
        let mut left: Vec<String> = requests
            .join_all()
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        left.sort();
        if !left.is_empty() {
            tracing::error!(keys = ?left, "clean-up after a failed write could not delete objects");
        }
        left
    }
}

/// One DELETE of `s3://bucket/key` (S3 answers a missing key with success).
async fn delete_object(
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

/// What a clean-up could not remove (`left`, as [`Transaction::abort`] names it), for the end
/// of an error message.
pub fn not_removed(left: &[String]) -> String {
    format!(
        "; these objects could not be removed and may be partial output: {}",
        left.join(", ")
    )
}

/// `e`, naming what the clean-up after it could not remove (`left`, as
/// [`Transaction::abort`] returns it).
pub fn with_leftovers(e: Error, left: &[String]) -> Error {
    if left.is_empty() {
        return e;
    }
    let kept = not_removed(left);
    match e {
        Error::S3WriteFailed(m) => Error::S3WriteFailed(m + &kept),
        Error::InvalidEvent(m) => Error::InvalidEvent(m + &kept),
        Error::SourceReadFailed(m) => Error::SourceReadFailed(m + &kept),
        Error::SourceNotFound(m) => Error::SourceNotFound(m + &kept),
        other => other,
    }
}

/// A one-line account of an SDK failure: S3's error code and message and the HTTP status for
/// a refusal, the cause chain for a network failure or timeout.
fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
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
