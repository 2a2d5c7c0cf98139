//! A Rust AWS Lambda that turns a JSON event of rows into Parquet objects in S3: one object
//! per target, each in its own codec (uncompressed, Snappy, zstd, gzip, LZ4, Brotli), written
//! all or none.
//!
//! # Layout
//! - `main.rs`: the thin `bootstrap`; builds [`config::Config`] and the S3 client once.
//! - [`handler`]: one invocation end to end, the response, and the Lambda `errorType` mapping.
//! - [`event`]: the event contract, validated once into typed values.
//! - [`json`]: a strict JSON scanner over the event's bytes (no value tree).
//! - [`rows`]: the rows as a flat tape of JSON nodes, parsed with the event in one pass.
//! - [`target`]: S3 prefixes, codecs and the `ALLOWED_PREFIXES` policy.
//! - [`schema`]: type inference over all rows, and the column-name rules.
//! - [`ddl`]: Spark DDL schemas in, Spark and Athena DDL out.
//! - [`convert`]: exact conversions to declared types (decimals, dates, timestamps, base64).
//! - [`columns`]: Arrow columns built straight from the tape.
//! - [`encode`]: the conversion core; the batch to Parquet bytes per codec.
//! - [`store`]: concurrent, checksummed PUTs and clean-up after a failed write (the only AWS
//!   code).
//! - [`config`]: environment variables, read once at start, and the logging they configure.
//! - [`memory`]: the allocator's settings for a small function.
//! - [`Error`]: every failure, one variant per `errorType`.
//!
//! Everything but `store`, `handler` and `main.rs` uses no AWS types and no network.

pub mod columns;
pub mod config;
pub mod convert;
pub mod ddl;
pub mod encode;
mod error;
pub mod event;
pub mod handler;
pub mod json;
pub mod memory;
pub mod raw;
pub mod rows;
pub mod schema;
pub mod source;
pub mod store;
pub mod stream;
pub mod target;
pub mod trigger;

pub use error::Error;
