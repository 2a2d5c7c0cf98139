//! A whole-prefix job's plan step as an event asks for it: `{"plan": {"bucket", "prefix",
//! "output", "batch_bytes", "max_items"}}` (what the step does is the handler's `plan`
//! module): the objects under the prefix, grouped into batches for the Distributed Map.

use serde::Deserialize;

use crate::Error;
use crate::input::target::{S3Prefix, check_bucket_name};

/// Input bytes a planned batch holds by default: Glue's `groupSize` plays this part.
pub const DEFAULT_BATCH_BYTES: u64 = 256 << 20;

/// Objects a planned batch holds at most by default.
pub const DEFAULT_MAX_ITEMS: usize = 1000;

/// What a plan event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The bucket listed.
    pub bucket: String,
    /// The key prefix listed (empty: the whole bucket).
    pub prefix: String,
    /// The run's folder: the plan goes in it, the batches' manifests under its `batches/`.
    pub output: S3Prefix,
    /// A batch is closed before its objects would pass this many bytes (one larger object
    /// is a batch of its own).
    pub batch_bytes: u64,
    /// A batch holds at most this many objects.
    pub max_items: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    bucket: String,
    #[serde(default)]
    prefix: String,
    output: String,
    batch_bytes: Option<u64>,
    max_items: Option<usize>,
}

impl Plan {
    /// Parses the `plan` field.
    ///
    /// # Errors
    /// `InvalidEvent` for another shape, an invalid bucket, or a zero size or count;
    /// `InvalidTarget` for an `output` that is not an `s3://bucket/path/` folder.
    pub fn parse(json: &str) -> Result<Plan, Error> {
        let invalid = |why: String| Error::InvalidEvent(format!("`plan`: {why}"));
        let raw: RawPlan = serde_json::from_str(json).map_err(|e| {
            invalid(format!(
                r#"must be {{"bucket", "prefix", "output": "s3://bucket/run/", "batch_bytes", "max_items"}} (the last two optional): {e}"#
            ))
        })?;
        check_bucket_name(&raw.bucket).map_err(|why| invalid(format!("`bucket`: {why}")))?;
        let output = S3Prefix::parse(&raw.output, "`plan.output`")?;
        let batch_bytes = raw.batch_bytes.unwrap_or(DEFAULT_BATCH_BYTES);
        let max_items = raw.max_items.unwrap_or(DEFAULT_MAX_ITEMS);
        if batch_bytes == 0 || max_items == 0 {
            return Err(invalid(
                "`batch_bytes` and `max_items` must be at least 1".into(),
            ));
        }
        Ok(Plan {
            bucket: raw.bucket,
            prefix: raw.prefix,
            output,
            batch_bytes,
            max_items,
        })
    }

    /// The listed folder's URI, for messages and the reply.
    pub fn source(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_events_parse_with_defaults_and_bad_ones_say_why() {
        let plan =
            Plan::parse(r#"{"bucket": "in-1", "prefix": "in/", "output": "s3://out-1/_jobs/run"}"#)
                .unwrap();
        assert_eq!(plan.output.to_string(), "s3://out-1/_jobs/run/");
        assert_eq!(
            (plan.batch_bytes, plan.max_items),
            (DEFAULT_BATCH_BYTES, DEFAULT_MAX_ITEMS)
        );
        assert_eq!(plan.source(), "s3://in-1/in/");
        for (bad, says) in [
            (
                r#"{"bucket": "in-1", "output": "s3://out-1/r/", "batch_bytes": 0}"#,
                "at least 1",
            ),
            (
                r#"{"bucket": "In_1", "output": "s3://out-1/r/"}"#,
                "`bucket`",
            ),
            (
                r#"{"bucket": "in-1", "output": "s3://out-1/r/", "size": 1}"#,
                "must be",
            ),
            (r#"{"bucket": "in-1"}"#, "must be"),
        ] {
            let e = Plan::parse(bad).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent", "{bad}: {e}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        let e = Plan::parse(r#"{"bucket": "in-1", "output": "out-1/r/"}"#).unwrap_err();
        assert_eq!(e.error_type(), "InvalidTarget", "{e}");
    }
}
