//! A conversion, all or nothing: inline rows encoded in memory and PUT together, or source
//! objects streamed into one transaction, committed when every object is converted.

use std::time::{Instant, SystemTime};

use arrow_schema::{Schema, SchemaRef};

use super::hive::{columns_of, distinct, files_and_partitions};
use super::replace::{Wrote, listed_keys};
use super::reply::{GlueTableKept, Removed, Response, SchemaDescription, SourceRead, Written};
use super::{Function, stream, turn};
use crate::Error;
use crate::catalog::hive::Columns;
use crate::encode::columns::UnknownKeys;
use crate::encode::partition::Layout;
use crate::encode::writer::{self, Partitioning, RowGroupSize};
use crate::input::event::{Evolution, WriteMode};
use crate::input::source::Source;
use crate::input::target::Target;
use crate::lambda::metrics::Phase;
use crate::rows::Rows;
use crate::schema::ddl;
use crate::store::budget::write_budget;
use crate::store::s3::{Object, Output, Stored};
use crate::store::transaction::{Transaction, with_leftovers};

impl Function {
    /// Objects read and converted as streams, all or nothing together: one transaction,
    /// committed when every object is converted. With `batch` (a map batch's identity) the
    /// objects are read one after the other into the same files (one per partition and
    /// target, rolling over at `max_file_bytes`), named for the batch, and answered with one
    /// response; without it each object gets its own files, named for the object, and
    /// response.
    pub(super) async fn sources(
        &self,
        sources: &[Source],
        batch: Option<&str>,
        job: Conversion<'_>,
        deadline: Option<SystemTime>,
    ) -> Result<Vec<Response>, Error> {
        self.check_sources(sources)?;
        let mut transaction = Transaction::new(&self.store);
        let groups: Vec<&[Source]> = match batch {
            Some(_) => vec![sources],
            None => sources.chunks(1).collect(),
        };
        let mut converted = Vec::with_capacity(groups.len());
        for group in groups {
            let streamed = stream::convert(
                &self.store,
                stream::Job {
                    sources: group,
                    id: batch,
                    targets: job.targets,
                    schema: job.schema.clone(),
                    unknown_keys: job.unknown_keys,
                    partitioning: job.partitioning,
                    deadline,
                    row_group: job.row_group,
                    measures: &self.measures,
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
        let parts = converted
            .iter()
            .map(|s| (s.schema.as_ref(), s.layout.as_ref()));
        let outputs: Vec<&Output> = converted.iter().flat_map(|s| &s.objects).collect();
        // Keys hold each object's identity: a retry after a kill writes the keys the killed
        // attempt wrote, and aborts the uploads it left once this commit is done.
        let works: Vec<&str> = converted.iter().map(|s| s.id.as_str()).collect();
        let visible = Visible {
            transaction: &mut transaction,
            works: &works,
            outputs: &outputs,
            phase: &self.measures.commit,
        };
        let published = self.publish(&job, visible, parts, deadline).await?;
        let (mut columns, mut stored) = (published.columns, published.stored.into_iter());
        let mut responses: Vec<Response> = converted
            .into_iter()
            .map(|streamed| {
                let mut objects = streamed.objects;
                for object in &mut objects {
                    object.stored = stored.next().unwrap_or_default();
                }
                let mut response = job.response(
                    &streamed.schema,
                    streamed.layout.as_ref(),
                    objects,
                    streamed.reads,
                );
                response.columns = columns.as_mut().map(|each| each.remove(0));
                response
            })
            .collect();
        if let Some(first) = responses.first_mut() {
            first.glue_tables = published.kept;
            first.removed = published.removed;
        }
        Ok(responses)
    }

    /// The folders' Glue tables kept in step with the parts of a write (each part's schema
    /// and layout) and the objects of `outputs` (made visible next), unless the job's finish
    /// step registers them: each part's columns, and what each table got.
    ///
    /// # Errors
    /// As [`Function::keep_glue_tables`].
    async fn glue_tables<'a>(
        &self,
        job: &Conversion<'_>,
        parts: impl Iterator<Item = (&'a Schema, Option<&'a Layout>)>,
        outputs: impl Iterator<Item = &'a Output>,
    ) -> Result<(Option<Vec<Columns>>, Vec<GlueTableKept>), Error> {
        let Some((each, all)) = columns_of(job.targets, parts)? else {
            return Ok((None, Vec::new()));
        };
        if job.glue_at_finish {
            return Ok((Some(each), Vec::new()));
        }
        let paths = distinct(
            outputs
                .filter(|o| o.target == 0)
                .map(|o| o.partition.as_str()),
        );
        let kept = self
            .keep_glue_tables(job.targets, &all, &paths, job.evolution, job.dry_run)
            .await?;
        Ok((Some(each), kept))
    }

    /// # Errors
    /// `SourceNotAllowed` for the first source outside `ALLOWED_SOURCES`.
    pub(super) fn check_sources(&self, sources: &[Source]) -> Result<(), Error> {
        match &self.config.allowed_sources {
            Some(allowed) => match sources
                .iter()
                .find(|s| !allowed.allows_object(&s.bucket, &s.key))
            {
                Some(source) => Err(Error::SourceNotAllowed(format!(
                    "source {} is outside ALLOWED_SOURCES ({}); nothing was read",
                    source.uri(),
                    allowed.describe()
                ))),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Inline rows, converted in memory and written in one go.
    pub(super) async fn rows(
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
        self.measures.build.add(encoded.build_time);
        self.measures.encode.add(encoded.encode_time);
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
        let parts = std::iter::once((schema.as_ref(), layout.as_ref()));
        let mut transaction = Transaction::of_whole(&self.store, objects);
        let written: Vec<&Output> = outputs.iter().collect();
        let visible = Visible {
            transaction: &mut transaction,
            works: &[id],
            outputs: &written,
            // Inline rows' PUTs are their upload.
            phase: &self.measures.upload,
        };
        let published = self.publish(&job, visible, parts, deadline).await?;
        for (output, stored) in outputs.iter_mut().zip(published.stored) {
            output.stored = stored;
        }
        let mut response = job.response(&schema, layout.as_ref(), outputs, Vec::new());
        response.columns = published.columns.map(|mut each| each.remove(0));
        response.glue_tables = published.kept;
        response.removed = published.removed;
        Ok(response)
    }

    /// Makes a conversion's objects visible (`visible`; `parts`, the schema and layout of
    /// each part converted), in the write's turn: the leases its mode and keys claim, taken;
    /// what its folders held listed (or its own keys looked up); the folders' Glue tables kept
    /// in step; the objects made visible; what its mode replaces removed. The turn is given
    /// back when the unit of work ends.
    ///
    /// # Errors
    /// Before the objects are visible, any failure (`WriteConflict` when the turn did not
    /// come in time) aborts the transaction: nothing of it is left. After, as
    /// [`Function::replace`].
    pub(super) async fn publish<'a>(
        &self,
        job: &Conversion<'_>,
        visible: Visible<'_, 'a>,
        parts: impl Iterator<Item = (&'a Schema, Option<&'a Layout>)>,
        deadline: Option<SystemTime>,
    ) -> Result<Published, Error> {
        let Visible {
            transaction,
            works,
            outputs,
            phase,
        } = visible;
        let ready = self
            .ready(job, transaction, works, parts, outputs, deadline)
            .await;
        let (before, (columns, kept)) = match ready {
            Ok(ready) => ready,
            Err(e) => {
                let left = transaction.abort().await;
                return Err(match (e, left.is_empty()) {
                    (Error::WriteConflict(m), true) => Error::WriteConflict(m + NOTHING_LEFT),
                    (Error::S3WriteFailed(m), true) => Error::S3WriteFailed(m + NOTHING_LEFT),
                    (e, _) => with_leftovers(e, &left),
                });
            }
        };
        let committing = Instant::now();
        let made = make_visible(transaction, job.dry_run, deadline).await;
        phase.since(committing);
        let stored = made?;
        let mut wrote = Wrote::of(job.targets.len(), outputs);
        // A map batch's files are followed at the job's finish (its `kept` is empty).
        if !job.dry_run {
            self.follow(job.targets, &mut wrote, &kept).await?;
        }
        let removed = (self.replace(job.targets, &wrote, job.mode, before, job.dry_run)).await?;
        Ok(Published {
            stored,
            columns,
            kept,
            removed,
        })
    }

    /// [`Function::publish`] up to the commit: the turn, the folders' keys before (`None`
    /// for `append`), and the Glue tables' part.
    async fn ready<'a>(
        &self,
        job: &Conversion<'_>,
        transaction: &mut Transaction,
        works: &[&str],
        parts: impl Iterator<Item = (&'a Schema, Option<&'a Layout>)>,
        outputs: &[&'a Output],
        deadline: Option<SystemTime>,
    ) -> Result<(Option<Vec<Vec<String>>>, Glued), Error> {
        if !job.dry_run {
            let claims = turn::claims(job.targets, works, job.mode, outputs);
            let abandoned = self.take_turn(claims, works, deadline).await?;
            for (bucket, folder, id) in abandoned {
                transaction.replaces(&bucket, &folder, &id);
            }
        }
        let before = self.before(job.targets, job.mode).await?;
        match &before {
            Some(before) => transaction.existing(&listed_keys(job.targets, before)),
            None if !job.dry_run => transaction.survey().await?,
            None => {}
        }
        let glued = self
            .glue_tables(job, parts, outputs.iter().copied())
            .await?;
        // An earlier attempt's uploads, aborted after the commit (inline rows leave none).
        if transaction.uploads() {
            for target in job.targets {
                let prefix = &target.prefix;
                for id in works {
                    transaction.replaces(&prefix.bucket, &prefix.key_prefix, id);
                }
            }
        }
        Ok((before, glued))
    }
}

/// What a write that failed before its objects became visible says of them.
const NOTHING_LEFT: &str = "; nothing of this invocation was left in S3";

/// A conversion's objects, ready to be made visible by [`Function::publish`].
pub(super) struct Visible<'p, 'a> {
    pub(super) transaction: &'p mut Transaction,
    /// The ids its keys hold (its works').
    pub(super) works: &'p [&'p str],
    /// Each object of the transaction, in order.
    pub(super) outputs: &'p [&'a Output],
    /// Where the commit's time counts.
    pub(super) phase: &'p Phase,
}

/// Each part's columns and what each Glue table got, as [`Function::glue_tables`] gives them.
type Glued = (Option<Vec<Columns>>, Vec<GlueTableKept>);

/// What [`Function::publish`] did: what S3 stored for each object, in order, each part's
/// columns and what the Glue tables got, and what the mode removed.
pub(super) struct Published {
    pub(super) stored: Vec<Stored>,
    pub(super) columns: Option<Vec<Columns>>,
    pub(super) kept: Vec<GlueTableKept>,
    pub(super) removed: Option<Removed>,
}

/// Refuses objects inside a target folder (checked for every object before any is converted,
/// so nothing is written): converting a notification of one would trigger the function on its
/// own output, and a job over a prefix holding its own output would convert it again.
///
/// # Errors
/// `RecursiveTrigger` naming the first such object.
pub(super) fn refuse_own_output(objects: &[Source], targets: &[Target]) -> Result<(), Error> {
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

/// Makes every object of `transaction` visible (nothing in a dry run), within the time left;
/// what S3 stored, in order.
///
/// # Errors
/// `S3WriteFailed` when too little time is left or a write fails; nothing of the transaction
/// is then left in S3 (or what could not be removed is named).
pub(super) async fn make_visible(
    transaction: &mut Transaction,
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

impl Function {
    /// One small object (a batch's manifest) written whole, visible once complete. Written
    /// in the work's turn: one that a twin delivery wrote before stays if this write fails.
    ///
    /// # Errors
    /// As [`make_visible`]; `S3WriteFailed` when its key cannot be looked up.
    pub(super) async fn put_whole(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        deadline: Option<SystemTime>,
    ) -> Result<(), Error> {
        let mut transaction = Transaction::new(&self.store);
        let index = transaction.add(bucket.to_owned(), key.to_owned());
        transaction.last(index, body.into()).await?;
        if let Err(e) = transaction.survey().await {
            let left = transaction.abort().await;
            return Err(with_leftovers(e, &left));
        }
        make_visible(&mut transaction, false, deadline).await?;
        Ok(())
    }
}

/// What a conversion writes, whatever its input.
pub(super) struct Conversion<'a> {
    pub(super) targets: &'a [Target],
    pub(super) schema: Option<SchemaRef>,
    pub(super) unknown_keys: UnknownKeys,
    pub(super) partitioning: Partitioning<'a>,
    pub(super) dry_run: bool,
    /// Whether a table target, or a folder's Glue table, takes a column it lacks.
    pub(super) evolution: Evolution,
    /// The folders' Glue tables get the partitions at the job's finish step (a map batch
    /// with `manifests`), not now.
    pub(super) glue_at_finish: bool,
    /// What the write replaces in its folders, once visible.
    pub(super) mode: WriteMode,
    /// A streamed file's row groups.
    pub(super) row_group: RowGroupSize,
}

impl Conversion<'_> {
    /// The response for `outputs`, with the schema and Athena DDL a dry run describes.
    pub(super) fn response(
        &self,
        schema: &Schema,
        layout: Option<&Layout>,
        outputs: Vec<Output>,
        mut reads: Vec<SourceRead>,
    ) -> Response {
        let source = match reads.len() {
            1 => reads.pop(),
            _ => None,
        };
        let (files, partitions) = files_and_partitions(schema, layout);
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
            sources: reads,
            tables: Vec::new(),
            glue_tables: Vec::new(),
            removed: None,
            columns: None,
        }
    }
}
