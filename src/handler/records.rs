//! A stream batch (Kinesis Data Streams, Kafka, DynamoDB Streams) into `DEFAULT_TARGETS`.
//!
//! Each record is decoded into rows on its own. A record is bad when it cannot be decoded or
//! its rows do not convert (found in memory, record by record and then by halving the batch:
//! nothing is written meanwhile). With `ERROR_OUTPUT`, bad records are written there and every other record is
//! committed; without, each shard's records stop before its first bad one, whose identifier
//! the reply gives Lambda (which checkpoints there and retries, bisects or sends it to the
//! on-failure destination). The folders get one object per target (per partition) named for
//! the batch, so a redelivery overwrites its own; each table gets one snapshot holding only
//! the records past its shards' marks, which the snapshot raises (see
//! [`crate::catalog::marks`]). An S3 or catalog failure fails the whole batch.

use std::collections::{BTreeSet, HashSet};
use std::time::SystemTime;

use arrow_schema::SchemaRef;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

use super::Function;
use super::conversion::Conversion;
use super::reply::{Identifier, ItemFailure, Reply, Response};
use super::stream::uuid_shaped;
use crate::Error;
use crate::encode::columns::{self, UnknownKeys};
use crate::encode::writer;
use crate::input::records::{self, Batch, Origin, Position, Record};
use crate::lambda::metrics::Streamed;
use crate::rows::Rows;
use crate::rows::json::Scanner;
use crate::store::s3::Object;
use crate::store::transaction::Transaction;

/// What became of each record of a batch.
pub(super) struct Judged<'b> {
    pub(super) batch: &'b Batch,
    /// Each record's rows (text, count), or why it is bad.
    pub(super) rows: Vec<Result<(String, usize), String>>,
    /// Records left for Lambda's retry: after a bad record of their shard, when there is no
    /// error output.
    held: Vec<bool>,
}

impl Judged<'_> {
    /// The records committed: neither bad nor held.
    pub(super) fn kept(&self) -> impl Iterator<Item = (usize, &str)> {
        (self.rows.iter().enumerate())
            .filter(|(i, _)| !self.held[*i])
            .filter_map(|(i, r)| r.as_ref().ok().map(|(text, _)| (i, text.as_str())))
    }

    /// Whether the marks may pass record `i`: committed, or set aside in the error output.
    pub(super) fn handled(&self, i: usize, with_output: bool) -> bool {
        !self.held[i] && (with_output || self.rows[i].is_ok())
    }

    /// Holds, per shard, every record after its first bad one (the bad one is reported).
    fn hold_after_bad(&mut self) {
        let mut stopped = HashSet::new();
        for (i, r) in self.batch.records.iter().enumerate() {
            let shard = (r.stream.as_str(), r.shard.as_str());
            self.held[i] = stopped.contains(&shard);
            if !self.held[i] && self.rows[i].is_err() {
                stopped.insert(shard);
            }
        }
    }

    /// The bad records that are not held: each shard's first, or every one with an error
    /// output.
    fn bad(&self) -> impl Iterator<Item = usize> {
        (0..self.rows.len()).filter(|&i| self.rows[i].is_err() && !self.held[i])
    }

    /// Each shard's first bad record, as Lambda names it.
    fn failures(&self) -> Vec<ItemFailure> {
        self.bad()
            .map(|i| &self.batch.records[i])
            .map(|r| ItemFailure {
                item_identifier: match &r.position {
                    Position::Sequence(s) => Identifier::Id(s.clone()),
                    Position::Offset(offset) => Identifier::Kafka {
                        partition: r.shard.clone(),
                        offset: *offset,
                    },
                },
            })
            .collect()
    }
}

/// The rows of `texts` as one JSON array's text.
pub(super) fn array<'t>(texts: impl Iterator<Item = &'t str>) -> String {
    let mut out = String::from("[");
    for text in texts.filter(|t| !t.is_empty()) {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(text);
    }
    out.push(']');
    out
}

/// The rows of an array built by [`array`].
///
/// # Errors
/// `InvalidEvent` for rows that are not JSON objects.
pub(super) fn parse(array: &str) -> Result<Rows<'_>, Error> {
    let mut scanner = Scanner::new(array.as_bytes())?;
    let rows = Rows::parse(&mut scanner, 1, 0)?;
    scanner.end()?;
    Ok(rows)
}

/// The batch's identity: its stream, and each shard's first and last positions.
fn identity(batch: &Batch) -> String {
    let mut shards: Vec<(&str, &str, String, String)> = Vec::new();
    for r in &batch.records {
        let position = r.position.text();
        match shards
            .iter_mut()
            .find(|s| s.0 == r.stream && s.1 == r.shard)
        {
            Some(s) => s.3 = position,
            None => shards.push((&r.stream, &r.shard, position.clone(), position)),
        }
    }
    let listed: String = shards
        .iter()
        .map(|(stream, shard, first, last)| format!("{stream}\n{shard}\n{first}\n{last}\n"))
        .collect();
    uuid_shaped(listed.as_bytes())
}

impl Function {
    /// A stream batch, as the module says.
    ///
    /// # Errors
    /// Any failure to write or commit (`S3WriteFailed`, `CatalogFailed`, `CommitConflict`,
    /// …): the batch fails as a whole, and what it wrote to folders is removed.
    pub(super) async fn records(
        &self,
        batch: Batch,
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let targets = self.config.resolve_targets(None)?;
        let job = self.configured(&targets);
        let with_output = self.config.error_output.is_some();
        let tables = &self.config.default_tables;
        let catalog = match tables.is_empty() {
            true => None,
            false => Some(self.catalog().await),
        };
        let schemas = match &catalog {
            Some(catalog) => self.table_schemas(catalog, tables, &job).await?,
            None => Vec::new(),
        };
        let judged = self.judge(&batch, &job, &schemas, with_output);
        let id = identity(&batch);
        let mut counts = Streamed {
            records: batch.records.len() as u64,
            ..Streamed::default()
        };
        let text = array(judged.kept().map(|(_, t)| t));
        let response = match text.len() > 2 {
            true => {
                let folders = match targets.is_empty() {
                    true => Response::empty(false),
                    false => {
                        self.rows(parse(&text)?, self.configured(&targets), &id, deadline)
                            .await?
                    }
                };
                match &catalog {
                    None => folders,
                    Some(catalog) => {
                        let into = self.records_into_tables(
                            catalog, &judged, &job, tables, &id, folders, deadline,
                        );
                        let (response, already) = into.await?;
                        counts.already_committed = already as u64;
                        response
                    }
                }
            }
            false => Response::empty(false),
        };
        let bad: Vec<usize> = judged.bad().collect();
        let failures = match &self.config.error_output {
            Some(_) => {
                self.error_output(&judged, &bad, &id).await?;
                counts.to_error_output = bad.len() as u64;
                Vec::new()
            }
            None => {
                counts.failed = (0..batch.records.len())
                    .filter(|i| judged.held[*i] || judged.rows[*i].is_err())
                    .count() as u64;
                judged.failures()
            }
        };
        let bytes = response.objects.iter().map(|o| o.bytes).sum();
        self.measures
            .converted(response.rows, response.objects.len(), bytes);
        self.measures.streamed(counts);
        tracing::info!(
            origin = batch.origin.name(),
            records = counts.records,
            rows = response.rows,
            objects = response.objects.len(),
            tables = ?response.tables.iter().map(|t| (t.table.as_str(), t.snapshot_id, t.rows)).collect::<Vec<_>>(),
            bad = ?bad.iter().map(|i| batch.records[*i].name()).collect::<Vec<_>>(),
            to_error_output = counts.to_error_output,
            already_committed = counts.already_committed,
            "stream batch"
        );
        Ok(Reply::Batch {
            batch_item_failures: failures,
        })
    }

    /// Decodes every record, then finds the records whose rows do not convert (as the folders
    /// take them, and into each existing table's schema): while the kept records' rows fail,
    /// first each record that fails on its own is bad, then the first record whose rows make
    /// a prefix fail.
    fn judge<'b>(
        &self,
        batch: &'b Batch,
        job: &Conversion<'_>,
        schemas: &[(SchemaRef, UnknownKeys)],
        with_output: bool,
    ) -> Judged<'b> {
        let mut budget = records::MAX_DECODED;
        let metadata = self.config.stream_metadata;
        let rows = (batch.records.iter())
            .map(|r| r.rows(batch.origin, metadata, &mut budget))
            .collect();
        let mut judged = Judged {
            batch,
            rows,
            held: vec![false; batch.records.len()],
        };
        let mut each_checked = false;
        loop {
            if !with_output {
                judged.hold_after_bad();
            }
            let kept: Vec<(usize, &str)> = judged.kept().filter(|(_, t)| !t.is_empty()).collect();
            if kept.is_empty() {
                return judged;
            }
            let converts = |records: &[(usize, &str)]| {
                let text = array(records.iter().map(|(_, t)| *t));
                let rows = parse(&text)?;
                for (schema, unknown) in schemas {
                    columns::build(&rows, schema.clone(), *unknown)?;
                }
                let schema = job.schema.clone();
                writer::rows_to_parquet(rows, schema, job.unknown_keys, &[], job.partitioning)
                    .map(|_| ())
            };
            let Err(e) = converts(&kept) else {
                return judged;
            };
            // First, once, each record on its own: malformed JSON, a value its column cannot
            // take. One pass finds them however many there are.
            if !each_checked {
                each_checked = true;
                let alone: Vec<(usize, String)> = (kept.iter())
                    .filter_map(|k| {
                        converts(std::slice::from_ref(k))
                            .err()
                            .map(|e| (k.0, e.to_string()))
                    })
                    .collect();
                if !alone.is_empty() {
                    for (i, why) in alone {
                        judged.rows[i] = Err(format!(
                            "its rows do not convert (rows counted within the record): {why}"
                        ));
                    }
                    continue;
                }
            }
            // Then what only conflicts with the records before it (types inferred over the
            // batch): the shortest failing prefix's last record.
            let (mut lo, mut hi, mut why) = (1, kept.len(), e);
            while lo < hi {
                let mid = (lo + hi) / 2;
                match converts(&kept[..mid]) {
                    Err(e) => (hi, why) = (mid, e),
                    Ok(()) => lo = mid + 1,
                }
            }
            let bad = kept[hi - 1].0;
            judged.rows[bad] = Err(format!(
                "its rows do not convert with the batch's records before it (rows counted over them): {why}"
            ));
        }
    }

    /// Each bad record to `ERROR_OUTPUT`, as an NDJSON object with Firehose's error record
    /// fields, keyed by the batch's identity and the record's index (a redelivery overwrites).
    async fn error_output(
        &self,
        judged: &Judged<'_>,
        bad: &[usize],
        id: &str,
    ) -> Result<(), Error> {
        let Some(prefix) = &self.config.error_output else {
            return Ok(());
        };
        let origin = judged.batch.origin;
        let objects = bad.iter().map(|&i| {
            let record = &judged.batch.records[i];
            let why = judged.rows[i].as_ref().err().cloned().unwrap_or_default();
            let body = error_record(origin, record, &why);
            Object {
                bucket: prefix.bucket.clone(),
                key: format!("{}{id}-{i:05}.json", prefix.key_prefix),
                body: Bytes::from(body),
            }
        });
        let mut transaction = Transaction::of_whole(&self.store, objects.collect());
        transaction.commit(None).await.map(|_| ())
    }
}

/// A bad record as Firehose's error output writes one: its bytes in base64, why, and where it
/// lies in its stream.
fn error_record(origin: Origin, record: &Record, why: &str) -> String {
    let mut fields = serde_json::Map::new();
    let mut put = |name: &str, value: serde_json::Value| {
        fields.insert(name.to_owned(), value);
    };
    put(
        "rawData",
        record.raw().unwrap_or_else(|| STANDARD.encode("")).into(),
    );
    put("errorCode", "InvalidEvent".into());
    put("errorMessage", format!("{}: {why}", record.name()).into());
    match (&record.position, origin) {
        (Position::Offset(offset), _) => {
            put("offset", (*offset).into());
            put("topicPartition", record.shard.clone().into());
            put("key", record.key.clone().into());
        }
        (Position::Sequence(s), Origin::DynamoDb) => put("sequenceNumber", s.clone().into()),
        (Position::Sequence(s), _) => {
            put("sequenceNumber", s.clone().into());
            put("shardId", record.shard.clone().into());
            put("partitionKey", record.key.clone().into());
        }
    }
    put("arrivalTimestamp", record.arrival_ms.into());
    put("streamArn", record.stream.clone().into());
    let mut line = serde_json::Value::Object(fields).to_string();
    line.push('\n');
    line
}

/// The shards a batch's records come from, in order of first appearance.
pub(super) fn shards(batch: &Batch) -> Vec<(&str, &str)> {
    let mut seen = BTreeSet::new();
    (batch.records.iter())
        .filter(|r| seen.insert((r.stream.as_str(), r.shard.as_str())))
        .map(|r| (r.stream.as_str(), r.shard.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinesis(seqs: &[(&str, &str)]) -> Batch {
        let records: Vec<String> = seqs
            .iter()
            .map(|(shard, seq)| {
                format!(
                    r#"{{"kinesis": {{"partitionKey": "k", "sequenceNumber": "{seq}", "data": "e30="}},
                        "eventSource": "aws:kinesis", "eventID": "{shard}:{seq}", "eventSourceARN": "arn:s"}}"#
                )
            })
            .collect();
        records::kinesis(&format!("[{}]", records.join(","))).unwrap()
    }

    #[test]
    fn a_batch_is_named_by_its_shards_first_and_last_positions() {
        let a = identity(&kinesis(&[("s-1", "1"), ("s-1", "2"), ("s-1", "3")]));
        assert_eq!(
            a,
            identity(&kinesis(&[("s-1", "1"), ("s-1", "5"), ("s-1", "3")]))
        );
        assert_ne!(a, identity(&kinesis(&[("s-1", "1"), ("s-1", "2")])));
        assert_ne!(a, identity(&kinesis(&[("s-2", "1"), ("s-2", "3")])));
    }

    #[test]
    fn without_an_error_output_a_shard_stops_at_its_first_bad_record() {
        let batch = kinesis(&[("s-1", "1"), ("s-2", "2"), ("s-1", "3"), ("s-1", "4")]);
        let mut judged = Judged {
            batch: &batch,
            rows: vec![
                Ok(("{}".into(), 1)),
                Ok(("{}".into(), 1)),
                Err("bad".into()),
                Err("bad too".into()),
            ],
            held: vec![false; 4],
        };
        judged.hold_after_bad();
        assert_eq!(judged.held, [false, false, false, true]);
        let kept: Vec<usize> = judged.kept().map(|(i, _)| i).collect();
        assert_eq!(kept, [0, 1]);
        assert_eq!(
            judged.failures(),
            [ItemFailure {
                item_identifier: "3".into()
            }]
        );
        assert!(judged.handled(0, false) && !judged.handled(2, false) && judged.handled(2, true));
        assert_eq!(shards(&batch), [("arn:s", "s-1"), ("arn:s", "s-2")]);
    }

    #[test]
    fn rows_join_into_one_array_skipping_empty_records() {
        let text = array(["{\"a\": 1}", "", "{\"a\": 2},{\"a\": 3}"].into_iter());
        assert_eq!(text, r#"[{"a": 1},{"a": 2},{"a": 3}]"#);
        assert_eq!(parse(&text).unwrap().len(), 3);
        assert_eq!(array(std::iter::empty()), "[]");
    }
}
