//! Iceberg's catalog in the AWS Glue Data Catalog, kept as Iceberg's own Glue catalog keeps
//! it (so Athena, Spark, Trino and pyiceberg read the tables as they are): a Glue table of
//! `table_type=ICEBERG` whose `metadata_location` names the current metadata file. A commit
//! writes the next metadata file, then swaps the location with `UpdateTable` on the
//! `VersionId` it read: of two concurrent commits, Glue refuses the second.
//!
//! Round trips are kept few: a metadata file (immutable) is read once per invocation, and a
//! commit swaps from the version the transaction's own refresh just read rather than asking
//! Glue again; a table that moved in between makes Glue refuse the version, and the caller
//! retries from a fresh read.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_glue::Client;
use aws_sdk_glue::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_glue::types::{Column, StorageDescriptor, TableInput};
use iceberg::io::{FileIO, FileIOBuilder};
use iceberg::spec::{
    PrimitiveType, Schema, TableMetadata, TableMetadataBuilder, TableMetadataRef, Type,
};
use iceberg::table::Table;
use iceberg::{
    Catalog, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, Runtime, TableCommit,
    TableCreation, TableIdent, TableUpdate,
};

use super::identity::{DEFAULT_HORIZON, IDENTITY, Marked, committed, covered, marker};
use super::marks::{Marks, ShardMarker, marker_identity};
use crate::input::target::TableTarget;
use crate::store::s3::{Object, split_uri};
use crate::store::table_files::{TableFiles, TableFilesFactory};
use crate::store::transaction::Transaction;

/// Glue's table parameters that make a table an Iceberg table.
const TABLE_TYPE: &str = "table_type";
const ICEBERG: &str = "ICEBERG";
const METADATA_LOCATION: &str = "metadata_location";
const PREVIOUS_METADATA_LOCATION: &str = "previous_metadata_location";

/// The identifier the catalog knows `target` by.
pub fn table_ident(target: &TableTarget) -> TableIdent {
    TableIdent::new(
        NamespaceIdent::new(target.database.clone()),
        target.table.clone(),
    )
}

/// The catalog of one invocation: its file IO logs what the invocation writes.
#[derive(Debug)]
pub struct GlueCatalog {
    glue: Client,
    io: FileIO,
    files: TableFiles,
    /// Metadata files read, by location: they never change, so each is read once.
    metadata: Mutex<HashMap<String, TableMetadataRef>>,
    /// Each table's last read: its metadata location and Glue `VersionId`. A commit swaps
    /// from what was last read; if the table moved since, Glue refuses the stale version and
    /// the caller reads again.
    last_read: Mutex<HashMap<TableIdent, (String, Option<String>)>>,
    /// How long committed work stays recognised (`EXACTLY_ONCE_DAYS`).
    horizon: Duration,
}

impl GlueCatalog {
    pub fn new(glue: Client, files: TableFiles) -> GlueCatalog {
        let io = FileIOBuilder::new(Arc::new(TableFilesFactory(files.clone()))).build();
        GlueCatalog {
            glue,
            io,
            files,
            metadata: Mutex::default(),
            last_read: Mutex::default(),
            horizon: DEFAULT_HORIZON,
        }
    }

    /// With `horizon` as the exactly-once horizon instead of the default 14 days.
    pub fn with_horizon(mut self, horizon: Duration) -> GlueCatalog {
        self.horizon = horizon;
        self
    }

    /// The snapshot that committed the work `identity` to `table`: its snapshots' summaries
    /// say; where expired snapshots leave them short of the exactly-once horizon, so does the
    /// work's marker.
    ///
    /// # Errors
    /// `CatalogFailed` when a marker cannot be read.
    pub async fn committed(
        &self,
        table: &Table,
        identity: &str,
    ) -> std::result::Result<Option<i64>, crate::Error> {
        if let Some(snapshot_id) = committed(table, identity) {
            return Ok(Some(snapshot_id));
        }
        let body = self.read_marker(table, identity).await?;
        Ok(body.and_then(|b| {
            serde_json::from_slice::<Marked>(&b)
                .ok()
                .map(|m| m.snapshot_id)
        }))
    }

    /// The marks of a stream batch's shards (`(stream, shard)`) in `table`: its snapshots'
    /// (see [`Marks::carried`]), and for a shard they lack, its marker where expired snapshots
    /// leave the history short of the exactly-once horizon.
    ///
    /// # Errors
    /// `CatalogFailed` when a marker cannot be read.
    pub async fn marks(
        &self,
        table: &Table,
        shards: &[(&str, &str)],
    ) -> std::result::Result<Marks, crate::Error> {
        let mut marks = Marks::carried(table).unwrap_or_default();
        for (stream, shard) in shards {
            if marks.get(stream, shard).is_some() {
                continue;
            }
            let identity = marker_identity(stream, shard);
            let Some(body) = self.read_marker(table, &identity).await? else {
                continue;
            };
            if let Ok(m) = serde_json::from_slice::<ShardMarker>(&body) {
                marks.raise(stream, shard, &m.position, m.committed_ms);
            }
        }
        Ok(marks)
    }

    /// The marker of `identity`, read only when expiry cut `table`'s history short of the
    /// horizon (its snapshots tell otherwise).
    async fn read_marker(
        &self,
        table: &Table,
        identity: &str,
    ) -> std::result::Result<Option<Vec<u8>>, crate::Error> {
        let store = match self.files.s3() {
            Some(store) if !covered(table, self.horizon, SystemTime::now()) => store,
            _ => return Ok(None),
        };
        let uri = marker(table.metadata().location(), identity);
        let Some((bucket, key)) = split_uri(&uri) else {
            return Ok(None);
        };
        match store.read_all(bucket, key, 4096).await {
            Ok(body) => Ok(Some(body.to_vec())),
            Err(crate::Error::SourceNotFound(_)) => Ok(None),
            Err(e) => Err(crate::Error::CatalogFailed(format!(
                "table {}: reading the marker of committed work {uri} failed: {e}",
                table.identifier()
            ))),
        }
    }

    /// The exactly-once horizon.
    pub fn horizon(&self) -> Duration {
        self.horizon
    }

    /// Leaves a marker of each of `identities` (committed to `table` by `marked`), so the work
    /// stays recognised after its snapshot expires.
    ///
    /// # Errors
    /// `S3WriteFailed` when a marker could not be written.
    pub async fn mark(
        &self,
        table: &Table,
        marked: Marked,
        identities: &[&str],
    ) -> std::result::Result<(), crate::Error> {
        let body = serde_json::to_vec(&marked).expect("a marker serializes");
        let markers = identities.iter().map(|i| (i.to_string(), body.clone()));
        self.put_markers(table, markers.collect()).await
    }

    /// Leaves a marker of each shard's new mark (`(stream, shard, position)`, committed to
    /// `table` by `marked`), read once expiry removed every snapshot that carries it.
    ///
    /// # Errors
    /// `S3WriteFailed` when a marker could not be written.
    pub async fn mark_shards(
        &self,
        table: &Table,
        marked: Marked,
        shards: &[(&str, &str, &str)],
    ) -> std::result::Result<(), crate::Error> {
        let markers = shards.iter().map(|(stream, shard, position)| {
            let body = ShardMarker {
                position: (*position).to_owned(),
                snapshot_id: marked.snapshot_id,
                committed_ms: marked.committed_ms,
            };
            let body = serde_json::to_vec(&body).expect("a marker serializes");
            (marker_identity(stream, shard), body)
        });
        self.put_markers(table, markers.collect()).await
    }

    async fn put_markers(
        &self,
        table: &Table,
        markers: Vec<(String, Vec<u8>)>,
    ) -> std::result::Result<(), crate::Error> {
        let Some(store) = self.files.s3().filter(|_| !markers.is_empty()) else {
            return Ok(());
        };
        let location = table.metadata().location();
        let objects = markers.into_iter().filter_map(|(identity, body)| {
            let uri = marker(location, &identity);
            let (bucket, key) = split_uri(&uri)?;
            Some(Object {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                body: body.into(),
            })
        });
        let mut transaction = Transaction::of_whole(store, objects.collect());
        transaction.commit(None).await.map(|_| ())
    }

    /// The files written through this catalog's tables.
    pub fn files(&self) -> &TableFiles {
        &self.files
    }

    fn table(
        &self,
        ident: TableIdent,
        location: String,
        metadata: impl Into<TableMetadataRef>,
    ) -> Result<Table> {
        Table::builder()
            .file_io(self.io.clone())
            .metadata_location(location)
            .metadata(metadata)
            .identifier(ident)
            .runtime(Runtime::current())
            .build()
    }

    /// The table and the Glue `VersionId` it was read at.
    async fn read(&self, ident: &TableIdent) -> Result<(Table, Option<String>)> {
        let database = database(ident)?;
        let out = self
            .glue
            .get_table()
            .database_name(database)
            .name(ident.name())
            .send()
            .await
            .map_err(|e| glue_error(&format!("reading {ident}"), &e))?;
        let glue_table = out.table.ok_or_else(|| {
            iceberg::Error::new(ErrorKind::TableNotFound, format!("{ident} does not exist"))
        })?;
        let parameters = glue_table.parameters.unwrap_or_default();
        let is_iceberg = parameters
            .get(TABLE_TYPE)
            .is_some_and(|t| t.eq_ignore_ascii_case(ICEBERG));
        let location = parameters
            .get(METADATA_LOCATION)
            .filter(|_| is_iceberg)
            .ok_or_else(|| {
                iceberg::Error::new(
                    ErrorKind::DataInvalid,
                    format!("{ident} is a Glue table but not an Iceberg table (no table_type=ICEBERG and metadata_location)"),
                )
            })?
            .clone();
        let known = self
            .metadata
            .lock()
            .expect("not poisoned")
            .get(&location)
            .cloned();
        let metadata = match known {
            Some(metadata) => metadata,
            None => {
                let metadata = Arc::new(TableMetadata::read_from(&self.io, &location).await?);
                let mut cache = self.metadata.lock().expect("not poisoned");
                cache.insert(location.clone(), metadata.clone());
                metadata
            }
        };
        self.last_read.lock().expect("not poisoned").insert(
            ident.clone(),
            (location.clone(), glue_table.version_id.clone()),
        );
        let table = self.table(ident.clone(), location, metadata)?;
        Ok((table, glue_table.version_id))
    }

    /// The table as last read (by `load_table`, as iceberg's transaction does before each
    /// commit), without asking Glue again.
    async fn last_read(&self, ident: &TableIdent) -> Result<(Table, Option<String>)> {
        let last = self
            .last_read
            .lock()
            .expect("not poisoned")
            .get(ident)
            .cloned();
        let Some((location, version)) = last else {
            return self.read(ident).await;
        };
        let metadata = self
            .metadata
            .lock()
            .expect("not poisoned")
            .get(&location)
            .cloned();
        match metadata {
            Some(metadata) => Ok((self.table(ident.clone(), location, metadata)?, version)),
            None => self.read(ident).await,
        }
    }
}

/// `metadata` with the entries of its metadata log older than `since_ms` dropped.
fn trim_log(metadata: TableMetadata, since_ms: i64) -> Result<TableMetadata> {
    let invalid = |e: serde_json::Error| iceberg::Error::new(ErrorKind::DataInvalid, e.to_string());
    let mut json = serde_json::to_value(&metadata).map_err(invalid)?;
    if let Some(log) = json.get_mut("metadata-log").and_then(|l| l.as_array_mut()) {
        log.retain(|entry| {
            entry["timestamp-ms"]
                .as_i64()
                .is_some_and(|t| t >= since_ms)
        });
    }
    serde_json::from_value(json).map_err(invalid)
}

fn database(ident: &TableIdent) -> Result<&str> {
    match ident.namespace().as_ref().as_slice() {
        [database] => Ok(database),
        _ => Err(iceberg::Error::new(
            ErrorKind::DataInvalid,
            format!("{ident}: a Glue table is <database>.<table>"),
        )),
    }
}

/// A Glue failure: `TableNotFound` for a missing table or database, else `Unexpected`.
fn glue_error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    doing: &str,
    e: &E,
) -> iceberg::Error {
    let kind = match e.code() {
        Some("EntityNotFoundException") => ErrorKind::TableNotFound,
        _ => ErrorKind::Unexpected,
    };
    iceberg::Error::new(
        kind,
        format!("{doing} in Glue failed: {}", DisplayErrorContext(e)),
    )
}

fn unsupported(what: &str) -> iceberg::Error {
    iceberg::Error::new(
        ErrorKind::FeatureUnsupported,
        format!("{what}: this function only loads, creates and appends to tables"),
    )
}

/// The Glue table for `metadata`: columns as Hive types (what Glue's console and Lake
/// Formation show; engines read the Iceberg schema), the location, and the Iceberg parameters.
fn table_input(
    name: &str,
    location: String,
    metadata: &TableMetadata,
    previous: Option<&str>,
) -> Result<TableInput> {
    let columns = metadata
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|field| {
            Column::builder()
                .name(&field.name)
                .r#type(hive_type(&field.field_type))
                .set_comment(field.doc.clone())
                .build()
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| iceberg::Error::new(ErrorKind::Unexpected, e.to_string()))?;
    let mut parameters = HashMap::from([
        (TABLE_TYPE.to_owned(), ICEBERG.to_owned()),
        (METADATA_LOCATION.to_owned(), location),
    ]);
    if let Some(previous) = previous {
        parameters.insert(PREVIOUS_METADATA_LOCATION.to_owned(), previous.to_owned());
    }
    TableInput::builder()
        .name(name)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(parameters))
        .storage_descriptor(
            StorageDescriptor::builder()
                .set_columns(Some(columns))
                .location(metadata.location())
                .build(),
        )
        .build()
        .map_err(|e| iceberg::Error::new(ErrorKind::Unexpected, e.to_string()))
}

/// An Iceberg type as Glue's Hive type names (as Iceberg's Glue catalog writes them).
fn hive_type(t: &Type) -> String {
    match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => "boolean".into(),
            PrimitiveType::Int => "int".into(),
            PrimitiveType::Long => "bigint".into(),
            PrimitiveType::Float => "float".into(),
            PrimitiveType::Double => "double".into(),
            PrimitiveType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            PrimitiveType::Date => "date".into(),
            PrimitiveType::Timestamp
            | PrimitiveType::Timestamptz
            | PrimitiveType::TimestampNs
            | PrimitiveType::TimestamptzNs => "timestamp".into(),
            PrimitiveType::Time | PrimitiveType::String | PrimitiveType::Uuid => "string".into(),
            PrimitiveType::Fixed(_) | PrimitiveType::Binary => "binary".into(),
        },
        Type::Struct(s) => format!(
            "struct<{}>",
            s.fields()
                .iter()
                .map(|f| format!("{}:{}", f.name, hive_type(&f.field_type)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Type::List(l) => format!("array<{}>", hive_type(&l.element_field.field_type)),
        Type::Map(m) => format!(
            "map<{},{}>",
            hive_type(&m.key_field.field_type),
            hive_type(&m.value_field.field_type)
        ),
    }
}

#[async_trait]
impl Catalog for GlueCatalog {
    async fn list_namespaces(&self, _: Option<&NamespaceIdent>) -> Result<Vec<NamespaceIdent>> {
        Err(unsupported("listing databases"))
    }

    async fn create_namespace(
        &self,
        _: &NamespaceIdent,
        _: HashMap<String, String>,
    ) -> Result<Namespace> {
        Err(unsupported("creating a database"))
    }

    async fn get_namespace(&self, _: &NamespaceIdent) -> Result<Namespace> {
        Err(unsupported("reading a database"))
    }

    async fn namespace_exists(&self, _: &NamespaceIdent) -> Result<bool> {
        Err(unsupported("looking up a database"))
    }

    async fn update_namespace(&self, _: &NamespaceIdent, _: HashMap<String, String>) -> Result<()> {
        Err(unsupported("changing a database"))
    }

    async fn drop_namespace(&self, _: &NamespaceIdent) -> Result<()> {
        Err(unsupported("dropping a database"))
    }

    async fn list_tables(&self, _: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        Err(unsupported("listing tables"))
    }

    /// Writes the first metadata file under `creation.location` (which the caller sets), then
    /// registers the table; from then on the file is the table's, never removed by a later
    /// clean-up. A table created meanwhile by another writer wins (`TableAlreadyExists`), and
    /// the metadata file written here is removed.
    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let database = database(&ident)?;
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let location = MetadataLocation::new_with_metadata(metadata.location(), &metadata);
        metadata.write_to(&self.io, &location).await?;
        let location = location.to_string();
        let input = table_input(ident.name(), location.clone(), &metadata, None)?;
        let created = self
            .glue
            .create_table()
            .database_name(database)
            .table_input(input)
            .send()
            .await;
        match created {
            Ok(_) => {
                self.files.keep(&location);
                self.table(ident, location, metadata)
            }
            Err(e) if e.code() == Some("AlreadyExistsException") => {
                // Best effort: a file left here is referenced by nothing.
                let _ = self.io.delete(&location).await;
                self.files.keep(&location);
                Err(iceberg::Error::new(
                    ErrorKind::TableAlreadyExists,
                    format!("{ident} was created meanwhile"),
                ))
            }
            Err(e) => Err(glue_error(&format!("creating {ident}"), &e)),
        }
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        Ok(self.read(table).await?.0)
    }

    async fn drop_table(&self, _: &TableIdent) -> Result<()> {
        Err(unsupported("dropping a table"))
    }

    async fn purge_table(&self, _: &TableIdent) -> Result<()> {
        Err(unsupported("purging a table"))
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        match self.read(table).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::TableNotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn rename_table(&self, _: &TableIdent, _: &TableIdent) -> Result<()> {
        Err(unsupported("renaming a table"))
    }

    async fn register_table(&self, _: &TableIdent, _: String) -> Result<Table> {
        Err(unsupported("registering a table"))
    }

    /// One attempt, never retried here (`CatalogCommitConflicts` is not marked retryable):
    /// the caller re-checks what was already committed before it tries again.
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let ident = commit.identifier().clone();
        let (current, version) = self.last_read(&ident).await?;
        let previous = current.metadata_location_result()?.to_owned();
        let base = current.clone();
        let staged = commit.apply(current).map_err(|e| match e.kind() {
            ErrorKind::CatalogCommitConflicts => e.with_retryable(false),
            _ => e,
        })?;
        // The last word on exactly once: the version swapped from has no snapshot of this
        // work (and if the table moved since, Glue refuses the version).
        let identity = staged
            .metadata()
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get(IDENTITY).cloned());
        if let Some(identity) = identity
            && identity.lines().any(|id| committed(&base, id).is_some())
        {
            return Err(iceberg::Error::new(
                ErrorKind::CatalogCommitConflicts,
                format!("{ident} already has a snapshot of this work"),
            ));
        }
        self.swap(&ident, staged, &previous, version).await
    }
}

impl GlueCatalog {
    /// Makes `schema` (the current one with columns' types widened) the table's current
    /// schema, in a commit of its own: iceberg-rust 0.10.1's transactions add and delete
    /// columns but change no type. Its metadata is made by iceberg-rust's builder.
    ///
    /// # Errors
    /// As [`GlueCatalog::commit_updates`].
    pub async fn set_schema(&self, ident: &TableIdent, schema: Schema) -> Result<Table> {
        let updates = vec![
            TableUpdate::AddSchema { schema },
            // -1: the schema just added.
            TableUpdate::SetCurrentSchema { schema_id: -1 },
        ];
        self.commit_updates(ident, updates).await
    }

    /// Applies `updates` to the table as last read, with iceberg-rust's metadata builder,
    /// and swaps the Glue table to the result: for the commits iceberg-rust 0.10.1 has no
    /// transaction for (a type widened, a replace snapshot, snapshots expired).
    ///
    /// # Errors
    /// iceberg's `CatalogCommitConflicts` when the table moved since it was read; the
    /// builder's errors for an update it refuses.
    pub async fn commit_updates(
        &self,
        ident: &TableIdent,
        updates: Vec<TableUpdate>,
    ) -> Result<Table> {
        self.commit_trimmed(ident, updates, None).await
    }

    /// [`GlueCatalog::commit_updates`], the metadata log then kept only from `log_since_ms`
    /// on (a metadata file written before the oldest snapshot an expiry keeps can only name
    /// expired snapshots: useless for time travel, and the log's files are the bulk of the
    /// metadata folder). iceberg-rust has no update for it: the built metadata is edited in
    /// its serialized form, which the spec defines.
    ///
    /// # Errors
    /// As [`GlueCatalog::commit_updates`].
    pub async fn commit_trimmed(
        &self,
        ident: &TableIdent,
        updates: Vec<TableUpdate>,
        log_since_ms: Option<i64>,
    ) -> Result<Table> {
        let (current, version) = self.last_read(ident).await?;
        let previous = current.metadata_location_result()?.to_owned();
        let mut builder = current
            .metadata()
            .clone()
            .into_builder(Some(previous.clone()));
        for update in updates {
            builder = update.apply(builder)?;
        }
        let mut metadata = builder.build()?.metadata;
        if let Some(since) = log_since_ms {
            metadata = trim_log(metadata, since)?;
        }
        let location = MetadataLocation::from_str(&previous)?
            .with_next_version()
            .with_new_metadata(&metadata)
            .to_string();
        let staged = self.table(ident.clone(), location, metadata)?;
        self.swap(ident, staged, &previous, version).await
    }

    /// Writes `staged`'s metadata file and points the Glue table at it, on the `VersionId`
    /// read: Glue refuses it if the table moved since.
    async fn swap(
        &self,
        ident: &TableIdent,
        staged: Table,
        previous: &str,
        version: Option<String>,
    ) -> Result<Table> {
        let database = database(ident)?.to_owned();
        let location = staged.metadata_location_result()?.to_owned();
        staged
            .metadata()
            .write_to(staged.file_io(), &MetadataLocation::from_str(&location)?)
            .await?;
        let input = table_input(ident.name(), location, staged.metadata(), Some(previous))?;
        self.glue
            .update_table()
            .database_name(database)
            .table_input(input)
            .set_version_id(version)
            .skip_archive(true)
            .send()
            .await
            .map_err(|e| match e.code() {
                Some("ConcurrentModificationException") => iceberg::Error::new(
                    ErrorKind::CatalogCommitConflicts,
                    format!("{ident} changed while this commit was being made"),
                ),
                _ => glue_error(&format!("updating {ident}"), &e),
            })?;
        self.last_read.lock().expect("not poisoned").remove(ident);
        Ok(staged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{ListType, NestedField};

    #[test]
    fn iceberg_types_are_named_as_hive_types() {
        let list = Type::List(ListType::new(
            NestedField::list_element(3, Type::Primitive(PrimitiveType::Long), false).into(),
        ));
        assert_eq!(hive_type(&list), "array<bigint>");
        let decimal = Type::Primitive(PrimitiveType::Decimal {
            precision: 10,
            scale: 2,
        });
        assert_eq!(hive_type(&decimal), "decimal(10,2)");
        assert_eq!(
            hive_type(&Type::Primitive(PrimitiveType::Timestamptz)),
            "timestamp"
        );
    }
}
