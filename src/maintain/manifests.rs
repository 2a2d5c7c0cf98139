//! `rewrite_manifests`: the current snapshot's data manifests merged into one per partition
//! spec, in a `replace` snapshot that adds and removes no data file. A table fed by small
//! appends has one manifest per append; every query plans over all of them.

use iceberg::TableIdent;
use iceberg::spec::ManifestContentType;
use iceberg::table::Table;

use super::replace::{self, Change};
use super::{Maintenance, StepReport};
use crate::Error;
use crate::catalog::append::catalog_error;

impl Maintenance<'_> {
    /// The step (see the module docs); nothing when each spec already has one manifest.
    ///
    /// # Errors
    /// As [`replace::commit`].
    pub(super) async fn rewrite_manifests(
        &self,
        ident: &TableIdent,
        table: &Table,
    ) -> Result<StepReport, Error> {
        let manifests = replace::manifests(table)
            .await
            .map_err(|e| catalog_error(ident, e))?;
        let data: Vec<_> = manifests
            .iter()
            .filter(|m| m.content == ManifestContentType::Data)
            .collect();
        let mut specs: Vec<i32> = data.iter().map(|m| m.partition_spec_id).collect();
        specs.sort_unstable();
        specs.dedup();
        let mut report = StepReport {
            files_read: data.len(),
            bytes_read: data.iter().map(|m| m.manifest_length.max(0) as u64).sum(),
            ..StepReport::default()
        };
        if data.len() <= specs.len() {
            report.skipped = Some("one manifest per partition spec already".into());
            return Ok(report);
        }
        report.files_written = specs.len();
        if self.dry_run {
            return Ok(report);
        }
        let change = Change {
            merge: true,
            ..Change::default()
        };
        let files = self.catalog.files();
        report.snapshot_id =
            Some(replace::commit(self.catalog, files, ident, &change, self.deadline).await?);
        Ok(report)
    }
}
