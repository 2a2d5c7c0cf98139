//! S3 writes: concurrent PUTs of whole objects, and removal of this invocation's objects when
//! any of them fails, so a reader never sees half an output.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::SharedHttpClient;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
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
    /// S3 stored, in the same order.
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
        let mut puts = JoinSet::new();
        for (index, object) in objects.iter().enumerate() {
            let request = self
                .client
                .put_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .content_type(CONTENT_TYPE)
                .content_length(object.body.len() as i64)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .set_expected_bucket_owner(self.expected_bucket_owner.clone())
                .body(ByteStream::from(object.body.clone()));
            puts.spawn(async move {
                let result = request.send().await.map(|out| Stored {
                    etag: out.e_tag,
                    checksum_crc32c: out.checksum_crc32_c,
                });
                (index, result.map_err(|e| describe(&e)))
            });
        }
        let mut stored = vec![Stored::default(); objects.len()];
        let mut failures = Vec::new();
        let give_up = budget.map(|b| tokio::time::Instant::now() + b);
        loop {
            let next = match give_up {
                Some(at) => match tokio::time::timeout_at(at, puts.join_next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        puts.abort_all();
                        failures.push(format!(
                            "{} of {} PUTs had not finished when the time left before the invocation deadline ran out",
                            puts.len(),
                            objects.len()
                        ));
                        break;
                    }
                },
                None => puts.join_next().await,
            };
            let Some(joined) = next else { break };
            match joined {
                Ok((index, Ok(object))) => stored[index] = object,
                Ok((index, Err(e))) => failures.push(format!("{}: {e}", objects[index].uri())),
                Err(e) => failures.push(format!("a PUT task failed: {e}")),
            }
        }
        if failures.is_empty() {
            return Ok(stored);
        }
        failures.sort();
        let mut message = format!("writing to S3 failed: {}", failures.join("; "));
        let left = self.delete_all(objects).await;
        if left.is_empty() {
            message.push_str("; nothing of this invocation was left in S3");
        } else {
            tracing::error!(keys = ?left, "clean-up after a failed write could not delete objects");
            message.push_str(&format!(
                "; these objects could not be removed and may be partial output: {}",
                left.join(", ")
            ));
        }
        Err(Error::S3WriteFailed(message))
    }

    /// Deletes every object concurrently; returns `uri (error)` for each one that failed.
    async fn delete_all(&self, objects: &[Object]) -> Vec<String> {
        let mut deletes = JoinSet::new();
        for object in objects {
            let request = self
                .client
                .delete_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .set_expected_bucket_owner(self.expected_bucket_owner.clone());
            let uri = object.uri();
            deletes.spawn(async move {
                match request.send().await {
                    Ok(_) => Ok(()),
                    // Nothing can be left where there is no bucket.
                    Err(e) if e.code() == Some("NoSuchBucket") => Ok(()),
                    Err(e) => Err(format!("{uri} ({})", describe(&e))),
                }
            });
        }
        let mut left: Vec<String> = deletes
            .join_all()
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        left.sort();
        left
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
