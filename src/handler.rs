//! One invocation: decide what arrived (an event, an S3 or EventBridge notification, an SQS
//! batch), convert each event or object all or nothing, and answer.

use std::time::{Instant, SystemTime};

use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;

use crate::encode::columns::UnknownKeys;
use crate::encode::partition::Layout;
use crate::encode::writer::{self, Partitioning};
use crate::input::event::{Event, Input};
use crate::input::source::Source;
use crate::input::target::Target;
use crate::input::trigger::{self, Trigger};
use crate::job::{self, Commit};
use crate::lambda::config::Config;
use crate::rows::Rows;
use crate::schema::ddl;
use crate::store::budget::{deadline_from, write_budget};
use crate::store::s3::{Object, Output, S3Store, Stored};
use crate::store::transaction::{Transaction, with_leftovers};
use crate::{Error, stream};

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
    /// A job's commit step: the markers removed (`start`) or written (`finish`).
    Committed {
        phase: &'static str,
        markers: Vec<Marker>,
    },
}

/// A job's `_SUCCESS` marker in one target's folder.
#[derive(Debug, Serialize)]
pub struct Marker {
    pub uri: String,
    /// What the job wrote there (0 for `start`).
    pub objects: usize,
    pub rows: u64,
    pub bytes: u64,
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

/// One object written: per partition (in the order each first appears), one per target in
/// the targets' order.
#[derive(Debug, Serialize)]
pub struct Written {
    pub uri: String,
    pub bucket: String,
    pub key: String,
    /// The Hive folders of its partition (`dt=2024-01-01/region=eu`); only with `partition_by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    pub compression: &'static str,
    pub bytes: usize,
    pub rows: usize,
    /// `None` in a dry run.
    pub etag: Option<String>,
    /// The CRC32C (base64) sent with the PUT and verified by S3; `None` in a dry run.
    pub checksum_crc32c: Option<String>,
    /// An Athena `CREATE EXTERNAL TABLE` for the target's folder; only in a dry run, on the
    /// target's first object.
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
    /// time already past, for none): the writes get the time left minus [`CLEANUP_RESERVE`](crate::store::budget::CLEANUP_RESERVE).
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
            Ok(Reply::Committed { phase, markers }) => tracing::info!(
                request_id,
                phase,
                markers = ?markers.iter().map(|m| m.uri.as_str()).collect::<Vec<_>>(),
                objects = ?markers.iter().map(|m| m.objects).collect::<Vec<_>>(),
                ms,
                "job commit"
            ),
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
            Trigger::Event(event) => self.event(event, id, deadline).await,
            Trigger::Created { objects, .. } if objects.is_empty() => Ok(Reply::Ignored {
                ignored: "no ObjectCreated record",
            }),
            Trigger::Created { objects, .. } => {
                let targets = self.config.resolve_targets(None)?;
                refuse_own_output(&objects, &targets)?;
                let job = Conversion {
                    targets: &targets,
                    schema: None,
                    unknown_keys: UnknownKeys::default(),
                    partitioning: Partitioning::NONE,
                    dry_run: false,
                };
                let mut results = self.sources(&objects, job, deadline).await?;
                Ok(match results.len() {
                    1 => Reply::Converted(results.remove(0)),
                    _ => Reply::Each { results },
                })
            }
            Trigger::Test => Ok(Reply::Ignored {
                ignored: "s3:TestEvent",
            }),
            Trigger::Commit { commit, targets } => {
                let targets = self.config.resolve_targets(targets)?;
                self.commit_job(commit, &targets, deadline).await
            }
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
    ) -> Result<Reply, Error> {
        let targets = self.config.resolve_targets(event.targets)?;
        let job = Conversion {
            targets: &targets,
            schema: event.schema,
            unknown_keys: event.unknown_keys,
            partitioning: Partitioning {
                by: event.partition_by.as_ref(),
                max: self.config.max_partitions,
            },
            dry_run: event.dry_run,
        };
        match event.input {
            Input::Rows(rows) => self
                .rows(rows, job, id, deadline)
                .await
                .map(Reply::Converted),
            Input::Source(source) => {
                let mut results = self.sources(&[source], job, deadline).await?;
                Ok(Reply::Converted(results.remove(0)))
            }
            Input::Objects(objects) if objects.is_empty() => Ok(Reply::Ignored {
                ignored: "no object in the batch",
            }),
            Input::Objects(objects) => {
                refuse_own_output(&objects, &targets)?;
                let results = self.sources(&objects, job, deadline).await?;
                Ok(Reply::Each { results })
            }
        }
    }

    /// Objects read and converted as streams, all or nothing together: one transaction,
    /// committed when every object is converted.
    async fn sources(
        &self,
        sources: &[Source],
        job: Conversion<'_>,
        deadline: Option<SystemTime>,
    ) -> Result<Vec<Response>, Error> {
        if let Some(allowed) = &self.config.allowed_sources
            && let Some(source) = sources
                .iter()
                .find(|s| !allowed.allows_object(&s.bucket, &s.key))
        {
            return Err(Error::SourceNotAllowed(format!(
                "source {} is outside ALLOWED_SOURCES ({}); nothing was read",
                source.uri(),
                allowed.describe()
            )));
        }
        let mut transaction = Transaction::new(&self.store);
        let mut converted = Vec::with_capacity(sources.len());
        for source in sources {
            let streamed = stream::convert(
                &self.store,
                stream::Job {
                    source,
                    targets: job.targets,
                    schema: job.schema.clone(),
                    unknown_keys: job.unknown_keys,
                    partitioning: job.partitioning,
                    deadline,
                    row_group_rows: self.config.row_group_rows,
                },
                (!job.dry_run).then_some(&mut transaction),
            )
            .await;
            match streamed {
                Ok(streamed) => converted.push(streamed),
                Err(e) => {
                    // An earlier object's output is not left behind either.
                    let left = transaction.abort().await;
                    return Err(with_leftovers(e, &left));
                }
            }
        }
        let mut stored = make_visible(&mut transaction, job.dry_run, deadline)
            .await?
            .into_iter();
        Ok(converted
            .into_iter()
            .map(|streamed| {
                let mut objects = streamed.objects;
                for object in &mut objects {
                    object.stored = stored.next().unwrap_or_default();
                }
                let read = SourceRead {
                    uri: streamed.uri,
                    bytes: streamed.bytes,
                    etag: streamed.etag,
                };
                job.response(
                    &streamed.schema,
                    streamed.layout.as_ref(),
                    objects,
                    Some(read),
                )
            })
            .collect())
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
        let codecs: Vec<_> = targets.iter().map(|t| t.codec).collect();
        let encoded = writer::rows_to_parquet(
            rows,
            job.schema.clone(),
            job.unknown_keys,
            &codecs,
            job.partitioning,
        )?;
        tracing::debug!(
            id,
            build_ms = encoded.build_time.as_secs_f64() * 1e3,
            encode_ms = encoded.encode_time.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            partitions = encoded.partitions.len(),
            "converted"
        );
        let mut outputs = Vec::new();
        let mut objects = Vec::new();
        for partition in &encoded.partitions {
            for (index, target) in targets.iter().enumerate() {
                let key = target.object_key(index, &partition.path, id, 0)?;
                let body = partition
                    .file(target.codec)
                    .expect("every target's codec was encoded")
                    .clone();
                let mut output = Output::new(index, &partition.path, key.clone());
                (output.bytes, output.rows) = (body.len(), partition.rows);
                outputs.push(output);
                objects.push(Object {
                    bucket: target.prefix.bucket.clone(),
                    key,
                    body,
                });
            }
        }
        let (schema, layout) = (encoded.schema.clone(), encoded.layout.clone());
        drop(encoded);
        if !job.dry_run {
            let budget = write_budget(deadline, SystemTime::now())?;
            let stored = self.store.put_all(&objects, budget).await?;
            for (output, stored) in outputs.iter_mut().zip(stored) {
                output.stored = stored;
            }
        }
        Ok(job.response(&schema, layout.as_ref(), outputs, None))
    }
}

impl Function {
    /// A job's commit step (see [`crate::job`]).
    async fn commit_job(
        &self,
        commit: Commit,
        targets: &[Target],
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let marker_of = |t: &Target| format!("{}{}", t.prefix.key_prefix, job::MARKER);
        let (phase, written) = match commit {
            Commit::Start => {
                for target in targets {
                    self.store
                        .delete(&target.prefix.bucket, &marker_of(target))
                        .await?;
                }
                ("start", vec![job::Written::default(); targets.len()])
            }
            Commit::Finish {
                bucket,
                key,
                map_run,
            } => {
                let manifest = self.store.read_all(&bucket, &key, RESULTS_LIMIT).await?;
                let mut written = vec![job::Written::default(); targets.len()];
                for file in job::succeeded_files(&manifest)? {
                    let text = self.store.read_all(&bucket, &file, RESULTS_LIMIT).await?;
                    job::add_results(&text, targets, &mut written)?;
                }
                let mut transaction = Transaction::new(&self.store);
                for (target, written) in targets.iter().zip(&written) {
                    let index = transaction.add(target.prefix.bucket.clone(), marker_of(target));
                    let body = job::marker(written, map_run.as_deref());
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
                uri: format!("{}{}", target.prefix, job::MARKER),
                objects: written.files.len(),
                rows: written.rows,
                bytes: written.bytes,
            })
            .collect();
        Ok(Reply::Committed { phase, markers })
    }
}

/// Refuses objects inside a target folder (checked for every object before any is converted,
/// so nothing is written): converting a notification of one would trigger the function on its
/// own output, and a job over a prefix holding its own output would convert it again.
///
/// # Errors
/// `RecursiveTrigger` naming the first such object.
fn refuse_own_output(objects: &[Source], targets: &[Target]) -> Result<(), Error> {
    for object in objects {
        if let Some(target) = targets.iter().find(|t| object.is_in(&t.prefix)) {
            return Err(Error::RecursiveTrigger(format!(
                "{} lies inside the target {}: converting it would convert this function's own output; keep inputs and outputs in separate folders",
                object.uri(),
                target.prefix
            )));
        }
    }
    Ok(())
}

/// The most of a map run's manifest or results file read.
const RESULTS_LIMIT: usize = 256 << 20;

/// Makes every object of `transaction` visible (nothing in a dry run), within the time left;
/// what S3 stored, in order.
///
/// # Errors
/// `S3WriteFailed` when too little time is left or a write fails; nothing of the transaction
/// is then left in S3 (or what could not be removed is named).
async fn make_visible(
    transaction: &mut Transaction<'_>,
    dry_run: bool,
    deadline: Option<SystemTime>,
) -> Result<Vec<Stored>, Error> {
    if dry_run {
        return Ok(Vec::new());
    }
    match write_budget(deadline, SystemTime::now()) {
        Ok(budget) => transaction.commit(budget).await,
        Err(e) => {
            let left = transaction.abort().await;
            Err(with_leftovers(e, &left))
        }
    }
}

/// What a conversion writes, whatever its input.
struct Conversion<'a> {
    targets: &'a [Target],
    schema: Option<SchemaRef>,
    unknown_keys: UnknownKeys,
    partitioning: Partitioning<'a>,
    dry_run: bool,
}

impl Conversion<'_> {
    /// The response for `outputs`, with the schema and Athena DDL a dry run describes.
    fn response(
        &self,
        schema: &Schema,
        layout: Option<&Layout>,
        outputs: Vec<Output>,
        source: Option<SourceRead>,
    ) -> Response {
        let (files, partitions) = match layout {
            Some(layout) => (layout.files.as_ref(), layout.partition_fields.as_slice()),
            None => (schema, &[][..]),
        };
        let mut described = vec![false; self.targets.len()];
        let rows = outputs
            .iter()
            .filter(|o| o.target == 0)
            .map(|o| o.rows)
            .sum();
        let objects = outputs
            .into_iter()
            .map(|output| {
                let target = &self.targets[output.target];
                let first = !std::mem::replace(&mut described[output.target], true);
                let athena = (self.dry_run && first).then(|| {
                    ddl::athena_create_table(files, partitions, &target.prefix.to_string())
                });
                Written::new(target, output, athena)
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
    fn new(target: &Target, output: Output, athena_ddl: Option<String>) -> Written {
        let bucket = target.prefix.bucket.clone();
        let partition = output.partition.strip_suffix('/').map(str::to_owned);
        Written {
            uri: format!("s3://{bucket}/{}", output.key),
            bytes: output.bytes,
            bucket,
            key: output.key,
            partition,
            compression: target.codec.name(),
            rows: output.rows,
            etag: output.stored.etag,
            checksum_crc32c: output.stored.checksum_crc32c,
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
