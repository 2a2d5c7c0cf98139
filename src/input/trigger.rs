//! What arrived: one detection step turns an invocation's body into a [`Trigger`].
//!
//! In this order:
//! 1. an object with `rows` or `source`: this function's own event;
//! 2. an object with `Records`: an S3 notification (`eventSource` `aws:s3`; each
//!    `ObjectCreated:*` record's object is a source, other records are skipped), an SQS batch
//!    (`aws:sqs`; each message body is detected again, on its own), or a Kinesis or DynamoDB
//!    Streams batch (`aws:kinesis`, `aws:dynamodb`; see [`crate::input::records`]);
//! 3. an object with `detail-type`: an EventBridge event; `aws.s3` `Object Created` is a
//!    source, any other's `detail` must be this function's own event;
//! 4. an object with `commit`: a Distributed Map job's start or finish (see [`crate::handler::job`]);
//!    with `plan`: its plan step (see [`crate::handler::plan`]);
//! 5. an object with `Items`: a Step Functions Distributed Map batch of objects listed by its
//!    S3 item reader, whose `BatchInput` holds the bucket and the event's optional fields;
//! 6. `"Event": "s3:TestEvent"`: S3's test message when a notification is configured;
//! 7. an object with `sweep`: a scheduled sweep of the uploads killed attempts left; with
//!    `maintain`: a table's maintenance;
//! 8. an object whose `eventSource` is `aws:kafka` or `SelfManagedKafka`: a Kafka batch;
//! 9. anything else: refused as this function's own event would be (naming the unknown field).

use serde::Deserialize;

use crate::Error;
use crate::input::commit::Commit;
use crate::input::event::{Event, Fields};
use crate::input::maintain::Maintain;
use crate::input::plan::Plan;
use crate::input::records::{self, Batch};
use crate::input::source::Source;
use crate::input::sweep::Sweep;
use crate::input::target::{Target, parse_all_targets};

/// What an invocation (or one SQS message) carries.
#[derive(Debug)]
pub enum Trigger<'a> {
    /// A rows or `source` event: sent directly, or as an EventBridge event's `detail`.
    Event(Event<'a>),
    /// Objects created in S3, each converted as a source with `DEFAULT_TARGETS`.
    Created {
        /// `s3-notification` or `eventbridge`, for the logs.
        via: &'static str,
        objects: Vec<Source>,
    },
    /// An SQS batch: each message is handled, and fails, on its own.
    Sqs(Vec<Message>),
    /// S3's `s3:TestEvent`: acknowledged, nothing converted.
    Test,
    /// A job's commit step, for its `targets` (`None`: `DEFAULT_TARGETS`).
    Commit {
        commit: Commit,
        targets: Option<Vec<Target>>,
    },
    /// A job's plan step: its prefix listed and grouped into batches.
    Plan(Plan),
    /// A sweep of the uploads that killed attempts left under the function's folders.
    Sweep(Sweep),
    /// Table maintenance: compaction, manifest rewrite, snapshot expiry, orphan removal.
    Maintain(Maintain),
    /// A batch of stream records: Kinesis, Kafka or DynamoDB Streams.
    Records(Batch),
}

impl Trigger<'_> {
    /// What arrived, for the logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Event(_) => "event",
            Trigger::Created { via, .. } => via,
            Trigger::Sqs(_) => "sqs",
            Trigger::Test => "s3-test-event",
            Trigger::Commit { .. } => "commit",
            Trigger::Plan(_) => "plan",
            Trigger::Sweep(_) => "sweep",
            Trigger::Maintain(_) => "maintain",
            Trigger::Records(batch) => batch.origin.name(),
        }
    }
}

/// One SQS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub body: String,
}

/// A record of an S3 notification or an SQS batch (only the fields read here).
#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventSource")]
    event_source: Option<String>,
    #[serde(rename = "eventName")]
    event_name: Option<String>,
    s3: Option<S3Entity>,
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    body: Option<String>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    /// URL-encoded, `+` for a space.
    key: String,
    #[serde(rename = "versionId")]
    version_id: Option<String>,
}

/// The `detail` of EventBridge's `Object Created`.
#[derive(Deserialize)]
struct ObjectCreated {
    bucket: Bucket,
    object: EventBridgeObject,
}

#[derive(Deserialize)]
struct EventBridgeObject {
    /// Not URL-encoded.
    key: String,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
}

/// Decides what `bytes` are (see the module's order).
///
/// # Errors
/// `InvalidEvent` for a body that is not a JSON object, an envelope of an unsupported source,
/// or a malformed record (naming it); otherwise as [`crate::input::event::parse`].
///
/// ```
/// use rows_to_parquet::input::trigger::{detect, Trigger};
/// let notification = br#"{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
///     "s3": {"bucket": {"name": "in-bucket"}, "object": {"key": "day+1/a%2Bb.ndjson"}}}]}"#;
/// let Trigger::Created { objects, .. } = detect(notification).unwrap() else { panic!() };
/// assert_eq!(objects[0].key, "day 1/a+b.ndjson");
/// ```
pub fn detect(bytes: &[u8]) -> Result<Trigger<'_>, Error> {
    let fields = Fields::read(bytes)?;
    if fields.is_event() {
        return fields.into_event().map(Trigger::Event);
    }
    if let Some(records) = fields.get("Records") {
        return records_of(records);
    }
    if fields.get("detail-type").is_some() {
        return eventbridge(&fields);
    }
    if let Some(commit) = fields.get("commit") {
        fields.only(&["commit", "targets"], "a commit event")?;
        return Ok(Trigger::Commit {
            commit: Commit::parse(commit)?,
            // Its folders get markers; its tables are committed as the batches' manifests list
            // them.
            targets: fields
                .get("targets")
                .map(|t| parse_all_targets(t, "targets").map(|t| t.folders))
                .transpose()?,
        });
    }
    if let Some(plan) = fields.get("plan") {
        fields.only(&["plan"], "a plan event")?;
        return Plan::parse(plan).map(Trigger::Plan);
    }
    if let Some(items) = fields.get("Items") {
        return batch(items, fields.get("BatchInput"));
    }
    if fields.string("Event").as_deref() == Some("s3:TestEvent") {
        return Ok(Trigger::Test);
    }
    if let Some(sweep) = fields.get("sweep") {
        fields.only(&["sweep"], "a sweep event")?;
        return Sweep::parse(sweep).map(Trigger::Sweep);
    }
    if let Some(maintain) = fields.get("maintain") {
        fields.only(&["maintain", "dry_run"], "a maintenance event")?;
        return Maintain::parse(maintain, fields.get("dry_run")).map(Trigger::Maintain);
    }
    if matches!(
        fields.string("eventSource").as_deref(),
        Some("aws:kafka" | "SelfManagedKafka")
    ) {
        return records::kafka(bytes).map(Trigger::Records);
    }
    fields.into_event().map(Trigger::Event)
}

/// An S3 notification's, an SQS batch's or a Kinesis or DynamoDB Streams batch's records.
fn records_of(raw: &str) -> Result<Trigger<'static>, Error> {
    let records: Vec<Record> = serde_json::from_str(raw).map_err(|e| {
        Error::InvalidEvent(format!(
            "`Records` is not a list of S3, SQS or stream records: {e}"
        ))
    })?;
    let source_of = |r: &Record| r.event_source.clone().unwrap_or_default();
    let Some(first) = records.first().map(source_of) else {
        return Err(Error::InvalidEvent("`Records` is empty".into()));
    };
    if let Some((i, other)) = records
        .iter()
        .map(source_of)
        .enumerate()
        .find(|(_, s)| *s != first)
    {
        return Err(Error::InvalidEvent(format!(
            "Records[{i}] comes from `{other}` but Records[0] from `{first}`: one batch holds one kind of record"
        )));
    }
    match first.as_str() {
        "aws:s3" => {
            let mut objects = Vec::new();
            for (i, record) in records.into_iter().enumerate() {
                let created = record
                    .event_name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("ObjectCreated:"));
                if !created {
                    continue;
                }
                let entity = record.s3.ok_or_else(|| {
                    Error::InvalidEvent(format!("Records[{i}] has no `s3` object"))
                })?;
                let key = decode_key(&entity.object.key).map_err(|why| {
                    Error::InvalidEvent(format!("Records[{i}].s3.object.key: {why}"))
                })?;
                objects.push(created_object(
                    &entity.bucket.name,
                    &key,
                    entity.object.version_id,
                    &format!("Records[{i}]"),
                )?);
            }
            Ok(Trigger::Created {
                via: "s3-notification",
                objects,
            })
        }
        "aws:sqs" => records
            .into_iter()
            .enumerate()
            .map(|(i, record)| match (record.message_id, record.body) {
                (Some(id), Some(body)) => Ok(Message { id, body }),
                _ => Err(Error::InvalidEvent(format!(
                    "Records[{i}] is an SQS record without `messageId` and `body`"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Trigger::Sqs),
        "aws:kinesis" => records::kinesis(raw).map(Trigger::Records),
        "aws:dynamodb" => records::dynamodb(raw).map(Trigger::Records),
        other => Err(Error::InvalidEvent(format!(
            "records from `{other}` are not converted (expected aws:s3, aws:sqs, aws:kinesis or aws:dynamodb)"
        ))),
    }
}

/// An item of a Distributed Map batch from `arn:aws:states:::s3:listObjectsV2`, or of a
/// planned batch (the fields read here; `Size`, `LastModified` and `StorageClass` come too).
#[derive(Deserialize)]
struct MapItem {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Etag")]
    etag: Option<String>,
}

/// A Distributed Map batch: its `Items`' objects in the bucket its `BatchInput` names. Folder
/// markers (keys ending in `/`, which the listing includes) are skipped.
fn batch<'a>(items: &str, input: Option<&'a str>) -> Result<Trigger<'a>, Error> {
    let items: Vec<MapItem> = serde_json::from_str(items).map_err(|e| {
        Error::InvalidEvent(format!(
            "`Items` must be the Distributed Map's list of objects, each with its `Key`: {e}"
        ))
    })?;
    let input = input.ok_or_else(|| {
        Error::InvalidEvent(
            "a Distributed Map batch needs a `BatchInput` with the `bucket` (and the targets)"
                .into(),
        )
    })?;
    let items = items
        .into_iter()
        .filter(|item| !item.key.ends_with('/'))
        .map(|item| (item.key, item.etag))
        .collect();
    let within = |e: Error| e.within("in `BatchInput`");
    Fields::read(input.as_bytes())
        .and_then(|fields| fields.into_batch(items))
        .map(Trigger::Event)
        .map_err(within)
}

/// An EventBridge event: S3's `Object Created`, or a custom event whose `detail` is this
/// function's own event.
fn eventbridge<'a>(fields: &Fields<'a>) -> Result<Trigger<'a>, Error> {
    let detail = fields
        .get("detail")
        .ok_or_else(|| Error::InvalidEvent("the EventBridge event has no `detail`".into()))?;
    let source = fields.string("source").unwrap_or_default();
    let detail_type = fields.string("detail-type").unwrap_or_default();
    if source == "aws.s3" {
        if detail_type != "Object Created" {
            return Err(Error::InvalidEvent(format!(
                "EventBridge `{detail_type}` events from aws.s3 are not converted (only Object Created)"
            )));
        }
        let created: ObjectCreated = serde_json::from_str(detail).map_err(|e| {
            Error::InvalidEvent(format!(
                "the Object Created event's `detail` lacks the bucket or object: {e}"
            ))
        })?;
        let object = created_object(
            &created.bucket.name,
            &created.object.key,
            created.object.version_id,
            "detail",
        )?;
        return Ok(Trigger::Created {
            via: "eventbridge",
            objects: vec![object],
        });
    }
    let event = Fields::read(detail.as_bytes()).map_err(|e| in_detail(&source, &detail_type, e))?;
    if !event.is_event() {
        return Err(Error::InvalidEvent(format!(
            "the EventBridge event (source `{source}`, detail-type `{detail_type}`) has a `detail` with neither `rows` nor `source`"
        )));
    }
    event
        .into_event()
        .map(Trigger::Event)
        .map_err(|e| in_detail(&source, &detail_type, e))
}

/// `e` (about an EventBridge event's `detail`) saying where it was found.
fn in_detail(source: &str, detail_type: &str, e: Error) -> Error {
    e.within(&format!(
        "in the `detail` of the EventBridge event (source `{source}`, detail-type `{detail_type}`)"
    ))
}

fn created_object(
    bucket: &str,
    key: &str,
    version_id: Option<String>,
    at: &str,
) -> Result<Source, Error> {
    let mut object = Source::new(bucket, key)
        .map_err(|why| Error::InvalidEvent(format!("{at}: s3://{bucket}/{key} {why}")))?;
    object.version_id = version_id.filter(|v| !v.is_empty());
    Ok(object)
}

/// An S3 notification's key as stored: `+` is a space and `%XX` a byte (so `%2B` is a plus),
/// and the bytes must be UTF-8.
///
/// # Errors
/// The reason, for a malformed escape or bytes that are not UTF-8.
pub fn decode_key(encoded: &str) -> Result<String, String> {
    if !encoded.contains(['+', '%']) {
        return Ok(encoded.to_owned());
    }
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = tail
                    .get(..2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a `%` not followed by two hex digits")?;
                bytes.push(hex);
                rest = &tail[2..];
                continue;
            }
            _ => bytes.push(b),
        }
        rest = tail;
    }
    String::from_utf8(bytes).map_err(|_| "decodes to bytes that are not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_record(name: &str, key: &str) -> String {
        format!(
            r#"{{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "{name}",
                "s3": {{"s3SchemaVersion": "1.0", "bucket": {{"name": "in-bucket", "arn": "arn:aws:s3:::in-bucket"}},
                        "object": {{"key": "{key}", "size": 10, "eTag": "abc", "versionId": "v1", "sequencer": "00"}}}}}}"#
        )
    }

    #[test]
    fn keys_decode_exactly() {
        for (encoded, decoded) in [
            ("plain/key.json", "plain/key.json"),
            ("day+1/a%2Bb.ndjson", "day 1/a+b.ndjson"),
            ("caf%C3%A9/%25.json", "café/%.json"),
        ] {
            assert_eq!(decode_key(encoded).unwrap(), decoded);
        }
        for bad in ["a%2", "a%zz", "%FF.json"] {
            assert!(decode_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn s3_notifications_name_created_objects_and_skip_the_rest() {
        let body = format!(
            r#"{{"Records": [{}, {}, {}]}}"#,
            s3_record("ObjectCreated:Put", "in/a+b%2Bc.ndjson"),
            s3_record("ObjectRemoved:Delete", "in/gone.ndjson"),
            s3_record("ObjectCreated:CompleteMultipartUpload", "in/big.json.gz"),
        );
        let Trigger::Created { via, objects } = detect(body.as_bytes()).unwrap() else {
            panic!("not created objects")
        };
        assert_eq!(via, "s3-notification");
        let keys: Vec<_> = objects
            .iter()
            .map(|o| (o.key.as_str(), o.version_id.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                ("in/a b+c.ndjson", Some("v1")),
                ("in/big.json.gz", Some("v1"))
            ]
        );
    }

    #[test]
    fn eventbridge_object_created_and_custom_events() {
        let created = br#"{"version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
            "account": "123456789012", "time": "2026-11-28T00:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"version": "0", "bucket": {"name": "in-bucket"}, "object": {"key": "in/a b+c.ndjson", "size": 5, "etag": "e", "version-id": "v2"}, "reason": "PutObject"}}"#;
        let Trigger::Created { via, objects } = detect(created).unwrap() else {
            panic!()
        };
        assert_eq!(
            (via, objects[0].key.as_str()),
            ("eventbridge", "in/a b+c.ndjson")
        );
        assert_eq!(objects[0].version_id.as_deref(), Some("v2"));

        let custom = br#"{"detail-type": "Daily export", "source": "my.app", "detail": {"rows": [{"a": 1}], "dry_run": true}}"#;
        let Trigger::Event(event) = detect(custom).unwrap() else {
            panic!()
        };
        assert!(event.dry_run);
        let bad = br#"{"detail-type": "Daily export", "source": "my.app", "detail": {"rows": [{"a": 1}], "target": []}}"#;
        let e = detect(bad).unwrap_err();
        assert!(
            e.to_string().contains("source `my.app`")
                && e.to_string().contains("unknown field `target`"),
            "{e}"
        );
    }

    #[test]
    fn sqs_batches_keep_each_message_whole() {
        let body = r#"{"Records": [
            {"messageId": "m1", "body": "{\"rows\": [{\"a\": 1}]}", "eventSource": "aws:sqs"},
            {"messageId": "m2", "body": "not json", "eventSource": "aws:sqs"}]}"#;
        let Trigger::Sqs(messages) = detect(body.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            messages[0],
            Message {
                id: "m1".into(),
                body: r#"{"rows": [{"a": 1}]}"#.into()
            }
        );
        assert_eq!(messages[1].body, "not json");
    }

    #[test]
    fn test_events_are_recognised_and_the_rest_refused_clearly() {
        let test = br#"{"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-28T00:00:00.000Z", "Bucket": "in-bucket", "RequestId": "r", "HostId": "h"}"#;
        assert!(matches!(detect(test).unwrap(), Trigger::Test));
        for (body, word) in [
            (
                r#"{"Records": [{"eventSource": "aws:sns"}]}"#,
                "`aws:sns` are not converted",
            ),
            (r#"{"Records": []}"#, "`Records` is empty"),
            (
                r#"{"Records": [{"eventSource": "aws:s3"}, {"eventSource": "aws:sqs", "messageId": "m", "body": "{}"}]}"#,
                "one batch holds one kind",
            ),
            (
                r#"{"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}"#,
                "without `messageId`",
            ),
            (
                r#"{"detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": {}}}"#,
                "lacks the bucket",
            ),
            (
                r#"{"detail-type": "x", "source": "y", "detail": {"a": 1}}"#,
                "neither `rows` nor `source`",
            ),
            (r#"{"Event": "s3:Other"}"#, "unknown field `Event`"),
            (
                r#"{"rows": [{"a": 1}], "source": {"uri": "s3://in-bucket/a.json"}}"#,
                "both `rows` and `source`",
            ),
        ] {
            let e = detect(body.as_bytes()).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent", "{body}");
            assert!(e.to_string().contains(word), "{body}: {e}");
        }
    }
}
