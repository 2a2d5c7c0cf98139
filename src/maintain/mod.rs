//! The maintenance stage, beside the catalog: what keeps a table fed by small appends fast.
//! `{"maintain": {"table": …}}` runs, in this order, the steps Spark's procedures and Athena's
//! `OPTIMIZE`/`VACUUM` run, each safe beside appends that keep landing:
//!
//! - `rewrite`: `rewrite_data_files`, a partition's small files written again as files of
//!   about the target size, in one `replace` snapshot.
//! - `manifests`: `rewrite_manifests`, the manifests merged into one per partition spec.
//! - [`expire`]: `expire_snapshots`, old snapshots removed and the files only they reached
//!   deleted, with the identities of the work they committed kept for exactly-once delivery.
//! - `orphans`: `remove_orphan_files`, what nothing reaches under the table's location.
//! - `folder`: the same for a folder's Hive dataset (`{"maintain": {"folder": …}}`):
//!   partitions compacted into folders of their own and moved there in the Glue table, and
//!   the files they replaced removed later.
//! - [`replace`]: the `replace` snapshot built by hand (iceberg-rust 0.10.1 has none).
//!
//! Uses the catalog (tables, commits) and the store (listings, deletes); the handler only
//! dispatches to it.

pub mod expire;
mod folder;
mod manifests;
mod orphans;
pub mod replace;
mod rewrite;

use std::time::{Duration, SystemTime};

use iceberg::{Catalog, TableIdent};
use serde::Serialize;

use crate::Error;
use crate::catalog::append::catalog_error;
use crate::catalog::glue::{GlueCatalog, table_ident};
use crate::encode::writer::RowGroupSize;
use crate::input::maintain::Steps;
use crate::input::target::TableTarget;
use crate::store::budget::write_budget;
use crate::store::lease::Holder;
use crate::store::lease::turn::LONGEST_INVOCATION;
use crate::store::s3::{S3Store, split_uri};

/// A step's keys listed in its report, at most: the reply stays small whatever the count.
pub const LISTED: usize = 100;

/// What one maintenance run works with.
pub struct Maintenance<'a> {
    pub store: &'a S3Store,
    /// The invocation's catalog: its file IO logs what the run writes.
    pub catalog: &'a GlueCatalog,
    /// The Glue client, for a folder's Hive table.
    pub glue: &'a aws_sdk_glue::Client,
    /// The invocation, as the holder of a folder partition's lease while it is compacted.
    pub holder: Holder,
    /// The row groups of a folder's compacted files.
    pub row_group: RowGroupSize,
    pub deadline: Option<SystemTime>,
    pub dry_run: bool,
}

/// Added to the function's timeout: S3's clock and Lambda's may differ by this much.
const CLOCK_MARGIN: Duration = Duration::from_secs(5);

/// What a step did (or, in a dry run, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// Partitions rewritten.
    #[serde(skip_serializing_if = "is_zero")]
    pub partitions: usize,
    pub files_read: usize,
    pub bytes_read: u64,
    pub files_written: usize,
    pub bytes_written: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub snapshots_expired: usize,
    pub files_deleted: usize,
    /// The first [`LISTED`] files deleted (in a dry run: the files it would read or delete).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// The snapshot it committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
    /// The deadline stopped it before its work was done: the next run goes on.
    pub more: bool,
    /// Why it did nothing, when it did nothing for a reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A run's reply: each step asked for, in order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub table: String,
    /// A Hive dataset's folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite_data_files: Option<StepReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite_manifests: Option<StepReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_snapshots: Option<StepReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_orphan_files: Option<StepReport>,
}

impl Report {
    /// Its counts, for the invocation's metrics.
    pub fn counts(&self) -> crate::lambda::metrics::Maintained {
        let steps = [
            &self.rewrite_data_files,
            &self.rewrite_manifests,
            &self.expire_snapshots,
            &self.remove_orphan_files,
        ];
        let done = steps.iter().filter_map(|s| s.as_ref());
        let mut counts = crate::lambda::metrics::Maintained::default();
        for step in done {
            counts.files_written += step.files_written as u64;
            counts.snapshots_expired += step.snapshots_expired as u64;
            counts.files_deleted += step.files_deleted as u64;
            counts.unfinished += u64::from(step.more);
        }
        counts.files_rewritten = self
            .rewrite_data_files
            .as_ref()
            .map_or(0, |s| s.files_read as u64);
        counts
    }
}

/// An object under a table's location, as a listing gives it.
struct Found {
    key: String,
    /// `s3://bucket/key`, as the table's metadata names its files.
    uri: String,
    size: u64,
    last_modified: Option<SystemTime>,
}

impl Found {
    /// The same object as Hadoop's S3A names it (tables written by Spark or Glue jobs).
    fn s3a(&self) -> String {
        format!("s3a://{}", &self.uri["s3://".len()..])
    }

    /// Whether it was last written at least `bound` before `now` (an object without a date
    /// never is).
    fn older_than(&self, bound: Duration, now: SystemTime) -> bool {
        (self.last_modified)
            .and_then(|at| now.duration_since(at).ok())
            .is_some_and(|age| age >= bound)
    }
}

impl Maintenance<'_> {
    /// Runs the steps `steps` names on the Iceberg table `target`, in order, each on the
    /// table as the previous one left it.
    ///
    /// # Errors
    /// `TableNotFound`; the first step's error (what it wrote is removed; the steps before
    /// it stay done).
    pub async fn run(&self, target: &TableTarget, steps: &Steps) -> Result<Report, Error> {
        let ident = table_ident(target);
        let mut report = Report {
            table: target.to_string(),
            dry_run: self.dry_run,
            ..Report::default()
        };
        if let Some(options) = &steps.rewrite_data_files {
            let table = self.load(&ident).await?;
            let step = self.rewrite_data_files(&ident, &table, options).await;
            report.rewrite_data_files = Some(self.settled(step).await?);
        }
        if steps.rewrite_manifests.is_some() {
            let table = self.load(&ident).await?;
            let step = self.rewrite_manifests(&ident, &table).await;
            report.rewrite_manifests = Some(self.settled(step).await?);
        }
        if let Some(options) = &steps.expire_snapshots {
            let table = self.load(&ident).await?;
            report.expire_snapshots = Some(self.expire_snapshots(&ident, &table, options).await?);
        }
        if let Some(options) = &steps.remove_orphan_files {
            let table = self.load(&ident).await?;
            let step = self.remove_orphan_files(&ident, &table, options).await;
            report.remove_orphan_files = Some(step?);
        }
        Ok(report)
    }

    /// `asked`, but never below the function's timeout and a margin (read from this
    /// invocation's deadline, as the sweep reads it): a file an invocation in flight has just
    /// written is never old.
    fn older_than(&self, asked: Duration) -> Duration {
        let timeout = self.deadline.map_or(LONGEST_INVOCATION, |d| {
            d.duration_since(SystemTime::now()).unwrap_or_default()
        });
        asked.max(timeout + CLOCK_MARGIN)
    }

    async fn load(&self, ident: &TableIdent) -> Result<iceberg::table::Table, Error> {
        self.catalog
            .load_table(ident)
            .await
            .map_err(|e| catalog_error(ident, e))
    }

    /// A writing step's outcome: on failure, what it wrote and no snapshot names is removed.
    async fn settled(&self, step: Result<StepReport, Error>) -> Result<StepReport, Error> {
        let files = self.catalog.files();
        match step {
            Ok(report) => {
                files.forget();
                Ok(report)
            }
            Err(e) => {
                let left = files.remove_written().await;
                Err(crate::store::transaction::with_leftovers(e, &left))
            }
        }
    }

    /// Every object under `folder` (an `s3://` URI ending in `/`).
    async fn list(&self, folder: &str) -> Result<Vec<Found>, Error> {
        let (bucket, prefix) = split_uri(folder).ok_or_else(|| {
            Error::CatalogFailed(format!(
                "{folder} is not an s3:// location this function can list"
            ))
        })?;
        let mut listing = self.store.listing(bucket, prefix);
        let mut found = Vec::new();
        loop {
            match listing.next_page().await {
                Ok(Some(page)) => found.extend(page.into_iter().map(|o| Found {
                    uri: format!("s3://{bucket}/{}", o.key),
                    key: o.key,
                    size: o.size,
                    last_modified: o.last_modified,
                })),
                Ok(None) => return Ok(found),
                Err(why) => {
                    return Err(Error::S3WriteFailed(format!(
                        "listing {folder} failed: {why}"
                    )));
                }
            }
        }
    }

    /// Deletes `uris` (in a dry run: only counts them) while the invocation has time; counts
    /// them, names the first [`LISTED`], and says `more` when time ran out first.
    async fn delete(&self, report: &mut StepReport, uris: Vec<String>) {
        let mut by_bucket: Vec<(String, Vec<String>)> = Vec::new();
        for uri in &uris {
            let Some((bucket, key)) = split_uri(uri) else {
                continue;
            };
            match by_bucket.iter_mut().find(|(b, _)| b == bucket) {
                Some((_, keys)) => keys.push(key.to_owned()),
                None => by_bucket.push((bucket.to_owned(), vec![key.to_owned()])),
            }
        }
        for (bucket, keys) in by_bucket {
            for chunk in keys.chunks(crate::store::s3::DELETES_PER_CALL) {
                if !self.dry_run && write_budget(self.deadline, SystemTime::now()).is_err() {
                    report.more = true;
                    return;
                }
                let left = match self.dry_run {
                    true => Vec::new(),
                    false => self.store.delete_keys(&bucket, chunk).await,
                };
                for key in chunk {
                    let uri = format!("s3://{bucket}/{key}");
                    if left.iter().any(|l| l.starts_with(&uri)) {
                        continue;
                    }
                    report.files_deleted += 1;
                    if report.keys.len() < LISTED {
                        report.keys.push(uri);
                    }
                }
                if !left.is_empty() {
                    tracing::warn!(
                        left = left.len(),
                        "maintenance could not delete some files: a later run deletes them"
                    );
                    report.more = true;
                }
            }
        }
    }
}
