//! Leases: small objects by which concurrent writes of one folder take turns, kept with S3's
//! conditional writes. A lease is taken by creating its object with `If-None-Match: *` (one
//! writer wins), released by deleting it with `If-Match` on its ETag (only the holder's
//! own), and taken over, once its holder can no longer be running, by overwriting it with
//! `If-Match` on the ETag read (one taker wins). Each says who holds it and until when.
//!
//! - this module: one lease object and the requests on it.
//! - [`turn`]: the leases one write holds ([`Turn`]), taken in one order, with the rules for
//!   a whole folder beside its partitions.
//!
//! The objects live in a target folder's `_leases/` folder with names starting with `_`, which
//! Spark, Hive, Athena, pyarrow and this function's own plan step skip as hidden; a write's
//! removals never touch them.

pub mod turn;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use super::s3::{S3Store, describe};
use crate::Error;

pub use turn::{Claim, Turn};

/// The folder, inside a target folder, that holds its leases.
pub const LEASES: &str = "_leases/";

/// What a lease object says: who holds it, until when, and what it writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The invocation (its request id).
    pub by: String,
    /// The process it runs in (a sandbox runs one invocation at a time): with `by`, which
    /// leases a listing shows are the invocation's own.
    pub sandbox: String,
    /// Milliseconds since the Unix epoch after which the holder can no longer be running:
    /// its invocation's deadline and a margin. A taker waits for it.
    pub expires_ms: u64,
    /// The ids its output keys hold: a taker aborts the uploads under them that the holder
    /// left when it was killed.
    #[serde(default)]
    pub works: Vec<String>,
}

/// A lease object as read: what it says, and its ETag for a conditional overwrite.
#[derive(Debug, Clone)]
pub struct Read {
    /// `None` for a body that is not a lease's (it never expires for us: the owner of the
    /// folder put it there).
    pub holder: Option<Holder>,
    pub etag: String,
}

/// A conditional write that found the lease's object in another state than asked: taken
/// (`If-None-Match`), changed or gone (`If-Match`). S3 answers 412, 404 `NoSuchKey` (`If-Match`
/// on a missing key), or 409 (`ConditionalRequestConflict`, two conditional writes at once);
/// a missing bucket is an error.
fn lost_race<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    match e {
        SdkError::ServiceError(service) => match service.raw().status().as_u16() {
            409 | 412 => true,
            404 => e.code() != Some("NoSuchBucket"),
            _ => false,
        },
        _ => false,
    }
}

fn failed(what: &str, bucket: &str, key: &str, why: String) -> Error {
    Error::S3WriteFailed(format!(
        "{what} the lease s3://{bucket}/{key} failed: {why}"
    ))
}

impl S3Store {
    /// Writes the lease `bucket/key` for `holder`: only if there is none (`if_etag` `None`,
    /// `If-None-Match: *`), or only if it still has the ETag `if_etag` (`If-Match`). The new
    /// ETag, or `None` when the condition did not hold.
    ///
    /// # Errors
    /// `S3WriteFailed` when S3 refuses or fails it otherwise.
    pub async fn write_lease(
        &self,
        bucket: &str,
        key: &str,
        holder: &Holder,
        if_etag: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let body = serde_json::to_vec(holder).expect("a lease serializes");
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .body(ByteStream::from(body));
        let request = match if_etag {
            None => request.if_none_match("*"),
            Some(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(out) => Ok(Some(out.e_tag.unwrap_or_default())),
            Err(e) if lost_race(&e) => Ok(None),
            Err(e) => Err(failed("writing", bucket, key, describe(&e))),
        }
    }

    /// The lease `bucket/key` as it is now; `None` when there is none.
    ///
    /// # Errors
    /// `S3WriteFailed` when it cannot be read.
    pub async fn read_lease(&self, bucket: &str, key: &str) -> Result<Option<Read>, Error> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) if e.code() == Some("NoSuchKey") => return Ok(None),
            Err(e) => return Err(failed("reading", bucket, key, describe(&e))),
        };
        let etag = out.e_tag.clone().unwrap_or_default();
        let body = out.body.collect().await;
        let body = body.map_err(|e| failed("reading", bucket, key, e.to_string()))?;
        Ok(Some(Read {
            holder: serde_json::from_slice(&body.into_bytes()).ok(),
            etag,
        }))
    }

    /// Deletes the lease `bucket/key` if it still has the ETag `etag` (the holder's own: a
    /// lease taken over meanwhile stays). Whether it was this one's to delete.
    ///
    /// # Errors
    /// `S3WriteFailed` when S3 refuses or fails it.
    pub async fn release_lease(&self, bucket: &str, key: &str, etag: &str) -> Result<bool, Error> {
        let deleted = self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .if_match(etag)
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(e) if lost_race(&e) => Ok(false),
            Err(e) => Err(failed("releasing", bucket, key, describe(&e))),
        }
    }
}
