//! Rows into Iceberg tables, beside any folders of the same event: inline rows, or a source
//! object streamed. Each table is read (or planned from `TABLE_WAREHOUSE`) and the rows
//! matched to its schema before anything is written; then the folders are written and made
//! visible, a planned table is created, its data files are written, and each table gets one
//! snapshot recording the work's identity. Any failure removes every file written and every
//! folder object made visible.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use iceberg::arrow::{arrow_schema_to_schema_auto_assign_ids, schema_to_arrow_schema};
use iceberg::io::{FileIO, FileIOBuilder};
use iceberg::spec::{
    DataFile, FormatVersion, NestedField, NestedFieldRef, TableMetadataBuilder, Transform, Type,
    UnboundPartitionSpec, deserialize_data_file_from_json, serialize_data_file_to_json,
};
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, NamespaceIdent, Runtime, TableCreation, TableIdent};

use super::Function;
use super::conversion::Conversion;
use super::job::BatchTable;
use super::reply::{Reply, Response, SourceRead, TableAppended, TableCommitted};
use super::stream::{Chunks, identity_of, uuid_shaped};
use crate::Error;
use crate::catalog::append::{self, Part, catalog_error};
use crate::catalog::glue::GlueCatalog;
use crate::catalog::identity::committed;
use crate::encode::codec::Codec;
use crate::encode::columns::{self, UnknownKeys};
use crate::encode::partition::PartitionBy;
use crate::input::event::Evolution;
use crate::input::source::Source;
use crate::input::target::{S3Prefix, TableTarget};
use crate::rows::Rows;
use crate::schema::{ddl, inference};
use crate::store::s3::Opened;
use crate::store::table_files::{TableFiles, TableFilesFactory};

/// The table property naming its Parquet codec.
const CODEC_PROPERTY: &str = "write.parquet.compression-codec";

/// A table target ready to take rows.
struct Prepared {
    ident: TableIdent,
    /// The catalog's table; for one still to be created, its metadata planned in memory.
    table: Table,
    /// Not in the catalog yet: created once everything else was checked.
    planned: Option<TableCreation>,
    /// This invocation created it.
    created: bool,
    /// The schema the data files are written in (the table's, with the columns `adds`
    /// after its own), and in Arrow, with its field ids.
    schema: iceberg::spec::SchemaRef,
    arrow: SchemaRef,
    /// Columns added in the data's commit (`schema_evolution`), ids as Iceberg assigns them.
    adds: Vec<NestedFieldRef>,
    codec: Codec,
    /// The table's schema with the columns' types the declared schema widens
    /// (`schema_evolution`), committed before the data's files are written.
    promoted: Option<iceberg::spec::Schema>,
    /// A dry run's: its data files are measured and dropped, and it is never created.
    dry_run: bool,
}

impl Prepared {
    fn build(&self, rows: &Rows<'_>) -> Result<Vec<RecordBatch>, Error> {
        columns::build(rows, self.arrow.clone(), UnknownKeys::NotInTable)
            .map_err(|e| e.within(&format!("table {}", self.ident)))
    }

    /// # Errors
    /// `RecursiveTrigger` for a source inside the table's location: its own output.
    fn refuse_inside(&self, source: &Source) -> Result<(), Error> {
        let location = self.table.metadata().location().trim_end_matches('/');
        match source.uri().starts_with(&format!("{location}/")) {
            false => Ok(()),
            true => Err(Error::RecursiveTrigger(format!(
                "{} lies inside the table {}'s location: converting it would convert this function's own output",
                source.uri(),
                self.ident
            ))),
        }
    }

    /// For a dry run: the data files are written nowhere, the table is not created.
    fn dry_run(mut self) -> Result<Prepared, Error> {
        let io = FileIOBuilder::new(Arc::new(TableFilesFactory(TableFiles::discarding()))).build();
        self.table = Table::builder()
            .metadata(self.table.metadata_ref())
            .identifier(self.ident.clone())
            .file_io(io)
            .runtime(Runtime::current())
            .build()
            .map_err(|e| catalog_error(&self.ident, e))?;
        self.dry_run = true;
        Ok(self)
    }

    /// A writer of data files named `name-<n>.parquet`.
    async fn writer(&self, name: &str) -> Result<append::DataFiles, Error> {
        let properties = crate::encode::writer::table_properties(self.codec);
        append::data_file_writer(&self.table, &self.schema, properties, name).await
    }
}

/// Each table's data files for one unit of work: none for a table whose snapshots already
/// record it, else a writer taking its rows.
struct Writing {
    done: Vec<(Prepared, Vec<DataFile>)>,
    open: Vec<(Prepared, append::DataFiles)>,
}

impl Writing {
    /// Every table with its data files.
    async fn close(self) -> Result<Vec<(Prepared, Vec<DataFile>)>, Error> {
        let mut written = self.done;
        for (table, writer) in self.open {
            let files = writer.close().await.map_err(|e| write_error(&table, e))?;
            written.push((table, files));
        }
        Ok(written)
    }
}

impl Function {
    /// Inline rows into `tables` and the folders of `job`, as the work `id`.
    pub(super) async fn rows_into_tables(
        &self,
        rows: Rows<'_>,
        job: Conversion<'_>,
        tables: &[TableTarget],
        id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Response, Error> {
        self.check_tables(tables)?;
        let catalog = self.catalog().await;
        let shape = match &job.schema {
            Some(declared) => declared.clone(),
            None => inference::infer(&rows)?,
        };
        let count = rows.len();
        let mut prepared = Vec::with_capacity(tables.len());
        for target in tables {
            let table = self.prepare(&catalog, target, Some(&shape), &job).await?;
            let batches = table.build(&rows)?;
            prepared.push((table, batches));
        }
        let dry_run = job.dry_run;
        // Everything is checked: create the planned tables (an empty table is all a later
        // failure can leave of this), rebuilding for one another writer made meanwhile.
        for (table, batches) in &mut prepared {
            if self.create(&catalog, table).await? {
                *batches = table.build(&rows)?;
            }
        }
        let mut response = self.folders(job, Feed::Rows(rows, id), deadline).await?;
        response.rows = count;
        if dry_run {
            for (table, batches) in prepared {
                let files = self.write(&table, batches).await?;
                response.tables.push(would_write(&table, count, &files));
            }
            return Ok(response);
        }
        let identity = format!("request {id}");
        let mut written = Vec::with_capacity(prepared.len());
        for (table, batches) in prepared {
            // Work a snapshot already records is not written again (the commit says so).
            if committed(&table.table, &identity).is_some() {
                written.push((table, Vec::new()));
                continue;
            }
            match self.write(&table, batches).await {
                Ok(files) => written.push((table, files)),
                Err(e) => {
                    return Err(self
                        .undo(e, &catalog, std::slice::from_ref(&response))
                        .await);
                }
            }
        }
        self.commit_tables(&catalog, written, response, &identity, deadline)
            .await
    }

    /// A source object into `tables` and the folders of `job`: the folders first (one read),
    /// then the tables (a second read of the same object version).
    pub(super) async fn source_into_tables(
        &self,
        source: Source,
        job: Conversion<'_>,
        tables: &[TableTarget],
        deadline: Option<SystemTime>,
    ) -> Result<Response, Error> {
        let sources = std::slice::from_ref(&source);
        let (catalog, prepared) = self.prepare_for(sources, &job, tables).await?;
        let dry_run = job.dry_run;
        let response = self.folders(job, Feed::Source(&source), deadline).await?;
        let streamed = self.stream_tables(&catalog, &source, prepared, &response, deadline);
        let (written, rows, identity) = match streamed.await {
            Ok(done) => done,
            Err(e) => {
                return Err(self
                    .undo(e, &catalog, std::slice::from_ref(&response))
                    .await);
            }
        };
        let mut response = response;
        response.rows = rows;
        if dry_run {
            response.tables = written
                .iter()
                .map(|(table, files)| would_write(table, rows, files))
                .collect();
            return Ok(response);
        }
        self.commit_tables(&catalog, written, response, &identity, deadline)
            .await
    }

    /// A map batch's objects into `tables` and the folders of `job`: the folders as any
    /// batch's, then each object read again into one writer per table for the whole batch
    /// (files named for the batch, so that a retried batch rewrites its own). Nothing is
    /// committed: the data files are listed in the batch's manifest in `manifests`, and the
    /// job's finish step commits every batch's in one snapshot.
    pub(super) async fn objects_into_tables(
        &self,
        objects: &[Source],
        job: Conversion<'_>,
        tables: &[TableTarget],
        manifests: Option<&S3Prefix>,
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let dry_run = job.dry_run;
        if manifests.is_none() && !dry_run {
            return Err(Error::InvalidEvent(
                "a map batch into tables needs `BatchInput.manifests`: the job's finish step commits the data files the batches list there; nothing was written".into(),
            ));
        }
        let (catalog, prepared) = self.prepare_for(objects, &job, tables).await?;
        let folders = !job.targets.is_empty();
        let mut results = match folders {
            true => self.sources(objects, job, deadline).await?,
            false => Vec::new(),
        };
        let Some(folder) = manifests.filter(|_| !dry_run) else {
            let name = uuid::Uuid::now_v7().to_string();
            let written = self
                .write_batch(&catalog, objects, prepared, &mut results, &name, deadline)
                .await?;
            let rows = results.iter().map(|r| r.rows).sum();
            if let Some(first) = results.first_mut() {
                first.tables = written
                    .iter()
                    .map(|(table, files)| would_write(table, rows, files))
                    .collect();
            }
            return Ok(Reply::Each { results });
        };
        let keys: Vec<u8> = objects
            .iter()
            .flat_map(|o| {
                format!(
                    "{}\n{}\n",
                    o.uri(),
                    o.version_id.as_deref().unwrap_or_default()
                )
                .into_bytes()
            })
            .chain(folder.to_string().into_bytes())
            .collect();
        let name = uuid_shaped(&keys);
        let written = self
            .write_batch(&catalog, objects, prepared, &mut results, &name, deadline)
            .await;
        let listed = match written.and_then(|written| batch_tables(&written)) {
            Ok(listed) => listed,
            Err(e) => return Err(self.undo(e, &catalog, &results).await),
        };
        match self.list_batch(folder, results, &listed, deadline).await {
            Ok(reply) => Ok(reply),
            Err(e) => Err(self.undo(e, &catalog, &[]).await),
        }
    }

    /// Every object's rows into one writer per table (opening it as the folders read it);
    /// each table's data files. Without folders, `results` gets a response per object.
    async fn write_batch(
        &self,
        catalog: &GlueCatalog,
        objects: &[Source],
        prepared: Vec<Prepared>,
        results: &mut Vec<Response>,
        name: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Vec<(Prepared, Vec<DataFile>)>, Error> {
        let dry_run = prepared.iter().any(|t| t.dry_run);
        let mut writing = self.open_writers(catalog, prepared, None, name).await?;
        let folders = !results.is_empty();
        for (i, object) in objects.iter().enumerate() {
            let read = results.get(i).and_then(|r| r.source.as_ref());
            let opened = self.open_again(object, read).await?;
            let source = SourceRead {
                uri: opened.uri.clone(),
                bytes: opened.size,
                etag: opened.etag.clone(),
            };
            let rows = self.feed(&mut writing, opened, object, deadline).await?;
            if !folders {
                results.push(Response {
                    rows,
                    source: Some(source),
                    ..Response::empty(dry_run)
                });
            }
        }
        writing.close().await
    }

    /// The checks and the tables of a conversion of `sources`: every refusal before anything
    /// is read.
    async fn prepare_for(
        &self,
        sources: &[Source],
        job: &Conversion<'_>,
        tables: &[TableTarget],
    ) -> Result<(GlueCatalog, Vec<Prepared>), Error> {
        self.check_sources(sources)?;
        self.check_tables(tables)?;
        let catalog = self.catalog().await;
        let mut prepared = Vec::with_capacity(tables.len());
        for target in tables {
            let table = self
                .prepare(&catalog, target, job.schema.as_ref(), job)
                .await?;
            sources.iter().try_for_each(|s| table.refuse_inside(s))?;
            prepared.push(table);
        }
        Ok((catalog, prepared))
    }

    /// A catalog of this invocation's own (its file IO logs what it writes).
    async fn catalog(&self) -> GlueCatalog {
        GlueCatalog::new(
            self.glue.client().await.clone(),
            TableFiles::new(&self.store),
        )
    }

    /// Reads the source once more (the version the folders got, else the latest), its rows
    /// into a data file writer per table that has no snapshot of this work yet.
    async fn stream_tables(
        &self,
        catalog: &GlueCatalog,
        source: &Source,
        prepared: Vec<Prepared>,
        response: &Response,
        deadline: Option<SystemTime>,
    ) -> Result<(Vec<(Prepared, Vec<DataFile>)>, usize, String), Error> {
        let opened = self.open_again(source, response.source.as_ref()).await?;
        let identity = format!("source {}", identity_of(source, &opened));
        let name = uuid::Uuid::now_v7().to_string();
        let mut writing = self
            .open_writers(catalog, prepared, Some(&identity), &name)
            .await?;
        if writing.open.is_empty() {
            // Every table has this work: the rows are those of the folders' read, if any.
            return Ok((writing.done, response.rows, identity));
        }
        let rows = self.feed(&mut writing, opened, source, deadline).await?;
        Ok((writing.close().await?, rows, identity))
    }

    /// The source as the folders read it (the same version, else the latest).
    async fn open_again(
        &self,
        source: &Source,
        read: Option<&SourceRead>,
    ) -> Result<Opened, Error> {
        let if_match = read.and_then(|r| r.etag.as_deref());
        let opened = self
            .store
            .open(
                &source.bucket,
                &source.key,
                source.version_id.as_deref(),
                if_match,
            )
            .await?;
        self.measures.source_read(opened.size);
        Ok(opened)
    }

    /// Creates the planned tables, and opens a writer of files named `name` for each table
    /// that has no snapshot of the work `identity` yet.
    async fn open_writers(
        &self,
        catalog: &GlueCatalog,
        prepared: Vec<Prepared>,
        identity: Option<&str>,
        name: &str,
    ) -> Result<Writing, Error> {
        let mut writing = Writing {
            done: Vec::new(),
            open: Vec::with_capacity(prepared.len()),
        };
        for mut table in prepared {
            self.create(catalog, &mut table).await?;
            // Work a snapshot already records is not written again (the commit says so).
            if identity.is_some_and(|id| committed(&table.table, id).is_some()) {
                writing.done.push((table, Vec::new()));
                continue;
            }
            let writer = table.writer(name).await?;
            writing.open.push((table, writer));
        }
        Ok(writing)
    }

    /// One opened source's rows, chunk by chunk, into every open writer; how many.
    async fn feed(
        &self,
        writing: &mut Writing,
        opened: Opened,
        source: &Source,
        deadline: Option<SystemTime>,
    ) -> Result<usize, Error> {
        let uri = opened.uri.clone();
        let mut chunks = Chunks::start(opened, source)?;
        let mut rows = 0;
        while let Some(chunk) = chunks.next(deadline, &uri).await? {
            let chunk_rows = chunk
                .rows()
                .map_err(|e| e.within(&format!("source {uri}")))?;
            rows += chunk_rows.len();
            for (table, writer) in &mut writing.open {
                for batch in table.build(&chunk_rows)? {
                    writer
                        .write(batch)
                        .await
                        .map_err(|e| write_error(table, e))?;
                }
            }
        }
        if rows == 0 {
            return Err(Error::InvalidEvent(format!(
                "source {uri} holds no rows: there is nothing to write"
            )));
        }
        Ok(rows)
    }

    fn check_tables(&self, tables: &[TableTarget]) -> Result<(), Error> {
        match &self.config.allowed_tables {
            Some(allowed) => tables.iter().try_for_each(|t| allowed.check(t)),
            None => Ok(()),
        }
    }

    /// The folders' part of the work (nothing when the event names no folder).
    async fn folders(
        &self,
        job: Conversion<'_>,
        feed: Feed<'_, '_>,
        deadline: Option<SystemTime>,
    ) -> Result<Response, Error> {
        if job.targets.is_empty() {
            return Ok(Response::empty(job.dry_run));
        }
        match feed {
            Feed::Rows(rows, id) => self.rows(rows, job, id, deadline).await,
            Feed::Source(source) => {
                let mut responses = self
                    .sources(std::slice::from_ref(source), job, deadline)
                    .await?;
                Ok(responses.remove(0))
            }
        }
    }

    /// Reads the table, or plans it from `TABLE_WAREHOUSE` and `shape` (the rows' schema);
    /// every refusal comes here, before anything is written.
    async fn prepare(
        &self,
        catalog: &GlueCatalog,
        target: &TableTarget,
        shape: Option<&SchemaRef>,
        job: &Conversion<'_>,
    ) -> Result<Prepared, Error> {
        let (evolution, partition_by) = (job.evolution, job.partitioning.by);
        let ident = TableIdent::new(
            NamespaceIdent::new(target.database.clone()),
            target.table.clone(),
        );
        let (table, planned) = match catalog.load_table(&ident).await {
            Ok(table) => (table, None),
            Err(e) if e.kind() == ErrorKind::TableNotFound => {
                self.plan(&ident, shape, partition_by)?
            }
            Err(e) => return Err(catalog_error(&ident, e)),
        };
        if let Some(asked) = partition_by {
            let spec = identity_columns(&table);
            if spec.as_deref() != Some(asked.columns()) {
                return Err(Error::InvalidEvent(format!(
                    "`partition_by` {:?} disagrees with table {ident}'s partition spec ({}): the table's spec decides its layout; nothing was written",
                    asked.columns(),
                    describe_spec(&table)
                )));
            }
        }
        let evolved = match (evolution, shape) {
            (Evolution::AddColumns, Some(shape)) => {
                evolved(&ident, &table, shape, job.schema.as_deref())?
            }
            _ => Evolved {
                schema: table.metadata().current_schema().clone(),
                adds: Vec::new(),
                promoted: None,
            },
        };
        let Evolved {
            schema,
            adds,
            promoted,
        } = evolved;
        let arrow = arrow_of(&ident, &schema)?;
        let codec = target
            .codec
            .or_else(|| {
                let property = table.metadata().properties().get(CODEC_PROPERTY);
                property.and_then(|name| Codec::from_name(name))
            })
            .unwrap_or(Codec::Zstd);
        Ok(Prepared {
            ident,
            table,
            planned,
            created: false,
            schema,
            arrow,
            adds,
            codec,
            promoted,
            dry_run: false,
        })
        .and_then(|table| match job.dry_run {
            true => table.dry_run(),
            false => Ok(table),
        })
    }

    /// A missing table's creation under `TABLE_WAREHOUSE` (format v2, with identity partitions
    /// on `partition_by`'s columns), from `shape`, and its metadata as it will be.
    fn plan(
        &self,
        ident: &TableIdent,
        shape: Option<&SchemaRef>,
        partition_by: Option<&PartitionBy>,
    ) -> Result<(Table, Option<TableCreation>), Error> {
        let Some(warehouse) = &self.config.table_warehouse else {
            return Err(Error::TableNotFound(format!(
                "table {ident} does not exist in the Glue Data Catalog, and TABLE_WAREHOUSE is not set to create it; nothing was written"
            )));
        };
        let Some(shape) = shape else {
            return Err(Error::TableNotFound(format!(
                "table {ident} does not exist: give the event a `schema` to create it from a source object; nothing was written"
            )));
        };
        let schema = arrow_schema_to_schema_auto_assign_ids(shape).map_err(|e| {
            Error::TableSchemaMismatch(format!(
                "table {ident}: the rows' schema has no Iceberg form: {e}"
            ))
        })?;
        let location = format!(
            "{warehouse}{}.db/{}",
            ident.namespace().as_ref()[0],
            ident.name()
        );
        let mut spec = UnboundPartitionSpec::builder();
        for column in partition_by.map(PartitionBy::columns).unwrap_or_default() {
            let field = schema
                .field_by_name(column)
                .filter(|f| matches!(*f.field_type, Type::Primitive(_)))
                .ok_or_else(|| {
                    Error::InvalidEvent(format!(
                        "`partition_by`: `{column}` is not a column of a plain type among the rows' columns"
                    ))
                })?;
            spec = spec
                .add_partition_field(field.id, column, Transform::Identity)
                .map_err(|e| catalog_error(ident, e))?;
        }
        let spec = spec.build();
        let creation = || {
            TableCreation::builder()
                .name(ident.name().to_owned())
                .location(location.clone())
                .schema(schema.clone())
                .partition_spec(spec.clone())
                .format_version(FormatVersion::V2)
                .properties(HashMap::new())
                .build()
        };
        let metadata = TableMetadataBuilder::from_table_creation(creation())
            .and_then(|b| b.build())
            .map_err(|e| catalog_error(ident, e))?
            .metadata;
        let table = Table::builder()
            .metadata(metadata)
            .identifier(ident.clone())
            .file_io(FileIO::new_with_memory())
            .runtime(Runtime::current())
            .build()
            .map_err(|e| catalog_error(ident, e))?;
        Ok((table, Some(creation())))
    }

    /// Creates a planned table (or takes another writer's, created meanwhile); whether its
    /// schema then differs from the one planned.
    async fn create(&self, catalog: &GlueCatalog, prepared: &mut Prepared) -> Result<bool, Error> {
        if prepared.dry_run {
            return Ok(false);
        }
        if let Some(schema) = prepared.promoted.take() {
            let ident = &prepared.ident;
            prepared.table = catalog.set_schema(ident, schema).await.map_err(|e| match e.kind() {
                ErrorKind::CatalogCommitConflicts => Error::CommitConflict(format!(
                    "{ident} changed while this invocation widened its columns' types; nothing was written (a retry widens them anew)"
                )),
                _ => catalog_error(ident, e),
            })?;
        }
        let Some(creation) = prepared.planned.take() else {
            return Ok(false);
        };
        let ident = &prepared.ident;
        let table = match catalog.create_table(ident.namespace(), creation).await {
            Ok(table) => {
                prepared.created = true;
                table
            }
            Err(e) if e.kind() == ErrorKind::TableAlreadyExists => catalog
                .load_table(ident)
                .await
                .map_err(|e| catalog_error(ident, e))?,
            Err(e) => return Err(catalog_error(ident, e)),
        };
        let schema = table.metadata().current_schema().clone();
        let arrow = arrow_of(ident, &schema)?;
        let changed = arrow != prepared.arrow;
        prepared.table = table;
        prepared.schema = schema;
        prepared.arrow = arrow;
        Ok(changed)
    }

    async fn write(
        &self,
        table: &Prepared,
        batches: Vec<RecordBatch>,
    ) -> Result<Vec<DataFile>, Error> {
        let mut writer = table.writer(&uuid::Uuid::now_v7().to_string()).await?;
        for batch in batches {
            writer
                .write(batch)
                .await
                .map_err(|e| write_error(table, e))?;
        }
        writer.close().await.map_err(|e| write_error(table, e))
    }

    /// One snapshot per table, in order; a failure removes what this invocation wrote that
    /// no snapshot refers to, and the folders' objects. Within an SQS batch, the commits are
    /// left to the batch's end instead ([`Deferred`]).
    async fn commit_tables(
        &self,
        catalog: &GlueCatalog,
        written: Vec<(Prepared, Vec<DataFile>)>,
        mut response: Response,
        identity: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Response, Error> {
        let pending = Pending {
            message: String::new(),
            identity: identity.to_owned(),
            tables: written,
            objects: response
                .objects
                .iter()
                .map(|o| (o.bucket.clone(), o.key.clone()))
                .collect(),
        };
        let written = match self.deferred.push(pending) {
            Ok(()) => return Ok(response),
            Err(pending) => pending.tables,
        };
        let files = catalog.files();
        for (table, data_files) in written {
            let work = append::Work {
                parts: vec![Part {
                    identity: identity.to_owned(),
                    files: data_files,
                }],
                adds: &table.adds,
            };
            let committed =
                append::commit(catalog, files, table.table.clone(), work, deadline).await;
            let appended = match committed {
                Ok(appended) => appended,
                Err(e) => return Err(self.undo(e, catalog, std::slice::from_ref(&response)).await),
            };
            if appended.already {
                // Another delivery committed this work: these files are in no snapshot.
                files.remove_written().await;
            }
            // Whatever else was written is this table's commit now: never to be removed.
            files.forget();
            tracing::info!(
                table = %table.ident,
                snapshot_id = appended.snapshot_id,
                already = appended.already,
                attempts = appended.attempts,
                data_files = appended.data_files.len(),
                "table append"
            );
            let mut entry = described(&table, Some(appended.snapshot_id), response.rows);
            entry.already_committed = appended.already;
            entry.data_files = appended.data_files;
            response.tables.push(entry);
        }
        Ok(response)
    }

    /// A job's finish: the data files its batches listed, committed in one snapshot per
    /// table recording the job (`identity`), so a finish run twice commits once. A failure
    /// leaves the data files for a rerun of the finish, which commits them once.
    ///
    /// # Errors
    /// `TableNotAllowed`, `TableNotFound`; `CommitConflict` when the table's partition spec
    /// or schema changed under the job, or retries ran out; `CatalogFailed`.
    pub(super) async fn commit_job_tables(
        &self,
        listed: Vec<BatchTable>,
        identity: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Vec<TableCommitted>, Error> {
        let mut by_table: Vec<(TableTarget, Vec<BatchTable>)> = Vec::new();
        for part in listed {
            let target = TableTarget::parse(&part.table, "a batch manifest's table")?;
            match by_table.iter_mut().find(|(t, _)| *t == target) {
                Some((_, parts)) => parts.push(part),
                None => by_table.push((target, vec![part])),
            }
        }
        if by_table.is_empty() {
            return Ok(Vec::new());
        }
        let targets: Vec<TableTarget> = by_table.iter().map(|(t, _)| t.clone()).collect();
        self.check_tables(&targets)?;
        let catalog = self.catalog().await;
        let files = catalog.files();
        let mut committed = Vec::with_capacity(by_table.len());
        for (target, parts) in by_table {
            let ident = TableIdent::new(NamespaceIdent::new(target.database), target.table);
            let table = catalog
                .load_table(&ident)
                .await
                .map_err(|e| catalog_error(&ident, e))?;
            let (data_files, adds) = job_files(&ident, &table, &parts)?;
            let count = data_files.len();
            let work = append::Work {
                parts: vec![Part {
                    identity: identity.to_owned(),
                    files: data_files,
                }],
                adds: &adds,
            };
            let appended = match append::commit(&catalog, files, table, work, deadline).await {
                Ok(appended) => appended,
                Err(e) => {
                    files.remove_written().await;
                    return Err(e);
                }
            };
            files.forget();
            tracing::info!(
                table = %ident,
                snapshot_id = appended.snapshot_id,
                already = appended.already,
                attempts = appended.attempts,
                data_files = count,
                "job committed"
            );
            committed.push(TableCommitted {
                table: ident.to_string(),
                snapshot_id: appended.snapshot_id,
                already_committed: appended.already,
                rows: parts.iter().map(|p| p.rows).sum(),
                data_files: count,
            });
        }
        Ok(committed)
    }

    /// `error`, once the tables' uncommitted files and the folders' objects are removed.
    async fn undo(&self, error: Error, catalog: &GlueCatalog, responses: &[Response]) -> Error {
        let mut left = catalog.files().remove_written().await;
        for object in responses.iter().flat_map(|r| &r.objects) {
            if self
                .store
                .delete(&object.bucket, &object.key)
                .await
                .is_err()
            {
                left.push(object.uri.clone());
            }
        }
        match left.is_empty() {
            true => error,
            false => crate::store::transaction::with_leftovers(error, &left),
        }
    }
}

/// Table appends an SQS batch's messages leave to the batch's end, so that each table gets
/// one snapshot for all its good messages (recording each message's identity); `None`
/// outside an SQS batch. Per invocation, as [`Measures`](crate::lambda::metrics::Measures).
#[derive(Default)]
pub(super) struct Deferred(Mutex<Option<Vec<Pending>>>);

/// One unit of work's data files, written and not yet committed.
pub(super) struct Pending {
    /// The SQS message it belongs to (set once the whole message converted).
    message: String,
    identity: String,
    tables: Vec<(Prepared, Vec<DataFile>)>,
    /// The folders' objects of the same work, removed if its commit fails.
    objects: Vec<(String, String)>,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pending = self.lock().as_ref().map(Vec::len);
        f.debug_tuple("Deferred").field(&pending).finish()
    }
}

impl Deferred {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Pending>>> {
        self.0.lock().expect("not poisoned")
    }

    /// An SQS batch begins: appends wait for [`Function::commit_pending`].
    pub(super) fn start(&self) {
        *self.lock() = Some(Vec::new());
    }

    /// Keeps `pending` for the batch's end; gives it back outside a batch.
    fn push(&self, pending: Pending) -> Result<(), Pending> {
        match self.lock().as_mut() {
            Some(all) => {
                all.push(pending);
                Ok(())
            }
            None => Err(pending),
        }
    }

    /// How many are waiting: a mark before a message is converted.
    pub(super) fn len(&self) -> usize {
        self.lock().as_ref().map_or(0, Vec::len)
    }

    /// Those added since `mark` belong to `message`.
    pub(super) fn belong_to(&self, mark: usize, message: &str) {
        if let Some(all) = self.lock().as_mut() {
            all.iter_mut()
                .skip(mark)
                .for_each(|p| p.message = message.to_owned());
        }
    }

    /// Takes back those added since `mark` (a message that failed after some of its work
    /// was kept).
    pub(super) fn take_since(&self, mark: usize) -> Vec<Pending> {
        self.lock()
            .as_mut()
            .map(|all| all.split_off(mark.min(all.len())))
            .unwrap_or_default()
    }

    /// The batch ends: everything waiting.
    pub(super) fn finish(&self) -> Vec<Pending> {
        self.lock().take().unwrap_or_default()
    }
}

impl Function {
    /// Commits what an SQS batch's good messages wrote: one snapshot per table (and set of
    /// added columns), recording every message's identity, so a redelivered message adds
    /// nothing. A part another delivery committed meanwhile is left out (its files removed);
    /// the same work twice in one batch is committed once. The messages of a commit that
    /// fails, with the error, their files and folder objects removed.
    pub(super) async fn commit_pending(
        &self,
        pending: Vec<Pending>,
        deadline: Option<SystemTime>,
    ) -> Vec<(String, Arc<Error>)> {
        if pending.is_empty() {
            return Vec::new();
        }
        let catalog = self.catalog().await;
        let files = catalog.files();
        // Per table and added columns: the table as first read, the parts, their units.
        let mut groups: Vec<(&Prepared, Vec<Part>, Vec<usize>)> = Vec::new();
        let mut unreferenced = Vec::new();
        for (unit, work) in pending.iter().enumerate() {
            // A table whose snapshots already record this work got no files.
            for (table, data_files) in work.tables.iter().filter(|(_, f)| !f.is_empty()) {
                let at = groups
                    .iter()
                    .position(|(t, _, _)| t.ident == table.ident && t.adds == table.adds);
                let at = at.unwrap_or_else(|| {
                    groups.push((table, Vec::new(), Vec::new()));
                    groups.len() - 1
                });
                let group = &mut groups[at];
                if group.1.iter().any(|p| p.identity == work.identity) {
                    unreferenced.extend(data_files.iter().map(|f| f.file_path().to_owned()));
                    continue;
                }
                group.1.push(Part {
                    identity: work.identity.clone(),
                    files: data_files.clone(),
                });
                group.2.push(unit);
            }
        }
        let mut failed: Vec<(String, Arc<Error>)> = Vec::new();
        let mut undone: Vec<usize> = Vec::new();
        for (table, parts, units) in groups {
            let count = parts.len();
            let work = append::Work {
                parts,
                adds: &table.adds,
            };
            match append::commit(&catalog, files, table.table.clone(), work, deadline).await {
                Ok(appended) => {
                    files.forget();
                    let skipped = appended.skipped.iter().flat_map(|p| &p.files);
                    unreferenced.extend(skipped.map(|f| f.file_path().to_owned()));
                    tracing::info!(
                        table = %table.ident,
                        snapshot_id = appended.snapshot_id,
                        messages = count,
                        skipped = appended.skipped.len(),
                        attempts = appended.attempts,
                        data_files = appended.data_files.len(),
                        "sqs batch append"
                    );
                }
                Err(e) => {
                    files.remove_written().await;
                    let e = Arc::new(e);
                    for unit in units {
                        if !undone.contains(&unit) {
                            undone.push(unit);
                            failed.push((pending[unit].message.clone(), e.clone()));
                        }
                    }
                }
            }
        }
        let undone: Vec<Pending> = pending
            .into_iter()
            .enumerate()
            .filter_map(|(unit, p)| undone.contains(&unit).then_some(p))
            .collect();
        self.remove_pending(undone, unreferenced).await;
        failed
    }

    /// Removes the data files and folder objects of `pending` (work that will not be
    /// committed), and the data files `also`; best effort, what stays is logged.
    pub(super) async fn remove_pending(&self, pending: Vec<Pending>, also: Vec<String>) {
        let files = TableFiles::new(&self.store);
        let mut left = 0;
        let paths = pending
            .iter()
            .flat_map(|p| &p.tables)
            .flat_map(|(_, files)| files.iter().map(|f| f.file_path().to_owned()))
            .chain(also);
        for path in paths {
            left += usize::from(iceberg::io::Storage::delete(&files, &path).await.is_err());
        }
        for (bucket, key) in pending.iter().flat_map(|p| &p.objects) {
            left += usize::from(self.store.delete(bucket, key).await.is_err());
        }
        if left > 0 {
            tracing::warn!(left, "files of uncommitted work could not be removed");
        }
    }
}

/// What the folders' part converts.
enum Feed<'r, 's> {
    Rows(Rows<'r>, &'s str),
    Source(&'s Source),
}

/// The data files the batches listed for `table`, as iceberg-rust reads them back, and the
/// columns their commit adds.
///
/// # Errors
/// `CommitConflict` when the batches disagree with one another or with the table (its
/// partition spec or schema changed while the job ran).
fn job_files(
    ident: &TableIdent,
    table: &Table,
    parts: &[BatchTable],
) -> Result<(Vec<DataFile>, Vec<NestedFieldRef>), Error> {
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    let adds = &parts[0].adds;
    if parts
        .iter()
        .any(|p| p.spec_id != spec.spec_id() || p.adds != *adds)
    {
        return Err(Error::CommitConflict(format!(
            "{ident}: its partition spec or schema changed while the job ran, or its batches added different columns; nothing was committed (rerun the job)"
        )));
    }
    let adds: Vec<NestedFieldRef> = adds.iter().cloned().map(Arc::new).collect();
    let schema =
        with_columns(metadata.current_schema(), &adds).map_err(|e| catalog_error(ident, e))?;
    let partition_type = spec
        .partition_type(&schema)
        .map_err(|e| catalog_error(ident, e))?;
    let files = parts
        .iter()
        .flat_map(|p| &p.data_files)
        .map(|file| {
            deserialize_data_file_from_json(
                &file.to_string(),
                spec.spec_id(),
                &partition_type,
                &schema,
            )
            .map_err(|e| {
                Error::InvalidEvent(format!(
                    "a batch manifest lists a data file of {ident} iceberg-rust cannot read: {e}"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((files, adds))
}

/// Each table's part of a batch, for its manifest.
fn batch_tables(written: &[(Prepared, Vec<DataFile>)]) -> Result<Vec<BatchTable>, Error> {
    written
        .iter()
        .map(|(table, files)| {
            let metadata = table.table.metadata();
            let spec = metadata.default_partition_spec();
            let failed = |e| catalog_error(&table.ident, e);
            let partition_type = spec.partition_type(&table.schema).map_err(failed)?;
            let data_files = files
                .iter()
                .map(|file| {
                    let json = serialize_data_file_to_json(
                        file.clone(),
                        &partition_type,
                        metadata.format_version(),
                    )
                    .map_err(failed)?;
                    Ok(serde_json::from_str(&json).expect("iceberg-rust writes JSON"))
                })
                .collect::<Result<_, Error>>()?;
            Ok(BatchTable {
                table: table.ident.to_string(),
                spec_id: spec.spec_id(),
                adds: table.adds.iter().map(|f| (**f).clone()).collect(),
                rows: files.iter().map(|f| f.record_count() as usize).sum(),
                data_files,
            })
        })
        .collect()
}

fn arrow_of(ident: &TableIdent, schema: &iceberg::spec::Schema) -> Result<SchemaRef, Error> {
    schema_to_arrow_schema(schema).map(Arc::new).map_err(|e| {
        Error::TableSchemaMismatch(format!("table {ident}: its schema has no Arrow form: {e}"))
    })
}

fn write_error(table: &Prepared, e: iceberg::Error) -> Error {
    Error::CatalogFailed(format!("writing a data file of {}: {e}", table.ident))
}

/// A dry run's answer for a table: the data files it would write.
fn would_write(table: &Prepared, rows: usize, files: &[DataFile]) -> TableAppended {
    TableAppended {
        data_files: files.iter().map(|f| f.file_path().to_owned()).collect(),
        ..described(table, None, rows)
    }
}

/// The answer for a table, before or after its commit.
fn described(table: &Prepared, snapshot_id: Option<i64>, rows: usize) -> TableAppended {
    TableAppended {
        table: table.ident.to_string(),
        snapshot_id,
        already_committed: false,
        created: table.created || table.planned.is_some(),
        rows,
        data_files: Vec::new(),
        schema: ddl::to_spark(&Schema::new(table.arrow.fields().clone())),
    }
}

/// What `schema_evolution` makes of a table's schema for some rows.
struct Evolved {
    /// The schema the data files are written in.
    schema: iceberg::spec::SchemaRef,
    /// Columns the data's commit adds.
    adds: Vec<NestedFieldRef>,
    /// The table's schema with widened types, committed before the data.
    promoted: Option<iceberg::spec::Schema>,
}

/// The table's schema with the types `declared` widens as Iceberg allows (int to long, float
/// to double, a decimal's precision up; any other difference leaves the table's type, which
/// the values must then fit), and the columns of `shape` it lacks added after its own
/// (optional, ids from the table's last column id on, as Iceberg's schema update assigns
/// them).
///
/// # Errors
/// `TableSchemaMismatch` for a new column of a nested type (add those to the table first).
fn evolved(
    ident: &TableIdent,
    table: &Table,
    shape: &Schema,
    declared: Option<&Schema>,
) -> Result<Evolved, Error> {
    let current = table.metadata().current_schema();
    let promoted = match declared {
        Some(declared) => widened(current, declared).map_err(|e| catalog_error(ident, e))?,
        None => None,
    };
    let base = promoted.as_ref().unwrap_or(current);
    let mut next_id = table.metadata().last_column_id();
    let mut adds = Vec::new();
    for field in shape.fields() {
        if base.field_by_name(field.name()).is_some() {
            continue;
        }
        let field_type = iceberg::arrow::arrow_type_to_type(field.data_type())
            .ok()
            .filter(|t| matches!(t, Type::Primitive(_)))
            .ok_or_else(|| {
                Error::TableSchemaMismatch(format!(
                    "table {ident} has no column `{}`, and a nested column is not added by schema_evolution: add it to the table first; nothing was written",
                    field.name()
                ))
            })?;
        next_id += 1;
        adds.push(Arc::new(NestedField::optional(
            next_id,
            field.name(),
            field_type,
        )));
    }
    let schema = with_columns(base, &adds).map_err(|e| catalog_error(ident, e))?;
    Ok(Evolved {
        schema: Arc::new(schema),
        adds,
        promoted,
    })
}

/// `current` with the types of the columns `declared` widens (`None`: it widens none).
fn widened(
    current: &iceberg::spec::Schema,
    declared: &Schema,
) -> iceberg::Result<Option<iceberg::spec::Schema>> {
    let mut changed = false;
    let fields: Vec<NestedFieldRef> = current
        .as_struct()
        .fields()
        .iter()
        .map(|field| {
            let wider = declared
                .field_with_name(&field.name)
                .ok()
                .and_then(|d| iceberg::arrow::arrow_type_to_type(d.data_type()).ok())
                .filter(|to| widens(&field.field_type, to));
            match wider {
                Some(to) => {
                    changed = true;
                    let mut field = (**field).clone();
                    field.field_type = Box::new(to);
                    Arc::new(field)
                }
                None => field.clone(),
            }
        })
        .collect();
    if !changed {
        return Ok(None);
    }
    iceberg::spec::Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_fields(fields)
        .with_identifier_field_ids(current.identifier_field_ids())
        .build()
        .map(Some)
}

/// Iceberg's allowed type promotions.
fn widens(from: &Type, to: &Type) -> bool {
    use iceberg::spec::PrimitiveType::{Decimal, Double, Float, Int, Long};
    match (from, to) {
        (Type::Primitive(from), Type::Primitive(to)) => match (from, to) {
            (Int, Long) | (Float, Double) => true,
            (
                Decimal {
                    precision: p,
                    scale: s,
                },
                Decimal {
                    precision: q,
                    scale: t,
                },
            ) => s == t && q > p,
            _ => false,
        },
        _ => false,
    }
}

/// `current` with the optional columns `adds` after its own, as the commit adding them makes
/// it.
fn with_columns(
    current: &iceberg::spec::Schema,
    adds: &[NestedFieldRef],
) -> iceberg::Result<iceberg::spec::Schema> {
    if adds.is_empty() {
        return Ok(current.clone());
    }
    let fields = current
        .as_struct()
        .fields()
        .iter()
        .cloned()
        .chain(adds.iter().cloned());
    iceberg::spec::Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_fields(fields)
        .with_identifier_field_ids(current.identifier_field_ids())
        .build()
}

/// The source columns of the table's partition spec, if every field is an identity one.
fn identity_columns(table: &Table) -> Option<Vec<String>> {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| match f.transform {
            Transform::Identity => schema.name_by_field_id(f.source_id).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// The table's partition spec as `transform(column)`s, for messages.
fn describe_spec(table: &Table) -> String {
    let metadata = table.metadata();
    let fields: Vec<String> = metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| {
            let column = metadata.current_schema().name_by_field_id(f.source_id);
            format!("{}({})", f.transform, column.unwrap_or("?"))
        })
        .collect();
    match fields.is_empty() {
        true => "unpartitioned".into(),
        false => fields.join(", "),
    }
}
