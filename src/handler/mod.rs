//! The handler stage: one invocation end to end. It decides what arrived (an event, an S3 or
//! EventBridge notification, an SQS batch, a job's plan or commit step), converts each event or
//! object all or nothing, and answers. The top of the pipeline: it may use every stage below
//! it, and none of them uses it.
//!
//! - this module: [`Function`], which dispatches what arrived, logs one line for each
//!   invocation and prints its metrics line.
//! - `conversion.rs`: inline rows encoded in memory, and source objects streamed, into one
//!   transaction.
//! - `records.rs`: a stream batch (Kinesis, Kafka, DynamoDB Streams): its bad records set
//!   aside, the rest into the folders and, exactly once, into the tables.
//! - [`stream`]: one source object through reader, schema, columns and encoder into the
//!   transaction's multipart uploads.
//! - [`plan`]: a whole-prefix job's plan step: its objects grouped into batches by bytes.
//! - [`job`]: a whole-prefix job's commit step, and the `_SUCCESS` marker it writes.
//! - `hive.rs`: the folders' Glue tables (`glue_table`), kept in step before the objects
//!   become visible.
//! - `replace.rs`: the write modes: what a write replaces, removed once it is visible.
//! - `turn.rs`: the leases a write holds so that concurrent writes of one folder, or of one
//!   piece of work, take turns.
//! - `table/`: the same inputs into Iceberg tables, and their snapshots.
//! - `sweep.rs`: a scheduled sweep of the uploads that killed attempts left.
//! - [`reply`]: what an invocation answers, and the Lambda `errorType` of a failure.

mod conversion;
mod hive;
pub mod job;
pub mod plan;
mod records;
mod replace;
pub mod reply;
pub mod stream;
mod sweep;
mod table;
mod turn;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lambda_runtime::LambdaEvent;

use crate::Error;
use crate::catalog::Glue;
use crate::encode::writer::Partitioning;
use crate::input::event::{Event, Input, WriteMode};
use crate::input::source::Source;
use crate::input::trigger::{self, Trigger};
use crate::lambda::config::Config;
use crate::lambda::metrics::{Measures, Metrics};
use crate::store::budget::deadline_from;
use crate::store::s3::S3Store;
use conversion::{Conversion, refuse_own_output};
use job::BatchGlue;
use reply::{ItemFailure, Reply, Response};

/// The function's state, built once in `main` and shared by every invocation.
#[derive(Debug)]
pub struct Function {
    store: S3Store,
    /// The Glue client of table targets, built on first use.
    glue: Glue,
    config: Config,
    metrics: Metrics,
    /// The invocation in progress (the runtime hands over one at a time).
    measures: Measures,
    /// An SQS batch's table appends, committed at its end.
    deferred: table::Deferred,
    /// The leases the invocation holds.
    turns: turn::Turns,
}

impl Function {
    /// With a Glue client built elsewhere (tests point it at a local server).
    pub fn with_glue(mut self, client: aws_sdk_glue::Client) -> Function {
        self.glue = Glue::with_client(client);
        self
    }

    pub fn new(store: S3Store, config: Config) -> Function {
        let metrics = Metrics::new(
            config.metrics_namespace.clone(),
            config.function_name.clone(),
        );
        Function {
            store,
            glue: Glue::default(),
            config,
            metrics,
            measures: Measures::default(),
            deferred: table::Deferred::default(),
            turns: turn::Turns::default(),
        }
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

    /// Handles one body's bytes, logging one summary line and printing one metrics line.
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
        self.measures.reset();
        self.turns.start(request_id);
        let result = self.dispatch(payload, request_id, deadline).await;
        // Whatever the work left held (the end of an SQS batch's table commits included).
        self.turns.release_since(0).await;
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_millis() as u64);
        let failure = result.as_ref().err().map(Error::error_type);
        let line = self.metrics.line(
            &self.measures,
            request_id,
            payload.len(),
            failure,
            timestamp_ms,
        );
        // Straight to stdout, not through the logger: CloudWatch reads the line as it is.
        println!("{line}");
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(Reply::Batch {
                batch_item_failures,
            }) => tracing::info!(
                request_id,
                failed = ?batch_item_failures.iter().map(|f| f.item_identifier.to_string()).collect::<Vec<_>>(),
                ms,
                "batch done"
            ),
            Ok(Reply::Ignored { ignored }) => {
                tracing::info!(request_id, ignored, ms, "nothing to convert")
            }
            Ok(Reply::Committed {
                phase,
                markers,
                tables,
                glue_tables,
                removed,
            }) => tracing::info!(
                request_id,
                phase,
                markers = ?markers.iter().map(|m| m.uri.as_str()).collect::<Vec<_>>(),
                objects = ?markers.iter().map(|m| m.objects).collect::<Vec<_>>(),
                tables = ?tables.iter().map(|t| (t.table.as_str(), t.snapshot_id, t.data_files)).collect::<Vec<_>>(),
                glue_tables = ?glue_tables.iter().map(|t| (t.table.as_str(), t.partitions_added)).collect::<Vec<_>>(),
                removed = removed.as_ref().map(|r| r.objects),
                ms,
                "job commit"
            ),
            Ok(Reply::Planned { plan }) => tracing::info!(
                request_id,
                source = plan.source,
                objects = plan.objects,
                bytes = plan.bytes,
                batches = plan.batches,
                skipped = plan.skipped,
                plan = plan.key,
                ms,
                "job planned"
            ),
            Ok(Reply::Maintained { maintained }) => {
                let count = |s: &Option<crate::maintain::StepReport>| {
                    s.as_ref()
                        .map(|s| (s.files_read, s.files_written, s.files_deleted, s.more))
                };
                tracing::info!(
                    request_id,
                    table = maintained.table,
                    dry_run = maintained.dry_run,
                    rewrite_data_files = ?count(&maintained.rewrite_data_files),
                    rewrite_manifests = ?count(&maintained.rewrite_manifests),
                    expire_snapshots = ?count(&maintained.expire_snapshots),
                    remove_orphan_files = ?count(&maintained.remove_orphan_files),
                    ms,
                    "maintained (files read, written, deleted, more)"
                )
            }
            Ok(Reply::Swept { swept }) => tracing::info!(
                request_id,
                folders = ?swept.folders,
                aborted = swept.aborted,
                kept = swept.kept,
                failed = swept.failed.len(),
                complete = swept.complete,
                ms,
                "sweep"
            ),
            Ok(Reply::Listed { batch }) => tracing::info!(
                request_id,
                sources = batch.sources,
                rows = batch.rows,
                objects = batch.objects,
                data_files = batch.data_files,
                bytes = batch.bytes,
                manifest = batch.manifest,
                ms,
                "batch listed"
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
        let trigger = self.measures.parse.measure(|| trigger::detect(payload))?;
        self.measures.trigger(trigger.kind());
        tracing::info!(request_id, trigger = trigger.kind(), "received");
        let Trigger::Sqs(messages) = trigger else {
            return self.convert(trigger, request_id, deadline).await;
        };
        let mut failures = Vec::new();
        let failed = |e: &Error, message_id: &str, failures: &mut Vec<ItemFailure>| {
            self.measures.message_failed(e);
            tracing::warn!(request_id, message_id, error_type = e.error_type(), error = %e, "message failed");
            failures.push(ItemFailure {
                item_identifier: message_id.into(),
            });
        };
        // Tables get one snapshot for all the good messages, at the end.
        self.deferred.start();
        for message in messages {
            // Each message on its own: its id keys inline rows, so a redelivery overwrites.
            let detected = self
                .measures
                .parse
                .measure(|| trigger::detect(message.body.as_bytes()));
            let mark = self.deferred.len();
            let result = match detected {
                Ok(Trigger::Sqs(_)) => Err(Error::InvalidEvent(
                    "the message holds another SQS batch".into(),
                )),
                Ok(inner) => self.convert(inner, &message.id, deadline).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => self.deferred.belong_to(mark, &message.id),
                Err(e) => {
                    // Its objects converted before the failure are not committed either.
                    let kept = self.deferred.take_since(mark);
                    self.remove_pending(kept, Vec::new()).await;
                    failed(&e, &message.id, &mut failures);
                }
            }
        }
        let pending = self.deferred.finish();
        for (message_id, e) in self.commit_pending(pending, deadline).await {
            failed(&e, &message_id, &mut failures);
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
        let (turns, deferred) = (self.turns.mark().await, self.deferred.len());
        // Boxed: a conversion's future is large, and an SQS batch holds one per message.
        let reply = Box::pin(self.carry_out(trigger, id, deadline)).await;
        // The unit of work is done, unless its table commit waits for its SQS batch's end.
        if self.deferred.len() == deferred {
            self.turns.release_since(turns).await;
        }
        let reply = reply?;
        // A dry run converts rows but writes nothing.
        let count = |r: &Response| match r.dry_run {
            true => self.measures.converted(r.rows, 0, 0),
            false => {
                let bytes = r.objects.iter().map(|o| o.bytes).sum();
                self.measures.converted(r.rows, r.objects.len(), bytes)
            }
        };
        match &reply {
            Reply::Converted(response) => count(response),
            Reply::Each { results } => results.iter().for_each(count),
            Reply::Listed { batch } => {
                self.measures
                    .converted(batch.rows, batch.objects, batch.bytes)
            }
            _ => {}
        }
        Ok(reply)
    }

    /// What one trigger asks for, done.
    async fn carry_out(
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
                let objects: Vec<Source> =
                    objects.into_iter().map(|o| self.config.source(o)).collect();
                let targets = self.config.resolve_targets(None)?;
                refuse_own_output(&objects, &targets)?;
                let job = || self.configured(&targets);
                let tables = &self.config.default_tables;
                let mut results = match tables.is_empty() {
                    true => self.sources(&objects, None, job(), deadline).await?,
                    // Each object its own work: a retried notification skips what landed.
                    false => {
                        let mut results = Vec::with_capacity(objects.len());
                        for object in objects {
                            let converted =
                                self.source_into_tables(object, job(), tables, deadline);
                            results.push(converted.await?);
                        }
                        results
                    }
                };
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
                let started = Instant::now();
                let committed = self.commit_job(commit, &targets, deadline).await;
                self.measures.commit.since(started);
                committed
            }
            Trigger::Plan(plan) => self.plan_job(plan, deadline).await,
            Trigger::Sweep(sweep) => self.sweep(sweep, deadline).await,
            Trigger::Maintain(maintain) => self.maintain(&maintain, deadline).await,
            Trigger::Records(batch) => self.records(batch, deadline).await,
            Trigger::Sqs(_) => Err(Error::InvalidEvent(
                "an SQS batch inside an SQS message".into(),
            )),
        }
    }

    /// What a trigger that carries no options writes (a notification, a stream batch):
    /// `targets` with the options the configuration sets.
    fn configured<'a>(&'a self, targets: &'a [crate::input::target::Target]) -> Conversion<'a> {
        Conversion {
            targets,
            schema: self.config.schema.clone(),
            unknown_keys: self.config.unknown_keys,
            partitioning: Partitioning {
                by: self.config.partition_by.as_ref(),
                max: self.config.max_partitions,
                max_file_bytes: self.config.max_file_bytes,
                skipping: &self.config.skipping,
            },
            dry_run: false,
            evolution: self.config.schema_evolution,
            glue_at_finish: false,
            mode: WriteMode::Append,
            row_group: self.config.row_groups(),
        }
    }

    async fn event(
        &self,
        event: Event<'_>,
        id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let tables = match &event.targets {
            Some(_) => event.tables,
            None => self.config.default_tables.clone(),
        };
        let targets = self.config.resolve_targets(event.targets)?;
        let mode = event.mode;
        let skipping = event.skipping.as_ref().unwrap_or(&self.config.skipping);
        let job = Conversion {
            targets: &targets,
            schema: event.schema,
            unknown_keys: event.unknown_keys,
            partitioning: Partitioning {
                by: event.partition_by.as_ref(),
                max: self.config.max_partitions,
                max_file_bytes: event.max_file_bytes.or(self.config.max_file_bytes),
                skipping,
            },
            dry_run: event.dry_run,
            evolution: event
                .schema_evolution
                .unwrap_or(self.config.schema_evolution),
            glue_at_finish: !event.dry_run
                && matches!(
                    &event.input,
                    Input::Objects {
                        manifests: Some(_),
                        ..
                    }
                ),
            mode,
            row_group: self.config.row_group(event.row_group_bytes)?,
        };
        if mode != WriteMode::Append {
            let refused = match (&event.input, tables.first()) {
                (_, Some(table)) => Some(format!(
                    "`mode` applies to folders; the Iceberg table {table} is only appended to: name its folders in an event of their own"
                )),
                (Input::Objects { .. }, None) => Some(
                    "a map batch only adds; give `mode` to the job's finish step (`commit.mode`), which removes what the whole job replaces".into(),
                ),
                _ => None,
            };
            if let Some(why) = refused {
                return Err(Error::InvalidEvent(format!("{why}; nothing was written")));
            }
        }
        let dry_run = job.dry_run;
        let input = match event.input {
            Input::Source(source) => Input::Source(self.config.source(source)),
            Input::Objects {
                objects,
                manifests,
                etags,
            } => Input::Objects {
                objects: objects.into_iter().map(|o| self.config.source(o)).collect(),
                manifests,
                etags,
            },
            rows => rows,
        };
        match input {
            Input::Rows(rows) if !tables.is_empty() => self
                .rows_into_tables(rows, job, &tables, id, deadline)
                .await
                .map(Reply::Converted),
            Input::Source(source) if !tables.is_empty() => self
                .source_into_tables(source, job, &tables, deadline)
                .await
                .map(Reply::Converted),
            Input::Rows(rows) => self
                .rows(rows, job, id, deadline)
                .await
                .map(Reply::Converted),
            Input::Source(source) => {
                let mut results = self.sources(&[source], None, job, deadline).await?;
                Ok(Reply::Converted(results.remove(0)))
            }
            Input::Objects { objects, .. } if objects.is_empty() => Ok(Reply::Ignored {
                ignored: "no object in the batch",
            }),
            Input::Objects {
                objects,
                manifests,
                etags,
            } => {
                refuse_own_output(&objects, &targets)?;
                if let Some(folder) = &manifests {
                    self.check_manifests(folder, &targets)?;
                }
                let glued = targets.iter().find_map(|t| t.glue_table.as_ref());
                if let (Some(table), None, false) = (glued, &manifests, job.dry_run) {
                    return Err(Error::InvalidEvent(format!(
                        "a map batch into folders with a Glue table ({table}) needs `BatchInput.manifests`: the job's finish step registers the partitions the batches list there; nothing was written"
                    )));
                }
                let listed = objects.iter().zip(&etags);
                let batch = stream::batch_identity(listed.map(|(o, e)| (o.uri(), e.as_deref())));
                if !tables.is_empty() {
                    let manifests = manifests.as_ref();
                    return self
                        .objects_into_tables(&objects, &batch, job, &tables, manifests, deadline)
                        .await;
                }
                let evolution = job.evolution;
                let results = self.sources(&objects, Some(&batch), job, deadline).await?;
                match manifests {
                    Some(folder) if !dry_run => {
                        let glue = BatchGlue::of(&targets, &results, evolution)?;
                        let listing =
                            self.list_batch(&folder, &batch, results, &[], glue.as_ref(), deadline);
                        listing.await
                    }
                    _ => {
                        warn_if_too_large(id, &results);
                        Ok(Reply::Each { results })
                    }
                }
            }
        }
    }
}

/// Step Functions fails a map batch whose reply passes its state output limit, after the
/// batch wrote everything: say so in the log, and how to avoid it.
fn warn_if_too_large(request_id: &str, results: &[Response]) {
    let bytes = serde_json::to_vec(results).map_or(0, |v| v.len());
    if bytes > job::STATE_OUTPUT_LIMIT {
        tracing::warn!(
            request_id,
            bytes,
            "the batch's reply passes Step Functions' 256 KiB state output limit: give its BatchInput a `manifests` folder"
        );
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
