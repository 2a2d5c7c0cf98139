//! The input stage: what arrived, validated once into typed values (no AWS types).
//!
//! - [`trigger`]: which of the shapes arrived: an event, an S3 or EventBridge notification,
//!   an SQS batch, a job's plan or commit step.
//! - [`commit`]: a whole-prefix job's commit step (`start` or `finish`).
//! - [`plan`]: a whole-prefix job's plan step (the prefix, the run's folder, batch sizes).
//! - [`event`]: the event contract (`rows` or `source`), parsed in one pass with its rows.
//! - [`source`]: a source object: its format and compression, and the reader that cuts its
//!   bytes into chunks of whole rows.
//! - [`sweep`]: a scheduled sweep of the uploads killed attempts left.
//! - [`maintain`]: a table's maintenance (which steps, with which parameters).
//! - [`records`]: stream batches (Kinesis, Kafka, DynamoDB Streams) decoded into rows.
//! - [`target`]: S3 prefixes, object keys and the allow-list policies.
//!
//! Uses the rows stage (an event's rows are scanned in the same pass), and the schema and
//! encode stages only for the option types an event is validated into (a declared schema,
//! `unknown_keys`, `partition_by`).

pub mod commit;
pub mod event;
pub mod maintain;
pub mod plan;
pub mod records;
pub mod source;
pub mod sweep;
pub mod target;
pub mod trigger;
