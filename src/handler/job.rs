//! A job of many invocations (a Step Functions Distributed Map over a prefix) committed as a
//! whole: `{"commit": {"phase": "start"}}` removes each target's `_SUCCESS` before the map
//! runs, and `{"commit": {"phase": "finish", "plan": {...}}}` writes it after the map
//! succeeded, listing every object the run wrote, read from every planned batch's manifest
//! (or, given `results` instead, from the map's `ResultWriter` export).
//! A reader trusts a folder only while its `_SUCCESS` is there (Spark's convention; the JSON
//! body is the S3A committers' form, with the files listed).

use iceberg::spec::NestedField;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::HashSet;
use std::time::SystemTime;

use super::Function;
use super::conversion::make_visible;
use super::hive::distinct;
use super::replace::{Wrote, listed_keys};
use super::reply::{BatchListed, GlueTableKept, Marker, Reply, Response};
use super::stream::uuid_shaped;
use super::turn;
use crate::Error;
use crate::catalog::hive::Columns;
use crate::input::commit::{Commit, PlanRef, RunRecord};
use crate::input::event::{Evolution, WriteMode};
use crate::input::target::{S3Prefix, Target};
use crate::store::s3::split_uri;
use crate::store::table_files::TableFiles;
use crate::store::transaction::{Transaction, with_leftovers};

/// The marker's name, in each target's folder.
pub const MARKER: &str = "_SUCCESS";

/// The `ResultWriter` export's `manifest.json`.
#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "ResultFiles")]
    result_files: ResultFiles,
}

#[derive(Deserialize)]
struct ResultFiles {
    #[serde(rename = "SUCCEEDED", default)]
    succeeded: Vec<ResultFile>,
    #[serde(rename = "FAILED", default)]
    failed: Vec<ResultFile>,
    #[serde(rename = "PENDING", default)]
    pending: Vec<ResultFile>,
}

#[derive(Deserialize)]
struct ResultFile {
    #[serde(rename = "Key")]
    key: String,
}

/// The result files of a map run, from its `manifest.json`.
#[derive(Debug, PartialEq, Eq)]
pub struct RunFiles {
    /// The keys of the files of succeeded executions.
    pub succeeded: Vec<String>,
    failed: usize,
    pending: usize,
}

impl RunFiles {
    /// # Errors
    /// `InvalidEvent` for a manifest of another shape.
    pub fn parse(manifest: &[u8]) -> Result<RunFiles, Error> {
        let manifest: Manifest = serde_json::from_slice(manifest).map_err(|e| {
            Error::InvalidEvent(format!(
                "`commit.results` is not a Distributed Map ResultWriter manifest: {e}"
            ))
        })?;
        let files = manifest.result_files;
        Ok(RunFiles {
            succeeded: files.succeeded.into_iter().map(|f| f.key).collect(),
            failed: files.failed.len(),
            pending: files.pending.len(),
        })
    }

    /// `JobIncomplete` when any execution failed or is pending (a map that tolerated
    /// failures): the job is not whole, so no marker and no snapshot.
    pub fn incomplete(&self) -> Option<Error> {
        (self.failed + self.pending > 0).then(|| {
            Error::JobIncomplete(format!(
                "the map run has {} failed and {} pending result files: some objects were not converted, so no {MARKER} was written and no table committed",
                self.failed, self.pending
            ))
        })
    }
}

/// One table's part of a map batch, in the batch's manifest: the data files the batch wrote
/// and did not commit, for the job's finish step to commit with every other batch's in one
/// snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchTable {
    /// `<database>.<table>`.
    pub table: String,
    /// The partition spec the files were written in.
    pub spec_id: i32,
    /// Columns the commit adds (`schema_evolution`), with the ids the files carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adds: Vec<NestedField>,
    pub rows: usize,
    /// Each data file in iceberg-rust's JSON form (path, metrics, partition values).
    pub data_files: Vec<Value>,
}

/// A batch's manifest: the reply it would give without one, its tables' data files, and the
/// columns its folders' Glue tables are to take.
#[derive(Serialize)]
struct BatchManifest<'a> {
    results: &'a [Response],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tables: &'a [BatchTable],
    #[serde(skip_serializing_if = "Option::is_none")]
    glue: Option<&'a BatchGlue>,
}

/// What a batch wrote as its folders' Glue tables see it, for the job's finish step to keep
/// them in step once: the columns of all its objects, and whether new ones may be added.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchGlue {
    pub columns: Columns,
    pub add_columns: bool,
}

impl BatchGlue {
    /// The columns of a batch's `results`, merged; `None` when its folders have no Glue table.
    ///
    /// # Errors
    /// As [`Columns::merge`].
    pub(super) fn of(
        targets: &[Target],
        results: &[Response],
        evolution: Evolution,
    ) -> Result<Option<BatchGlue>, Error> {
        let Some(table) = targets.iter().find_map(|t| t.glue_table.as_ref()) else {
            return Ok(None);
        };
        let mut columns = results.iter().filter_map(|r| r.columns.clone());
        let Some(mut all) = columns.next() else {
            return Ok(None);
        };
        for more in columns {
            all.merge(more, table)?;
        }
        Ok(Some(BatchGlue {
            columns: all,
            add_columns: evolution == Evolution::AddColumns,
        }))
    }

    /// Adds another batch's.
    fn merge(&mut self, other: BatchGlue) -> Result<(), Error> {
        self.add_columns &= other.add_columns;
        self.columns.merge(other.columns, &"the job's Glue tables")
    }
}

/// What the run wrote, per target: the keys (relative to the target's folder), rows and bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub files: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
}

impl Written {
    /// What the run left in `target`'s folder: its files and its marker, and the partition
    /// folders it wrote in (none for a run that wrote nothing there).
    fn wrote(&self, target: &Target) -> Wrote {
        let folder = &target.prefix.key_prefix;
        let mut wrote = Wrote::default();
        for file in &self.files {
            let partition = &file[..file.rfind('/').map_or(0, |slash| slash + 1)];
            if !wrote.partitions.iter().any(|p| p == partition) {
                wrote.partitions.push(partition.to_owned());
            }
            wrote.keys.insert(format!("{folder}{file}"));
        }
        wrote.keys.insert(format!("{folder}{MARKER}"));
        wrote
    }
}

/// Adds what one results file (a JSON array, or JSON Lines, of executions) lists to `written`
/// (one entry per target): each execution's `Output` is the function's reply (directly, or as
/// `lambda:invoke`'s `Payload`). Returns the batch manifests the replies refer to instead of
/// listing their objects, for the caller to read and add with [`add_reply`].
///
/// # Errors
/// `InvalidEvent` for a file or an output of another shape.
pub fn add_results(
    text: &[u8],
    targets: &[Target],
    written: &mut [Written],
) -> Result<Vec<String>, Error> {
    let invalid = |why: String| Error::InvalidEvent(format!("a map run results file: {why}"));
    let executions: Vec<Value> = match serde_json::from_slice(text) {
        Ok(Value::Array(all)) => all,
        _ => text
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("neither a JSON array nor JSON Lines: {e}")))?,
    };
    let mut manifests = Vec::new();
    for execution in executions {
        let output = match execution.get("Output") {
            Some(Value::String(text)) => serde_json::from_str(text)
                .map_err(|e| invalid(format!("an `Output` is not JSON: {e}")))?,
            _ => execution,
        };
        let reply = output.get("Payload").unwrap_or(&output);
        manifests.extend(add_reply(reply, targets, written)?);
    }
    Ok(manifests)
}

/// Adds the objects one reply of a batch lists to `written`; or, for a reply that lists them
/// in a manifest, returns the manifest's URI.
///
/// # Errors
/// `InvalidEvent` for a value that is not such a reply.
pub fn add_reply(
    reply: &Value,
    targets: &[Target],
    written: &mut [Written],
) -> Result<Option<String>, Error> {
    let not_a_reply =
        || Error::InvalidEvent("a map run result is not this function's reply".into());
    if let Some(listed) = reply.get("batch") {
        let manifest = listed.get("manifest").and_then(Value::as_str);
        return manifest.map(|m| Some(m.to_owned())).ok_or_else(not_a_reply);
    }
    let responses = match reply.get("results") {
        Some(Value::Array(results)) => results.iter().collect(),
        _ => vec![reply],
    };
    for response in responses {
        let Some(Value::Array(objects)) = response.get("objects") else {
            return Err(not_a_reply());
        };
        for object in objects {
            let uri = object
                .get("uri")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some((index, relative)) = targets
                .iter()
                .enumerate()
                .find_map(|(i, t)| uri.strip_prefix(&t.prefix.to_string()).map(|r| (i, r)))
            else {
                continue;
            };
            let entry = &mut written[index];
            entry.files.push(relative.to_owned());
            entry.rows += object.get("rows").and_then(Value::as_u64).unwrap_or(0);
            entry.bytes += object.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        }
    }
    Ok(None)
}

/// The marker's body: what the job wrote in this folder.
pub fn marker(written: &Written, map_run: Option<&str>) -> Vec<u8> {
    let mut files = written.files.clone();
    files.sort();
    files.dedup();
    serde_json::to_vec_pretty(&serde_json::json!({
        "committer": concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")),
        "map_run": map_run,
        "objects": files.len(),
        "rows": written.rows,
        "bytes": written.bytes,
        "filenames": files,
    }))
    .expect("a JSON value serializes")
}

impl Function {
    /// A job's commit step (see the module docs).
    pub(super) async fn commit_job(
        &self,
        commit: Commit,
        targets: &[Target],
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let marker_of = |t: &Target| format!("{}{}", t.prefix.key_prefix, MARKER);
        let (mut tables, mut glue_tables, mut removed) = (Vec::new(), Vec::new(), None);
        let (phase, written) = match commit {
            Commit::Start => {
                for target in targets {
                    self.store
                        .delete(&target.prefix.bucket, &marker_of(target))
                        .await?;
                }
                ("start", vec![Written::default(); targets.len()])
            }
            Commit::Finish { run, map_run, mode } => {
                let mut written = vec![Written::default(); targets.len()];
                let mut listed = Listed::default();
                let (read, incomplete) = match &run {
                    RunRecord::Plan(plan) => {
                        self.read_plan(plan, targets, &mut written, &mut listed)
                            .await?
                    }
                    RunRecord::Results { bucket, key } => {
                        let manifest = self.store.read_all(bucket, key, RESULTS_LIMIT).await?;
                        let run = RunFiles::parse(&manifest)?;
                        let read = self
                            .read_run(bucket, &run, targets, &mut written, &mut listed)
                            .await;
                        (read, run.incomplete())
                    }
                };
                if let Some(incomplete) = incomplete {
                    // What the succeeded batches wrote for tables will never be committed.
                    self.remove_listed(listed).await;
                    return Err(incomplete);
                }
                read?;
                let job = match &map_run {
                    Some(arn) => format!("job {arn}"),
                    None => format!("job {}", run.uri()),
                };
                let mut wrote: Vec<Wrote> = (targets.iter().zip(&written))
                    .map(|(target, written)| written.wrote(target))
                    .collect();
                // Two finishes of one run take turns, and a finish that replaces takes the
                // whole of each folder.
                let id = uuid_shaped(job.as_bytes());
                let takes = match mode {
                    WriteMode::Append => WriteMode::Append,
                    _ => WriteMode::Overwrite,
                };
                let claims = turn::claims(targets, &[&id], takes, &[]);
                self.take_turn(claims, &[], deadline).await?;
                let before = self.before(targets, mode).await?;
                if let Some(before) = &before {
                    self.whole_or_withdrawn(targets, &wrote, before).await?;
                }
                tables = self
                    .commit_job_tables(listed.tables, &job, deadline)
                    .await?;
                glue_tables = self
                    .finish_glue_tables(targets, &wrote, listed.glue)
                    .await?;
                let mut transaction = Transaction::new(&self.store);
                for (target, written) in targets.iter().zip(&written) {
                    let index = transaction.add(target.prefix.bucket.clone(), marker_of(target));
                    let body = marker(written, map_run.as_deref());
                    transaction.last(index, body.into()).await?;
                }
                match &before {
                    Some(before) => transaction.existing(&listed_keys(targets, before)),
                    None => {
                        if let Err(e) = transaction.survey().await {
                            let left = transaction.abort().await;
                            return Err(with_leftovers(e, &left));
                        }
                    }
                }
                make_visible(&mut transaction, false, deadline).await?;
                self.follow(targets, &mut wrote, &glue_tables).await?;
                // The markers list the run's files: now what the run replaces can go.
                removed = self.replace(targets, &wrote, mode, before, false).await?;
                ("finish", written)
            }
        };
        let markers = targets
            .iter()
            .zip(written)
            .map(|(target, written)| Marker {
                uri: format!("{}{}", target.prefix, MARKER),
                objects: written.files.len(),
                rows: written.rows,
                bytes: written.bytes,
            })
            .collect();
        Ok(Reply::Committed {
            phase,
            markers,
            tables,
            glue_tables,
            removed,
        })
    }

    /// Checks that every file of the run is still in its folders as listed (`before`): a
    /// concurrent overwrite may have replaced some. If not, the run's other files go too, so
    /// each folder holds that other write whole.
    ///
    /// # Errors
    /// `JobIncomplete` naming what was missing (and what could not be removed).
    async fn whole_or_withdrawn(
        &self,
        targets: &[Target],
        wrote: &[Wrote],
        before: &[Vec<String>],
    ) -> Result<(), Error> {
        let mut missing = Vec::new();
        let mut present = Vec::new();
        for ((target, wrote), listed) in targets.iter().zip(wrote).zip(before) {
            let marker = format!("{}{MARKER}", target.prefix.key_prefix);
            let listed: HashSet<&String> = listed.iter().collect();
            let files = wrote.keys.iter().filter(|key| **key != marker);
            let (there, gone): (Vec<&String>, Vec<&String>) =
                files.partition(|key| listed.contains(key));
            let bucket = &target.prefix.bucket;
            missing.extend(gone.into_iter().map(|key| format!("s3://{bucket}/{key}")));
            present.push((bucket, there.into_iter().cloned().collect::<Vec<_>>()));
        }
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort();
        let mut left = Vec::new();
        for (bucket, keys) in present {
            left.extend(self.store.delete_keys(bucket, &keys).await);
        }
        let e = Error::JobIncomplete(format!(
            "{} of the run's files are no longer in its folders (first: {}): a concurrent overwrite replaced them, so the run's other files were removed too and no {MARKER} was written; each folder holds that other write whole; run the job again",
            missing.len(),
            missing[0]
        ));
        Err(with_leftovers(e, &left))
    }

    /// The folders' Glue tables kept in step with what the whole job wrote: the columns its
    /// batches listed, and every partition folder it wrote in.
    ///
    /// # Errors
    /// `InvalidEvent` when the batches listed no columns for folders they wrote in; as
    /// [`Function::keep_glue_tables`].
    async fn finish_glue_tables(
        &self,
        targets: &[Target],
        wrote: &[Wrote],
        glue: Option<BatchGlue>,
    ) -> Result<Vec<GlueTableKept>, Error> {
        if targets.iter().all(|t| t.glue_table.is_none()) {
            return Ok(Vec::new());
        }
        let Some(glue) = glue else {
            if wrote.iter().all(|w| w.partitions.is_empty()) {
                return Ok(Vec::new());
            }
            return Err(Error::InvalidEvent(
                "the targets name Glue tables, but the map run's batches listed no columns for them: run the batches with the same targets and a `manifests` folder; no _SUCCESS was written".into(),
            ));
        };
        let paths = distinct(wrote.iter().flat_map(|w| &w.partitions).map(String::as_str));
        let evolution = match glue.add_columns {
            true => Evolution::AddColumns,
            false => Evolution::None,
        };
        self.keep_glue_tables(targets, &glue.columns, &paths, evolution, false)
            .await
    }
}

impl Function {
    /// Refuses, before anything is converted, a manifests folder the function may not write
    /// in or one inside a target (its manifests would be read as the dataset's files).
    ///
    /// # Errors
    /// `TargetNotAllowed` outside `ALLOWED_PREFIXES`; `InvalidEvent` inside a target.
    pub(super) fn check_manifests(
        &self,
        folder: &S3Prefix,
        targets: &[Target],
    ) -> Result<(), Error> {
        const WHAT: &str = "BatchInput.manifests";
        if let Some(allowed) = &self.config.allowed {
            allowed.check_folder(folder, WHAT)?;
        }
        match targets.iter().find(|t| t.prefix.contains(folder)) {
            None => Ok(()),
            Some(t) => Err(Error::InvalidEvent(format!(
                "`{WHAT}` ({folder}) lies inside the target {}: keep the manifests apart from the data",
                t.prefix
            ))),
        }
    }

    /// Writes a batch's `results` and `tables` to its manifest in `folder`, named for the
    /// batch's identity `id` (a retried batch rewrites its own, and the finish step finds a
    /// planned batch's), and answers with a reference to it.
    pub(super) async fn list_batch(
        &self,
        folder: &S3Prefix,
        id: &str,
        results: Vec<Response>,
        tables: &[BatchTable],
        glue: Option<&BatchGlue>,
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let key = format!("{}{id}.json", folder.key_prefix);
        let listed = BatchListed {
            manifest: format!("s3://{}/{key}", folder.bucket),
            sources: results.iter().flat_map(Response::reads).count(),
            rows: results.iter().map(|r| r.rows).sum(),
            objects: results.iter().map(|r| r.objects.len()).sum(),
            bytes: results
                .iter()
                .flat_map(|r| &r.objects)
                .map(|o| o.bytes)
                .sum(),
            data_files: tables.iter().map(|t| t.data_files.len()).sum(),
        };
        let manifest = BatchManifest {
            results: &results,
            tables,
            glue,
        };
        let body = serde_json::to_vec(&manifest).expect("a manifest serializes");
        self.put_whole(&folder.bucket, &key, body, deadline).await?;
        Ok(Reply::Listed { batch: listed })
    }

    /// Adds what the run's succeeded batches wrote to `written` (folders) and `listed`
    /// (tables, and the manifests that list them).
    async fn read_run(
        &self,
        bucket: &str,
        run: &RunFiles,
        targets: &[Target],
        written: &mut [Written],
        listed: &mut Listed,
    ) -> Result<(), Error> {
        for file in &run.succeeded {
            let text = self.store.read_all(bucket, file, RESULTS_LIMIT).await?;
            for manifest in add_results(&text, targets, written)? {
                self.add_listing(&manifest, targets, written, listed)
                    .await?;
            }
        }
        Ok(())
    }

    /// Adds what every planned batch's manifest lists to `written` and `listed`: the read's
    /// outcome, and `JobIncomplete` when a planned batch left no manifest.
    ///
    /// # Errors
    /// As [`S3Store::read_all`](crate::store::s3::S3Store::read_all) for the plan itself;
    /// `InvalidEvent` for a plan of another shape.
    async fn read_plan(
        &self,
        plan: &PlanRef,
        targets: &[Target],
        written: &mut [Written],
        listed: &mut Listed,
    ) -> Result<(Result<(), Error>, Option<Error>), Error> {
        let invalid = |why: String| Error::InvalidEvent(format!("`commit.plan`: {why}"));
        let text = self
            .store
            .read_all(&plan.bucket, &plan.ids, RESULTS_LIMIT)
            .await?;
        let ids: Vec<String> = serde_json::from_slice(&text).map_err(|e| {
            invalid(format!(
                "s3://{}/{} is not a list of batch identities: {e}",
                plan.bucket, plan.ids
            ))
        })?;
        let manifests = S3Prefix::parse(&plan.manifests, "`commit.plan.manifests`")?;
        let mut missing = 0;
        for id in &ids {
            let uri = format!("{manifests}{id}.json");
            match self.add_listing(&uri, targets, written, listed).await {
                Ok(()) => {}
                Err(Error::SourceNotFound(_)) => missing += 1,
                Err(e) => return Ok((Err(e), None)),
            }
        }
        let incomplete = (missing > 0).then(|| {
            Error::JobIncomplete(format!(
                "{missing} of the plan's {} batches left no manifest in {manifests}: their objects were not all converted, so no {MARKER} was written and no table committed",
                ids.len()
            ))
        });
        Ok((Ok(()), incomplete))
    }

    /// Adds the objects a batch's manifest lists to `written`, its tables to `listed`.
    async fn add_listing(
        &self,
        uri: &str,
        targets: &[Target],
        written: &mut [Written],
        listed: &mut Listed,
    ) -> Result<(), Error> {
        let invalid = |why: &str| Error::InvalidEvent(format!("the batch manifest {uri} {why}"));
        let (bucket, key) =
            split_uri(uri).ok_or_else(|| invalid("is not an s3://bucket/key URI"))?;
        let text = self.store.read_all(bucket, key, RESULTS_LIMIT).await?;
        let reply: Value = serde_json::from_slice(&text).map_err(|_| invalid("is not JSON"))?;
        if add_reply(&reply, targets, written)?.is_some() {
            return Err(invalid("refers to another manifest"));
        }
        if let Some(glue) = reply.get("glue") {
            let glue: BatchGlue = serde_json::from_value(glue.clone())
                .map_err(|e| invalid(&format!("lists columns in another shape: {e}")))?;
            match &mut listed.glue {
                None => listed.glue = Some(glue),
                Some(all) => all.merge(glue)?,
            }
        }
        if let Some(tables) = reply.get("tables") {
            let tables: Vec<BatchTable> = serde_json::from_value(tables.clone())
                .map_err(|e| invalid(&format!("lists tables in another shape: {e}")))?;
            if !tables.is_empty() {
                listed.manifests.push(uri.to_owned());
                listed.tables.extend(tables);
            }
        }
        Ok(())
    }

    /// Removes the tables' data files a run's batches wrote, once the manifests listing them
    /// are gone (so that no later finish could commit a file removed here); best effort.
    async fn remove_listed(&self, listed: Listed) {
        let mut left = 0;
        for uri in &listed.manifests {
            if let Some((bucket, key)) = split_uri(uri) {
                left += usize::from(self.store.delete(bucket, key).await.is_err());
            }
        }
        if left > 0 {
            tracing::warn!(
                manifests = left,
                "batch manifests not removed: their table data files are kept"
            );
            return;
        }
        let paths = listed.tables.iter().flat_map(|t| &t.data_files);
        let paths: Vec<String> = paths
            .filter_map(|f| Some(f.get("file_path")?.as_str()?.to_owned()))
            .collect();
        let count = paths.len();
        let left = TableFiles::new(&self.store).remove(paths).await.len();
        tracing::info!(
            removed = count - left,
            left,
            "an incomplete job's table data files removed"
        );
    }
}

/// What a run's batches wrote for tables, and the batch manifests that list it.
#[derive(Default)]
struct Listed {
    manifests: Vec<String>,
    tables: Vec<BatchTable>,
    /// The columns of every batch's folders, for their Glue tables.
    glue: Option<BatchGlue>,
}

/// The most of a map run's manifest or results file read.
const RESULTS_LIMIT: usize = 256 << 20;

/// The most a Step Functions state's output may hold: a child execution's output is the
/// batch's reply.
pub const STATE_OUTPUT_LIMIT: usize = 256 << 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::target::parse_targets;

    fn targets() -> Vec<Target> {
        parse_targets(
            r#"[{"prefix": "s3://out/plain/", "compression": "uncompressed"}, {"prefix": "s3://out/snappy/", "compression": "snappy"}]"#,
            "targets",
        )
        .unwrap()
    }

    #[test]
    fn a_run_with_failed_items_is_incomplete() {
        let ok = br#"{"DestinationBucket": "b", "MapRunArn": "arn", "ResultFiles": {"FAILED": [], "PENDING": [], "SUCCEEDED": [{"Key": "r/SUCCEEDED_0.json", "Size": 10}]}}"#;
        let run = RunFiles::parse(ok).unwrap();
        assert_eq!(run.succeeded, ["r/SUCCEEDED_0.json"]);
        assert!(run.incomplete().is_none());
        let failed = br#"{"ResultFiles": {"FAILED": [{"Key": "r/FAILED_0.json", "Size": 1}], "SUCCEEDED": []}}"#;
        assert_eq!(
            RunFiles::parse(failed)
                .unwrap()
                .incomplete()
                .unwrap()
                .error_type(),
            "JobIncomplete"
        );
    }

    #[test]
    fn every_object_of_every_execution_is_counted_under_its_target() {
        let reply = |n: u32| {
            serde_json::json!({"results": [{"rows": 2, "objects": [
                {"uri": format!("s3://out/plain/dt=1/part-{n}.parquet"), "rows": 2, "bytes": 10},
                {"uri": format!("s3://out/snappy/dt=1/part-{n}.snappy.parquet"), "rows": 2, "bytes": 7}
            ]}]})
        };
        let array = serde_json::json!([
            {"Output": reply(1).to_string(), "Status": "SUCCEEDED"},
            {"Output": serde_json::json!({"Payload": reply(2), "StatusCode": 200}).to_string()}
        ]);
        let mut written = vec![Written::default(); 2];
        add_results(array.to_string().as_bytes(), &targets(), &mut written).unwrap();
        let lines = format!("{}\n", serde_json::json!({"Output": reply(3).to_string()}));
        add_results(lines.as_bytes(), &targets(), &mut written).unwrap();
        assert_eq!(
            written[0].files,
            [
                "dt=1/part-1.parquet",
                "dt=1/part-2.parquet",
                "dt=1/part-3.parquet"
            ]
        );
        assert_eq!((written[1].rows, written[1].bytes), (6, 21));
        let body: Value = serde_json::from_slice(&marker(&written[1], Some("arn"))).unwrap();
        assert_eq!(body["objects"], 3);
        assert_eq!(body["filenames"][0], "dt=1/part-1.snappy.parquet");
        let e =
            add_results(br#"[{"Output": "{\"no\": 1}"}]"#, &targets(), &mut written).unwrap_err();
        assert!(e.to_string().contains("not this function's reply"), "{e}");
    }

    #[test]
    fn a_batch_that_lists_its_objects_in_a_manifest_is_returned_for_reading() {
        let listed =
            serde_json::json!({"batch": {"manifest": "s3://out/_jobs/b/1.json", "rows": 2}});
        let file = serde_json::json!([{"Output": listed.to_string()}]).to_string();
        let mut written = vec![Written::default(); 2];
        let manifests = add_results(file.as_bytes(), &targets(), &mut written).unwrap();
        assert_eq!(manifests, ["s3://out/_jobs/b/1.json"]);
        assert_eq!(written, vec![Written::default(); 2]);
        let e = add_reply(&serde_json::json!({"batch": {}}), &targets(), &mut written);
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("not this function's reply")
        );
    }
}
