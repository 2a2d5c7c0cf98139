//! The store stage: the only code that touches S3 (the AWS SDK's types stay in here).
//!
//! - [`s3`]: the client, reads of source objects, whole-object PUTs, deletes, and what S3
//!   stored.
//! - [`transaction`]: the objects of one invocation written all or none (multipart uploads,
//!   the commit, the clean-up after any failure).
//! - [`budget`]: how long the writes may take before the invocation's deadline.
//! - [`lease`]: leases by which concurrent writes of one folder take turns (S3's conditional
//!   writes).
//! - [`table_files`]: an Iceberg table's files (metadata, manifests, data) through the same
//!   client, for iceberg-rust.
//!
//! Uses nothing of the pipeline's other stages: it moves bytes to and from keys.

pub mod budget;
pub mod lease;
pub mod s3;
pub mod table_files;
pub mod transaction;
