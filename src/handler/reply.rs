//! What an invocation answers: the objects written, or what else was done; and the Lambda
//! `errorType` a failure is reported with.

use arrow_schema::Schema;
use lambda_runtime::Diagnostic;
use serde::Serialize;

use crate::Error;
use crate::catalog::hive::Columns;
use crate::input::target::Target;
use crate::maintain::Report;
use crate::schema::ddl;
use crate::store::s3::Output;

/// What an invocation returns.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// An event, or the one object of a notification: what was written.
    Converted(Response),
    /// A notification of several objects: one response each, in order.
    Each { results: Vec<Response> },
    /// An SQS or stream batch: the messages or records that failed, for Lambda to retry
    /// (`ReportBatchItemFailures`); the others are done.
    Batch {
        #[serde(rename = "batchItemFailures")]
        batch_item_failures: Vec<ItemFailure>,
    },
    /// A Distributed Map batch given a `manifests` folder: what it wrote, counted, and the
    /// manifest listing it, which the job's finish step reads. It stays small whatever the
    /// batch wrote: Step Functions fails a state whose output passes 256 KiB.
    Listed { batch: BatchListed },
    /// A job's plan step: where the plan is, which the map reads and the finish step passes
    /// back.
    Planned { plan: Planned },
    /// Nothing to convert (S3's test event, or only records of deleted objects).
    Ignored { ignored: &'static str },
    /// A job's commit step: the markers removed (`start`) or written (`finish`).
    Committed {
        phase: &'static str,
        markers: Vec<Marker>,
        /// `finish`: each table's one snapshot of the whole job.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tables: Vec<TableCommitted>,
        /// `finish`: each folder's Glue table, with the job's partitions registered.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        glue_tables: Vec<GlueTableKept>,
        /// `finish`: what the job's `mode` removed, after the markers.
        #[serde(skip_serializing_if = "Option::is_none")]
        removed: Option<Removed>,
    },
    /// A sweep: the uploads it aborted.
    Swept { swept: Swept },
    /// A table's maintenance: what each step did.
    Maintained { maintained: Box<Report> },
}

/// What a mode removed (in a dry run: would remove), over every target.
#[derive(Debug, Default, Serialize)]
pub struct Removed {
    pub objects: usize,
    /// The first [`Removed::LISTED`] of them: the reply stays small whatever the count.
    pub uris: Vec<String>,
    /// Partitions the folders' Glue tables dropped.
    pub glue_partitions: usize,
}

impl Removed {
    pub const LISTED: usize = 1000;
}

/// What a sweep found under the function's folders.
#[derive(Debug, Serialize)]
pub struct Swept {
    pub folders: Vec<String>,
    /// Uploads younger than this were left alone.
    pub min_age_seconds: u64,
    /// Uploads aborted (the first [`Swept::LISTED`] are in `uploads`).
    pub aborted: usize,
    pub uploads: Vec<SweptUpload>,
    /// Uploads left because they are too young to be abandoned.
    pub kept: usize,
    /// Uploads that could not be aborted, each `uri (why)`; a later sweep tries again.
    pub failed: Vec<String>,
    /// False when the invocation's time ran out before every folder was looked at.
    pub complete: bool,
}

impl Swept {
    /// How many aborted uploads the reply names: it stays small whatever the count.
    pub const LISTED: usize = 100;
}

/// An upload a sweep aborted.
#[derive(Debug, Serialize)]
pub struct SweptUpload {
    pub uri: String,
    pub age_seconds: u64,
}

/// A batch's objects, counted; listed in its manifest.
#[derive(Debug, Serialize)]
pub struct BatchListed {
    /// `s3://` URI of the manifest: the reply the batch would give without one.
    pub manifest: String,
    /// Source objects converted.
    pub sources: usize,
    pub rows: usize,
    /// Objects written, over every target.
    pub objects: usize,
    pub bytes: usize,
    /// Tables' data files written, for the job's finish step to commit.
    #[serde(skip_serializing_if = "is_zero")]
    pub data_files: usize,
}

/// A job's plan, written (see the handler's `plan` module).
#[derive(Debug, Serialize)]
pub struct Planned {
    /// Where the plan is: the `Bucket` and `Key` of the map's `ItemReader`.
    pub bucket: String,
    pub key: String,
    /// The key, in the same bucket, of the planned batches' identities (for the finish).
    pub ids: String,
    /// The folder listed, `s3://bucket/prefix`.
    pub source: String,
    /// The folder the batches write their manifests in (their `BatchInput.manifests`).
    pub manifests: String,
    pub batches: usize,
    pub objects: usize,
    pub bytes: u64,
    /// Objects listed but not planned: folder markers, empty objects, hidden files.
    pub skipped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A table's snapshot of a whole job, made by its finish step.
#[derive(Debug, Serialize)]
pub struct TableCommitted {
    /// `<database>.<table>`.
    pub table: String,
    pub snapshot_id: i64,
    /// An earlier run of the finish step had committed the job: nothing was added.
    pub already_committed: bool,
    pub rows: usize,
    /// Data files the snapshot added (counted: a job's may be thousands).
    pub data_files: usize,
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

/// A message or record to retry.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: Identifier,
}

/// How Lambda names an item of a batch: an SQS message id, a Kinesis or DynamoDB sequence
/// number, or a Kafka record's topic-partition and offset.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Identifier {
    Id(String),
    Kafka { partition: String, offset: i64 },
}

impl From<&str> for Identifier {
    fn from(id: &str) -> Identifier {
        Identifier::Id(id.to_owned())
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identifier::Id(id) => f.write_str(id),
            Identifier::Kafka { partition, offset } => write!(f, "{partition}@{offset}"),
        }
    }
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
    /// The objects read into the same files, for a map batch of several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRead>,
    /// What each table target got.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableAppended>,
    /// What each folder's `glue_table` got (on the first response of several).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub glue_tables: Vec<GlueTableKept>,
    /// What `mode` removed (in a dry run: would remove) once the objects were visible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
    /// The columns written, as the folders' Glue tables see them (a map batch lists them in
    /// its manifest for the job's finish step).
    #[serde(skip)]
    pub columns: Option<Columns>,
}

impl Response {
    /// Every object it read.
    pub fn reads(&self) -> impl Iterator<Item = &SourceRead> {
        self.source.iter().chain(&self.sources)
    }

    /// Nothing written yet.
    pub fn empty(dry_run: bool) -> Response {
        Response {
            rows: 0,
            objects: Vec::new(),
            dry_run,
            schema: None,
            source: None,
            sources: Vec::new(),
            tables: Vec::new(),
            glue_tables: Vec::new(),
            removed: None,
            columns: None,
        }
    }
}

/// A folder's Glue table, kept in step with what was written (in a dry run: what it would
/// get).
#[derive(Debug, Serialize)]
pub struct GlueTableKept {
    /// `<database>.<table>`.
    pub table: String,
    pub created: bool,
    pub columns_added: Vec<String>,
    /// Partitions written, each registered unless the table had it.
    pub partitions: usize,
    /// Of those, the ones the table did not have; `None` in a dry run (not asked).
    pub partitions_added: Option<usize>,
    /// The table is marked for compaction: the write follows moved partitions.
    #[serde(skip)]
    pub watched: bool,
}

/// One table target's append.
#[derive(Debug, Serialize)]
pub struct TableAppended {
    /// `<database>.<table>`.
    pub table: String,
    /// The snapshot holding the rows; `None` in a dry run.
    pub snapshot_id: Option<i64>,
    /// An earlier delivery of the same work had committed it: nothing was added.
    pub already_committed: bool,
    /// The table was created by this invocation (from `TABLE_WAREHOUSE`).
    pub created: bool,
    pub rows: usize,
    /// The data files committed (none when already committed or in a dry run).
    pub data_files: Vec<String>,
    /// The table's schema as written to, Spark DDL.
    pub schema: String,
}

/// The source object a conversion read.
#[derive(Debug, Clone, Serialize)]
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
    pub(super) fn of(schema: &Schema) -> SchemaDescription {
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
    /// It was at its key before this write (an earlier delivery's): a table commit's
    /// clean-up leaves it.
    #[serde(skip)]
    pub existed: bool,
}

impl Written {
    pub(super) fn new(target: &Target, output: Output, athena_ddl: Option<String>) -> Written {
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
            existed: output.stored.existed,
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
