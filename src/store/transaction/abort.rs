//! The clean-up after a failure: every upload aborted and every object this attempt may have
//! made visible removed.

use aws_sdk_s3::error::ProvideErrorMetadata;
use bytes::Bytes;
use tokio::task::JoinSet;

use super::Transaction;
use crate::Error;
use crate::store::s3::{delete_object, describe};

impl Transaction {
    /// Aborts every multipart upload not completed and deletes every object the commit asked
    /// S3 to make visible (a failed or abandoned write may still have landed; deleting a
    /// missing key is harmless; an object never sent cannot have landed), unless an object
    /// was at its key before ([`Transaction::existing`]); returns
    /// `uri (error)` for each that could not be removed. The transaction is empty afterwards,
    /// so a second call (after a failed [`Transaction::commit`], which aborts itself) sends
    /// nothing.
    pub async fn abort(&mut self) -> Vec<String> {
        self.abort_from(0).await
    }

    /// [`Transaction::abort`] for the objects added after `mark` (a [`Transaction::len`]);
    /// those before it stay.
    pub async fn abort_from(&mut self, mark: usize) -> Vec<String> {
        let store = &self.store;
        let mut requests = JoinSet::new();
        let removed = self.objects.split_off(mark.min(self.objects.len()));
        self.held -= removed
            .iter()
            .filter_map(|o| o.held.as_ref().map(Bytes::len))
            .sum::<usize>();
        for mut object in removed {
            let store = store.clone();
            let uri = object.uri();
            let upload_id = object.upload.take().map(|u| u.upload_id);
            // Only an object this attempt asked S3 to make visible, where there was none,
            // can be its own; any other at its key is another delivery's, and stays.
            let sent = object.sent && !object.existed;
            requests.spawn(async move {
                let (bucket, key) = (&object.bucket, &object.key);
                if let Some(upload_id) = upload_id {
                    store
                        .abort_upload(bucket, key, &upload_id)
                        .await
                        .map_err(|e| format!("{uri} (upload not aborted: {e})"))?;
                }
                if !sent {
                    return Ok(());
                }
                match delete_object(
                    &store.client,
                    store.expected_bucket_owner.clone(),
                    bucket,
                    key,
                )
                .await
                {
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
        Error::WriteConflict(m) => Error::WriteConflict(m + &kept),
        Error::InvalidEvent(m) => Error::InvalidEvent(m + &kept),
        Error::SourceReadFailed(m) => Error::SourceReadFailed(m + &kept),
        Error::SourceNotFound(m) => Error::SourceNotFound(m + &kept),
        other => other,
    }
}
