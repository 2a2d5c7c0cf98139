//! `remove_orphan_files`: objects under the table's location that no retained snapshot and
//! no kept metadata file reaches, older than the bound, deleted. The bound is never below the
//! function's own timeout and a margin (an append in flight may have just written a file that
//! its commit will name), read from this invocation's deadline as the sweep reads it.

use std::collections::HashSet;
use std::time::SystemTime;

use iceberg::TableIdent;
use iceberg::spec::Snapshot;
use iceberg::table::Table;

use super::expire::reached;
use super::{Maintenance, StepReport};
use crate::Error;
use crate::catalog::append::catalog_error;
use crate::input::maintain::RemoveOrphanFiles;

impl Maintenance<'_> {
    /// The step (see the module docs).
    ///
    /// # Errors
    /// `CatalogFailed` when the table's files cannot be read; `S3WriteFailed` when the
    /// listing fails.
    pub(super) async fn remove_orphan_files(
        &self,
        ident: &TableIdent,
        table: &Table,
        options: &RemoveOrphanFiles,
    ) -> Result<StepReport, Error> {
        let now = SystemTime::now();
        let bound = self.older_than(options.older_than);
        let metadata = table.metadata();
        let snapshots: Vec<&Snapshot> = metadata.snapshots().map(|s| s.as_ref()).collect();
        let mut kept: HashSet<String> = reached(table, &snapshots, true)
            .await
            .map_err(|e| catalog_error(ident, e))?;
        kept.extend(table.metadata_location().map(str::to_owned));
        kept.extend(
            metadata
                .metadata_log()
                .iter()
                .map(|l| l.metadata_file.clone()),
        );
        kept.extend(
            metadata
                .statistics_iter()
                .map(|s| s.statistics_path.clone()),
        );
        let folder = format!("{}/", metadata.location().trim_end_matches('/'));
        let mut report = StepReport::default();
        let mut doomed = Vec::new();
        for listed in self.list(&folder).await? {
            if listed.older_than(bound, now)
                && !kept.contains(&listed.uri)
                && !kept.contains(&listed.s3a())
            {
                doomed.push(listed.uri);
            }
        }
        report.note = Some(format!(
            "files younger than {} s were left alone",
            bound.as_secs()
        ));
        self.delete(&mut report, doomed).await;
        Ok(report)
    }
}
