//! A job of many invocations (a Step Functions Distributed Map over a prefix) committed as a
//! whole: `{"commit": {"phase": "start"}}` removes each target's `_SUCCESS` before the map
//! runs, and `{"commit": {"phase": "finish", "results": {...}}}` writes it after the map
//! succeeded, listing every object the run wrote, read from the map's `ResultWriter` export.
//! A reader trusts a folder only while its `_SUCCESS` is there (Spark's convention; the JSON
//! body is the S3A committers' form, with the files listed).

use serde::Deserialize;
use serde_json::Value;

use std::time::SystemTime;

use super::Function;
use super::conversion::make_visible;
use super::reply::{Marker, Reply};
use crate::Error;
use crate::input::commit::Commit;
use crate::input::target::Target;
use crate::store::transaction::Transaction;

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

/// The keys of the files of succeeded executions, from the map run's `manifest.json`.
///
/// # Errors
/// `InvalidEvent` for a manifest of another shape; `JobIncomplete` when any execution failed
/// or is pending (a map that tolerated failures): the job is not whole, so no marker.
pub fn succeeded_files(manifest: &[u8]) -> Result<Vec<String>, Error> {
    let manifest: Manifest = serde_json::from_slice(manifest).map_err(|e| {
        Error::InvalidEvent(format!(
            "`commit.results` is not a Distributed Map ResultWriter manifest: {e}"
        ))
    })?;
    let files = manifest.result_files;
    if !files.failed.is_empty() || !files.pending.is_empty() {
        return Err(Error::JobIncomplete(format!(
            "the map run has {} failed and {} pending result files: some objects were not converted, so no {MARKER} was written",
            files.failed.len(),
            files.pending.len()
        )));
    }
    Ok(files.succeeded.into_iter().map(|f| f.key).collect())
}

/// What the run wrote, per target: the keys (relative to the target's folder), rows and bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub files: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
}

/// Adds what one results file (a JSON array, or JSON Lines, of executions) lists to `written`
/// (one entry per target): each execution's `Output` is the function's reply (directly, or as
/// `lambda:invoke`'s `Payload`).
///
/// # Errors
/// `InvalidEvent` for a file or an output of another shape.
pub fn add_results(text: &[u8], targets: &[Target], written: &mut [Written]) -> Result<(), Error> {
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
    for execution in executions {
        let output = match execution.get("Output") {
            Some(Value::String(text)) => serde_json::from_str(text)
                .map_err(|e| invalid(format!("an `Output` is not JSON: {e}")))?,
            _ => execution,
        };
        let reply = output.get("Payload").unwrap_or(&output);
        let responses = match reply.get("results") {
            Some(Value::Array(results)) => results.iter().collect(),
            _ => vec![reply],
        };
        for response in responses {
            let Some(Value::Array(objects)) = response.get("objects") else {
                return Err(invalid("an output is not this function's reply".into()));
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
    }
    Ok(())
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
        let (phase, written) = match commit {
            Commit::Start => {
                for target in targets {
                    self.store
                        .delete(&target.prefix.bucket, &marker_of(target))
                        .await?;
                }
                ("start", vec![Written::default(); targets.len()])
            }
            Commit::Finish {
                bucket,
                key,
                map_run,
            } => {
                let manifest = self.store.read_all(&bucket, &key, RESULTS_LIMIT).await?;
                let mut written = vec![Written::default(); targets.len()];
                for file in succeeded_files(&manifest)? {
                    let text = self.store.read_all(&bucket, &file, RESULTS_LIMIT).await?;
                    add_results(&text, targets, &mut written)?;
                }
                let mut transaction = Transaction::new(&self.store);
                for (target, written) in targets.iter().zip(&written) {
                    let index = transaction.add(target.prefix.bucket.clone(), marker_of(target));
                    let body = marker(written, map_run.as_deref());
                    transaction.last(index, body.into()).await?;
                }
                make_visible(&mut transaction, false, deadline).await?;
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
        Ok(Reply::Committed { phase, markers })
    }
}

/// The most of a map run's manifest or results file read.
const RESULTS_LIMIT: usize = 256 << 20;

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
        assert_eq!(succeeded_files(ok).unwrap(), ["r/SUCCEEDED_0.json"]);
        let failed = br#"{"ResultFiles": {"FAILED": [{"Key": "r/FAILED_0.json", "Size": 1}], "SUCCEEDED": []}}"#;
        assert_eq!(
            succeeded_files(failed).unwrap_err().error_type(),
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
}
