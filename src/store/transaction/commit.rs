//! The commit: every object of the transaction made visible, concurrently.

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload};
use tokio::task::JoinSet;

use super::{Transaction, not_removed};
use crate::Error;
use crate::store::budget::CLEANUP_RESERVE;
use crate::store::s3::{CONTENT_TYPE, Stored, describe};

/// How long past its budget a commit that succeeded may spend aborting an earlier attempt's
/// uploads: the clean-up reserve, which a success no longer needs, less a second to answer.
pub const AFTER_COMMIT: Duration = CLEANUP_RESERVE.saturating_sub(Duration::from_secs(1));

impl Transaction {
    /// Makes every object visible (each given its last bytes by [`Transaction::last`]):
    /// every multipart upload completed and every small object PUT, concurrently, each with a
    /// CRC32C that S3 verifies. Returns what S3 stored, in the order the objects were added.
    /// Bodies (here and in uploaded parts) are not hashed into the request signature: the
    /// CRC32C already guards them end to end (and TLS in transit), and a SHA-256 over every
    /// byte cost more CPU than the CRC and the copy together.
    ///
    /// With a `budget`, requests still running when it is spent are abandoned.
    ///
    /// Then the uploads an earlier attempt at the same work left ([`Transaction::replaces`])
    /// are aborted, within the budget and `AFTER_COMMIT` (the clean-up reserve less a
    /// second) more; a failure there is logged, not returned: this work is done (and the
    /// sweep aborts what is left).
    ///
    /// # Errors
    /// `S3WriteFailed` naming each object that failed, or saying the budget ran out. Before it
    /// returns, every upload is aborted and every object it may have made visible deleted;
    /// keys that could not be are listed in the message. When an upload was gone at its
    /// completion, another delivery of the same work has committed it (only that aborts an
    /// upload still in progress): its objects stand, so nothing is deleted.
    pub async fn commit(&mut self, budget: Option<Duration>) -> Result<Vec<Stored>, Error> {
        let give_up = budget.map(|b| tokio::time::Instant::now() + b);
        let (mut failures, superseded) = match self.make_visible(give_up).await {
            Ok(mut stored) => {
                for (stored, object) in stored.iter_mut().zip(&self.objects) {
                    stored.existed = object.existed;
                }
                // The work is done, so the time kept to clean up after a failure is free: all
                // of it but the last second (to answer) may go to this.
                let clean_up = self.abort_replaced();
                match give_up {
                    Some(at) => drop(tokio::time::timeout_at(at + AFTER_COMMIT, clean_up).await),
                    None => clean_up.await,
                }
                return Ok(stored);
            }
            Err(failed) => failed,
        };
        failures.sort();
        if superseded {
            for object in &mut self.objects {
                object.sent = false;
            }
            let left = self.abort().await;
            let mut message = format!(
                "writing to S3 failed: {}; another delivery of the same work committed it first, so its objects stand and nothing was deleted",
                failures.join("; ")
            );
            if !left.is_empty() {
                message.push_str(&not_removed(&left));
            }
            return Err(Error::S3WriteFailed(message));
        }
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
    /// stored, or every failure and whether an upload was gone (`NoSuchUpload`).
    async fn make_visible(
        &mut self,
        give_up: Option<tokio::time::Instant>,
    ) -> Result<Vec<Stored>, (Vec<String>, bool)> {
        let store = &self.store;
        let owner = store.expected_bucket_owner.clone();
        let mut requests = JoinSet::new();
        for (index, object) in self.objects.iter_mut().enumerate() {
            object.sent = true;
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
                        (
                            index,
                            stored.map_err(|e| (describe(&e), e.code() == Some("NoSuchUpload"))),
                        )
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
                        (index, stored.map_err(|e| (describe(&e), false)))
                    });
                }
            }
        }
        let mut stored = vec![Stored::default(); self.objects.len()];
        let mut failures = Vec::new();
        let mut superseded = false;
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
                Ok((index, Err((e, gone)))) => {
                    superseded |= gone;
                    failures.push(format!("{}: {e}", self.objects[index].uri()));
                }
                Err(e) => failures.push(format!("a write task failed: {e}")),
            }
        }
        if failures.is_empty() {
            Ok(stored)
        } else {
            Err((failures, superseded))
        }
    }

    /// Aborts the uploads of an earlier attempt at this work ([`Transaction::replaces`]):
    /// one listing per folder, every upload there whose key holds one of the work's ids.
    async fn abort_replaced(&self) {
        let store = &self.store;
        let mut folders: Vec<(&str, &str)> = self
            .replaces
            .iter()
            .map(|(bucket, folder, _)| (bucket.as_str(), folder.as_str()))
            .collect();
        folders.sort_unstable();
        folders.dedup();
        let mut aborted = Vec::new();
        for (bucket, folder) in folders {
            let ids: Vec<&str> = self
                .replaces
                .iter()
                .filter(|(b, f, _)| b == bucket && f == folder)
                .map(|(_, _, id)| id.as_str())
                .collect();
            let uploads = match store.list_uploads(bucket, folder).await {
                Ok(uploads) => uploads,
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for an earlier attempt's uploads");
                    continue;
                }
            };
            for upload in uploads {
                if !ids.iter().any(|id| upload.key.contains(id)) {
                    continue;
                }
                let uri = format!("s3://{bucket}/{}", upload.key);
                match store
                    .abort_upload(bucket, &upload.key, &upload.upload_id)
                    .await
                {
                    Ok(()) => aborted.push(uri),
                    Err(e) => tracing::warn!(
                        uri,
                        error = e,
                        "could not abort an earlier attempt's upload"
                    ),
                }
            }
        }
        if !aborted.is_empty() {
            tracing::info!(uploads = ?aborted, "aborted the uploads an earlier attempt at this work left");
        }
    }
}
