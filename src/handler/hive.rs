//! The folders' Glue tables (`glue_table`, see [`crate::catalog::hive`]): once a conversion's
//! objects are uploaded and before they become visible, each table is created or given the
//! new columns, and the partitions written are registered. A map batch leaves this to the
//! job's finish step, once for the whole job. Once visible, what a write put in a partition
//! that a compaction moved is copied where the table now reads it ([`Function::follow`]).

use arrow_schema::{Field, Schema};

use super::Function;
use super::replace::Wrote;
use super::reply::GlueTableKept;
use crate::Error;
use crate::catalog::hive::{Columns, HiveTables, normal, within};
use crate::encode::codec::Codec;
use crate::encode::partition::Layout;
use crate::input::event::Evolution;
use crate::input::target::Target;

/// The columns of each part of a write (an object of a batch, or the rows), and all of them
/// merged; `None` when no folder has a Glue table.
///
/// # Errors
/// As [`Columns::of`] and [`Columns::merge`].
pub(super) fn columns_of<'a>(
    targets: &[Target],
    parts: impl Iterator<Item = (&'a Schema, Option<&'a Layout>)>,
) -> Result<Option<(Vec<Columns>, Columns)>, Error> {
    let Some(table) = targets.iter().find_map(|t| t.glue_table.as_ref()) else {
        return Ok(None);
    };
    let each = parts
        .map(|(schema, layout)| {
            let (files, partitions) = files_and_partitions(schema, layout);
            Columns::of(files, partitions)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut all: Option<Columns> = None;
    for columns in &each {
        match &mut all {
            None => all = Some(columns.clone()),
            Some(all) => all.merge(columns.clone(), table)?,
        }
    }
    Ok(all.map(|all| (each, all)))
}

/// The schema the files hold, and the partition columns their folders hold.
pub(super) fn files_and_partitions<'a>(
    schema: &'a Schema,
    layout: Option<&'a Layout>,
) -> (&'a Schema, &'a [Field]) {
    match layout {
        Some(layout) => (layout.files.as_ref(), layout.partition_fields.as_slice()),
        None => (schema, &[]),
    }
}

/// The distinct partition folders among `paths`, in order.
pub(super) fn distinct<'a>(paths: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    paths.filter(|p| seen.insert(*p)).collect()
}

impl Function {
    /// Each folder's Glue table made ready for `columns` (created, or given the new ones) and
    /// given the partitions at `paths` (Hive folders relative to each target, the same in
    /// every folder); a dry run only reads the tables.
    ///
    /// # Errors
    /// As [`HiveTables::prepare`] and [`HiveTables::register`].
    pub(super) async fn keep_glue_tables(
        &self,
        targets: &[Target],
        columns: &Columns,
        paths: &[&str],
        evolution: Evolution,
        dry_run: bool,
    ) -> Result<Vec<GlueTableKept>, Error> {
        let glued: Vec<_> = targets
            .iter()
            .filter_map(|t| Some((t, t.glue_table.as_ref()?)))
            .collect();
        if glued.is_empty() {
            return Ok(Vec::new());
        }
        let paths = match columns.partition_keys.is_empty() {
            true => &[][..],
            false => paths,
        };
        let hive = HiveTables::new(self.glue.client().await);
        let mut kept = Vec::with_capacity(glued.len());
        for (target, table) in glued {
            let compressed = target.codec != Codec::Uncompressed;
            let add_columns = evolution == Evolution::AddColumns;
            let ready = hive
                .prepare(
                    table,
                    &target.prefix,
                    columns,
                    compressed,
                    add_columns,
                    dry_run,
                )
                .await?;
            let added = match dry_run {
                true => None,
                false => Some(hive.register(&ready, &target.prefix, paths).await?.added),
            };
            tracing::info!(
                table = %table,
                created = ready.created,
                columns_added = ready.columns_added.len(),
                partitions = paths.len(),
                partitions_added = added,
                dry_run,
                "glue table kept"
            );
            kept.push(GlueTableKept {
                table: table.to_string(),
                created: ready.created,
                columns_added: ready.columns_added,
                partitions: paths.len(),
                partitions_added: added,
                watched: ready.watched,
            });
        }
        Ok(kept)
    }
}

/// Rounds of [`Function::follow`] before it gives up on a partition that keeps moving.
const FOLLOW_ROUNDS: usize = 4;

impl Function {
    /// Copies the files a write made visible in a partition folder (`wrote`, one per target)
    /// into the compaction folder its Glue table reads that partition from, if a compaction
    /// moved it (see [`crate::catalog::places`]), until the table reads each from where a
    /// copy is; the copies' keys join `wrote` (a mode's removals leave them). Only tables
    /// marked for compaction (`kept`, as the write found them) are looked at. The files in the
    /// partition's own folder stay, for readers of the folder, until a later
    /// `remove_orphan_files` of the folder. How many copies.
    ///
    /// # Errors
    /// `CatalogFailed` when Glue fails; `S3WriteFailed` when a copy fails or a partition kept
    /// moving.
    pub(super) async fn follow(
        &self,
        targets: &[Target],
        wrote: &mut [Wrote],
        kept: &[GlueTableKept],
    ) -> Result<usize, Error> {
        let mut copies = 0;
        for (target, wrote) in targets.iter().zip(wrote.iter_mut()) {
            let Some(table) = &target.glue_table else {
                continue;
            };
            let name = table.to_string();
            let watched = kept.iter().any(|k| k.table == name && k.watched);
            if !watched || wrote.partitions.is_empty() {
                continue;
            }
            let hive = HiveTables::new(self.glue.client().await);
            let prefix = &target.prefix;
            // Where each partition's files are known to be read from: first their own folder.
            let mut placed: Vec<String> = (wrote.partitions.iter())
                .map(|path| normal(&format!("{prefix}{path}")))
                .collect();
            for round in 0.. {
                let paths: Vec<&str> = wrote.partitions.iter().map(String::as_str).collect();
                let located = hive.locations(table, &paths).await?;
                let mut moved = false;
                for (path, at) in wrote.partitions.iter().zip(&mut placed) {
                    let home = normal(&format!("{prefix}{path}"));
                    let Some(location) = located.get(path) else {
                        continue;
                    };
                    if location == at || within(location, &home).is_none() {
                        continue;
                    }
                    if round == FOLLOW_ROUNDS {
                        return Err(Error::S3WriteFailed(format!(
                            "the write's objects are in place, but {table}'s partition {path} kept moving while they were copied where the table reads it (a retry copies them)"
                        )));
                    }
                    let own = format!("{}{path}", prefix.key_prefix);
                    let into = &location[format!("s3://{}/", prefix.bucket).len()..];
                    let names: Vec<String> = (wrote.keys.iter())
                        .filter_map(|key| key.strip_prefix(&own))
                        .filter(|name| !name.contains('/') && !name.starts_with(['_', '.']))
                        .map(str::to_owned)
                        .collect();
                    for name in names {
                        let copy = format!("{into}{name}");
                        self.store
                            .copy(&prefix.bucket, &format!("{own}{name}"), &copy)
                            .await?;
                        wrote.keys.insert(copy);
                        copies += 1;
                    }
                    location.clone_into(at);
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
            if copies > 0 {
                tracing::info!(table = %table, copies, "files copied into compacted partitions");
            }
        }
        Ok(copies)
    }
}
