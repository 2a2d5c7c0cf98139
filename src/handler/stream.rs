//! A source object to Parquet objects, streamed: read in chunks of whole rows, each chunk built
//! into Arrow and appended to one file per codec (and per partition) a row group at a time,
//! finished row groups uploaded as multipart parts, every object made visible only when all
//! are complete.
//!
//! With a declared schema the object is read once. Without one, the types are inferred over
//! every row (as for inline rows), and the first read already converts on the types its first
//! chunk gives, as long as no later chunk changes them: the usual case, one read. A chunk that
//! does change them (a new column, an integer column meeting a float, a null-only column
//! meeting values) ends the conversion; the rest of that read only infers, what was uploaded
//! is removed, and a second read converts. The second read asks for the same ETag (and
//! version), so both see the same bytes.
//!
//! With `partition_by`, each partition has its own files. Their memory is bounded: when the
//! open files hold more than [`PARTITIONS_MEMORY`], the largest is closed and goes up whole,
//! and its partition's next rows start a new file (`c001`, as Spark numbers a task's files).
//! With `max_file_bytes`, a file that has grown past about that size is closed the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use ring::digest::{SHA256, digest};
use tokio::sync::mpsc;

use crate::Error;
use crate::encode::codec::Codec;
use crate::encode::columns::{self, UnknownKeys};
use crate::encode::partition::{self, Layout, Part, PartitionBy, too_many};
use crate::encode::skipping::Skipping;
use crate::encode::streamed::StreamWriter;
use crate::encode::writer::{Partitioning, RowGroupSize};
use crate::input::source::{Chunk, Reader, Source};
use crate::input::target::Target;
use crate::lambda::metrics::Measures;
use crate::schema::inference::{self, Inference};
use crate::store::budget::write_budget;
use crate::store::s3::{Opened, Output, S3Store};
use crate::store::transaction::{PART_BYTES, Transaction, with_leftovers};

use super::reply::SourceRead;

/// What the open files of a partitioned stream may hold in memory before the largest is
/// closed (see the module docs).
pub const PARTITIONS_MEMORY: usize = 32 << 20;

/// What converting source objects asks for: one object, or a map batch's objects read one
/// after the other into the same files.
pub struct Job<'a> {
    /// At least one.
    pub sources: &'a [Source],
    /// The id in the output keys of several objects (a batch's identity); `None` for one
    /// object, whose [`identity`] it is.
    pub id: Option<&'a str>,
    pub targets: &'a [Target],
    pub schema: Option<SchemaRef>,
    pub unknown_keys: UnknownKeys,
    pub partitioning: Partitioning<'a>,
    pub deadline: Option<SystemTime>,
    pub row_group: RowGroupSize,
    /// The invocation's measures: reads, and time per phase.
    pub measures: &'a Measures,
}

/// What was read and converted.
#[derive(Debug)]
pub struct Streamed {
    /// The rows' schema (with the partition columns).
    pub schema: SchemaRef,
    pub layout: Option<Layout>,
    /// The id in its output keys (see [`identity`]).
    pub id: String,
    /// Each object read, in order: its URI, stored size and ETag.
    pub reads: Vec<SourceRead>,
    /// Every object, in the order added to the transaction (`stored` still empty).
    pub objects: Vec<Output>,
}

/// The id in a source object's output keys: derived from what the object is (bucket, key,
/// and its version id, else its ETag), so the same notification delivered twice writes the
/// same keys, and a new version of the object new ones. Shaped like the UUID Spark puts there.
///
/// ```
/// let a = rows_to_parquet::handler::stream::identity("in-bucket", "a.ndjson", None, Some("\"e1\""));
/// assert_eq!(a, rows_to_parquet::handler::stream::identity("in-bucket", "a.ndjson", None, Some("\"e1\"")));
/// assert_ne!(a, rows_to_parquet::handler::stream::identity("in-bucket", "a.ndjson", None, Some("\"e2\"")));
/// assert_eq!(a.len(), 36);
/// ```
pub fn identity(bucket: &str, key: &str, version_id: Option<&str>, etag: Option<&str>) -> String {
    let what = match version_id {
        Some(version) => format!("s3://{bucket}/{key}\nversion {version}"),
        None => format!("s3://{bucket}/{key}\netag {}", etag.unwrap_or_default()),
    };
    uuid_shaped(what.as_bytes())
}

/// The id in a map batch's output keys and its manifest's name: derived from its objects as
/// listed (each one's URI and `Etag`), so a retried batch writes the keys its first attempt
/// wrote, and a job's finish step finds a planned batch's manifest.
pub fn batch_identity<'a>(items: impl IntoIterator<Item = (String, Option<&'a str>)>) -> String {
    let listed: String = items
        .into_iter()
        .map(|(uri, etag)| format!("{uri}\netag {}\n", etag.unwrap_or_default()))
        .collect();
    uuid_shaped(listed.as_bytes())
}

/// The first 128 bits of `what`'s SHA-256, written as a UUID.
pub(super) fn uuid_shaped(what: &[u8]) -> String {
    let hash = digest(&SHA256, what);
    let hex: String = hash.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The [`identity`] of the object `source` names, as `opened` read it.
pub(super) fn identity_of(source: &Source, opened: &Opened) -> String {
    identity(
        &source.bucket,
        &source.key,
        opened.version_id.as_deref(),
        opened.etag.as_deref(),
    )
}

/// Opens `source` at `version` (else its latest), as long as it still has the ETag
/// `if_match`, and counts the read.
///
/// # Errors
/// `SourceNotFound`/`SourceReadFailed` from S3.
pub(super) async fn open(
    store: &S3Store,
    measures: &Measures,
    source: &Source,
    version: Option<&str>,
    if_match: Option<&str>,
) -> Result<Opened, Error> {
    let opened = store
        .open(&source.bucket, &source.key, version, if_match)
        .await?;
    measures.source_read(opened.size);
    Ok(opened)
}

/// Converts `job.sources` to their objects, added to `transaction` (`None` for a dry run)
/// with their last bytes but not committed: the caller commits, with whatever else it
/// converts.
///
/// # Errors
/// `SourceNotFound`/`SourceReadFailed` from S3; `InvalidEvent` naming the source and the line
/// (NDJSON) or row (JSON) for bad content; `S3WriteFailed`. After any error, nothing this
/// call added is left in the transaction or in S3 (or what could not be removed is named).
pub async fn convert(
    store: &S3Store,
    job: Job<'_>,
    mut transaction: Option<&mut Transaction>,
) -> Result<Streamed, Error> {
    let source = &job.sources[0];
    let first = open(
        store,
        job.measures,
        source,
        source.version_id.as_deref(),
        None,
    )
    .await?;
    let id = match job.id {
        Some(id) => id.to_owned(),
        None => identity_of(source, &first),
    };
    let declared = match &job.schema {
        Some(declared) => {
            inference::check_names(declared.fields()).map_err(|e| about(&first.uri, e))?;
            Some(declared.clone())
        }
        None => None,
    };
    let mut reads = Vec::with_capacity(job.sources.len());
    let first = Opening::First(Box::new(first), &mut reads);
    let mut read = one_read(
        store,
        &job,
        &id,
        transaction.as_deref_mut(),
        first,
        declared,
    )
    .await?;
    if let Read::Inferred(inference) = read {
        // A later chunk changed the types: convert again, on the types of every row, reading
        // the same versions (or ETags) as the first read.
        let uri = described(job.sources);
        let inferred = inference.finish().map_err(|e| about(&uri, e))?;
        inference::check_names(inferred.fields()).map_err(|e| about(&uri, e))?;
        let again = Opening::Again(&reads);
        read = one_read(store, &job, &id, transaction, again, Some(inferred)).await?;
    }
    let Read::Converted(converted) = read else {
        unreachable!("a read with its schema known converts or fails")
    };
    Ok(Streamed {
        schema: converted.schema,
        layout: converted.layout,
        id,
        reads: reads.into_iter().map(|r| r.read).collect(),
        objects: converted.objects,
    })
}

/// An object as the first read found it: what the response says, and what a second read
/// asks for.
struct Found {
    read: SourceRead,
    version: Option<String>,
}

/// How one read opens the objects.
enum Opening<'r> {
    /// The first object opened already; each one found is recorded.
    First(Box<Opened>, &'r mut Vec<Found>),
    /// Each object at the version (else the ETag) the first read found.
    Again(&'r [Found]),
}

/// The object's chunks of whole rows, read, decompressed and cut by a task of their own one
/// chunk ahead of the conversion: while a chunk is built and encoded on a blocking thread, or
/// a part uploads, the next one comes off the network.
pub(super) struct Chunks {
    ready: mpsc::Receiver<Result<Chunk, Error>>,
    reading: tokio::task::JoinHandle<()>,
}

impl Chunks {
    /// `columns`: the names a header-less CSV object's columns take, in order (a declared
    /// schema's, or a table's).
    pub(super) fn start(
        mut opened: Opened,
        source: &Source,
        columns: Option<&Schema>,
    ) -> Result<Chunks, Error> {
        let uri = opened.uri.clone();
        let mut framing = source.framing(opened.content_encoding.as_deref())?;
        framing.columns =
            columns.map(|schema| schema.fields().iter().map(|f| f.name().clone()).collect());
        let mut reader = Reader::new(framing)?;
        let (send, ready) = mpsc::channel(1);
        let reading = tokio::spawn(async move {
            let read = async {
                while let Some(bytes) = opened.next().await? {
                    for chunk in reader.push(&bytes).map_err(|e| about(&uri, e))? {
                        if send.send(Ok(chunk)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                for chunk in reader.finish().map_err(|e| about(&uri, e))? {
                    if send.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(e) = read.await {
                let _ = send.send(Err(e)).await;
            }
        });
        Ok(Chunks { ready, reading })
    }

    /// The next chunk; `None` at the object's end.
    pub(super) async fn next(
        &mut self,
        deadline: Option<SystemTime>,
        uri: &str,
    ) -> Result<Option<Chunk>, Error> {
        within(deadline, uri, async { self.ready.recv().await.transpose() }).await
    }
}

impl Drop for Chunks {
    /// A conversion that stops early stops reading too.
    fn drop(&mut self) {
        self.reading.abort();
    }
}

/// `work` on a blocking thread, so that the runtime's one thread keeps reading and uploading
/// meanwhile.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// What one read of the object came to.
enum Read {
    /// Every row converted and every object given its last bytes (or described, in a dry
    /// run).
    Converted(Converted),
    /// A later chunk changed the types the conversion started on: nothing of it is left in
    /// S3, and here are the types of every row.
    Inferred(Inference),
}

struct Converted {
    schema: SchemaRef,
    layout: Option<Layout>,
    objects: Vec<Output>,
}

/// One read of the object converted into `transaction`, on `schema`, or without one on the
/// types of its first chunk while they hold (see the module docs). Whatever does not end
/// `Converted` leaves nothing of this read in the transaction or in S3.
async fn one_read(
    store: &S3Store,
    job: &Job<'_>,
    id: &str,
    transaction: Option<&mut Transaction>,
    opening: Opening<'_>,
    schema: Option<SchemaRef>,
) -> Result<Read, Error> {
    let mark = transaction.as_ref().map_or(0, |t| t.len());
    let mut write = Write {
        job,
        id,
        settings: Arc::new(Settings {
            unknown_keys: job.unknown_keys,
            codecs: job.targets.iter().map(|t| t.codec).collect(),
            row_group: job.row_group,
            partition_by: job.partitioning.by.cloned(),
            max_partitions: job.partitioning.max,
            partitions_memory: PARTITIONS_MEMORY,
            max_file_bytes: job.partitioning.max_file_bytes,
            skipping: job.partitioning.skipping.clone(),
        }),
        transaction,
        mark,
        objects: Vec::new(),
        files: HashMap::new(),
        progress: Progress {
            guess: schema.is_none().then(Guess::default),
            schema,
            ..Progress::default()
        },
    };
    let result = write.all(store, opening).await;
    let Some(transaction) = write.transaction else {
        return result;
    };
    if matches!(result, Ok(Read::Converted(_))) {
        return result;
    }
    let left = transaction.abort_from(mark).await;
    match result {
        Err(e) => Err(with_leftovers(e, &left)),
        Ok(_) if !left.is_empty() => Err(with_leftovers(
            Error::S3WriteFailed(
                "the types changed after the conversion had started, and what it had uploaded could not be removed".into(),
            ),
            &left,
        )),
        changed => changed,
    }
}

/// What every chunk of one read is converted with (shared with the blocking threads).
struct Settings {
    unknown_keys: UnknownKeys,
    codecs: Vec<Codec>,
    row_group: RowGroupSize,
    partition_by: Option<PartitionBy>,
    max_partitions: usize,
    /// [`PARTITIONS_MEMORY`] (smaller in tests).
    partitions_memory: usize,
    /// A file past about this size is closed, its partition's next rows start the next.
    max_file_bytes: Option<u64>,
    skipping: Skipping,
}

/// The rows built, encoded and uploaded as the object is read.
struct Write<'j, 't> {
    job: &'j Job<'j>,
    id: &'j str,
    settings: Arc<Settings>,
    /// `None` in a dry run.
    transaction: Option<&'t mut Transaction>,
    /// The transaction's index of this read's first object (it may hold others' before).
    mark: usize,
    /// Every object so far, in the transaction's order.
    objects: Vec<Output>,
    /// The first of the objects (one per target) of each (partition, file).
    files: HashMap<(usize, usize), usize>,
    progress: Progress,
}

impl Write<'_, '_> {
    /// Every chunk of every object, then the files closed and given to the transaction.
    async fn all(&mut self, store: &S3Store, opening: Opening<'_>) -> Result<Read, Error> {
        let (mut first, mut found, again) = match opening {
            Opening::First(opened, found) => (Some(opened), Some(found), None),
            Opening::Again(found) => (None, None, Some(found)),
        };
        for (i, source) in self.job.sources.iter().enumerate() {
            let opened = match (first.take(), again) {
                (Some(opened), _) => *opened,
                (None, Some(found)) => {
                    let (version, etag) = (&found[i].version, &found[i].read.etag);
                    let (version, etag) = (version.as_deref(), etag.as_deref());
                    open(store, self.job.measures, source, version, etag).await?
                }
                (None, None) => {
                    let version = source.version_id.as_deref();
                    open(store, self.job.measures, source, version, None).await?
                }
            };
            if let Some(found) = found.as_deref_mut() {
                found.push(Found {
                    read: SourceRead {
                        uri: opened.uri.clone(),
                        bytes: opened.size,
                        etag: opened.etag.clone(),
                    },
                    version: opened.version_id.clone(),
                });
            }
            self.object(opened, source).await?;
        }
        if let Some(guess) = self.progress.guess.take()
            && guess.changed
        {
            return Ok(Read::Inferred(guess.inference));
        }
        let what = described(self.job.sources);
        let schema = (self.progress.schema.take())
            .filter(|_| !self.progress.partitions.is_empty())
            .ok_or_else(|| no_rows(&what))?;
        let closing = Instant::now();
        let last = self.progress.close_all().map_err(|e| about(&what, e))?;
        self.job.measures.encode.add(closing.elapsed());
        self.send(last, &what).await?;
        Ok(Read::Converted(Converted {
            schema,
            layout: self.progress.layout.take(),
            objects: std::mem::take(&mut self.objects),
        }))
    }

    /// Every chunk of one object into the files.
    async fn object(&mut self, opened: Opened, source: &Source) -> Result<(), Error> {
        let uri = opened.uri.clone();
        let before = self.progress.rows;
        let mut chunks = Chunks::start(opened, source, self.job.schema.as_deref())?;
        while let Some(chunk) = chunks.next(self.job.deadline, &uri).await? {
            let settings = self.settings.clone();
            let mut progress = std::mem::take(&mut self.progress);
            let (progress, ready) = blocking(move || {
                let ready = progress.append(chunk, &settings);
                (progress, ready)
            })
            .await;
            self.progress = progress;
            let spent = std::mem::take(&mut self.progress.spent);
            let measures = self.job.measures;
            measures.parse.add(spent.parse);
            measures.build.add(spent.build);
            measures.encode.add(spent.encode);
            self.send(ready.map_err(|e| about(&uri, e))?, &uri).await?;
        }
        match self.progress.rows > before {
            true => Ok(()),
            false => Err(no_rows(&uri)),
        }
    }

    /// Bytes that are ready to every target of their codec: each object is added to the
    /// transaction with its first bytes, its parts uploaded, its last bytes handed over.
    async fn send(&mut self, ready: Vec<Ready>, uri: &str) -> Result<(), Error> {
        for bytes in ready {
            let first = match self.files.get(&(bytes.partition, bytes.file)) {
                Some(&first) => first,
                None => {
                    let first = self.objects.len();
                    let path = &self.progress.partitions[bytes.partition].path;
                    for (index, target) in self.job.targets.iter().enumerate() {
                        let key = target.object_key(index, path, self.id, bytes.file)?;
                        if let Some(transaction) = self.transaction.as_mut() {
                            transaction.add(target.prefix.bucket.clone(), key.clone());
                        }
                        self.objects.push(Output::new(index, path, key));
                    }
                    self.files.insert((bytes.partition, bytes.file), first);
                    first
                }
            };
            for (index, target) in self.job.targets.iter().enumerate() {
                if target.codec != bytes.codec {
                    continue;
                }
                let object = &mut self.objects[first + index];
                object.bytes += bytes.bytes.len();
                if let Some(rows) = bytes.closed {
                    object.rows = rows;
                }
                let Some(transaction) = self.transaction.as_mut() else {
                    continue;
                };
                let (body, closed) = (bytes.bytes.clone(), bytes.closed.is_some());
                let at = self.mark + first + index;
                let send = async {
                    match closed {
                        true => transaction.last(at, body).await,
                        false => transaction.part(at, body).await,
                    }
                };
                let uploading = Instant::now();
                let sent = within(self.job.deadline, uri, send).await;
                self.job.measures.upload.since(uploading);
                sent?;
            }
        }
        Ok(())
    }
}

/// Types inferred as a read without a declared schema goes, and whether a chunk has changed
/// them from those the conversion started on.
#[derive(Default)]
struct Guess {
    inference: Inference,
    changed: bool,
}

/// One partition's files (the only one, without `partition_by`).
struct Files {
    /// `dt=2024-01-01/`, or empty.
    path: String,
    /// The file being written, if one is open.
    writer: Option<StreamWriter>,
    /// Its number (`c000`, `c001`): how many of the partition's files were closed before it.
    file: usize,
}

/// What the conversion carries from chunk to chunk (to the blocking thread and back).
#[derive(Default)]
struct Progress {
    /// The types converted to: declared, or those of the first chunk.
    schema: Option<SchemaRef>,
    /// `partition_by` checked against `schema`.
    layout: Option<Layout>,
    /// Without a declared schema, the inference over every row so far.
    guess: Option<Guess>,
    /// Rows read so far, over every object.
    rows: usize,
    /// Every partition met, in order, and its index there.
    partitions: Vec<Files>,
    index: HashMap<String, usize>,
    /// Time spent on the blocking thread since the last chunk's was taken.
    spent: Spent,
}

/// Time per phase of the chunks converted on the blocking thread.
#[derive(Default)]
struct Spent {
    parse: Duration,
    build: Duration,
    encode: Duration,
}

/// Bytes of one file ready to go up.
struct Ready {
    partition: usize,
    file: usize,
    codec: Codec,
    bytes: Bytes,
    /// `Some(rows)` for the file's last bytes.
    closed: Option<usize>,
}

impl Progress {
    /// `chunk`'s rows inferred (without a declared schema), then, while the types hold, built
    /// into Arrow, split into partitions, and appended to their files (each started on its
    /// first rows, whose values choose the encodings): the bytes now ready.
    fn append(&mut self, chunk: Chunk, settings: &Settings) -> Result<Vec<Ready>, Error> {
        let started = Instant::now();
        let tape = chunk.rows()?;
        let parsed = Instant::now();
        self.spent.parse += parsed - started;
        if tape.is_empty() {
            return Ok(Vec::new());
        }
        self.rows += tape.len();
        if let Some(guess) = &mut self.guess {
            guess.inference.add(&tape)?;
            if !guess.changed {
                // Types that cannot be written yet (an empty-object column, a name clash, a
                // partition column not met yet) may still be settled by later rows: a change
                // too.
                let now = guess.inference.finish().ok().filter(|s| {
                    inference::check_names(s.fields()).is_ok()
                        && settings
                            .partition_by
                            .as_ref()
                            .is_none_or(|by| by.layout(s).is_ok())
                });
                match (now, &self.schema) {
                    (Some(now), None) => self.schema = Some(now),
                    (Some(now), Some(started)) if now == *started => {}
                    _ => {
                        guess.changed = true;
                        self.partitions.clear();
                        self.index.clear();
                    }
                }
            }
            if guess.changed {
                // Only inferring now: that is the whole of the build.
                self.spent.build += parsed.elapsed();
                return Ok(Vec::new());
            }
        }
        let schema = self.schema.clone().expect("declared, or the first chunk's");
        if let (None, Some(by)) = (&self.layout, &settings.partition_by) {
            self.layout = Some(by.layout(&schema)?);
        }
        let batches = columns::build(&tape, schema, settings.unknown_keys)?;
        let parts = partition::parts(
            self.layout.as_ref(),
            batches,
            settings.max_partitions,
            |i| tape.row_ref(i),
        )?;
        drop(tape);
        let built = Instant::now();
        self.spent.build += built - parsed;
        let mut ready = Vec::new();
        for Part { path, batches } in parts {
            let partition = match self.index.get(&path) {
                Some(&partition) => partition,
                None if self.index.len() == settings.max_partitions => {
                    return Err(too_many(settings.max_partitions));
                }
                None => {
                    self.index.insert(path.clone(), self.partitions.len());
                    self.partitions.push(Files {
                        path,
                        writer: None,
                        file: 0,
                    });
                    self.partitions.len() - 1
                }
            };
            let files = &mut self.partitions[partition];
            let writer = match &mut files.writer {
                Some(writer) => writer,
                None => files.writer.insert(StreamWriter::new(
                    &batches[0],
                    &settings.codecs,
                    settings.row_group,
                    self.layout.is_none(),
                    &settings.skipping,
                )?),
            };
            writer.write(&batches)?;
            let full = settings
                .max_file_bytes
                .is_some_and(|max| writer.size() >= max);
            for (codec, bytes) in writer.take_ready(PART_BYTES)? {
                ready.push(Ready {
                    partition,
                    file: files.file,
                    codec,
                    bytes,
                    closed: None,
                });
            }
            if full {
                ready.extend(self.close(partition)?);
            }
        }
        self.bound_memory(settings.partitions_memory, &mut ready)?;
        self.spent.encode += built.elapsed();
        Ok(ready)
    }

    /// Closes the largest open files while those of several partitions hold more than
    /// `bound`.
    fn bound_memory(&mut self, bound: usize, ready: &mut Vec<Ready>) -> Result<(), Error> {
        let mut open: Vec<(usize, usize)> = self
            .partitions
            .iter()
            .enumerate()
            .filter_map(|(p, f)| f.writer.as_ref().map(|w| (w.memory(), p)))
            .collect();
        if open.len() < 2 {
            return Ok(());
        }
        open.sort_unstable();
        let mut total: usize = open.iter().map(|(memory, _)| memory).sum();
        while total > bound {
            let Some((memory, partition)) = open.pop() else {
                break;
            };
            total -= memory;
            ready.extend(self.close(partition)?);
        }
        Ok(())
    }

    /// Closes partition `partition`'s open file: its last bytes per codec.
    fn close(&mut self, partition: usize) -> Result<Vec<Ready>, Error> {
        let files = &mut self.partitions[partition];
        let Some(writer) = files.writer.take() else {
            return Ok(Vec::new());
        };
        let rows = writer.rows();
        let file = files.file;
        files.file += 1;
        Ok(writer
            .finish()?
            .into_iter()
            .map(|(codec, bytes)| Ready {
                partition,
                file,
                codec,
                bytes,
                closed: Some(rows),
            })
            .collect())
    }

    /// Closes every open file.
    fn close_all(&mut self) -> Result<Vec<Ready>, Error> {
        let mut ready = Vec::new();
        for partition in 0..self.partitions.len() {
            ready.extend(self.close(partition)?);
        }
        Ok(ready)
    }
}

/// What messages call a conversion's sources: its one object's URI, or the batch.
fn described(sources: &[Source]) -> String {
    match sources {
        [one] => one.uri(),
        _ => "the batch".to_owned(),
    }
}

/// An object, or a batch, without a row.
fn no_rows(uri: &str) -> Error {
    Error::InvalidEvent(format!(
        "source {uri} holds no rows: there is nothing to write"
    ))
}

/// `e` about the content of the object at `uri`, saying which object.
fn about(uri: &str, e: Error) -> Error {
    e.within(&format!("source {uri}"))
}

/// `work` (a read or an upload of the object at `uri`), given up with `S3WriteFailed` when
/// it would leave less than the clean-up reserve before the invocation's deadline.
async fn within<T>(
    deadline: Option<SystemTime>,
    uri: &str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let abandoned =
        |m: String| Error::S3WriteFailed(format!("converting source {uri} was abandoned: {m}"));
    let budget = write_budget(deadline, SystemTime::now()).map_err(|e| abandoned(e.to_string()))?;
    match budget {
        None => work.await,
        Some(budget) => tokio::time::timeout(budget, work)
            .await
            .unwrap_or_else(|_| {
                Err(abandoned(
                    "the time left before the invocation deadline ran out".into(),
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::source::{Compression, Format, Framing};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::collections::BTreeMap;

    /// Each file's bytes and rows (`Some` once closed), by (partition, file).
    type FileBytes = BTreeMap<(usize, usize), (Vec<u8>, Option<usize>)>;

    /// `rows` NDJSON rows (`i`, `p` one of 4 keys, a 50-character pad) through `settings`:
    /// the progress after, and `codec`'s files.
    fn convert(rows: usize, settings: &Settings, codec: Codec) -> (Progress, FileBytes) {
        let text: String = (0..rows)
            .map(|i| {
                format!(
                    "{{\"i\": {i}, \"p\": \"k{}\", \"pad\": \"{i:050}\"}}\n",
                    i % 4
                )
            })
            .collect();
        let mut reader = Reader::new(Framing {
            format: Format::Ndjson,
            compression: Compression::None,
            csv: Default::default(),
            columns: None,
        })
        .unwrap();
        let mut chunks = reader.push(text.as_bytes()).unwrap();
        chunks.extend(reader.finish().unwrap());
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        let mut progress = Progress {
            guess: Some(Guess::default()),
            ..Progress::default()
        };
        let mut ready = Vec::new();
        for chunk in chunks {
            ready.extend(progress.append(chunk, settings).unwrap());
        }
        ready.extend(progress.close_all().unwrap());
        let mut files = FileBytes::new();
        for r in ready.iter().filter(|r| r.codec == codec) {
            let file = files.entry((r.partition, r.file)).or_default();
            assert!(file.1.is_none(), "no bytes after a file's last");
            file.0.extend_from_slice(&r.bytes);
            file.1 = r.closed;
        }
        (progress, files)
    }

    /// The `i` column of a Parquet file's rows.
    fn ids(bytes: &[u8]) -> Vec<i64> {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(bytes)).unwrap();
        reader
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let i = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>();
                i.unwrap().values().to_vec()
            })
            .collect()
    }

    fn settings(partition_by: Option<&str>, row_group_rows: usize) -> Settings {
        Settings {
            unknown_keys: UnknownKeys::default(),
            codecs: vec![Codec::Snappy, Codec::Uncompressed],
            row_group: RowGroupSize::streamed(row_group_rows, 16 << 20),
            partition_by: partition_by.map(|p| PartitionBy::parse(p).unwrap()),
            max_partitions: 4,
            partitions_memory: 256 << 10,
            max_file_bytes: None,
            skipping: Skipping::NONE,
        }
    }

    #[test]
    fn past_the_memory_bound_the_largest_files_close_and_their_partitions_start_new_ones() {
        let rows = 100_000;
        let settings = settings(Some(r#"["p"]"#), 1_000_000);
        let (progress, files) = convert(rows, &settings, Codec::Snappy);
        let mut per_partition = [0usize; 4];
        let mut seen = Vec::new();
        for ((partition, file), (bytes, closed)) in files {
            let schema = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.clone()));
            assert_eq!(
                schema.unwrap().schema().fields().len(),
                2,
                "`p` is left out"
            );
            let read = ids(&bytes);
            assert_eq!(
                Some(read.len()),
                closed,
                "partition {partition} file {file}"
            );
            per_partition[partition] += read.len();
            seen.extend(read);
        }
        assert_eq!(per_partition, [rows / 4; 4]);
        seen.sort_unstable();
        assert!(seen.into_iter().eq(0..rows as i64), "every row once");
        let files_per_partition: Vec<usize> = progress.partitions.iter().map(|f| f.file).collect();
        assert!(
            files_per_partition.iter().all(|&n| n >= 2),
            "{files_per_partition:?}"
        );
        assert_eq!(progress.partitions[0].path, "p=k0/");
    }

    #[test]
    fn a_file_past_max_file_bytes_continues_in_the_next() {
        let rows = 300_000;
        let max = 4 << 20;
        let settings = Settings {
            max_file_bytes: Some(max),
            ..settings(None, 5_000)
        };
        let (_, files) = convert(rows, &settings, Codec::Uncompressed);
        assert!(files.len() >= 4, "{} files", files.len());
        let mut seen = Vec::new();
        for ((partition, file), (bytes, closed)) in &files {
            assert_eq!(*partition, 0);
            let read = ids(bytes);
            assert_eq!(Some(read.len()), *closed, "file {file}");
            // About the bound: past it by at most a chunk's rows (2 MiB of NDJSON), the last
            // file below it.
            let size = bytes.len() as u64;
            assert!(size < max + (2 << 20), "file {file}: {size} bytes");
            if *file + 1 < files.len() {
                assert!(size >= max, "file {file} closed early: {size} bytes");
            }
            seen.extend(read);
        }
        seen.sort_unstable();
        assert!(seen.into_iter().eq(0..rows as i64), "every row once");
    }
}
