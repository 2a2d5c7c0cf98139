//! `expire_snapshots`: the snapshots older than the bound, beyond the last `retain_last` and
//! not named by a branch or tag, removed from the metadata in one commit, which also drops
//! the metadata log's entries older than the oldest snapshot kept (their files can only name
//! expired snapshots); then every file only the expired snapshots reached deleted (manifest
//! lists, manifests, data files), and the metadata files older than the log keeps (its
//! entries, and at most `write.metadata.previous-versions-max` of them).
//! Never a file a retained snapshot or the current metadata reaches: what the retained
//! snapshots reach is read from the metadata as committed, appends meanwhile included.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use iceberg::spec::{Snapshot, TableMetadata};
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, TableIdent, TableUpdate};

use super::replace;
use super::{Maintenance, StepReport};
use crate::Error;
use crate::catalog::append::{catalog_error, retry_pause};
use crate::catalog::identity::{IDENTITY, Marked, markers_folder};
use crate::input::maintain::ExpireSnapshots;

/// The snapshots `options` expire in `metadata`: older than the bound, not among the last
/// `retain_last` (by time), not the current one, not named by a branch or a tag.
pub fn expired(metadata: &TableMetadata, options: &ExpireSnapshots, now: SystemTime) -> Vec<i64> {
    let bound = now
        .checked_sub(options.older_than)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let named: HashSet<i64> = serde_json::to_value(metadata)
        .ok()
        .and_then(|m| m.get("refs").cloned())
        .and_then(|refs| refs.as_object().cloned())
        .map(|refs| {
            refs.values()
                .filter_map(|r| r["snapshot-id"].as_i64())
                .collect()
        })
        .unwrap_or_default();
    let mut snapshots: Vec<&Snapshot> = metadata.snapshots().map(|s| s.as_ref()).collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse((s.timestamp_ms(), s.sequence_number())));
    let current = metadata.current_snapshot_id();
    snapshots
        .into_iter()
        .skip(options.retain_last)
        .filter(|s| s.timestamp_ms() < bound)
        .filter(|s| Some(s.snapshot_id()) != current && !named.contains(&s.snapshot_id()))
        .map(Snapshot::snapshot_id)
        .collect()
}

/// Every file `snapshots` reach: their manifest lists, manifests, and the data files their
/// manifests list, live ones only when `live` (a file a snapshot lists as deleted is not one
/// it needs; what it needed is what its parent lists live).
pub async fn reached(
    table: &Table,
    snapshots: &[&Snapshot],
    live: bool,
) -> iceberg::Result<HashSet<String>> {
    let mut files = HashSet::new();
    let mut manifests_seen = HashSet::new();
    for snapshot in snapshots {
        files.insert(snapshot.manifest_list().to_owned());
        for manifest in replace::manifests_of(table, snapshot).await? {
            if !manifests_seen.insert(manifest.manifest_path.clone()) {
                continue;
            }
            files.insert(manifest.manifest_path.clone());
            let entries = replace::entries(table, &manifest).await?;
            let needed = entries.iter().filter(|e| !live || e.is_alive());
            files.extend(needed.map(|e| e.file_path().to_owned()));
        }
    }
    Ok(files)
}

/// The version number in a metadata file's name (`00012-<uuid>.metadata.json`).
pub fn metadata_version(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    name.strip_suffix(".metadata.json")?
        .split_once('-')?
        .0
        .parse()
        .ok()
}

impl Maintenance<'_> {
    /// Leaves a marker of the work each of `gone` (snapshots about to expire) committed within
    /// the exactly-once horizon, so a redelivery of it is still recognised.
    ///
    /// # Errors
    /// `S3WriteFailed` when a marker could not be written: nothing is expired then.
    async fn keep_identities(&self, table: &Table, gone: &[&Snapshot]) -> Result<(), Error> {
        let horizon = SystemTime::now()
            .checked_sub(self.catalog.horizon())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        for snapshot in gone.iter().filter(|s| s.timestamp_ms() >= horizon) {
            let Some(recorded) = snapshot.summary().additional_properties.get(IDENTITY) else {
                continue;
            };
            let marked = Marked {
                snapshot_id: snapshot.snapshot_id(),
                committed_ms: snapshot.timestamp_ms(),
            };
            let identities: Vec<&str> = recorded.lines().collect();
            self.catalog.mark(table, marked, &identities).await?;
        }
        Ok(())
    }

    /// The markers of work committed longer ago than the exactly-once horizon.
    async fn old_markers(&self, table: &Table) -> Result<Vec<String>, Error> {
        let now = SystemTime::now();
        let horizon = self.catalog.horizon();
        let folder = markers_folder(table.metadata().location());
        let found = self.list(&folder).await?;
        let old = found.into_iter().filter(|f| {
            f.last_modified
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|age| age > horizon)
        });
        Ok(old.map(|f| f.uri).collect())
    }

    /// The step (see the module docs).
    ///
    /// # Errors
    /// `CommitConflict` when retries run out; `CatalogFailed` for a catalog or file failure.
    pub(super) async fn expire_snapshots(
        &self,
        ident: &TableIdent,
        table: &Table,
        options: &ExpireSnapshots,
    ) -> Result<StepReport, Error> {
        let mut report = StepReport::default();
        let mut table = table.clone();
        let mut attempts = 0;
        let (before, after) = loop {
            attempts += 1;
            let ids = expired(table.metadata(), options, SystemTime::now());
            report.snapshots_expired = ids.len();
            if ids.is_empty() || self.dry_run {
                return Ok(report);
            }
            let gone: Vec<&Snapshot> = (table.metadata().snapshots())
                .filter(|s| ids.contains(&s.snapshot_id()))
                .map(|s| s.as_ref())
                .collect();
            self.keep_identities(&table, &gone).await?;
            // The metadata log from the oldest snapshot kept on.
            let oldest_kept = (table.metadata().snapshots())
                .filter(|s| !ids.contains(&s.snapshot_id()))
                .map(|s| s.timestamp_ms())
                .min();
            let updates = vec![TableUpdate::RemoveSnapshots { snapshot_ids: ids }];
            match self
                .catalog
                .commit_trimmed(ident, updates, oldest_kept)
                .await
            {
                Ok(after) => break (table, after),
                Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                    let Some(pause) = retry_pause(attempts, self.deadline) else {
                        return Err(Error::CommitConflict(format!(
                            "{ident}: {attempts} expiries conflicted with other writers and the time for retries ran out; nothing was expired"
                        )));
                    };
                    tokio::time::sleep(pause).await;
                    table = (self.catalog.load_table(ident).await)
                        .map_err(|e| catalog_error(ident, e))?;
                }
                Err(e) => return Err(catalog_error(ident, e)),
            }
        };
        // What the expired snapshots reached and no retained one does.
        let failed = |e| catalog_error(ident, e);
        let retained: Vec<&Snapshot> = after.metadata().snapshots().map(|s| s.as_ref()).collect();
        let kept = reached(&after, &retained, true).await.map_err(failed)?;
        let gone: Vec<&Snapshot> = (before.metadata().snapshots())
            .filter(|s| after.metadata().snapshot_by_id(s.snapshot_id()).is_none())
            .map(|s| s.as_ref())
            .collect();
        let mut doomed: Vec<String> = (reached(&before, &gone, false).await.map_err(failed)?)
            .into_iter()
            .filter(|f| !kept.contains(f))
            .collect();
        // Metadata files older than the oldest the log keeps.
        let logged = after
            .metadata()
            .metadata_log()
            .iter()
            .map(|l| l.metadata_file.as_str());
        let oldest = logged
            .chain(after.metadata_location())
            .filter_map(metadata_version)
            .min();
        if let Some(oldest) = oldest {
            let folder = format!(
                "{}/metadata/",
                after.metadata().location().trim_end_matches('/')
            );
            for listed in self.list(&folder).await? {
                if metadata_version(&listed.key).is_some_and(|v| v < oldest) {
                    doomed.push(listed.uri);
                }
            }
        }
        doomed.extend(self.old_markers(&after).await?);
        doomed.sort();
        self.delete(&mut report, doomed).await;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_files_are_numbered_by_their_names() {
        assert_eq!(
            metadata_version("s3://b/t/metadata/00012-0f1e.metadata.json"),
            Some(12)
        );
        assert_eq!(metadata_version("s3://b/t/metadata/snap-1-1-x.avro"), None);
        assert_eq!(metadata_version("s3://b/t/metadata/v3.metadata.json"), None);
    }
}
