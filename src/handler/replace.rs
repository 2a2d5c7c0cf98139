//! The write modes (`mode`). Once a write's objects are visible, what its folders held before
//! and the write replaces is removed: everything else in the folder (`overwrite`), or in the
//! partition folders it wrote in (`overwrite_partitions`). So a folder is never empty or
//! missing in between; a listing made meanwhile sees old and new together. With `overwrite`, a
//! folder's Glue table first drops the partitions the write did not write. Removals never
//! reach above a target folder, nor into its leases. A dry run lists what would go and
//! removes nothing.
//!
//! What goes is what the folders held when the write's turn began ([`Function::before`]):
//! concurrent replacing writes take turns ([`super::turn`]), so each removes its predecessor's
//! objects whole and never its successor's.

use std::collections::HashSet;

use super::Function;
use super::reply::Removed;
use crate::Error;
use crate::catalog::hive::HiveTables;
use crate::input::event::WriteMode;
use crate::input::target::Target;
use crate::store::lease::LEASES;
use crate::store::s3::Output;

/// What a write left in one target folder: the keys, and the partition folders written in
/// (relative to the folder, `dt=2024-01-01/`; `""` without partitions).
#[derive(Debug, Default)]
pub(super) struct Wrote {
    pub keys: HashSet<String>,
    pub partitions: Vec<String>,
}

impl Wrote {
    /// Each of `targets` targets' part of `outputs`.
    pub(super) fn of(targets: usize, outputs: &[&Output]) -> Vec<Wrote> {
        let mut wrote: Vec<Wrote> = (0..targets).map(|_| Wrote::default()).collect();
        for output in outputs {
            let entry = &mut wrote[output.target];
            if !entry.partitions.contains(&output.partition) {
                entry.partitions.push(output.partition.clone());
            }
            entry.keys.insert(output.key.clone());
        }
        wrote
    }
}

/// Every key of `before` (each target's, as [`Function::before`] listed them) with its bucket.
pub(super) fn listed_keys(targets: &[Target], before: &[Vec<String>]) -> HashSet<(String, String)> {
    let keys = targets.iter().zip(before).flat_map(|(target, keys)| {
        keys.iter()
            .map(|key| (target.prefix.bucket.clone(), key.clone()))
    });
    keys.collect()
}

/// The keys among `listed` (the folder `key_prefix`'s) that `mode` removes after `wrote`.
fn doomed(mode: WriteMode, key_prefix: &str, listed: &[String], wrote: &Wrote) -> Vec<String> {
    listed
        .iter()
        .filter(|key| {
            let Some(relative) = key.strip_prefix(key_prefix) else {
                return false;
            };
            !wrote.keys.contains(*key)
                && !relative.starts_with(LEASES)
                && match mode {
                    WriteMode::Append => false,
                    WriteMode::Overwrite => true,
                    WriteMode::OverwritePartitions => {
                        wrote.partitions.iter().any(|p| relative.starts_with(p))
                    }
                }
        })
        .cloned()
        .collect()
}

impl Function {
    /// Each target folder's keys before a write that `mode` makes replace (`None` for
    /// `append`), listed once the write holds its turn.
    ///
    /// # Errors
    /// `S3WriteFailed` when a listing fails.
    pub(super) async fn before(
        &self,
        targets: &[Target],
        mode: WriteMode,
    ) -> Result<Option<Vec<Vec<String>>>, Error> {
        if mode == WriteMode::Append {
            return Ok(None);
        }
        let mut listed = Vec::with_capacity(targets.len());
        for target in targets {
            let prefix = &target.prefix;
            listed.push(
                self.store
                    .list_keys(&prefix.bucket, &prefix.key_prefix)
                    .await?,
            );
        }
        Ok(Some(listed))
    }

    /// Removes what `mode` replaces in each target folder (`wrote`, one per target) of what
    /// it held before (`before`, as [`Function::before`] listed it), after the write's
    /// objects became visible; `None` for `append`.
    ///
    /// # Errors
    /// `S3WriteFailed` when objects could not be removed (the write's own objects stay: a
    /// retry writes the same keys and removes the rest); `CatalogFailed` when a Glue table's
    /// partitions could not be dropped.
    pub(super) async fn replace(
        &self,
        targets: &[Target],
        wrote: &[Wrote],
        mode: WriteMode,
        before: Option<Vec<Vec<String>>>,
        dry_run: bool,
    ) -> Result<Option<Removed>, Error> {
        let Some(before) = before else {
            return Ok(None);
        };
        let mut removed = Removed::default();
        for ((target, wrote), listed) in targets.iter().zip(wrote).zip(before) {
            let prefix = &target.prefix;
            if let (WriteMode::Overwrite, Some(table)) = (mode, &target.glue_table) {
                // The catalog first: a reader through it never meets a partition whose
                // objects are going.
                let hive = HiveTables::new(self.glue.client().await);
                let paths: Vec<&str> = wrote.partitions.iter().map(String::as_str).collect();
                removed.glue_partitions += hive.drop_others(table, &paths, dry_run).await?;
            }
            let doomed = doomed(mode, &prefix.key_prefix, &listed, wrote);
            removed.objects += doomed.len();
            let room = Removed::LISTED - removed.uris.len();
            let uris = doomed.iter().take(room);
            (removed.uris).extend(uris.map(|key| format!("s3://{}/{key}", prefix.bucket)));
            if dry_run || doomed.is_empty() {
                continue;
            }
            let left = self.store.delete_keys(&prefix.bucket, &doomed).await;
            if !left.is_empty() {
                return Err(Error::S3WriteFailed(format!(
                    "the write's objects are in place, but {} of the {} objects it replaces in {prefix} could not be removed (a retry removes them): {}",
                    left.len(),
                    doomed.len(),
                    left.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            tracing::info!(folder = %prefix, removed = doomed.len(), "replaced objects removed");
        }
        Ok(Some(removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Vec<String> {
        [
            "out/x/_SUCCESS",
            "out/x/_leases/_lease",
            "out/x/_leases/dt=1/_lease",
            "out/x/dt=1/old.parquet",
            "out/x/dt=1/new.parquet",
            "out/x/dt=10/old.parquet",
            "out/x/dt=2/old.parquet",
            "out/xy/dt=1/other.parquet",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn wrote(partitions: &[&str]) -> Wrote {
        Wrote {
            keys: HashSet::from(["out/x/dt=1/new.parquet".to_owned()]),
            partitions: partitions.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn each_mode_removes_only_inside_the_folder_and_never_what_was_written_nor_a_lease() {
        let w = wrote(&["dt=1/"]);
        assert!(doomed(WriteMode::Append, "out/x/", &listed(), &w).is_empty());
        assert_eq!(
            doomed(WriteMode::Overwrite, "out/x/", &listed(), &w),
            [
                "out/x/_SUCCESS",
                "out/x/dt=1/old.parquet",
                "out/x/dt=10/old.parquet",
                "out/x/dt=2/old.parquet"
            ]
        );
        assert_eq!(
            doomed(WriteMode::OverwritePartitions, "out/x/", &listed(), &w),
            ["out/x/dt=1/old.parquet"]
        );
        // Unpartitioned, a partition overwrite is the whole folder's.
        let whole = doomed(
            WriteMode::OverwritePartitions,
            "out/x/",
            &listed(),
            &wrote(&[""]),
        );
        assert_eq!(whole.len(), 4);
        assert!(whole.iter().all(|k| k.starts_with("out/x/")));
    }
}
