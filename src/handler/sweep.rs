//! A sweep: the multipart uploads that killed attempts left under the function's folders,
//! aborted once they are older than any invocation can run.
//!
//! A retry aborts what the attempt it replaces left (see the store's transaction). What is
//! never retried (a synchronous caller that gave up, a message dropped after its last
//! receive) is left to this: an upload is only ever in progress inside an invocation, so one
//! older than the function's timeout has no invocation left to complete it.

use std::time::{Duration, SystemTime};

use super::Function;
use super::reply::{Reply, Swept, SweptUpload};
use crate::Error;
use crate::input::sweep::Sweep;
use crate::store::budget::write_budget;

/// Added to the function's timeout before an upload counts as abandoned: S3's clock and
/// Lambda's may differ by this much.
const CLOCK_MARGIN: Duration = Duration::from_secs(5);

impl Function {
    /// Aborts the uploads under [`crate::lambda::config::Config::sweep_folders`] older than
    /// the function's timeout (read from this invocation's deadline: Lambda gives each
    /// invocation the whole timeout) plus [`CLOCK_MARGIN`], or than the event's
    /// `min_age_seconds` if that is longer.
    ///
    /// # Errors
    /// `InvalidEvent` when no folder is configured, or without a deadline and without
    /// `min_age_seconds`; `S3WriteFailed` when a listing fails.
    pub(super) async fn sweep(
        &self,
        sweep: Sweep,
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let started = SystemTime::now();
        let timeout = deadline.map(|d| d.duration_since(started).unwrap_or_default());
        let min_age = match (timeout, sweep.min_age) {
            (Some(timeout), asked) => (timeout + CLOCK_MARGIN).max(asked.unwrap_or_default()),
            (None, Some(asked)) => asked,
            (None, None) => {
                return Err(Error::InvalidEvent(
                    "a sweep without an invocation deadline needs `min_age_seconds` (longer than the function's timeout), or it could abort an upload still in progress".into(),
                ));
            }
        };
        let folders = self.config.sweep_folders()?;
        let mut swept = Swept {
            folders: folders.iter().map(ToString::to_string).collect(),
            min_age_seconds: min_age.as_secs(),
            aborted: 0,
            uploads: Vec::new(),
            kept: 0,
            failed: Vec::new(),
            complete: false,
        };
        let time_left = || write_budget(deadline, SystemTime::now()).is_ok();
        for folder in &folders {
            if !time_left() {
                return Ok(Reply::Swept { swept });
            }
            let (bucket, prefix) = (&folder.bucket, &folder.key_prefix);
            for upload in self.store.list_uploads(bucket, prefix).await? {
                let age = upload
                    .initiated
                    .and_then(|at| started.duration_since(at).ok())
                    .unwrap_or_default();
                if age < min_age {
                    swept.kept += 1;
                    continue;
                }
                if !time_left() {
                    return Ok(Reply::Swept { swept });
                }
                let uri = format!("s3://{bucket}/{}", upload.key);
                match self
                    .store
                    .abort_upload(bucket, &upload.key, &upload.upload_id)
                    .await
                {
                    Ok(()) => {
                        swept.aborted += 1;
                        if swept.uploads.len() < Swept::LISTED {
                            swept.uploads.push(SweptUpload {
                                uri,
                                age_seconds: age.as_secs(),
                            });
                        }
                    }
                    Err(e) => swept.failed.push(format!("{uri} ({e})")),
                }
            }
        }
        swept.complete = true;
        Ok(Reply::Swept { swept })
    }
}
