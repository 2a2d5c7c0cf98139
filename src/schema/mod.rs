//! The schema stage: which Arrow type each column gets (no AWS types; uses only the rows).
//!
//! - [`inference`]: type inference over all rows (at once, or chunk by chunk), and the rules
//!   column names follow.
//! - [`text`]: the same for text values (CSV fields), by Spark's `inferSchema` rules.
//! - [`ddl`]: Spark DDL schemas in, Spark and Athena DDL out.
//! - [`convert`]: exact conversions of JSON text to declared types (decimals, dates,
//!   timestamps, base64).

pub mod convert;
pub mod ddl;
pub mod inference;
pub mod text;
