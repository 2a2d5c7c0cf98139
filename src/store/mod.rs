//! TODO store

pub mod s3;
