//! A source object to Parquet objects, streamed: read in chunks of whole rows, each chunk built
//! into Arrow and appended to one file per codec a row group at a time, finished row groups
//! uploaded as multipart parts, every object made visible only when all are complete.
//!
//! Without a declared schema the object is read twice: once to infer the types over every
//! row (as for inline rows), once to convert; the second read asks for the same ETag (and
//! version), so both passes see the same bytes. With a schema it is read once.

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
use crate::store::{Opened, PART_BYTES, S3Store, Stored, Transaction};
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
    let (schema, opened) = match job.schema.clone() {
        Some(declared) => (declared, first),
        None => {
            let inferred = infer(first, source, job.deadline).await?;
            let again = store
                .open(
                    &source.bucket,
                    &source.key,
                    version.as_deref(),
                    etag.as_deref(),
                )
                .await?;
            (inferred, again)
        }
    };
    schema::check_names(schema.fields()).map_err(|e| about(&uri, e))?;
    let objects: Vec<(String, String)> = job
        .targets
        .iter()
        .zip(&keys)
        .map(|(t, k)| (t.prefix.bucket.clone(), k.clone()))
        .collect();
    let mut transaction = Transaction::new(store, objects);
    let mut write = Write {
        job: &job,
        schema: schema.clone(),
        writer: None,
        transaction: (!job.dry_run).then_some(&mut transaction),
        sizes: vec![0; keys.len()],
    };
    let written = write.all(opened, source).await;
    let (rows, sizes, stored) = match written {
        Ok(done) => done,
        Err(e) => {
            if !job.dry_run {
                let left = transaction.abort().await;
                return Err(with_leftovers(e, &left));
            }
            return Err(e);
        }
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

/// Pass one: the schema of every row of the object.
async fn infer(
    opened: Opened,
    source: &Source,
    deadline: Option<SystemTime>,
) -> Result<SchemaRef, Error> {
    let uri = opened.uri.clone();
    let mut chunks = Chunks::start(opened, source)?;
    let mut inference = Inference::default();
    let mut rows = 0;
    while let Some(chunk) = chunks.next(deadline, &uri).await? {
        let (back, added) = blocking(move || {
            let added = chunk
                .rows()
                .and_then(|tape| inference.add(&tape).map(|()| tape.len()));
            (inference, added)
        })
        .await;
        inference = back;
        rows += added.map_err(|e| about(&uri, e))?;
    }
    if rows == 0 {
        return Err(Error::InvalidEvent(format!(
            "source {uri} holds no rows: there is nothing to write"
        )));
    }
    inference.finish().map_err(|e| about(&uri, e))
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

/// Pass two: the rows built, encoded and uploaded.
struct Write<'j, 't, 's> {
    job: &'j Job<'j>,
    schema: SchemaRef,
    writer: Option<StreamWriter>,
    /// `None` in a dry run.
    transaction: Option<&'t mut Transaction<'s>>,
    /// Bytes of each target's object so far.
    sizes: Vec<usize>,
}

impl Write<'_, '_, '_> {
    /// Every chunk of the object, then the files closed and the objects made visible: the
    /// rows, each object's size and what S3 stored.
    async fn all(
        &mut self,
        opened: Opened,
        source: &Source,
    ) -> Result<(usize, Vec<usize>, Vec<Stored>), Error> {
        let uri = opened.uri.clone();
        let mut chunks = Chunks::start(opened, source)?;
        while let Some(chunk) = chunks.next(self.job.deadline, &uri).await? {
            self.chunk(chunk, &uri).await?;
        }
        let Some(writer) = self.writer.take() else {
            return Err(Error::InvalidEvent(format!(
                "source {uri} holds no rows: there is nothing to write"
            )));
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
        Ok((rows, self.sizes.clone(), stored))
    }

    /// One chunk built and appended to every file (on a blocking thread); parts uploaded where
    /// they are ready.
    async fn chunk(&mut self, chunk: Chunk, uri: &str) -> Result<(), Error> {
        let schema = self.schema.clone();
        let unknown_keys = self.job.unknown_keys;
        let codecs: Vec<_> = self.job.targets.iter().map(|t| t.codec).collect();
        let row_group = RowGroupSize::streamed(self.job.row_group_rows);
        let writer = self.writer.take();
        let (writer, parts) =
            blocking(move || append(chunk, writer, schema, unknown_keys, &codecs, row_group))
                .await
                .map_err(|e| about(uri, e))?;
        self.writer = writer;
        for (codec, part) in parts {
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

/// Finished bytes ready to go up, by codec.
type Parts = Vec<(Codec, Bytes)>;

/// `chunk`'s rows built into Arrow and appended to every file (the files are started on the
/// first rows, whose values choose the encodings): the writer, and the parts now ready.
fn append(
    chunk: Chunk,
    writer: Option<StreamWriter>,
    schema: SchemaRef,
    unknown_keys: UnknownKeys,
    codecs: &[Codec],
    row_group: RowGroupSize,
) -> Result<(Option<StreamWriter>, Parts), Error> {
    let batches = {
        let rows = chunk.rows()?;
        if rows.is_empty() {
            return Ok((writer, Vec::new()));
        }
        columns::build(&rows, schema, unknown_keys)?
    };
    let mut writer = match writer {
        Some(writer) => writer,
        None => StreamWriter::new(&batches[0], codecs, row_group)?,
    };
    writer.write(&batches)?;
    drop(batches);
    let mut parts = Vec::new();
    for codec in writer.codecs() {
        if let Some(part) = writer.take(codec, PART_BYTES)? {
            parts.push((codec, part));
        }
    }
    Ok((Some(writer), parts))
}

/// `e` about the content of the object at `uri`, saying which object.
fn about(uri: &str, e: Error) -> Error {
    match e {
        Error::InvalidEvent(m) => Error::InvalidEvent(format!("source {uri}: {m}")),
        other => other,
    }
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
    let kept = format!(
        "; these objects could not be removed and may be partial output: {}",
        left.join(", ")
    );
    match e {
        Error::S3WriteFailed(m) => Error::S3WriteFailed(m + &kept),
        Error::InvalidEvent(m) => Error::InvalidEvent(m + &kept),
        Error::SourceReadFailed(m) => Error::SourceReadFailed(m + &kept),
        other => other,
    }
}
