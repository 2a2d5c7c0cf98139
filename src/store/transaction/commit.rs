//! The commit: every object of the transaction made visible, concurrently.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload};
use tokio::task::JoinSet;

use super::{Transaction, not_removed};
use crate::Error;
use crate::store::s3::{CONTENT_TYPE, Stored, describe};

impl Transaction<'_> {
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
}
