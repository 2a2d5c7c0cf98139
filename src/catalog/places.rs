//! Where a folder's Hive table reads each partition: the partition's own folder
//! (`<folder>dt=2024-05-01/`), or, once a compaction moved it, that compaction's folder inside
//! it (`<folder>dt=2024-05-01/_compacted-<run>/`); an unpartitioned table's location moves the
//! same way (`<folder>_compacted-<run>/`). The leading `_` hides a compaction's folder from
//! readers that list the partition's folder (Athena, Spark, Trino, pyarrow skip `_` and `.`
//! names), so they never meet its files beside the ones they replace.
//!
//! A write keeps putting its files in the partition's own folder; once visible, those of a
//! moved partition are copied where the table reads it (see `handler::hive`), and the
//! compaction copies in what arrived while it ran, so both orders of a write and a move end
//! with the write's rows read once.

use std::collections::HashMap;

use aws_sdk_glue::error::ProvideErrorMetadata;
use aws_sdk_glue::types::{
    PartitionInput, PartitionValueList, StorageDescriptor, Table, TableInput,
};

use super::hive::{
    COMPACTED, COMPACTION_SINCE, HiveTables, compaction_since, failed, normal, partition_values,
    update_input, within,
};
use crate::Error;
use crate::input::target::{S3Prefix, TableTarget};

/// Glue's `BatchGetPartition` takes at most this many partitions a call.
const GETS_PER_CALL: usize = 1000;

/// Attempts at moving an unpartitioned table that another writer's change made fail.
const ATTEMPTS: usize = 5;

/// A partition of a folder's table (or the unpartitioned table itself) and where it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Its folder relative to the table's (`dt=2024-05-01/`; `""` unpartitioned).
    pub path: String,
    /// Its values; `None` for an unpartitioned table.
    pub values: Option<Vec<String>>,
    /// Where the table reads it, [`normal`].
    pub location: String,
}

impl HiveTables<'_> {
    /// When `table` (over `folder`) was marked for compaction (if it was), and each of its
    /// partitions and where it is read, or the table itself when it has no partition keys;
    /// partitions read from outside `folder` are left out.
    ///
    /// # Errors
    /// `TableNotFound`; `InvalidTarget` for an Iceberg table or one over another folder;
    /// `CatalogFailed` when Glue fails.
    pub async fn places(
        &self,
        table: &TableTarget,
        folder: &S3Prefix,
    ) -> Result<(Option<u64>, Vec<Place>), Error> {
        let home = normal(&folder.to_string());
        let found = self.read(table).await?.ok_or_else(|| {
            Error::TableNotFound(format!("the Glue table {table} does not exist"))
        })?;
        let iceberg = (found.parameters())
            .and_then(|p| p.get("table_type"))
            .is_some_and(|t| t.eq_ignore_ascii_case("ICEBERG"));
        if iceberg {
            return Err(Error::InvalidTarget(format!(
                "{table} is an Iceberg table: maintain it as {{\"maintain\": {{\"table\": \"{table}\"}}}}"
            )));
        }
        let location = normal(
            found
                .storage_descriptor()
                .and_then(|d| d.location())
                .unwrap_or_default(),
        );
        if within(&location, &home).is_none() {
            return Err(Error::InvalidTarget(format!(
                "glue_table {table} is over {location}, not over the folder {folder}"
            )));
        }
        let since = compaction_since(&found);
        if found.partition_keys().is_empty() {
            let place = Place {
                path: String::new(),
                values: None,
                location,
            };
            return Ok((since, vec![place]));
        }
        let mut places = Vec::new();
        let mut pages = (self.glue.get_partitions())
            .database_name(&table.database)
            .table_name(&table.table)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed(&format!("listing {table}'s partitions"), &e))?;
            for partition in page.partitions() {
                let location = partition.storage_descriptor().and_then(|d| d.location());
                let location = normal(location.unwrap_or_default());
                let Some(rest) = location.strip_prefix(&home) else {
                    continue;
                };
                // The partition's own folder: the location without a compaction's folder.
                let path = match rest.trim_end_matches('/').rsplit_once('/') {
                    Some((path, last)) if last.starts_with(COMPACTED) => format!("{path}/"),
                    _ => rest.to_owned(),
                };
                places.push(Place {
                    path,
                    values: Some(partition.values().to_vec()),
                    location,
                });
            }
        }
        Ok((since, places))
    }

    /// Marks `table` for compaction ([`COMPACTION_SINCE`]) at `now` (Unix seconds), unless it
    /// is marked already; when it is marked from.
    ///
    /// # Errors
    /// `TableNotFound`; `CatalogFailed` when Glue fails; `CommitConflict` when other writers
    /// kept changing the table.
    pub async fn mark(&self, table: &TableTarget, now: u64) -> Result<u64, Error> {
        let mut marked = None;
        let doing = format!("marking {table} for compaction");
        self.swap_table(table, &doing, |found, descriptor| {
            marked = compaction_since(found);
            if marked.is_some() {
                return Ok(None);
            }
            let mut input = update_input(found, descriptor);
            let mut parameters = input.parameters.take().unwrap_or_default();
            parameters.insert(COMPACTION_SINCE.to_owned(), now.to_string());
            input.parameters = Some(parameters);
            Ok(Some(input))
        })
        .await?;
        Ok(marked.unwrap_or(now))
    }

    /// Reads `table` and puts what `change` makes of it (and of its storage descriptor) in
    /// its place, on the `VersionId` read, reading again while other writers change it first;
    /// `change` giving `None` leaves the table as it is. `doing` names the change in messages.
    ///
    /// # Errors
    /// `TableNotFound`; `change`'s; `CatalogFailed` when Glue fails; `CommitConflict` when
    /// other writers kept changing the table.
    async fn swap_table(
        &self,
        table: &TableTarget,
        doing: &str,
        mut change: impl FnMut(&Table, StorageDescriptor) -> Result<Option<TableInput>, Error>,
    ) -> Result<(), Error> {
        for _ in 0..ATTEMPTS {
            let found = self.read(table).await?.ok_or_else(|| {
                Error::TableNotFound(format!("the Glue table {table} does not exist"))
            })?;
            let descriptor = (found.storage_descriptor().cloned())
                .unwrap_or_else(|| StorageDescriptor::builder().build());
            let Some(input) = change(&found, descriptor)? else {
                return Ok(());
            };
            let mut update = (self.glue.update_table())
                .database_name(&table.database)
                .table_input(input);
            if let Some(version) = found.version_id() {
                update = update.version_id(version);
            }
            match update.send().await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some("ConcurrentModificationException") => continue,
                Err(e) => return Err(failed(doing, &e)),
            }
        }
        Err(Error::CommitConflict(format!(
            "table {table} kept changing under {ATTEMPTS} attempts at {doing}; nothing was changed"
        )))
    }

    /// Where `table` reads each partition of `paths` (Hive folders relative to its folder;
    /// `[""]` for an unpartitioned table), [`normal`]; a partition (or a table) Glue lacks is
    /// left out.
    ///
    /// # Errors
    /// `CatalogFailed` when Glue fails.
    pub async fn locations(
        &self,
        table: &TableTarget,
        paths: &[&str],
    ) -> Result<HashMap<String, String>, Error> {
        let mut located = HashMap::new();
        if paths == [""] {
            let found = self.read(table).await?;
            let location = found
                .as_ref()
                .and_then(|t| t.storage_descriptor()?.location());
            if let Some(location) = location {
                located.insert(String::new(), normal(location));
            }
            return Ok(located);
        }
        let by_values: HashMap<Vec<String>, &str> =
            paths.iter().map(|p| (partition_values(p), *p)).collect();
        for chunk in paths.chunks(GETS_PER_CALL) {
            let wanted = chunk
                .iter()
                .map(|p| {
                    PartitionValueList::builder()
                        .set_values(Some(partition_values(p)))
                        .build()
                        .expect("a partition has its values")
                })
                .collect();
            let out = (self.glue.batch_get_partition())
                .database_name(&table.database)
                .table_name(&table.table)
                .set_partitions_to_get(Some(wanted))
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                // No table yet: nothing of it moved.
                Err(e) if e.code() == Some("EntityNotFoundException") => return Ok(located),
                Err(e) => return Err(failed(&format!("reading {table}'s partitions"), &e)),
            };
            for partition in out.partitions() {
                let location = partition.storage_descriptor().and_then(|d| d.location());
                if let (Some(path), Some(location)) = (by_values.get(partition.values()), location)
                {
                    located.insert((*path).to_owned(), normal(location));
                }
            }
        }
        Ok(located)
    }

    /// Moves `place` to `location` in one catalog call: a reader through the table reads the
    /// files there from then on.
    ///
    /// # Errors
    /// `CommitConflict` when it is no longer where `place` says (another writer moved it);
    /// `CatalogFailed` when Glue fails.
    pub async fn relocate(
        &self,
        table: &TableTarget,
        place: &Place,
        location: &str,
    ) -> Result<(), Error> {
        let moved_meanwhile = |now: &str| {
            Error::CommitConflict(format!(
                "{table}'s partition {} moved from {} to {now} meanwhile; nothing was changed",
                place.path, place.location
            ))
        };
        let Some(values) = &place.values else {
            let doing = format!("moving {table}");
            return self
                .swap_table(table, &doing, |found, mut descriptor| {
                    let now = normal(descriptor.location().unwrap_or_default());
                    if now != place.location {
                        return Err(moved_meanwhile(&now));
                    }
                    descriptor.location = Some(location.to_owned());
                    Ok(Some(update_input(found, descriptor)))
                })
                .await;
        };
        let found = (self.glue.get_partition())
            .database_name(&table.database)
            .table_name(&table.table)
            .set_partition_values(Some(values.clone()))
            .send()
            .await
            .map_err(|e| failed(&format!("reading {table}'s partition {}", place.path), &e))?;
        let partition = found.partition.ok_or_else(|| {
            Error::CommitConflict(format!(
                "{table}'s partition {} was dropped meanwhile; nothing was changed",
                place.path
            ))
        })?;
        let mut descriptor = (partition.storage_descriptor().cloned())
            .unwrap_or_else(|| StorageDescriptor::builder().build());
        let now = normal(descriptor.location().unwrap_or_default());
        if now != place.location {
            return Err(moved_meanwhile(&now));
        }
        descriptor.location = Some(location.to_owned());
        let input = PartitionInput::builder()
            .set_values(Some(values.clone()))
            .storage_descriptor(descriptor)
            .set_parameters(partition.parameters().cloned())
            .build();
        (self.glue.update_partition())
            .database_name(&table.database)
            .table_name(&table.table)
            .set_partition_value_list(Some(values.clone()))
            .partition_input(input)
            .send()
            .await
            .map_err(|e| failed(&format!("moving {table}'s partition {}", place.path), &e))?;
        Ok(())
    }
}
