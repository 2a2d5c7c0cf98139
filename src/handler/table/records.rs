//! A stream batch's records into tables, exactly once: each table's marks are read, only the
//! records past their shard's mark are written, and the snapshot raises the marks, refused
//! if another invocation raised one of them meanwhile (see [`crate::catalog::marks`]).
//! DynamoDB Streams events do not name their shard, so a DynamoDB batch is recognised as a
//! whole (its identity) instead: the same batch again adds nothing, a re-split one may.

use std::time::SystemTime;

use std::sync::Arc;

use arrow_schema::SchemaRef;
use iceberg::Catalog;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::DataFile;

use crate::Error;
use crate::catalog::append::catalog_error;
use crate::catalog::glue::{GlueCatalog, table_ident};
use crate::catalog::marks::{Advance, Marks, compare_positions};
use crate::encode::columns::UnknownKeys;
use crate::handler::Function;
use crate::handler::conversion::Conversion;
use crate::handler::records::{Judged, array, parse, shards};
use crate::handler::reply::{Response, TableAppended};
use crate::handler::stream::uuid_shaped;
use crate::input::event::Evolution;
use crate::input::records::{Origin, Record};
use crate::input::target::TableTarget;
use crate::schema::inference;

use super::{Prepared, described};

impl Function {
    /// The kept records of `judged` into `tables`, after the folders' `response`; the
    /// response with each table's entry, and the records skipped as already committed.
    ///
    /// # Errors
    /// As the other table inputs; `CommitConflict` when another invocation committed records
    /// of the batch's shards meanwhile. What was written (the folders' objects included) is
    /// removed.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::handler) async fn records_into_tables(
        &self,
        catalog: &GlueCatalog,
        judged: &Judged<'_>,
        job: &Conversion<'_>,
        tables: &[TableTarget],
        id: &str,
        response: Response,
        deadline: Option<SystemTime>,
    ) -> Result<(Response, usize), Error> {
        let written = self.write_records(catalog, judged, job, tables).await;
        let (written, already, skipped) = match written {
            Ok(written) => written,
            Err(e) => {
                return Err(self.undo(e, catalog, std::slice::from_ref(&response)).await);
            }
        };
        // The batch and what of it is committed: a redelivery that commits more (a bad
        // record set aside this time) is other work, and the marks decide what it adds.
        let kept: String = judged.kept().map(|(i, _)| format!("{i},")).collect();
        let identity = format!("records {id} {}", uuid_shaped(kept.as_bytes()));
        let rows: Vec<(String, usize)> = (written.iter())
            .map(|(table, _, rows)| (table.ident.to_string(), *rows))
            .collect();
        let written = written
            .into_iter()
            .map(|(t, files, _)| (t, files))
            .collect();
        let mut response = self
            .commit_tables(catalog, written, response, &identity, deadline)
            .await?;
        // Each table's own rows: those past its marks.
        for entry in &mut response.tables {
            if let Some((_, n)) = rows.iter().find(|(t, _)| *t == entry.table) {
                entry.rows = *n;
            }
        }
        if response.rows == 0 {
            response.rows = rows.iter().map(|(_, n)| *n).max().unwrap_or(0);
        }
        response.tables.extend(already);
        Ok((response, skipped))
    }

    /// The schemas the tables that exist take a batch's rows in (in Arrow, with their field
    /// ids), each with what becomes of a key it lacks: dropped when `schema_evolution` adds
    /// it, else refused (the record is bad).
    ///
    /// # Errors
    /// `TableNotAllowed`.
    pub(in crate::handler) async fn table_schemas(
        &self,
        catalog: &GlueCatalog,
        tables: &[TableTarget],
        job: &Conversion<'_>,
    ) -> Result<Vec<(SchemaRef, UnknownKeys)>, Error> {
        self.check_tables(tables)?;
        let unknown = match job.evolution {
            Evolution::AddColumns => UnknownKeys::Drop,
            Evolution::None => UnknownKeys::NotInTable,
        };
        let mut schemas = Vec::new();
        for target in tables {
            let ident = table_ident(target);
            // A table that cannot be read is reported by the write; one to be created takes
            // the batch's own types.
            let Ok(table) = catalog.load_table(&ident).await else {
                continue;
            };
            let schema = schema_to_arrow_schema(table.metadata().current_schema())
                .map_err(|e| catalog_error(&ident, e))?;
            schemas.push((Arc::new(schema), unknown));
        }
        Ok(schemas)
    }

    /// Each table's data files of the records past its marks (see [`Written`]).
    async fn write_records(
        &self,
        catalog: &GlueCatalog,
        judged: &Judged<'_>,
        job: &Conversion<'_>,
        tables: &[TableTarget],
    ) -> Result<Written, Error> {
        let batch = judged.batch;
        let kept: Vec<(usize, &str)> = judged.kept().collect();
        let all = array(kept.iter().map(|(_, t)| *t));
        let shape = match &job.schema {
            Some(declared) => declared.clone(),
            None => inference::infer(&parse(&all)?)?,
        };
        let marked = batch.origin != Origin::DynamoDb;
        let shards = if marked { shards(batch) } else { Vec::new() };
        let with_output = self.config.error_output.is_some();
        let (mut written, mut already, mut skipped) = (Vec::new(), Vec::new(), 0);
        for target in tables {
            let mut table = self.prepare(catalog, target, Some(&shape), job).await?;
            let marks = catalog.marks(&table.table, &shards).await?;
            let passes = |r: &Record| !marked || past(&marks, r);
            let passing: Vec<&str> = (kept.iter())
                .filter(|(i, _)| passes(&batch.records[*i]))
                .map(|(_, t)| *t)
                .collect();
            skipped += kept.len() - passing.len();
            table.advances = advances(judged, &marks, &shards, with_output);
            let text = array(passing.into_iter());
            let rows = parse(&text)?;
            if rows.is_empty() {
                already.push(TableAppended {
                    already_committed: true,
                    ..described(&table, None, 0)
                });
                continue;
            }
            self.create(catalog, &mut table).await?;
            let batches = table.build(&rows)?;
            let files = self.write(&table, batches).await?;
            written.push((table, files, rows.len()));
        }
        Ok((written, already, skipped))
    }
}

/// Each table's data files and rows; the tables that held every record; the records skipped.
type Written = (
    Vec<(Prepared, Vec<DataFile>, usize)>,
    Vec<TableAppended>,
    usize,
);

/// Whether `record` lies past its shard's mark.
fn past(marks: &Marks, record: &Record) -> bool {
    marks
        .get(&record.stream, &record.shard)
        .is_none_or(|m| compare_positions(&record.position.text(), &m.position).is_gt())
}

/// Each shard's advance: from its mark to the last record the batch handled (committed, or
/// set aside in the error output), where that lies past the mark.
fn advances(
    judged: &Judged<'_>,
    marks: &Marks,
    shards: &[(&str, &str)],
    with_output: bool,
) -> Vec<Advance> {
    let records = &judged.batch.records;
    shards
        .iter()
        .filter_map(|&(stream, shard)| {
            let to = (0..records.len())
                .filter(|&i| records[i].stream == stream && records[i].shard == shard)
                .filter(|&i| judged.handled(i, with_output))
                .map(|i| records[i].position.text())
                .max_by(|a, b| compare_positions(a, b))?;
            let from = marks.get(stream, shard).map(|m| m.position.clone());
            let ahead = from
                .as_deref()
                .is_none_or(|f| compare_positions(&to, f).is_gt());
            ahead.then(|| Advance {
                stream: stream.to_owned(),
                shard: shard.to_owned(),
                from,
                to,
            })
        })
        .collect()
}
