//! The snapshots of the work written into tables: one per table for an invocation's work,
//! one for all of an SQS batch's good messages, one for a whole-prefix job; and the removal of
//! what will not be committed.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use iceberg::spec::{
    DataFile, NestedFieldRef, deserialize_data_file_from_json, serialize_data_file_to_json,
};
use iceberg::table::Table;
use iceberg::{Catalog, TableIdent};

use crate::Error;
use crate::catalog::append::{self, Part, catalog_error};
use crate::catalog::glue::{GlueCatalog, table_ident};
use crate::handler::Function;
use crate::handler::job::BatchTable;
use crate::handler::reply::{Response, TableCommitted};
use crate::input::target::TableTarget;
use crate::store::table_files::TableFiles;

use super::prepare::with_columns;
use super::{Prepared, described};

impl Function {
    /// One snapshot per table, in order; a failure removes what this invocation wrote that
    /// no snapshot refers to, and the folders' objects. Within an SQS batch, the commits are
    /// left to the batch's end instead ([`Deferred`]).
    pub(super) async fn commit_tables(
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
            objects: (response.objects.iter())
                .filter(|o| !o.existed)
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
                advances: &table.advances,
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
    pub(in crate::handler) async fn commit_job_tables(
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
            let ident = table_ident(&target);
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
                advances: &[],
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
    pub(super) async fn undo(
        &self,
        error: Error,
        catalog: &GlueCatalog,
        responses: &[Response],
    ) -> Error {
        let mut left = catalog.files().remove_written().await;
        let made = responses.iter().flat_map(|r| &r.objects);
        for object in made.filter(|o| !o.existed) {
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
pub(in crate::handler) struct Deferred(Mutex<Option<Vec<Pending>>>);

/// One unit of work's data files, written and not yet committed.
pub(in crate::handler) struct Pending {
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
    pub(in crate::handler) fn start(&self) {
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
    pub(in crate::handler) fn len(&self) -> usize {
        self.lock().as_ref().map_or(0, Vec::len)
    }

    /// Those added since `mark` belong to `message`.
    pub(in crate::handler) fn belong_to(&self, mark: usize, message: &str) {
        if let Some(all) = self.lock().as_mut() {
            all.iter_mut()
                .skip(mark)
                .for_each(|p| p.message = message.to_owned());
        }
    }

    /// Takes back those added since `mark` (a message that failed after some of its work
    /// was kept).
    pub(in crate::handler) fn take_since(&self, mark: usize) -> Vec<Pending> {
        self.lock()
            .as_mut()
            .map(|all| all.split_off(mark.min(all.len())))
            .unwrap_or_default()
    }

    /// The batch ends: everything waiting.
    pub(in crate::handler) fn finish(&self) -> Vec<Pending> {
        self.lock().take().unwrap_or_default()
    }
}

impl Function {
    /// Commits what an SQS batch's good messages wrote: one snapshot per table (and set of
    /// added columns), recording every message's identity, so a redelivered message adds
    /// nothing. A part another delivery committed meanwhile is left out (its files removed);
    /// the same work twice in one batch is committed once. The messages of a commit that
    /// fails, with the error, their files and folder objects removed.
    pub(in crate::handler) async fn commit_pending(
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
                advances: &[],
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
    pub(in crate::handler) async fn remove_pending(
        &self,
        pending: Vec<Pending>,
        also: Vec<String>,
    ) {
        let paths = pending
            .iter()
            .flat_map(|p| &p.tables)
            .flat_map(|(_, files)| files.iter().map(|f| f.file_path().to_owned()))
            .chain(also);
        let mut left = TableFiles::new(&self.store).remove(paths).await.len();
        for (bucket, key) in pending.iter().flat_map(|p| &p.objects) {
            left += usize::from(self.store.delete(bucket, key).await.is_err());
        }
        if left > 0 {
            tracing::warn!(left, "files of uncommitted work could not be removed");
        }
    }
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
pub(super) fn batch_tables(
    written: &[(Prepared, Vec<DataFile>)],
) -> Result<Vec<BatchTable>, Error> {
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
