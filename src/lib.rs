//! A Rust AWS Lambda that turns a JSON event of rows, or an NDJSON, JSON, CSV or TSV object in
//! S3 of any size, into Parquet objects in S3: one object per target, each in its own codec
//! (uncompressed, Snappy, zstd, gzip, LZ4, Brotli), written all or none. It is invoked
//! directly or by S3 notifications, EventBridge, SQS and a Step Functions Distributed Map.
//!
//! # Layout
//! A folder per stage, in the order an invocation goes through them. Each stage's module doc
//! says what it holds and what it may use; imports only point down this list (the handler
//! uses every stage, the rows nothing), and only the store touches S3.
//! - `main.rs`: the thin `bootstrap`; builds [`lambda::config::Config`] and the S3 client
//!   once and hands them to [`handler::Function`].
//! - [`handler`]: one invocation end to end: what arrived is dispatched, converted all or
//!   nothing (inline rows, or source objects streamed), committed, and answered; the Lambda
//!   `errorType` mapping; a whole-prefix job's commit step.
//! - [`lambda`]: the host: each body as the Runtime API delivered it, configuration from the
//!   environment (read once) and logging, the allocator's settings.
//! - [`input`]: what arrived, validated once into typed values: the trigger, the event
//!   contract, a job's commit step, source objects (and the reader that cuts their bytes
//!   into chunks of whole rows), targets and their policies.
//! - [`encode`]: Arrow columns from the rows, `partition_by`'s Hive folders, and Parquet
//!   bytes per codec, whole or a row group at a time, each column encoded once.
//! - [`schema`]: the types: inference over all rows (CSV's by Spark's rules), Spark DDL in and
//!   out, exact conversions to declared types.
//! - [`rows`]: the strict JSON scanner and the rows' tape, built in the same pass; CSV records
//!   laid out on the same tape.
//! - [`store`]: S3: reads, PUTs, the all-or-nothing transaction of multipart uploads, and the
//!   time budget before the deadline; an Iceberg table's files through the same client.
//! - [`catalog`]: beside the store, it commits what the store wrote: Iceberg tables in the
//!   Glue Data Catalog, appended to exactly once.
//! - [`maintain`]: beside the catalog, what keeps its tables fast: compaction, manifest
//!   rewrite, snapshot expiry and orphan removal.
//! - [`Error`]: every failure, one variant per `errorType`.
//!
//! A new capability gets a folder beside the stage it serves, as the catalog sits beside
//! [`store`]; metrics live in [`lambda`] (they leave through the logs the host sets up).

pub mod catalog;
pub mod encode;
mod error;
pub mod handler;
pub mod input;
pub mod lambda;
pub mod maintain;
pub mod rows;
pub mod schema;
pub mod store;

pub use error::Error;
