//! Rows into Iceberg tables, beside any folders of the same event: inline rows, or a source
//! object streamed. Each table is read (or planned from `TABLE_WAREHOUSE`) and the rows
//! matched to its schema before anything is written; then the folders are written and made
//! visible, a planned table is created, its data files are written, and each table gets one
//! snapshot recording the work's identity. Any failure removes every file written and every
//! folder object made visible.
//!
//! - this module: the inputs (inline rows, a source, a map batch's objects) into each table's
//!   data file writers.
//! - `prepare.rs`: a table target read, or planned from `TABLE_WAREHOUSE`, its schema decided
//!   (columns added, types widened, the partition spec checked) and the table created.
//! - `records.rs`: a stream batch's records, exactly once by their shards' marks.
//! - `commit.rs`: the snapshots: one per table for an invocation's work, for an SQS batch's
//!   good messages ([`Deferred`]), for a whole-prefix job; and the clean-up of what is not
//!   committed.

mod commit;
mod prepare;
mod records;

pub(super) use commit::Deferred;
use commit::batch_tables;

use std::sync::Arc;
use std::time::SystemTime;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::io::FileIOBuilder;
use iceberg::spec::{DataFile, NestedFieldRef};
use iceberg::table::Table;
use iceberg::{Runtime, TableCreation, TableIdent};

use super::Function;
use super::conversion::Conversion;
use super::job::BatchGlue;
use super::reply::{Reply, Response, SourceRead, TableAppended};
use super::stream::{self, Chunks, identity_of, uuid_shaped};
use crate::Error;
use crate::catalog::append::{self, catalog_error};
use crate::catalog::glue::GlueCatalog;
use crate::catalog::marks::Advance;
use crate::encode::codec::Codec;
use crate::encode::columns::{self, UnknownKeys};
use crate::input::maintain::{Maintain, Maintained};
use crate::input::source::Source;
use crate::input::target::{S3Prefix, TableTarget};
use crate::maintain::Maintenance;
use crate::rows::Rows;
use crate::schema::{ddl, inference};
use crate::store::s3::Opened;
use crate::store::table_files::{TableFiles, TableFilesFactory};

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
    /// A stream batch's shards whose marks the commit raises.
    advances: Vec<Advance>,
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
        append::data_file_writer(&self.table, &self.schema, self.codec, name, None).await
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
            if catalog.committed(&table.table, &identity).await?.is_some() {
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
        batch: &str,
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
        let (targets, evolution) = (job.targets, job.evolution);
        let folders = !targets.is_empty();
        let mut results = match folders {
            true => self.sources(objects, Some(batch), job, deadline).await?,
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
        let listed = written.and_then(|written| {
            let glue = BatchGlue::of(targets, &results, evolution)?;
            Ok((batch_tables(&written)?, glue))
        });
        let (listed, glue) = match listed {
            Ok(listed) => listed,
            Err(e) => return Err(self.undo(e, &catalog, &results).await),
        };
        let listing = self.list_batch(folder, batch, results, &listed, glue.as_ref(), deadline);
        match listing.await {
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
        // The versions the folders read (one response for all the batch's objects).
        let reads: Vec<SourceRead> = results.iter().flat_map(Response::reads).cloned().collect();
        for (i, object) in objects.iter().enumerate() {
            let opened = self.open_again(object, reads.get(i)).await?;
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

    /// A table's or a folder's maintenance (the maintain stage does it), once the table (or
    /// the folder and its Glue table) is allowed.
    ///
    /// # Errors
    /// `TableNotAllowed` outside `ALLOWED_TABLES`; `TargetNotAllowed` outside
    /// `ALLOWED_PREFIXES`; `InvalidEvent` for a folder without a Glue table; as
    /// [`Maintenance::run`] and [`Maintenance::run_folder`].
    pub(super) async fn maintain(
        &self,
        maintain: &Maintain,
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let glued = match &maintain.what {
            Maintained::Table(table) => {
                self.check_tables(std::slice::from_ref(table))?;
                None
            }
            Maintained::Folder { folder, glue_table } => {
                let table = self.folder_table(folder, glue_table.as_ref())?;
                self.check_tables(std::slice::from_ref(&table))?;
                Some((folder, table))
            }
        };
        let catalog = self.catalog().await;
        let maintenance = Maintenance {
            store: &self.store,
            catalog: &catalog,
            glue: self.glue.client().await,
            holder: self.turns.holder(&[], deadline, SystemTime::now()),
            row_group: self.config.row_groups(),
            deadline,
            dry_run: maintain.dry_run,
        };
        let report = match (&maintain.what, glued) {
            (_, Some((folder, table))) => {
                maintenance
                    .run_folder(folder, &table, &maintain.steps)
                    .await?
            }
            (Maintained::Table(table), None) => maintenance.run(table, &maintain.steps).await?,
            (Maintained::Folder { .. }, None) => unreachable!("a folder has its table"),
        };
        self.measures.maintained(report.counts());
        Ok(Reply::Maintained {
            maintained: Box::new(report),
        })
    }

    /// The Glue table over `folder`: the event's, else the one `DEFAULT_TARGETS` gives it,
    /// once the folder is allowed.
    ///
    /// # Errors
    /// `TargetNotAllowed` outside `ALLOWED_PREFIXES`; `InvalidEvent` when neither names one.
    fn folder_table(
        &self,
        folder: &S3Prefix,
        named: Option<&TableTarget>,
    ) -> Result<TableTarget, Error> {
        if let Some(allowed) = &self.config.allowed {
            allowed.check_folder(folder, "maintain.folder")?;
        }
        let configured = (self.config.default_targets.iter().flatten())
            .find(|t| t.prefix == *folder)
            .and_then(|t| t.glue_table.clone());
        named.cloned().or(configured).ok_or_else(|| {
            Error::InvalidEvent(format!(
                "`maintain.folder` {folder} has no Glue table (name it with `glue_table`, or give the folder one in DEFAULT_TARGETS): readers that list a folder would meet the old files and the new together, or neither, since a folder has no atomic swap; through a Glue table a compacted partition moves in one call"
            ))
        })
    }

    /// A catalog of this invocation's own (its file IO logs what it writes).
    pub(super) async fn catalog(&self) -> GlueCatalog {
        GlueCatalog::new(
            self.glue.client().await.clone(),
            TableFiles::new(&self.store),
        )
        .with_horizon(self.config.exactly_once)
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
        let version = source.version_id.as_deref();
        stream::open(&self.store, &self.measures, source, version, if_match).await
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
            let done = match identity {
                Some(id) => catalog.committed(&table.table, id).await?.is_some(),
                None => false,
            };
            if done {
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
        // A header-less CSV object's columns are the (first) table's, in order.
        let columns = writing.open.first().map(|(table, _)| table.arrow.clone());
        let mut chunks = Chunks::start(opened, source, columns.as_deref())?;
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
                    .sources(std::slice::from_ref(source), None, job, deadline)
                    .await?;
                Ok(responses.remove(0))
            }
        }
    }

    async fn write(
        &self,
        table: &Prepared,
        batches: Vec<RecordBatch>,
    ) -> Result<Vec<DataFile>, Error> {
        let mut writer = table.writer(&uuid::Uuid::now_v7().to_string()).await?;
        writer
            .write_all(batches)
            .await
            .map_err(|e| write_error(table, e))?;
        writer.close().await.map_err(|e| write_error(table, e))
    }
}

/// What the folders' part converts.
enum Feed<'r, 's> {
    Rows(Rows<'r>, &'s str),
    Source(&'s Source),
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
