//! Inline rows into Iceberg tables (beside any folders of the same event): each table is
//! read (or created from `TABLE_WAREHOUSE`), the rows are matched to its schema before
//! anything is written, its data files are written, the folders are made visible, and each
//! table gets one snapshot recording the work's identity. Any failure removes every file
//! written and every folder object made visible.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use iceberg::arrow::{arrow_schema_to_schema_auto_assign_ids, schema_to_arrow_schema};
use iceberg::spec::FormatVersion;
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent};

use super::Function;
use super::conversion::Conversion;
use super::reply::{Response, TableAppended};
use crate::Error;
use crate::catalog::append::{self, catalog_error};
use crate::catalog::glue::GlueCatalog;
use crate::encode::codec::Codec;
use crate::encode::columns::{self, UnknownKeys};
use crate::input::target::TableTarget;
use crate::rows::Rows;
use crate::schema::{ddl, inference};
use crate::store::table_files::TableFiles;

/// The table property naming its Parquet codec.
const CODEC_PROPERTY: &str = "write.parquet.compression-codec";

/// A table ready to take the rows: loaded or created, with the rows in its schema.
struct Prepared {
    ident: TableIdent,
    table: Table,
    created: bool,
    batches: Vec<RecordBatch>,
    codec: Codec,
}

impl Function {
    /// Inline rows into `tables` and the folders of `job`, under the identity `id`.
    pub(super) async fn rows_into_tables(
        &self,
        rows: Rows<'_>,
        job: Conversion<'_>,
        tables: &[TableTarget],
        id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Response, Error> {
        if let Some(allowed) = &self.config.allowed_tables {
            tables.iter().try_for_each(|t| allowed.check(t))?;
        }
        if job.partitioning.by.is_some() {
            return Err(Error::InvalidEvent(
                "`partition_by` with a table target: the table's partition spec decides its layout"
                    .into(),
            ));
        }
        let files = TableFiles::new(&self.store);
        let catalog = GlueCatalog::new(self.glue.client().await.clone(), files.clone());
        let written = rows.len();
        let identity = format!("request {id}");
        let mut prepared = Vec::with_capacity(tables.len());
        for target in tables {
            let result = self.prepare(&catalog, target, &rows, &job).await;
            match result {
                Ok(table) => prepared.push(table),
                Err(e) => return Err(cleaned(e, &files).await),
            }
        }
        let dry_run = job.dry_run;
        let mut response = match job.targets.is_empty() {
            true => empty_response(dry_run),
            false => match self.rows(rows, job, id, deadline).await {
                Ok(response) => response,
                Err(e) => return Err(cleaned(e, &files).await),
            },
        };
        let name = uuid::Uuid::now_v7().to_string();
        for table in prepared {
            let appended = match dry_run {
                true => Ok(described(&table, None, written)),
                false => {
                    self.append(&catalog, table, &name, &identity, written, deadline)
                        .await
                }
            };
            match appended {
                Ok(appended) => response.tables.push(appended),
                Err(e) => {
                    for object in &response.objects {
                        // Best effort: the error names the leftovers' cause either way.
                        let _ = self.store.delete(&object.bucket, &object.key).await;
                    }
                    return Err(cleaned(e, &files).await);
                }
            }
        }
        response.rows = written;
        Ok(response)
    }

    /// Reads or creates the table and converts the rows to its schema: every refusal comes
    /// here, before anything is written.
    async fn prepare(
        &self,
        catalog: &GlueCatalog,
        target: &TableTarget,
        rows: &Rows<'_>,
        job: &Conversion<'_>,
    ) -> Result<Prepared, Error> {
        let ident = TableIdent::new(
            NamespaceIdent::new(target.database.clone()),
            target.table.clone(),
        );
        let rows_schema = match &job.schema {
            Some(declared) => declared.clone(),
            None => inference::infer(rows)?,
        };
        let (table, created) = match catalog.load_table(&ident).await {
            Ok(table) => (table, false),
            Err(e) if e.kind() == ErrorKind::TableNotFound => (
                self.create(catalog, &ident, &rows_schema, job.dry_run)
                    .await?,
                true,
            ),
            Err(e) => return Err(catalog_error(&ident, e)),
        };
        if !table.metadata().default_partition_spec().is_unpartitioned() {
            return Err(Error::InvalidEvent(format!(
                "table {ident} is partitioned: only unpartitioned tables are written, for now; nothing was written"
            )));
        }
        let arrow = schema_to_arrow_schema(table.metadata().current_schema()).map_err(|e| {
            Error::TableSchemaMismatch(format!("table {ident}: its schema has no Arrow form: {e}"))
        })?;
        if let Some(extra) = rows_schema
            .fields()
            .iter()
            .find(|f| arrow.field_with_name(f.name()).is_err())
        {
            return Err(Error::TableSchemaMismatch(format!(
                "table {ident} has no column `{}` (the rows have it); nothing was written",
                extra.name()
            )));
        }
        let batches = columns::build(rows, Arc::new(arrow), UnknownKeys::Error)
            .map_err(|e| e.within(&format!("table {ident}")))?;
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
            created,
            batches,
            codec,
        })
    }

    /// A missing table, created under `TABLE_WAREHOUSE` (format v2, unpartitioned) from the
    /// rows' schema; in a dry run, only described.
    async fn create(
        &self,
        catalog: &GlueCatalog,
        ident: &TableIdent,
        schema: &Schema,
        dry_run: bool,
    ) -> Result<Table, Error> {
        let Some(warehouse) = &self.config.table_warehouse else {
            return Err(Error::TableNotFound(format!(
                "table {ident} does not exist in the Glue Data Catalog, and TABLE_WAREHOUSE is not set to create it; nothing was written"
            )));
        };
        let iceberg_schema = arrow_schema_to_schema_auto_assign_ids(schema).map_err(|e| {
            Error::TableSchemaMismatch(format!(
                "table {ident}: the rows' schema has no Iceberg form: {e}"
            ))
        })?;
        let location = format!(
            "{warehouse}{}.db/{}",
            ident.namespace().as_ref()[0],
            ident.name()
        );
        let creation = TableCreation::builder()
            .name(ident.name().to_owned())
            .location(location)
            .schema(iceberg_schema)
            .format_version(FormatVersion::V2)
            .properties(HashMap::new())
            .build();
        if dry_run {
            let metadata = iceberg::spec::TableMetadataBuilder::from_table_creation(creation)
                .and_then(|b| b.build())
                .map_err(|e| catalog_error(ident, e))?
                .metadata;
            return Table::builder()
                .metadata(metadata)
                .identifier(ident.clone())
                .file_io(iceberg::io::FileIO::new_with_memory())
                .runtime(iceberg::Runtime::current())
                .build()
                .map_err(|e| catalog_error(ident, e));
        }
        match catalog.create_table(ident.namespace(), creation).await {
            Ok(table) => Ok(table),
            // Another writer created it meanwhile: append to theirs.
            Err(e) if e.kind() == ErrorKind::TableAlreadyExists => catalog
                .load_table(ident)
                .await
                .map_err(|e| catalog_error(ident, e)),
            Err(e) => Err(catalog_error(ident, e)),
        }
    }

    async fn append(
        &self,
        catalog: &GlueCatalog,
        table: Prepared,
        name: &str,
        identity: &str,
        rows: usize,
        deadline: Option<SystemTime>,
    ) -> Result<TableAppended, Error> {
        let properties = crate::encode::writer::table_properties(table.codec);
        let data_files =
            append::write_data_files(&table.table, table.batches.clone(), properties, name).await?;
        let files = catalog.files();
        let appended =
            append::commit(catalog, files, &table.ident, data_files, identity, deadline).await?;
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
        let mut described = described(&table, Some(appended.snapshot_id), rows);
        described.already_committed = appended.already;
        described.data_files = appended.data_files;
        Ok(described)
    }
}

/// The answer for a table, before or after its commit.
fn described(table: &Prepared, snapshot_id: Option<i64>, rows: usize) -> TableAppended {
    let schema: SchemaRef = table
        .batches
        .first()
        .map(RecordBatch::schema)
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    TableAppended {
        table: table.ident.to_string(),
        snapshot_id,
        already_committed: false,
        created: table.created,
        rows,
        data_files: Vec::new(),
        schema: ddl::to_spark(&schema),
    }
}

fn empty_response(dry_run: bool) -> Response {
    Response {
        rows: 0,
        objects: Vec::new(),
        dry_run,
        schema: None,
        source: None,
        tables: Vec::new(),
    }
}

/// `error`, once every table file written has been removed (those that could not be are
/// named).
async fn cleaned(error: Error, files: &TableFiles) -> Error {
    let left = files.remove_written().await;
    match left.is_empty() {
        true => error,
        false => crate::store::transaction::with_leftovers(error, &left),
    }
}
