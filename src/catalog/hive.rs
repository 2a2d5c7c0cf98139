//! A target folder's Hive table in the AWS Glue Data Catalog (`glue_table`), kept as a Glue
//! crawler leaves one over Parquet files, so Athena, Spark and Trino read it as a crawled
//! table: an `EXTERNAL_TABLE` with the Parquet SerDe, the columns in the Hive types the
//! Athena DDL uses, `partition_by`'s columns as partition keys, and a partition per Hive folder
//! written, registered before the folder's objects become visible (no `MSCK REPAIR TABLE`).
//!
//! The decision (create, add columns, or refuse) is made here from the columns alone
//! ([`compare`]); the Glue calls only carry it out.

use std::collections::{HashMap, HashSet};

use arrow_schema::{Field, Schema};
use aws_sdk_glue::Client;
use aws_sdk_glue::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_glue::types::{
    Column as GlueColumn, PartitionInput, PartitionValueList, SerDeInfo, StorageDescriptor, Table,
    TableInput,
};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::input::target::{S3Prefix, TableTarget};
use crate::schema::ddl::athena_type;

/// A column as a Hive table holds it: the name in lower case, the Hive type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub hive_type: String,
}

/// What a write puts in a folder, as a Hive table sees it: the files' columns and the
/// partition folders' keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    pub columns: Vec<Column>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_keys: Vec<Column>,
}

impl Columns {
    /// # Errors
    /// `InvalidEvent` for two names that differ only in case: a Hive table holds one.
    pub fn of(files: &Schema, partitions: &[Field]) -> Result<Columns, Error> {
        let hive = |fields: Vec<&Field>| -> Vec<Column> {
            fields
                .into_iter()
                .map(|f| Column {
                    name: f.name().to_lowercase(),
                    hive_type: athena_type(f.data_type()),
                })
                .collect()
        };
        let columns = Columns {
            columns: hive(files.fields().iter().map(AsRef::as_ref).collect()),
            partition_keys: hive(partitions.iter().collect()),
        };
        let mut seen = HashSet::new();
        for column in columns.columns.iter().chain(&columns.partition_keys) {
            if !seen.insert(&column.name) {
                return Err(Error::InvalidEvent(format!(
                    "two columns are named `{}` once lower-cased, as a Glue table holds names: rename one",
                    column.name
                )));
            }
        }
        Ok(columns)
    }

    /// Adds the columns of another part of the same write (another object of a batch,
    /// another batch of a job).
    ///
    /// # Errors
    /// `TableSchemaMismatch` naming `table` for a column written as two types, or other
    /// partition keys.
    pub fn merge(&mut self, other: Columns, table: &impl std::fmt::Display) -> Result<(), Error> {
        if self.partition_keys != other.partition_keys {
            return Err(Error::TableSchemaMismatch(format!(
                "table {table}: parts of this write are partitioned by ({}) and by ({})",
                listed(&self.partition_keys),
                listed(&other.partition_keys)
            )));
        }
        for column in other.columns {
            match self.columns.iter().find(|c| c.name == column.name) {
                None => self.columns.push(column),
                Some(c) if same_type(&c.hive_type, &column.hive_type) => {}
                Some(c) => {
                    return Err(Error::TableSchemaMismatch(format!(
                        "table {table}: column `{}` is written as {} in one part of this write and as {} in another; a Hive table holds one type: declare a `schema`",
                        c.name, c.hive_type, column.hive_type
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `name type, …`, for messages.
fn listed(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.hive_type))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Hive types compare without case and blanks (`STRUCT<a: INT>` is `struct<a:int>`).
fn same_type(a: &str, b: &str) -> bool {
    let plain = |t: &str| -> String {
        t.chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect()
    };
    plain(a) == plain(b)
}

/// A table as Glue holds it, as far as a write is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub columns: Columns,
    pub location: String,
    /// `table_type=ICEBERG`: written through its metadata only.
    pub iceberg: bool,
}

/// The columns `written` adds to the existing table (empty: none).
///
/// # Errors
/// `InvalidTarget` for an Iceberg table, or a table over another folder than `location`;
/// `TableSchemaMismatch` for other partition keys, a column of another type, or a new column
/// without `evolution`.
pub fn compare(
    table: &TableTarget,
    existing: &Existing,
    written: &Columns,
    location: &S3Prefix,
    evolution: bool,
) -> Result<Vec<Column>, Error> {
    if existing.iceberg {
        return Err(Error::InvalidTarget(format!(
            "glue_table {table} is an Iceberg table: name it as a {{\"table\": \"{table}\"}} target instead; nothing was written"
        )));
    }
    // An unpartitioned table a compaction moved reads a folder inside the target's.
    let home = normal(&location.to_string());
    if within(&normal(&existing.location), &home).is_none() {
        return Err(Error::InvalidTarget(format!(
            "glue_table {table} is over {}, not over the target folder {location}: its partitions would name another folder; nothing was written",
            existing.location
        )));
    }
    let keys_match = existing.columns.partition_keys.len() == written.partition_keys.len()
        && (existing.columns.partition_keys.iter())
            .zip(&written.partition_keys)
            .all(|(a, b)| a.name == b.name && same_type(&a.hive_type, &b.hive_type));
    if !keys_match {
        return Err(Error::TableSchemaMismatch(format!(
            "table {table} is partitioned by ({}), this write by ({}); nothing was written",
            listed(&existing.columns.partition_keys),
            listed(&written.partition_keys)
        )));
    }
    let mut adds = Vec::new();
    for column in &written.columns {
        match existing
            .columns
            .columns
            .iter()
            .find(|c| c.name == column.name)
        {
            Some(c) if same_type(&c.hive_type, &column.hive_type) => {}
            Some(c) => {
                return Err(Error::TableSchemaMismatch(format!(
                    "table {table}: column `{}` is {} in the table and {} in the rows; a type is never changed: declare a `schema` with the table's type; nothing was written",
                    c.name, c.hive_type, column.hive_type
                )));
            }
            None => adds.push(column.clone()),
        }
    }
    if !adds.is_empty() && !evolution {
        return Err(Error::TableSchemaMismatch(format!(
            "table {table} lacks the column(s) {} of the rows (allow adding them with \"schema_evolution\": \"add_columns\" or SCHEMA_EVOLUTION=add_columns); nothing was written",
            listed(&adds)
        )));
    }
    Ok(adds)
}

/// The name a compaction's folder starts with.
pub const COMPACTED: &str = "_compacted-";

/// `uri` as `s3://bucket/path/`: S3A's and S3N's schemes read as S3's, one trailing slash.
pub fn normal(uri: &str) -> String {
    let uri = uri.trim_end_matches('/');
    let plain = ["s3a://", "s3n://"]
        .iter()
        .find_map(|scheme| uri.strip_prefix(scheme))
        .map_or(uri.to_owned(), |rest| format!("s3://{rest}"));
    format!("{plain}/")
}

/// Where `location` lies for a partition whose own folder is `home` (both [`normal`]):
/// `Some(None)` at home, `Some(Some("_compacted-<run>/"))` in a compaction's folder there,
/// `None` anywhere else.
pub fn within<'a>(location: &'a str, home: &str) -> Option<Option<&'a str>> {
    let rest = location.strip_prefix(home)?;
    if rest.is_empty() {
        return Some(None);
    }
    let name = rest.strip_suffix('/')?;
    (name.starts_with(COMPACTED) && !name.contains('/')).then_some(Some(rest))
}

/// A partition's values from its Hive folders (`dt=2024-01-01/region=eu%2Fwest/`), unescaped
/// as Hive's `unescapePathName` does.
pub fn partition_values(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| unescape(segment.split_once('=').map_or(segment, |(_, v)| v)))
        .collect()
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Glue's Parquet formats and SerDe, as a crawler sets them.
const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// Glue's `BatchCreatePartition` takes at most this many partitions a call.
pub const PARTITIONS_PER_CALL: usize = 100;
/// Glue's `BatchDeletePartition` takes at most this many partitions a call.
pub const DELETES_PER_CALL: usize = 25;
/// Attempts at a create or an update that another writer's change made fail.
const ATTEMPTS: usize = 5;

/// A table ready for a write's partitions: as read, created or updated.
#[derive(Debug)]
pub struct Ready {
    pub table: TableTarget,
    /// This write created it (a dry run: would create it).
    pub created: bool,
    /// Columns this write added (would add).
    pub columns_added: Vec<String>,
    /// The table's storage descriptor, each partition's template.
    descriptor: StorageDescriptor,
    /// The table is marked for compaction ([`COMPACTION_SINCE`]): a partition may have moved,
    /// so a write looks where each partition it wrote is read.
    pub watched: bool,
}

/// The Glue table parameter marking a dataset for compaction: the Unix second from which
/// writes look where each partition is read. A compaction moves partitions only once every
/// write that read the table before it has ended (the function's timeout later), so a write
/// of an unmarked table never pays for the look-up.
pub const COMPACTION_SINCE: &str = "rows_to_parquet.compaction_since";

/// When `table` was marked for compaction, if it was.
pub fn compaction_since(table: &Table) -> Option<u64> {
    let value = table.parameters()?.get(COMPACTION_SINCE)?;
    value.trim().parse().ok()
}

/// Partitions a write registered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Registered {
    pub added: usize,
    /// There already (left as they are).
    pub existing: usize,
}

/// The Glue calls of folder tables.
pub struct HiveTables<'a> {
    pub(super) glue: &'a Client,
}

impl HiveTables<'_> {
    pub fn new(glue: &Client) -> HiveTables<'_> {
        HiveTables { glue }
    }

    /// Reads `table`, and creates it, or adds the columns `written` adds, as [`compare`]
    /// decides; a dry run only reads. A create or update that another writer's change beat
    /// is decided again on what that writer left.
    ///
    /// # Errors
    /// As [`compare`]; `CatalogFailed` when Glue fails; `CommitConflict` when other writers
    /// kept changing the table.
    pub async fn prepare(
        &self,
        table: &TableTarget,
        location: &S3Prefix,
        written: &Columns,
        compressed: bool,
        evolution: bool,
        dry_run: bool,
    ) -> Result<Ready, Error> {
        for _ in 0..ATTEMPTS {
            let ready = |created, columns_added, descriptor, watched| Ready {
                table: table.clone(),
                created,
                columns_added,
                descriptor,
                watched,
            };
            let Some(found) = self.read(table).await? else {
                let input = table_input(table, location, written, compressed);
                let descriptor = input.storage_descriptor.clone().expect("built with one");
                if dry_run {
                    return Ok(ready(true, Vec::new(), descriptor, false));
                }
                let created = (self.glue.create_table())
                    .database_name(&table.database)
                    .table_input(input)
                    .send()
                    .await;
                match created {
                    Ok(_) => return Ok(ready(true, Vec::new(), descriptor, false)),
                    Err(e) if e.code() == Some("AlreadyExistsException") => continue,
                    Err(e) => return Err(failed(&format!("creating {table}"), &e)),
                }
            };
            let adds = compare(table, &existing(&found), written, location, evolution)?;
            let watched = compaction_since(&found).is_some();
            let mut descriptor = (found.storage_descriptor.clone())
                .unwrap_or_else(|| StorageDescriptor::builder().build());
            let names = adds.iter().map(|c| c.name.clone()).collect();
            if adds.is_empty() || dry_run {
                return Ok(ready(false, names, descriptor, watched));
            }
            let mut columns = descriptor.columns.take().unwrap_or_default();
            columns.extend(adds.iter().map(glue_column));
            descriptor.columns = Some(columns);
            let mut update = (self.glue.update_table())
                .database_name(&table.database)
                .table_input(update_input(&found, descriptor.clone()));
            if let Some(version) = &found.version_id {
                update = update.version_id(version);
            }
            match update.send().await {
                Ok(_) => return Ok(ready(false, names, descriptor, watched)),
                Err(e) if e.code() == Some("ConcurrentModificationException") => continue,
                Err(e) => return Err(failed(&format!("adding columns to {table}"), &e)),
            }
        }
        Err(Error::CommitConflict(format!(
            "table {table} kept changing under {ATTEMPTS} attempts to create or update it; nothing was written"
        )))
    }

    /// Registers the partitions at `paths` (Hive folders relative to `location`) that the
    /// table does not have yet; those it has are left as they are.
    ///
    /// # Errors
    /// `CatalogFailed` when Glue fails a call or a partition for another reason than its
    /// being there already.
    pub async fn register(
        &self,
        ready: &Ready,
        location: &S3Prefix,
        paths: &[&str],
    ) -> Result<Registered, Error> {
        let mut registered = Registered::default();
        let table = &ready.table;
        for chunk in paths.chunks(PARTITIONS_PER_CALL) {
            let inputs = chunk
                .iter()
                .map(|path| {
                    let mut descriptor = ready.descriptor.clone();
                    descriptor.location = Some(format!("{location}{path}"));
                    PartitionInput::builder()
                        .set_values(Some(partition_values(path)))
                        .storage_descriptor(descriptor)
                        .build()
                })
                .collect();
            let out = (self.glue.batch_create_partition())
                .database_name(&table.database)
                .table_name(&table.table)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(|e| failed(&format!("adding partitions to {table}"), &e))?;
            let mut existing = 0;
            for error in out.errors() {
                let detail = error.error_detail();
                match detail.and_then(|d| d.error_code()) {
                    Some("AlreadyExistsException") => existing += 1,
                    code => {
                        return Err(Error::CatalogFailed(format!(
                            "adding the partition ({}) to {table} in Glue failed: {} {}",
                            error.partition_values().join(", "),
                            code.unwrap_or("an error"),
                            detail.and_then(|d| d.error_message()).unwrap_or_default()
                        )));
                    }
                }
            }
            registered.existing += existing;
            registered.added += chunk.len() - existing;
        }
        Ok(registered)
    }

    /// Drops `table`'s partitions other than those at `paths` (Hive folders relative to its
    /// folder), [`DELETES_PER_CALL`] a call; a dry run only counts them. How many.
    ///
    /// # Errors
    /// `CatalogFailed` when Glue fails a read or a partition's removal.
    pub async fn drop_others(
        &self,
        table: &TableTarget,
        paths: &[&str],
        dry_run: bool,
    ) -> Result<usize, Error> {
        let keep: HashSet<Vec<String>> = paths.iter().map(|p| partition_values(p)).collect();
        let mut others = Vec::new();
        let mut pages = (self.glue.get_partitions())
            .database_name(&table.database)
            .table_name(&table.table)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                // A dry run's table that does not exist yet has none.
                Err(e) if e.code() == Some("EntityNotFoundException") => return Ok(0),
                Err(e) => return Err(failed(&format!("listing {table}'s partitions"), &e)),
            };
            let values = page.partitions().iter().map(|p| p.values().to_vec());
            others.extend(values.filter(|v| !keep.contains(v)));
        }
        if dry_run {
            return Ok(others.len());
        }
        for chunk in others.chunks(DELETES_PER_CALL) {
            let values = chunk
                .iter()
                .map(|v| {
                    PartitionValueList::builder()
                        .set_values(Some(v.clone()))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .expect("a partition has its values");
            let out = (self.glue.batch_delete_partition())
                .database_name(&table.database)
                .table_name(&table.table)
                .set_partitions_to_delete(Some(values))
                .send()
                .await
                .map_err(|e| failed(&format!("dropping {table}'s replaced partitions"), &e))?;
            let gone = |e: &&aws_sdk_glue::types::PartitionError| {
                e.error_detail().and_then(|d| d.error_code()) == Some("EntityNotFoundException")
            };
            if let Some(error) = out.errors().iter().find(|e| !gone(e)) {
                return Err(Error::CatalogFailed(format!(
                    "dropping the partition ({}) of {table} in Glue failed: {}",
                    error.partition_values().join(", "),
                    error
                        .error_detail()
                        .and_then(|d| d.error_message())
                        .unwrap_or("an error")
                )));
            }
        }
        Ok(others.len())
    }

    /// The table, or `None` when Glue has none of that name.
    pub(super) async fn read(&self, table: &TableTarget) -> Result<Option<Table>, Error> {
        let read = (self.glue.get_table())
            .database_name(&table.database)
            .name(&table.table)
            .send()
            .await;
        match read {
            Ok(out) => Ok(out.table),
            Err(e) if e.code() == Some("EntityNotFoundException") => Ok(None),
            Err(e) => Err(failed(&format!("reading {table}"), &e)),
        }
    }
}

pub(super) fn failed<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    doing: &str,
    e: &E,
) -> Error {
    Error::CatalogFailed(format!(
        "{doing} in Glue failed: {}; nothing was written",
        DisplayErrorContext(e)
    ))
}

fn glue_column(column: &Column) -> GlueColumn {
    GlueColumn::builder()
        .name(&column.name)
        .r#type(&column.hive_type)
        .build()
        .expect("a column has its name")
}

fn existing(table: &Table) -> Existing {
    let hive = |columns: &[GlueColumn]| -> Vec<Column> {
        columns
            .iter()
            .map(|c| Column {
                name: c.name().to_lowercase(),
                hive_type: c.r#type().unwrap_or_default().to_owned(),
            })
            .collect()
    };
    let descriptor = table.storage_descriptor();
    let parameters = table.parameters();
    let iceberg = parameters
        .and_then(|p| p.get("table_type"))
        .is_some_and(|t| t.eq_ignore_ascii_case("ICEBERG"));
    Existing {
        columns: Columns {
            columns: hive(descriptor.map(|d| d.columns()).unwrap_or_default()),
            partition_keys: hive(table.partition_keys()),
        },
        location: descriptor
            .and_then(|d| d.location())
            .unwrap_or_default()
            .to_owned(),
        iceberg,
    }
}

/// A new table over `location`, as a crawler makes one for Parquet files.
fn table_input(
    table: &TableTarget,
    location: &S3Prefix,
    written: &Columns,
    compressed: bool,
) -> TableInput {
    let serde = SerDeInfo::builder()
        .serialization_library(SERDE)
        .parameters("serialization.format", "1")
        .build();
    let descriptor = StorageDescriptor::builder()
        .set_columns(Some(written.columns.iter().map(glue_column).collect()))
        .location(location.to_string())
        .input_format(INPUT_FORMAT)
        .output_format(OUTPUT_FORMAT)
        .compressed(compressed)
        .number_of_buckets(-1)
        .serde_info(serde)
        .stored_as_sub_directories(false)
        .build();
    let parameters = HashMap::from([
        ("classification".to_owned(), "parquet".to_owned()),
        ("typeOfData".to_owned(), "file".to_owned()),
        ("EXTERNAL".to_owned(), "TRUE".to_owned()),
    ]);
    TableInput::builder()
        .name(&table.table)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(parameters))
        .set_partition_keys(Some(
            written.partition_keys.iter().map(glue_column).collect(),
        ))
        .storage_descriptor(descriptor)
        .build()
        .expect("a table input has its name")
}

/// The table as it is, with `descriptor` (its columns added to).
pub(super) fn update_input(table: &Table, descriptor: StorageDescriptor) -> TableInput {
    TableInput::builder()
        .name(table.name())
        .set_description(table.description().map(str::to_owned))
        .set_owner(table.owner().map(str::to_owned))
        .retention(table.retention())
        .storage_descriptor(descriptor)
        .set_partition_keys(Some(table.partition_keys().to_vec()))
        .set_table_type(table.table_type().map(str::to_owned))
        .set_parameters(table.parameters().cloned())
        .set_view_original_text(table.view_original_text().map(str::to_owned))
        .set_view_expanded_text(table.view_expanded_text().map(str::to_owned))
        .build()
        .expect("a table input has its name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ddl;

    fn table() -> TableTarget {
        TableTarget::parse("analytics.clicks", "t").unwrap()
    }

    fn folder() -> S3Prefix {
        S3Prefix::parse("s3://out/clicks/", "t").unwrap()
    }

    fn written(ddl_text: &str, partitions: &str) -> Columns {
        let files = ddl::parse(ddl_text).unwrap();
        let fields: Vec<Field> = match partitions {
            "" => Vec::new(),
            text => (ddl::parse(text).unwrap().fields().iter())
                .map(|f| (**f).clone())
                .collect(),
        };
        Columns::of(&files, &fields).unwrap()
    }

    fn existing_of(columns: Columns) -> Existing {
        Existing {
            columns,
            location: "s3://out/clicks".into(),
            iceberg: false,
        }
    }

    #[test]
    fn columns_are_hive_types_in_lower_case() {
        let c = written("Name STRING, n BIGINT, s STRUCT<A: INT>", "dt DATE");
        let pairs: Vec<(&str, &str)> = (c.columns.iter())
            .map(|c| (c.name.as_str(), c.hive_type.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("name", "string"), ("n", "bigint"), ("s", "struct<a:int>")]
        );
        assert_eq!(c.partition_keys[0].hive_type, "date");
        let int = |name| Field::new(name, arrow_schema::DataType::Int32, true);
        let files = Schema::new(vec![int("a")]);
        let e = Columns::of(&files, &[int("A")]).unwrap_err();
        assert_eq!(e.error_type(), "InvalidEvent");
    }

    #[test]
    fn new_columns_need_evolution_and_types_never_change() {
        let table_columns = written("name STRING, n BIGINT", "dt STRING");
        let existing = existing_of(table_columns);
        let same = written("n BIGINT", "dt STRING");
        assert!(
            compare(&table(), &existing, &same, &folder(), false)
                .unwrap()
                .is_empty()
        );
        let more = written("name STRING, city STRING", "dt STRING");
        let e = compare(&table(), &existing, &more, &folder(), false).unwrap_err();
        assert_eq!(e.error_type(), "TableSchemaMismatch");
        assert!(e.to_string().contains("city string"), "{e}");
        let adds = compare(&table(), &existing, &more, &folder(), true).unwrap();
        assert_eq!(adds[0].name, "city");
        let other_type = written("n INT", "dt STRING");
        let e = compare(&table(), &existing, &other_type, &folder(), true).unwrap_err();
        assert!(
            e.to_string().contains("`n` is bigint in the table and int"),
            "{e}"
        );
        let other_keys = written("n BIGINT", "dt DATE");
        let e = compare(&table(), &existing, &other_keys, &folder(), true).unwrap_err();
        assert!(e.to_string().contains("partitioned by (dt string)"), "{e}");
    }

    #[test]
    fn a_table_elsewhere_or_of_iceberg_is_refused() {
        let c = written("n BIGINT", "");
        let mut existing = existing_of(c.clone());
        existing.location = "s3a://out/clicks/".into();
        assert!(compare(&table(), &existing, &c, &folder(), false).is_ok());
        existing.location = "s3://out/clicks/_compacted-0193/".into();
        assert!(compare(&table(), &existing, &c, &folder(), false).is_ok());
        existing.location = "s3://out/other/".into();
        let e = compare(&table(), &existing, &c, &folder(), false).unwrap_err();
        assert_eq!(e.error_type(), "InvalidTarget");
        existing.location = "s3://out/clicks/".into();
        existing.iceberg = true;
        let e = compare(&table(), &existing, &c, &folder(), false).unwrap_err();
        assert!(e.to_string().contains("Iceberg"), "{e}");
    }

    #[test]
    fn parts_of_one_write_merge_unless_they_disagree() {
        let mut all = written("a BIGINT", "dt STRING");
        all.merge(written("b STRING, a BIGINT", "dt STRING"), &table())
            .unwrap();
        let names: Vec<&str> = all.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let e = all
            .merge(written("a DOUBLE", "dt STRING"), &table())
            .unwrap_err();
        assert!(e.to_string().contains("bigint in one part"), "{e}");
        let e = all.merge(written("a BIGINT", ""), &table()).unwrap_err();
        assert_eq!(e.error_type(), "TableSchemaMismatch");
    }

    #[test]
    fn partition_values_are_the_folders_unescaped() {
        assert_eq!(
            partition_values("dt=2024-01-01/region=eu%2Fwest%3A1/"),
            ["2024-01-01", "eu/west:1"]
        );
        assert_eq!(
            partition_values("k=__HIVE_DEFAULT_PARTITION__/"),
            ["__HIVE_DEFAULT_PARTITION__"]
        );
        assert_eq!(partition_values("k=50%/"), ["50%"]);
    }

    #[test]
    fn a_location_is_home_or_a_compaction_folder_inside_it() {
        let home = normal("s3a://out/clicks/dt=1");
        assert_eq!(home, "s3://out/clicks/dt=1/");
        assert_eq!(within("s3://out/clicks/dt=1/", &home), Some(None));
        assert_eq!(
            within("s3://out/clicks/dt=1/_compacted-7/", &home),
            Some(Some("_compacted-7/"))
        );
        assert_eq!(within("s3://out/clicks/dt=1/h=2/", &home), None);
        assert_eq!(within("s3://out/clicks/dt=1/_compacted-7/x/", &home), None);
        assert_eq!(within("s3://out/clicks/dt=10/", &home), None);
        assert_eq!(within("s3://elsewhere/dt=1/", &home), None);
    }
}
