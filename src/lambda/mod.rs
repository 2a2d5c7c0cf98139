//! The host: what the function needs from Lambda and its environment, around the pipeline.
//!
//! - [`runtime`]: each invocation's body as the Runtime API delivered it, before
//!   `lambda_runtime` would parse it.
//! - [`config`]: environment variables, read once at start, and the log format.
//! - [`memory`]: the allocator's settings for a small function.
//!
//! May use the input stage (targets and their policies) and the encoder's defaults; nothing
//! here touches S3. Operational concerns to come (metrics) belong here too.

pub mod config;
pub mod memory;
pub mod runtime;
