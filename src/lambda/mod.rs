//! The host: what the function needs from Lambda and its environment, around the pipeline.
//!
//! - [`runtime`]: each invocation's body as the Runtime API delivered it, before
//!   `lambda_runtime` would parse it.
//! - [`config`]: environment variables, read once at start, and the log format.
//! - [`memory`]: the allocator's settings for a small function.
//! - [`metrics`]: what an invocation measured, as one CloudWatch Embedded Metric Format line.
//!
//! May use the input stage (targets and their policies) and the encoder's defaults; nothing
//! here touches S3.

pub mod config;
pub mod memory;
pub mod metrics;
pub mod runtime;
