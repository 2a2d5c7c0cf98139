//! One invocation: decide what arrived (an event, an S3 or EventBridge notification, an SQS
//! batch), convert each event or object all or nothing, and answer.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;

use crate::columns::UnknownKeys;
use crate::config::Config;
use crate::event::{Event, Input};
use crate::rows::Rows;
use crate::source::Source;
use crate::store::{Object, S3Store, Stored};
use crate::target::Target;
use crate::trigger::{self, Trigger};
use crate::{Error, ddl, encode, stream};

/// Time kept back from the invocation deadline to delete partial output and answer.
pub const CLEANUP_RESERVE: Duration = Duration::from_secs(3);

/// The invocation's deadline from the runtime's milliseconds since the Unix epoch. `0`, or a
/// time already past on arrival (from a tool that does not model deadlines, such as cargo
/// lambda's emulator; Lambda's is always ahead), means none.
fn deadline_from(deadline_ms: u64, now: SystemTime) -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::from_millis(deadline_ms)).filter(|deadline| *deadline > now)
}

/// How long the writes may take: the time left before the deadline less [`CLEANUP_RESERVE`];
/// `None` without a deadline.
///
/// # Errors
/// `S3WriteFailed` when no more than the reserve is left.
pub fn write_budget(
    deadline: Option<SystemTime>,
    now: SystemTime,
) -> Result<Option<Duration>, Error> {
    let Some(deadline) = deadline else {
        return Ok(None);
    };
    let left = deadline.duration_since(now).unwrap_or_default();
    match left.checked_sub(CLEANUP_RESERVE) {
        Some(budget) if !budget.is_zero() => Ok(Some(budget)),
        _ => Err(Error::S3WriteFailed(format!(
            "only {} ms were left before the invocation deadline, less than the {} ms kept to clean up; nothing was written (raise the function's timeout)",
            left.as_millis(),
            CLEANUP_RESERVE.as_millis()
        ))),
    }
}

/// The function's state, built once in `main` and shared by every invocation.
#[derive(Debug)]
pub struct Function {
    store: S3Store,
    config: Config,
}

/// What an invocation returns.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// An event, or the one object of a notification: what was written.
    Converted(Response),
    /// A notification of several objects: one response each, in order.
    Each { results: Vec<Response> },
    /// An SQS batch: the messages that failed, for Lambda to retry
    /// (`ReportBatchItemFailures`); the others are done.
    Batch {
        #[serde(rename = "batchItemFailures")]
        batch_item_failures: Vec<ItemFailure>,
    },
    /// Nothing to convert (S3's test event, or only records of deleted objects).
    Ignored { ignored: &'static str },
}

impl Reply {
    /// The response of a single conversion, if this is one.
    pub fn converted(self) -> Option<Response> {
        match self {
            Reply::Converted(response) => Some(response),
            _ => None,
        }
    }
}

/// An SQS message to retry.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// What a conversion wrote.
#[derive(Debug, Serialize)]
pub struct Response {
    pub rows: usize,
    pub objects: Vec<Written>,
    /// Only for `"dry_run": true`, when nothing was written.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The schema written (declared or inferred); only for a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaDescription>,
    /// The object read, for a source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRead>,
}

/// The source object a conversion read.
#[derive(Debug, Serialize)]
pub struct SourceRead {
    pub uri: String,
    /// Its size as stored (compressed, if it is).
    pub bytes: u64,
    pub etag: Option<String>,
}

/// A schema as Spark DDL and as the JSON list form an event's `schema` also accepts.
#[derive(Debug, Serialize)]
pub struct SchemaDescription {
    pub ddl: String,
    pub fields: Vec<SchemaField>,
}

#[derive(Debug, Serialize)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

impl SchemaDescription {
    fn of(schema: &Schema) -> SchemaDescription {
        SchemaDescription {
            ddl: ddl::to_spark(schema),
            fields: schema
                .fields()
                .iter()
                .map(|f| SchemaField {
                    name: f.name().clone(),
                    data_type: ddl::spark_type(f.data_type()),
                    nullable: f.is_nullable(),
                })
                .collect(),
        }
    }
}

/// One object written, in the order of the targets.
#[derive(Debug, Serialize)]
pub struct Written {
    pub uri: String,
    pub bucket: String,
    pub key: String,
    pub compression: &'static str,
    pub bytes: usize,
    pub rows: usize,
    /// `None` in a dry run.
    pub etag: Option<String>,
    /// The CRC32C (base64) sent with the PUT and verified by S3; `None` in a dry run.
    pub checksum_crc32c: Option<String>,
    /// An Athena `CREATE EXTERNAL TABLE` for the target's folder; only in a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub athena_ddl: Option<String>,
}

impl Function {
    pub fn new(store: S3Store, config: Config) -> Function {
        Function { store, config }
    }

    /// Handles one invocation's body as the runtime delivered it (raw bytes: every body is
    /// ours to report on, as `InvalidEvent`, rather than the runtime's).
    ///
    /// # Errors
    /// Any [`Error`]; for all but `S3WriteFailed` nothing was written, and for that one what
    /// was written has been removed. An SQS batch fails only message by message, in the reply.
    pub async fn handle(&self, event: LambdaEvent<Bytes>) -> Result<Reply, Error> {
        let context = &event.context;
        self.invoke(&event.payload, &context.request_id, context.deadline)
            .await
    }

    /// Handles one body's bytes, logging one summary line.
    ///
    /// # Errors
    /// As [`Function::handle`].
    ///
    /// `deadline_ms` is the invocation's deadline in milliseconds since the Unix epoch (0, or a
    /// time already past, for none): the writes get the time left minus [`CLEANUP_RESERVE`].
    pub async fn invoke(
        &self,
        payload: &[u8],
        request_id: &str,
        deadline_ms: u64,
    ) -> Result<Reply, Error> {
        let started = Instant::now();
        let deadline = deadline_from(deadline_ms, SystemTime::now());
        let result = self.dispatch(payload, request_id, deadline).await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(Reply::Batch {
                batch_item_failures,
            }) => tracing::info!(
                request_id,
                failed = ?batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect::<Vec<_>>(),
                ms,
                "sqs batch done"
            ),
            Ok(Reply::Ignored { ignored }) => {
                tracing::info!(request_id, ignored, ms, "nothing to convert")
            }
            Ok(Reply::Converted(response)) => log_written(request_id, response, ms),
            Ok(Reply::Each { results }) => {
                for response in results {
                    log_written(request_id, response, ms);
                }
            }
            Err(e) => {
                tracing::warn!(request_id, error_type = e.error_type(), error = %e, ms, "invocation failed")
            }
        }
        crate::memory::release_freed();
        result
    }

    async fn dispatch(
        &self,
        payload: &[u8],
        request_id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let trigger = trigger::detect(payload)?;
        tracing::info!(request_id, trigger = trigger.kind(), "received");
        let Trigger::Sqs(messages) = trigger else {
            return self.convert(trigger, request_id, deadline).await;
        };
        let mut failures = Vec::new();
        for message in messages {
            // Each message on its own: its id keys inline rows, so a redelivery overwrites.
            let result = match trigger::detect(message.body.as_bytes()) {
                Ok(Trigger::Sqs(_)) => Err(Error::InvalidEvent(
                    "the message holds another SQS batch".into(),
                )),
                Ok(inner) => self.convert(inner, &message.id, deadline).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(request_id, message_id = message.id, error_type = e.error_type(), error = %e, "message failed");
                failures.push(ItemFailure {
                    item_identifier: message.id,
                });
            }
        }
        Ok(Reply::Batch {
            batch_item_failures: failures,
        })
    }

    /// Converts what one trigger carries; `id` keys the objects of inline rows.
    async fn convert(
        &self,
        trigger: Trigger<'_>,
        id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        match trigger {
            Trigger::Event(event) => self.event(event, id, deadline).await.map(Reply::Converted),
            Trigger::Created { objects, .. } if objects.is_empty() => Ok(Reply::Ignored {
                ignored: "no ObjectCreated record",
            }),
            Trigger::Created { objects, .. } => {
                let targets = self.config.resolve_targets(None)?;
                // Checked for every object before any is converted: a loop writes nothing.
                for object in &objects {
                    if let Some(target) = targets.iter().find(|t| object.is_in(&t.prefix)) {
                        return Err(Error::RecursiveTrigger(format!(
                            "{} lies inside the target {}: converting it would trigger this function on its own output; keep inputs and outputs in separate folders",
                            object.uri(),
                            target.prefix
                        )));
                    }
                }
                let mut results = Vec::with_capacity(objects.len());
                for object in &objects {
                    let job = Conversion {
                        targets: &targets,
                        schema: None,
                        unknown_keys: UnknownKeys::default(),
                        dry_run: false,
                    };
                    results.push(self.source(object, job, deadline).await?);
                }
                Ok(match results.len() {
                    1 => Reply::Converted(results.remove(0)),
                    _ => Reply::Each { results },
                })
            }
            Trigger::Test => Ok(Reply::Ignored {
                ignored: "s3:TestEvent",
            }),
            Trigger::Sqs(_) => Err(Error::InvalidEvent(
                "an SQS batch inside an SQS message".into(),
            )),
        }
    }

    async fn event(
        &self,
        event: Event<'_>,
        id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Response, Error> {
        let targets = self.config.resolve_targets(event.targets)?;
        let job = Conversion {
            targets: &targets,
            schema: event.schema,
            unknown_keys: event.unknown_keys,
            dry_run: event.dry_run,
        };
        match event.input {
            Input::Rows(rows) => self.rows(rows, job, id, deadline).await,
            Input::Source(source) => self.source(&source, job, deadline).await,
        }
    }

    /// An object read and converted as a stream.
    async fn source(
        &self,
        source: &Source,
        job: Conversion<'_>,
        deadline: Option<SystemTime>,
    ) -> Result<Response, Error> {
        if let Some(allowed) = &self.config.allowed_sources
            && !allowed.allows_object(&source.bucket, &source.key)
        {
            return Err(Error::SourceNotAllowed(format!(
                "source {} is outside ALLOWED_SOURCES ({}); nothing was read",
                source.uri(),
                allowed.describe()
            )));
        }
        let streamed = stream::convert(
            &self.store,
            stream::Job {
                source,
                targets: job.targets,
                schema: job.schema.clone(),
                unknown_keys: job.unknown_keys,
                dry_run: job.dry_run,
                deadline,
                row_group_rows: self.config.row_group_rows,
            },
        )
        .await?;
        let source = SourceRead {
            uri: streamed.uri,
            bytes: streamed.bytes,
            etag: streamed.etag,
        };
        Ok(job.response(
            &streamed.schema,
            streamed.rows,
            streamed.objects,
            Some(source),
        ))
    }

    /// Inline rows, converted in memory and written in one go.
    async fn rows(
        &self,
        rows: Rows<'_>,
        job: Conversion<'_>,
        id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Response, Error> {
        let started = Instant::now();
        let targets = job.targets;
        let keys = targets
            .iter()
            .enumerate()
            .map(|(i, t)| t.object_key(i, id))
            .collect::<Result<Vec<_>, _>>()?;
        let codecs: Vec<_> = targets.iter().map(|t| t.codec).collect();
        let encoded = encode::rows_to_parquet(rows, job.schema.clone(), job.unknown_keys, &codecs)?;
        tracing::debug!(
            id,
            build_ms = encoded.build_time.as_secs_f64() * 1e3,
            encode_ms = encoded.encode_time.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "converted"
        );
        let objects: Vec<Object> = targets
            .iter()
            .zip(keys)
            .map(|(target, key)| Object {
                bucket: target.prefix.bucket.clone(),
                key,
                body: encoded
                    .file(target.codec)
                    .expect("every target's codec was encoded")
                    .clone(),
            })
            .collect();
        let rows = encoded.rows;
        let schema: SchemaRef = encoded.schema.clone();
        drop(encoded);
        let stored = if job.dry_run {
            vec![Stored::default(); objects.len()]
        } else {
            let budget = write_budget(deadline, SystemTime::now())?;
            self.store.put_all(&objects, budget).await?
        };
        let written = objects
            .into_iter()
            .zip(stored)
            .map(|(object, stored)| (object.key, object.body.len(), stored))
            .collect();
        Ok(job.response(&schema, rows, written, None))
    }
}

/// What a conversion writes, whatever its input.
struct Conversion<'a> {
    targets: &'a [Target],
    schema: Option<SchemaRef>,
    unknown_keys: UnknownKeys,
    dry_run: bool,
}

impl Conversion<'_> {
    /// The response for `objects` (per target, in order: key, size, what S3 stored), with the
    /// schema and Athena DDL a dry run describes.
    fn response(
        &self,
        schema: &Schema,
        rows: usize,
        objects: Vec<(String, usize, Stored)>,
        source: Option<SourceRead>,
    ) -> Response {
        let objects = self
            .targets
            .iter()
            .zip(objects)
            .map(|(target, (key, bytes, stored))| {
                let athena = self
                    .dry_run
                    .then(|| ddl::athena_create_table(schema, &target.prefix.to_string()));
                Written::new(target, key, bytes, rows, stored, athena)
            })
            .collect();
        Response {
            rows,
            objects,
            dry_run: self.dry_run,
            schema: self.dry_run.then(|| SchemaDescription::of(schema)),
            source,
        }
    }
}

/// The summary line of one conversion: counts, sizes, keys and time, never a value.
fn log_written(request_id: &str, response: &Response, ms: f64) {
    tracing::info!(
        request_id,
        rows = response.rows,
        objects = response.objects.len(),
        dry_run = response.dry_run,
        source = response.source.as_ref().map(|s| s.uri.as_str()),
        bytes = ?response.objects.iter().map(|o| o.bytes).collect::<Vec<_>>(),
        keys = ?response.objects.iter().map(|o| o.uri.as_str()).collect::<Vec<_>>(),
        ms,
        "built parquet"
    );
}

impl Written {
    fn new(
        target: &Target,
        key: String,
        bytes: usize,
        rows: usize,
        stored: Stored,
        athena_ddl: Option<String>,
    ) -> Written {
        let bucket = target.prefix.bucket.clone();
        Written {
            uri: format!("s3://{bucket}/{key}"),
            bytes,
            bucket,
            key,
            compression: target.codec.name(),
            rows,
            etag: stored.etag,
            checksum_crc32c: stored.checksum_crc32c,
            athena_ddl,
        }
    }
}

impl From<Error> for Diagnostic {
    fn from(error: Error) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type().into(),
            error_message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_budget_keeps_time_to_clean_up() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs: u64| Some(now + Duration::from_secs(secs));
        assert_eq!(write_budget(None, now).unwrap(), None);
        assert_eq!(
            write_budget(at(60), now).unwrap(),
            Some(Duration::from_secs(57))
        );
        // A deadline that passes while the objects are built leaves no time either.
        let passed = Some(now - Duration::from_millis(5));
        for deadline in [at(3), at(1), passed] {
            let err = write_budget(deadline, now).unwrap_err();
            assert_eq!(err.error_type(), "S3WriteFailed");
            assert!(err.to_string().contains("nothing was written"), "{err}");
        }
    }

    #[test]
    fn no_deadline_or_one_already_past_on_arrival_means_none() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(deadline_from(0, now), None);
        assert_eq!(deadline_from(1_000_000 * 1000, now), None);
        assert_eq!(
            deadline_from(1_000_060 * 1000, now),
            Some(now + Duration::from_secs(60))
        );
    }
}
