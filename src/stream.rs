//! A source object to Parquet objects, streamed: read in chunks of whole rows, each chunk built
//! into Arrow and appended to one file per codec a row group at a time, finished row groups
//! uploaded as multipart parts, every object made visible only when all are complete.
//!
//! With a declared schema the object is read once. Without one, the types are inferred over
//! every row (as for inline rows), and the first read already converts on the types its first
//! chunk gives, as long as no later chunk changes them: the usual case, one read. A chunk that
//! does change them (a new column, an integer column meeting a float, a null-only column
//! meeting values) ends the conversion; the rest of that read only infers, what was uploaded
//! is removed, and a second read converts. The second read asks for the same ETag (and
//! version), so both see the same bytes.

use std::time::SystemTime;

use arrow_schema::SchemaRef;
use bytes::Bytes;
use ring::digest::{SHA256, digest};
use tokio::sync::mpsc;

use crate::Error;
use crate::columns::{self, UnknownKeys};
use crate::encode::{RowGroupSize, StreamWriter};
use crate::handler::write_budget;
use crate::schema::{self, Inference};
use crate::source::{Chunk, Reader, Source};
use crate::store::{Opened, PART_BYTES, S3Store, Stored, Transaction, not_removed};
use crate::target::Codec;
use crate::target::Target;

/// What converting one source object asks for.
pub struct Job<'a> {
    pub source: &'a Source,
    pub targets: &'a [Target],
    pub schema: Option<SchemaRef>,
    pub unknown_keys: UnknownKeys,
    pub dry_run: bool,
    pub deadline: Option<SystemTime>,
    pub row_group_rows: usize,
}

/// What was read and written.
#[derive(Debug)]
pub struct Streamed {
    pub schema: SchemaRef,
    pub rows: usize,
    /// The object read: its URI, stored size and ETag.
    pub uri: String,
    pub bytes: u64,
    pub etag: Option<String>,
    /// Per target, in order: the key, the object's size and what S3 stored (default in a dry
    /// run).
    pub objects: Vec<(String, usize, Stored)>,
}

/// The id in a source object's output keys: derived from what the object is (bucket, key,
/// and its version id, else its ETag), so the same notification delivered twice writes the
/// same keys, and a new version of the object new ones. Shaped like the UUID Spark puts there.
///
/// ```
/// let a = rows_to_parquet::stream::identity("in-bucket", "a.ndjson", None, Some("\"e1\""));
/// assert_eq!(a, rows_to_parquet::stream::identity("in-bucket", "a.ndjson", None, Some("\"e1\"")));
/// assert_ne!(a, rows_to_parquet::stream::identity("in-bucket", "a.ndjson", None, Some("\"e2\"")));
/// assert_eq!(a.len(), 36);
/// ```
pub fn identity(bucket: &str, key: &str, version_id: Option<&str>, etag: Option<&str>) -> String {
    let what = match version_id {
        Some(version) => format!("s3://{bucket}/{key}\nversion {version}"),
        None => format!("s3://{bucket}/{key}\netag {}", etag.unwrap_or_default()),
    };
    let hash = digest(&SHA256, what.as_bytes());
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

/// Converts `job.source` to one object per target, all or none.
///
/// # Errors
/// `SourceNotFound`/`SourceReadFailed` from S3; `InvalidEvent` naming the source and the line
/// (NDJSON) or row (JSON) for bad content; `S3WriteFailed` after which nothing of this
/// object's output is left (or what could not be removed is named).
pub async fn convert(store: &S3Store, job: Job<'_>) -> Result<Streamed, Error> {
    let source = job.source;
    let first = store
        .open(
            &source.bucket,
            &source.key,
            source.version_id.as_deref(),
            None,
        )
        .await?;
    let id = identity(
        &source.bucket,
        &source.key,
        first.version_id.as_deref(),
        first.etag.as_deref(),
    );
    let keys = job
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| t.object_key(i, &id))
        .collect::<Result<Vec<_>, _>>()?;
    let (uri, bytes, etag, version) = (
        first.uri.clone(),
        first.size,
        first.etag.clone(),
        first.version_id.clone(),
    );
    let objects: Vec<(String, String)> = job
        .targets
        .iter()
        .zip(&keys)
        .map(|(t, k)| (t.prefix.bucket.clone(), k.clone()))
        .collect();
    let declared = match &job.schema {
        Some(declared) => {
            schema::check_names(declared.fields()).map_err(|e| about(&uri, e))?;
            Some(declared.clone())
        }
        None => None,
    };
    let mut read = one_read(store, &job, &objects, first, declared).await?;
    if let Read::Inferred(inference) = read {
        // A later chunk changed the types: convert again, on the types of every row.
        let inferred = inference.finish().map_err(|e| about(&uri, e))?;
        schema::check_names(inferred.fields()).map_err(|e| about(&uri, e))?;
        let again = store
            .open(
                &source.bucket,
                &source.key,
                version.as_deref(),
                etag.as_deref(),
            )
            .await?;
        read = one_read(store, &job, &objects, again, Some(inferred)).await?;
    }
    let Read::Converted(Converted {
        schema,
        rows,
        sizes,
        stored,
    }) = read
    else {
        unreachable!("a read with its schema known converts or fails")
    };
    Ok(Streamed {
        schema,
        rows,
        uri,
        bytes,
        etag,
        objects: keys
            .into_iter()
            .zip(sizes)
            .zip(stored)
            .map(|((key, size), stored)| (key, size, stored))
            .collect(),
    })
}

/// The object's chunks of whole rows, read, decompressed and cut by a task of their own one
/// chunk ahead of the conversion: while a chunk is built and encoded on a blocking thread, or
/// a part uploads, the next one comes off the network.
struct Chunks {
    ready: mpsc::Receiver<Result<Chunk, Error>>,
    reading: tokio::task::JoinHandle<()>,
}

impl Chunks {
    fn start(mut opened: Opened, source: &Source) -> Result<Chunks, Error> {
        let uri = opened.uri.clone();
        let (format, compression) = source.framing(opened.content_encoding.as_deref())?;
        let mut reader = Reader::new(format, compression)?;
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
                if let Some(chunk) = reader.finish().map_err(|e| about(&uri, e))? {
                    let _ = send.send(Ok(chunk)).await;
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
    async fn next(
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
    /// Every row converted and every object made visible (or described, in a dry run).
    Converted(Converted),
    /// A later chunk changed the types the conversion started on: nothing of it is left in
    /// S3, and here are the types of every row.
    Inferred(Inference),
}

struct Converted {
    schema: SchemaRef,
    rows: usize,
    /// Each target's object size.
    sizes: Vec<usize>,
    stored: Vec<Stored>,
}

/// One read of the object converted into a transaction of its own, on `schema`, or without
/// one on the types of its first chunk while they hold (see the module docs). Whatever does
/// not end `Converted` leaves nothing in S3.
async fn one_read(
    store: &S3Store,
    job: &Job<'_>,
    objects: &[(String, String)],
    opened: Opened,
    schema: Option<SchemaRef>,
) -> Result<Read, Error> {
    let mut transaction = Transaction::new(store, objects.to_vec());
    let mut write = Write {
        job,
        transaction: (!job.dry_run).then_some(&mut transaction),
        sizes: vec![0; objects.len()],
        progress: Progress {
            guess: schema.is_none().then(Guess::default),
            schema,
            writer: None,
        },
    };
    let result = write.all(opened).await;
    if job.dry_run || matches!(result, Ok(Read::Converted(_))) {
        return result;
    }
    let left = transaction.abort().await;
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

/// The rows built, encoded and uploaded as the object is read.
struct Write<'j, 't, 's> {
    job: &'j Job<'j>,
    /// `None` in a dry run.
    transaction: Option<&'t mut Transaction<'s>>,
    /// Bytes of each target's object so far.
    sizes: Vec<usize>,
    progress: Progress,
}

impl Write<'_, '_, '_> {
    /// Every chunk of the object, then the files closed and the objects made visible.
    async fn all(&mut self, opened: Opened) -> Result<Read, Error> {
        let uri = opened.uri.clone();
        let mut chunks = Chunks::start(opened, self.job.source)?;
        while let Some(chunk) = chunks.next(self.job.deadline, &uri).await? {
            self.chunk(chunk, &uri).await?;
        }
        let no_rows = || {
            Error::InvalidEvent(format!(
                "source {uri} holds no rows: there is nothing to write"
            ))
        };
        if let Some(guess) = self.progress.guess.take() {
            if guess.rows == 0 {
                return Err(no_rows());
            }
            if guess.changed {
                return Ok(Read::Inferred(guess.inference));
            }
        }
        let (Some(writer), Some(schema)) =
            (self.progress.writer.take(), self.progress.schema.take())
        else {
            return Err(no_rows());
        };
        let rows = writer.rows();
        let tails = writer.finish().map_err(|e| about(&uri, e))?;
        let last: Vec<Bytes> = self
            .job
            .targets
            .iter()
            .map(|t| {
                tails
                    .iter()
                    .find(|(c, _)| *c == t.codec)
                    .map(|(_, b)| b.clone())
                    .expect("every target's codec was written")
            })
            .collect();
        for (size, tail) in self.sizes.iter_mut().zip(&last) {
            *size += tail.len();
        }
        let stored = match self.transaction.as_mut() {
            None => vec![Stored::default(); last.len()],
            Some(transaction) => {
                let budget = write_budget(self.job.deadline, SystemTime::now())?;
                transaction.commit(last, budget).await?
            }
        };
        Ok(Read::Converted(Converted {
            schema,
            rows,
            sizes: self.sizes.clone(),
            stored,
        }))
    }

    /// One chunk through [`Progress::append`] on a blocking thread; parts uploaded where they
    /// are ready.
    async fn chunk(&mut self, chunk: Chunk, uri: &str) -> Result<(), Error> {
        let unknown_keys = self.job.unknown_keys;
        let codecs: Vec<_> = self.job.targets.iter().map(|t| t.codec).collect();
        let row_group = RowGroupSize::streamed(self.job.row_group_rows);
        let mut progress = std::mem::take(&mut self.progress);
        let (progress, parts) = blocking(move || {
            let parts = progress.append(chunk, unknown_keys, &codecs, row_group);
            (progress, parts)
        })
        .await;
        self.progress = progress;
        for (codec, part) in parts.map_err(|e| about(uri, e))? {
            for (index, target) in self.job.targets.iter().enumerate() {
                if target.codec != codec {
                    continue;
                }
                self.sizes[index] += part.len();
                if let Some(transaction) = self.transaction.as_mut() {
                    within(
                        self.job.deadline,
                        uri,
                        transaction.part(index, part.clone()),
                    )
                    .await?;
                }
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
    rows: usize,
    changed: bool,
}

/// What the conversion carries from chunk to chunk (to the blocking thread and back).
#[derive(Default)]
struct Progress {
    /// The files, from the first rows converted on.
    writer: Option<StreamWriter>,
    /// The types converted to: declared, or those of the first chunk.
    schema: Option<SchemaRef>,
    /// Without a declared schema, the inference over every row so far.
    guess: Option<Guess>,
}

/// Finished bytes ready to go up, by codec.
type Parts = Vec<(Codec, Bytes)>;

impl Progress {
    /// `chunk`'s rows inferred (without a declared schema), then, while the types hold, built
    /// into Arrow and appended to every file (started on the first rows, whose values choose
    /// the encodings): the parts now ready.
    fn append(
        &mut self,
        chunk: Chunk,
        unknown_keys: UnknownKeys,
        codecs: &[Codec],
        row_group: RowGroupSize,
    ) -> Result<Parts, Error> {
        let tape = chunk.rows()?;
        if tape.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(guess) = &mut self.guess {
            guess.inference.add(&tape)?;
            guess.rows += tape.len();
            if !guess.changed {
                // Types that cannot be written yet (an empty-object column, a name clash)
                // may still be settled by later rows: a change too.
                let now = guess
                    .inference
                    .finish()
                    .ok()
                    .filter(|s| schema::check_names(s.fields()).is_ok());
                match (now, &self.schema) {
                    (Some(now), None) => self.schema = Some(now),
                    (Some(now), Some(started)) if now == *started => {}
                    _ => {
                        guess.changed = true;
                        self.writer = None;
                    }
                }
            }
            if guess.changed {
                return Ok(Vec::new());
            }
        }
        let schema = self.schema.clone().expect("declared, or the first chunk's");
        let batches = columns::build(&tape, schema, unknown_keys)?;
        drop(tape);
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self
                .writer
                .insert(StreamWriter::new(&batches[0], codecs, row_group)?),
        };
        writer.write(&batches)?;
        drop(batches);
        writer.take_ready(PART_BYTES)
    }
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

/// `e`, naming what the clean-up after it could not remove.
fn with_leftovers(e: Error, left: &[String]) -> Error {
    if left.is_empty() {
        return e;
    }
    let kept = not_removed(left);
    match e {
        Error::S3WriteFailed(m) => Error::S3WriteFailed(m + &kept),
        Error::InvalidEvent(m) => Error::InvalidEvent(m + &kept),
        Error::SourceReadFailed(m) => Error::SourceReadFailed(m + &kept),
        other => other,
    }
}
