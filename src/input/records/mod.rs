//! Stream batches as rows: what Lambda's event source mappings deliver from Kinesis Data
//! Streams, Kafka (Amazon MSK and self-managed) and DynamoDB Streams, decoded record by
//! record (base64, gzip, KPL aggregation, DynamoDB JSON) into the JSON rows the rows stage
//! reads. A record that cannot be decoded is kept with its reason, so the handler can set it
//! aside without reading its content into a message.
//!
//! - this module: the [`Batch`], its [`Record`]s and their rows' text.
//! - [`kpl`]: the Kinesis Producer Library's aggregated records.
//! - `dynamodb.rs`: DynamoDB JSON as plain JSON.

mod dynamodb;
pub mod kpl;

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::Error;

/// Which service a batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Kinesis,
    Kafka,
    DynamoDb,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Kinesis => "kinesis",
            Origin::Kafka => "kafka",
            Origin::DynamoDb => "dynamodb",
        }
    }
}

/// One invocation's records, in the order Lambda delivered them.
#[derive(Debug)]
pub struct Batch {
    pub origin: Origin,
    pub records: Vec<Record>,
}

/// Where a record lies in its stream: Kinesis and DynamoDB sequence numbers are decimal
/// strings of up to 56 digits, Kafka offsets integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Sequence(String),
    Offset(i64),
}

impl Position {
    /// As a mark records it: the sequence number, or the offset in decimal.
    pub fn text(&self) -> String {
        match self {
            Position::Sequence(s) => s.clone(),
            Position::Offset(o) => o.to_string(),
        }
    }
}

/// One record of a batch.
#[derive(Debug)]
pub struct Record {
    /// The stream: its ARN (Kinesis, DynamoDB), or the MSK cluster's ARN or the self-managed
    /// cluster's bootstrap servers.
    pub stream: String,
    /// The shard (`shardId-…`) or topic-partition (`topic-0`); empty for DynamoDB, whose
    /// events do not name their shard.
    pub shard: String,
    pub position: Position,
    /// The Kinesis partition key, or the Kafka key (UTF-8, else base64).
    pub key: Option<String>,
    /// When the service took the record, in milliseconds since the Unix epoch.
    pub arrival_ms: Option<i64>,
    /// Its rows, or why they cannot be read.
    content: Content,
    /// A DynamoDB change as the event held it (JSON), for the error output.
    change: Option<String>,
}

#[derive(Debug)]
enum Content {
    /// Base64 bytes: a JSON object, or NDJSON, maybe gzip'd (and for Kinesis maybe a KPL
    /// aggregate of such).
    Encoded(String),
    /// A DynamoDB change: its row's members, and what happened.
    Change {
        members: String,
        event_name: String,
    },
    /// A Kafka tombstone (no value): no rows.
    Empty,
    Bad(String),
}

/// The per-record columns a configuration adds (`STREAM_METADATA`), each off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata {
    pub arrival: bool,
    pub key: bool,
    pub shard: bool,
    pub position: bool,
}

impl Metadata {
    /// A comma-separated list of `arrival`, `key`, `shard`, `position`, or `all` / `none`.
    ///
    /// # Errors
    /// The unknown word.
    pub fn parse(list: &str) -> Result<Metadata, String> {
        let mut m = Metadata::default();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => {
                    m = Metadata {
                        arrival: true,
                        key: true,
                        shard: true,
                        position: true,
                    }
                }
                "none" => m = Metadata::default(),
                "arrival" => m.arrival = true,
                "key" => m.key = true,
                "shard" => m.shard = true,
                "position" => m.position = true,
                other => {
                    return Err(format!(
                        "`{other}` is not one of arrival, key, shard, position, all, none"
                    ));
                }
            }
        }
        Ok(m)
    }
}

/// The most a batch's records may decompress to: gzip'd records of a 6 MB batch stay far
/// below it, a compression bomb does not.
pub const MAX_DECODED: usize = 256 << 20;

impl Record {
    /// How the record is named in messages and the error output: by its position, never its
    /// content.
    pub fn name(&self) -> String {
        match &self.position {
            Position::Sequence(s) => format!("the record with sequence number {s}"),
            Position::Offset(o) => format!("the record at offset {o} of {}", self.shard),
        }
    }

    /// The record's bytes in base64, as an error output holds them: the data as delivered, or
    /// a DynamoDB change's JSON.
    pub fn raw(&self) -> Option<String> {
        match (&self.content, &self.change) {
            (Content::Encoded(base64), _) => Some(base64.clone()),
            (_, Some(change)) => Some(STANDARD.encode(change)),
            _ => None,
        }
    }

    /// Its rows as JSON objects separated by commas (an array's contents), with the
    /// metadata columns asked for first in each; the count of rows. `budget` is what the
    /// batch may still decompress to.
    ///
    /// # Errors
    /// Why the record's bytes are not rows (never quoting them).
    pub fn rows(
        &self,
        origin: Origin,
        metadata: Metadata,
        budget: &mut usize,
    ) -> Result<(String, usize), String> {
        let columns = self.columns(origin, metadata);
        match &self.content {
            Content::Bad(why) => Err(why.clone()),
            Content::Empty => Ok((String::new(), 0)),
            Content::Change {
                members,
                event_name,
            } => {
                let mut row = format!("{{{columns}");
                let change = match event_name.as_str() {
                    "INSERT" => "INSERT",
                    "MODIFY" => "UPDATE_AFTER",
                    _ => "DELETE",
                };
                row.push_str(&format!(r#","_change_type":"{change}""#));
                if !members.is_empty() {
                    row.push(',');
                    row.push_str(members);
                }
                row.push('}');
                Ok((row, 1))
            }
            Content::Encoded(base64) => {
                let bytes = STANDARD
                    .decode(base64)
                    .map_err(|_| "its data is not base64".to_owned())?;
                let pieces = match (origin, kpl::user_records(&bytes)) {
                    (Origin::Kinesis, Some(records)) => records?,
                    _ => vec![&bytes[..]],
                };
                let mut text = String::new();
                let mut count = 0;
                for (i, piece) in pieces.iter().enumerate() {
                    let at = match pieces.len() {
                        1 => String::new(),
                        _ => format!("user record {i}: "),
                    };
                    let piece = gunzip(piece, budget).map_err(|e| format!("{at}{e}"))?;
                    let utf8 = std::str::from_utf8(&piece)
                        .map_err(|_| format!("{at}its data is not UTF-8"))?;
                    count +=
                        push_rows(&mut text, utf8, &columns).map_err(|e| format!("{at}{e}"))?;
                }
                Ok((text, count))
            }
        }
    }

    /// The metadata columns' members, each ending in nothing (joined by commas).
    fn columns(&self, origin: Origin, m: Metadata) -> String {
        let mut out = Vec::new();
        let string = |s: &str| Value::String(s.to_owned()).to_string();
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| string(&t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
                .unwrap_or_else(|| "null".into())
        };
        match origin {
            Origin::DynamoDb => {
                // What a change log's readers need whatever the configuration.
                out.push(format!(
                    r#""_sequence_number":{}"#,
                    string(&self.position.text())
                ));
                out.push(format!(
                    r#""_commit_timestamp":{}"#,
                    self.arrival_ms.map_or("null".into(), time)
                ));
            }
            Origin::Kinesis | Origin::Kafka => {
                let kafka = origin == Origin::Kafka;
                if m.arrival {
                    let name = if kafka { "_timestamp" } else { "_arrival_time" };
                    let value = self.arrival_ms.map_or("null".into(), time);
                    out.push(format!(r#""{name}":{value}"#));
                }
                if m.key {
                    let name = if kafka { "_key" } else { "_partition_key" };
                    let value = self.key.as_deref().map_or("null".into(), string);
                    out.push(format!(r#""{name}":{value}"#));
                }
                if m.shard {
                    let name = if kafka {
                        "_topic_partition"
                    } else {
                        "_shard_id"
                    };
                    out.push(format!(r#""{name}":{}"#, string(&self.shard)));
                }
                if m.position {
                    out.push(match &self.position {
                        Position::Offset(o) => format!(r#""_offset":{o}"#),
                        Position::Sequence(s) => format!(r#""_sequence_number":{}"#, string(s)),
                    });
                }
            }
        }
        out.join(",")
    }
}

/// The bytes, gunzipped when they start with gzip's magic bytes.
fn gunzip<'a>(bytes: &'a [u8], budget: &mut usize) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes.into());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(*budget as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| "its data starts as gzip but does not decompress".to_owned())?;
    if out.len() > *budget {
        return Err(format!(
            "the batch's records decompress to more than {} MiB",
            MAX_DECODED >> 20
        ));
    }
    *budget -= out.len();
    Ok(out.into())
}

/// Appends `text`'s rows (one JSON object, or NDJSON lines) to `out`, comma-separated, each
/// with `columns` first; the count.
fn push_rows(out: &mut String, text: &str, columns: &str) -> Result<usize, String> {
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if trimmed.is_empty() {
        return Ok(0);
    }
    let push = |object: &str, out: &mut String| -> Result<(), String> {
        let Some(body) = object.strip_prefix('{') else {
            return Err("a row that is not a JSON object".into());
        };
        if !out.is_empty() {
            out.push(',');
        }
        out.push('{');
        out.push_str(columns);
        if !columns.is_empty() && !body.trim_start().starts_with('}') {
            out.push(',');
        }
        out.push_str(body);
        Ok(())
    };
    // One object (perhaps over several lines), else one per line.
    if one_value(trimmed) {
        push(trimmed, out)?;
        return Ok(1);
    }
    let mut count = 0;
    for (n, line) in trimmed.lines().enumerate() {
        let line = line.trim_matches(|c: char| c.is_ascii_whitespace());
        if line.is_empty() {
            continue;
        }
        push(line, out).map_err(|e| format!("line {}: {e}", n + 1))?;
        count += 1;
    }
    Ok(count)
}

/// Whether `text` is exactly one JSON value.
fn one_value(text: &str) -> bool {
    let mut scanner = crate::rows::json::Scanner::over(text, 1, "the record");
    scanner.raw_value().is_ok() && scanner.end().is_ok()
}

#[derive(Deserialize)]
struct KinesisRecord {
    kinesis: KinesisData,
    #[serde(rename = "eventID")]
    event_id: String,
    #[serde(rename = "eventSourceARN")]
    arn: String,
}

#[derive(Deserialize)]
struct KinesisData {
    data: String,
    #[serde(rename = "sequenceNumber")]
    sequence_number: String,
    #[serde(rename = "partitionKey")]
    partition_key: Option<String>,
    #[serde(rename = "approximateArrivalTimestamp")]
    arrival: Option<f64>,
}

#[derive(Deserialize)]
struct DynamoDbRecord {
    #[serde(rename = "eventName")]
    event_name: String,
    #[serde(rename = "eventSourceARN")]
    arn: String,
    dynamodb: Box<serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct StreamRecord {
    #[serde(rename = "Keys")]
    keys: Option<Map<String, Value>>,
    #[serde(rename = "NewImage")]
    new_image: Option<Map<String, Value>>,
    #[serde(rename = "SequenceNumber")]
    sequence_number: String,
    #[serde(rename = "ApproximateCreationDateTime")]
    created: Option<f64>,
}

#[derive(Deserialize)]
struct KafkaEvent {
    #[serde(rename = "eventSourceArn")]
    arn: Option<String>,
    #[serde(rename = "bootstrapServers")]
    bootstrap_servers: Option<String>,
    records: BTreeMap<String, Vec<KafkaRecord>>,
}

#[derive(Deserialize)]
struct KafkaRecord {
    offset: i64,
    timestamp: Option<i64>,
    key: Option<String>,
    value: Option<String>,
}

/// A sequence number as Kinesis and DynamoDB write it: decimal digits.
fn sequence(s: String, at: &str) -> Result<Position, Error> {
    match !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_digit()) {
        true => Ok(Position::Sequence(s)),
        false => Err(Error::InvalidEvent(format!(
            "{at}: the sequence number is not decimal digits"
        ))),
    }
}

fn each<T: for<'de> Deserialize<'de>>(raw: &str, what: &str) -> Result<Vec<T>, Error> {
    let records: Vec<&serde_json::value::RawValue> = serde_json::from_str(raw)
        .map_err(|e| Error::InvalidEvent(format!("`Records` is not a list: {e}")))?;
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::from_str(r.get()).map_err(|e| {
                Error::InvalidEvent(format!("Records[{i}] is not a {what} record: {e}"))
            })
        })
        .collect()
}

/// A Kinesis batch's `Records`.
///
/// # Errors
/// `InvalidEvent` naming a record without the fields Lambda always sends.
pub fn kinesis(raw: &str) -> Result<Batch, Error> {
    let records = each::<KinesisRecord>(raw, "Kinesis")?;
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let at = format!("Records[{i}]");
        let shard = r.event_id.split(':').next().unwrap_or_default().to_owned();
        out.push(Record {
            stream: r.arn,
            shard,
            position: sequence(r.kinesis.sequence_number, &at)?,
            key: r.kinesis.partition_key,
            arrival_ms: r.kinesis.arrival.map(|s| (s * 1e3).round() as i64),
            content: Content::Encoded(r.kinesis.data),
            change: None,
        });
    }
    Ok(Batch {
        origin: Origin::Kinesis,
        records: out,
    })
}

/// A DynamoDB Streams batch's `Records`: each change's new image (its keys, for `REMOVE`).
///
/// # Errors
/// As [`kinesis`].
pub fn dynamodb(raw: &str) -> Result<Batch, Error> {
    let records = each::<DynamoDbRecord>(raw, "DynamoDB Streams")?;
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let at = format!("Records[{i}]");
        let change: StreamRecord = serde_json::from_str(r.dynamodb.get()).map_err(|e| {
            Error::InvalidEvent(format!("{at}.dynamodb is not a stream record: {e}"))
        })?;
        let image = match r.event_name.as_str() {
            "REMOVE" => change.keys.as_ref(),
            _ => change.new_image.as_ref().or(change.keys.as_ref()),
        };
        let content = match (r.event_name.as_str(), image) {
            ("INSERT" | "MODIFY" | "REMOVE", Some(image)) => match dynamodb::members(image) {
                Ok(members) => Content::Change {
                    members,
                    event_name: r.event_name,
                },
                Err(why) => Content::Bad(why),
            },
            ("INSERT" | "MODIFY" | "REMOVE", None) => {
                Content::Bad("the change carries neither `NewImage` nor `Keys`".into())
            }
            (other, _) => Content::Bad(format!("`{other}` is not a DynamoDB change")),
        };
        out.push(Record {
            stream: r.arn,
            shard: String::new(),
            position: sequence(change.sequence_number, &at)?,
            key: None,
            arrival_ms: change.created.map(|s| (s * 1e3).round() as i64),
            content,
            change: Some(r.dynamodb.get().to_owned()),
        });
    }
    Ok(Batch {
        origin: Origin::DynamoDb,
        records: out,
    })
}

/// A Kafka batch (MSK or self-managed): its `records`, topic-partition by topic-partition.
///
/// # Errors
/// `InvalidEvent` for a batch without `records`, or a record without its offset.
pub fn kafka(raw: &[u8]) -> Result<Batch, Error> {
    let event: KafkaEvent = serde_json::from_slice(raw)
        .map_err(|e| Error::InvalidEvent(format!("the Kafka batch is malformed: {e}")))?;
    let stream = event.arn.or(event.bootstrap_servers).ok_or_else(|| {
        Error::InvalidEvent(
            "the Kafka batch names neither `eventSourceArn` nor `bootstrapServers`".into(),
        )
    })?;
    let mut out = Vec::new();
    for (partition, records) in event.records {
        for r in records {
            let key = r.key.map(|k| {
                STANDARD
                    .decode(&k)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or(k)
            });
            out.push(Record {
                stream: stream.clone(),
                shard: partition.clone(),
                position: Position::Offset(r.offset),
                key,
                arrival_ms: r.timestamp,
                content: r.value.map_or(Content::Empty, Content::Encoded),
                change: None,
            });
        }
    }
    Ok(Batch {
        origin: Origin::Kafka,
        records: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn kinesis_batch(datas: &[Vec<u8>]) -> Batch {
        let records: Vec<String> = datas
            .iter()
            .enumerate()
            .map(|(i, d)| {
                format!(
                    r#"{{"kinesis": {{"kinesisSchemaVersion": "1.0", "partitionKey": "pk{i}", "sequenceNumber": "4959{i:03}",
                        "data": "{}", "approximateArrivalTimestamp": 1545084650.987}},
                        "eventSource": "aws:kinesis", "eventID": "shardId-000000000006:4959{i:03}",
                        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s"}}"#,
                    b64(d)
                )
            })
            .collect();
        kinesis(&format!("[{}]", records.join(","))).unwrap()
    }

    fn rows_of(batch: &Batch, m: Metadata) -> Vec<Result<(String, usize), String>> {
        let mut budget = MAX_DECODED;
        batch
            .records
            .iter()
            .map(|r| r.rows(batch.origin, m, &mut budget))
            .collect()
    }

    #[test]
    fn kinesis_records_are_objects_ndjson_gzip_or_kpl_aggregates() {
        let ndjson = b"{\"a\": 2}\r\n\n{\"a\": 3}\n".to_vec();
        let pretty = b"{\n  \"a\": 1\n}".to_vec();
        let aggregate = kpl::aggregate("pk", &[b"{\"a\": 4}", &gz(b"{\"a\": 5}\n{\"a\": 6}")]);
        let batch = kinesis_batch(&[pretty, gz(&ndjson), aggregate, b"  ".to_vec()]);
        assert_eq!(batch.records[0].shard, "shardId-000000000006");
        assert_eq!(batch.records[0].arrival_ms, Some(1_545_084_650_987));
        let rows = rows_of(&batch, Metadata::default());
        let texts: Vec<_> = rows.into_iter().map(Result::unwrap).collect();
        assert_eq!(texts[0], ("{\n  \"a\": 1\n}".into(), 1));
        assert_eq!(texts[1], (r#"{"a": 2},{"a": 3}"#.into(), 2));
        assert_eq!(texts[2], (r#"{"a": 4},{"a": 5},{"a": 6}"#.into(), 3));
        assert_eq!(texts[3], (String::new(), 0));
    }

    #[test]
    fn metadata_columns_come_first_when_asked_for() {
        let batch = kinesis_batch(&[b"{\"a\": 1}".to_vec(), b"{}".to_vec()]);
        let m = Metadata::parse("shard, position,arrival,key").unwrap();
        let rows = rows_of(&batch, m);
        assert_eq!(
            rows[0].as_ref().unwrap().0,
            r#"{"_arrival_time":"2018-12-17T22:10:50.987Z","_partition_key":"pk0","_shard_id":"shardId-000000000006","_sequence_number":"4959000","a": 1}"#
        );
        assert!(rows[1].as_ref().unwrap().0.ends_with(r#""4959001"}"#));
        assert!(Metadata::parse("arrival,bogus").is_err());
    }

    #[test]
    fn bad_records_say_why_without_their_content() {
        let bomb = gz(&vec![b' '; MAX_DECODED + 10]);
        let batch = kinesis_batch(&[
            b"[1, 2]".to_vec(),
            vec![0xff, 0xfe],
            b"{\"a\": 1}\nsecret".to_vec(),
            vec![0x1f, 0x8b, 1, 2],
            bomb,
        ]);
        let rows = rows_of(&batch, Metadata::default());
        let errors: Vec<String> = rows.into_iter().map(|r| r.unwrap_err()).collect();
        assert!(errors[0].contains("not a JSON object"), "{}", errors[0]);
        assert!(errors[1].contains("not UTF-8"), "{}", errors[1]);
        assert!(errors[2].contains("line 2"), "{}", errors[2]);
        assert!(!errors[2].contains("secret"));
        assert!(errors[3].contains("does not decompress"), "{}", errors[3]);
        assert!(errors[4].contains("MiB"), "{}", errors[4]);
    }

    #[test]
    fn kafka_batches_keep_partitions_offsets_and_keys() {
        let event = format!(
            r#"{{"eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:us-east-1:1:cluster/c/1", "bootstrapServers": "b-1:9092",
                "records": {{"t-1": [{{"topic": "t", "partition": 1, "offset": 7, "timestamp": 1545084650987, "timestampType": "CREATE_TIME",
                                     "key": "{}", "value": "{}", "headers": []}}],
                             "t-0": [{{"topic": "t", "partition": 0, "offset": 15, "timestamp": 1545084650987, "timestampType": "CREATE_TIME",
                                     "value": null}}]}}}}"#,
            b64(b"user-1"),
            b64(b"{\"a\": 1}")
        );
        let batch = kafka(event.as_bytes()).unwrap();
        let names: Vec<_> = batch.records.iter().map(Record::name).collect();
        assert_eq!(
            names,
            [
                "the record at offset 15 of t-0",
                "the record at offset 7 of t-1"
            ]
        );
        let m = Metadata::parse("all").unwrap();
        let rows = rows_of(&batch, m);
        assert_eq!(rows[0].as_ref().unwrap().1, 0);
        assert_eq!(
            rows[1].as_ref().unwrap().0,
            r#"{"_timestamp":"2018-12-17T22:10:50.987Z","_key":"user-1","_topic_partition":"t-1","_offset":7,"a": 1}"#
        );
    }

    #[test]
    fn dynamodb_changes_say_what_happened() {
        let raw = r#"[
          {"eventID": "1", "eventName": "INSERT", "eventSource": "aws:dynamodb", "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/t/stream/2026",
           "dynamodb": {"Keys": {"Id": {"N": "101"}}, "NewImage": {"Id": {"N": "101"}, "Msg": {"S": "hi"}},
                        "SequenceNumber": "111", "ApproximateCreationDateTime": 1479499740, "StreamViewType": "NEW_AND_OLD_IMAGES"}},
          {"eventID": "2", "eventName": "REMOVE", "eventSource": "aws:dynamodb", "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/t/stream/2026",
           "dynamodb": {"Keys": {"Id": {"N": "101"}}, "OldImage": {"Id": {"N": "101"}}, "SequenceNumber": "222", "ApproximateCreationDateTime": 1479499741}},
          {"eventID": "3", "eventName": "MODIFY", "eventSource": "aws:dynamodb", "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/t/stream/2026",
           "dynamodb": {"Keys": {"Id": {"N": "x"}}, "NewImage": {"Id": {"N": "x"}}, "SequenceNumber": "333"}}]"#;
        let batch = dynamodb(raw).unwrap();
        let rows = rows_of(&batch, Metadata::default());
        let row =
            |i: usize| -> Value { serde_json::from_str(&rows[i].as_ref().unwrap().0).unwrap() };
        assert_eq!(
            row(0),
            serde_json::json!({"_sequence_number": "111", "_commit_timestamp": "2016-11-18T20:09:00.000Z",
                               "_change_type": "INSERT", "Id": 101, "Msg": "hi"})
        );
        assert_eq!(row(1)["_change_type"], "DELETE");
        assert_eq!(row(1)["Id"], 101);
        assert!(
            rows[2]
                .as_ref()
                .unwrap_err()
                .contains("`Id` is not a number")
        );
    }
}
