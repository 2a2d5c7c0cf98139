//! A whole-prefix job's commit step as an event asks for it: `{"commit": {"phase": "start"}}`
//! before the Distributed Map runs, `{"commit": {"phase": "finish", "results": {...}}}` after
//! it (what the step does is the handler's `job` module).

use serde::Deserialize;

use crate::Error;
use crate::input::event::WriteMode;

/// What a commit event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// Before the map: remove the markers, so no reader trusts a folder being rewritten.
    Start,
    /// After the map: the `ResultWriter` manifest (`ResultWriterDetails`) to read the run's
    /// results from, and the map run, for the marker.
    Finish {
        /// What says what the run's batches wrote.
        run: RunRecord,
        map_run: Option<String>,
        /// What the job does to what the folders held before it (done after `_SUCCESS`).
        mode: WriteMode,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommit {
    phase: String,
    /// The map state's `ResultWriterDetails`: `{"Bucket", "Key"}` of its `manifest.json`.
    results: Option<ResultWriterDetails>,
    plan: Option<PlanRef>,
    map_run: Option<String>,
    mode: Option<String>,
}

/// Where a job's finish step learns what the run's batches wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunRecord {
    /// The job's plan: every planned batch's manifest is read, and nothing only AWS's map
    /// writes is needed (taken when both are given).
    Plan(PlanRef),
    /// The map's `ResultWriter` export: its `manifest.json` and the `SUCCEEDED_*.json` files
    /// it names.
    Results { bucket: String, key: String },
}

impl RunRecord {
    /// The object it names (the plan, or the export's manifest), as `s3://bucket/key`.
    pub fn uri(&self) -> String {
        let (bucket, key) = match self {
            RunRecord::Plan(plan) => (&plan.bucket, &plan.key),
            RunRecord::Results { bucket, key } => (bucket, key),
        };
        format!("s3://{bucket}/{key}")
    }
}

/// The plan step's reply (`plan`), passed back: the counts in it are not read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PlanRef {
    /// The plan's bucket and key.
    pub bucket: String,
    pub key: String,
    /// The key of the planned batches' identities, in the same bucket.
    pub ids: String,
    /// The folder of the batches' manifests.
    pub manifests: String,
}

#[derive(Deserialize)]
struct ResultWriterDetails {
    #[serde(rename = "Bucket")]
    bucket: String,
    #[serde(rename = "Key")]
    key: String,
}

impl Commit {
    /// Parses the `commit` field.
    ///
    /// # Errors
    /// `InvalidEvent` for another shape, or `finish` without `results`.
    pub fn parse(json: &str) -> Result<Commit, Error> {
        let invalid = |why: String| Error::InvalidEvent(format!("`commit`: {why}"));
        let raw: RawCommit = serde_json::from_str(json).map_err(|e| {
            invalid(format!(
                r#"must be {{"phase": "start"}} or {{"phase": "finish", "plan": {{...}} or "results": {{"Bucket", "Key"}}, "map_run", "mode"}}: {e}"#
            ))
        })?;
        let mode = match &raw.mode {
            Some(name) => WriteMode::parse(name, "`commit.mode`")?,
            None => WriteMode::Append,
        };
        let run = match (raw.plan, raw.results) {
            (Some(plan), _) => Some(RunRecord::Plan(plan)),
            (None, Some(r)) => Some(RunRecord::Results {
                bucket: r.bucket,
                key: r.key,
            }),
            (None, None) => None,
        };
        match (raw.phase.as_str(), run) {
            ("start", None) if raw.mode.is_none() => Ok(Commit::Start),
            ("start", None) => Err(invalid(
                "`mode` belongs to the `finish` step, which removes what the job replaces".into(),
            )),
            ("finish", Some(run)) => Ok(Commit::Finish {
                run,
                map_run: raw.map_run,
                mode,
            }),
            ("finish", None) => Err(invalid(
                "`finish` needs `plan` (the plan step's reply) or `results` (the map state's ResultWriterDetails)".into(),
            )),
            (phase, _) => Err(invalid(format!(
                "`phase` must be \"start\", or \"finish\" with `plan` or `results`, not `{phase}`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_events_parse_and_bad_ones_say_why() {
        assert_eq!(
            Commit::parse(r#"{"phase": "start"}"#).unwrap(),
            Commit::Start
        );
        let finish = Commit::parse(r#"{"phase": "finish", "results": {"Bucket": "b", "Key": "r/m/manifest.json"}, "map_run": "arn"}"#).unwrap();
        assert_eq!(
            finish,
            Commit::Finish {
                run: RunRecord::Results {
                    bucket: "b".into(),
                    key: "r/m/manifest.json".into()
                },
                map_run: Some("arn".into()),
                mode: WriteMode::Append,
            }
        );
        let planned = Commit::parse(r#"{"phase": "finish", "plan": {"bucket": "b", "key": "j/r/plan.json", "ids": "j/r/batch-ids.json", "source": "s3://in/x/", "manifests": "s3://b/j/r/batches/", "batches": 2, "objects": 9, "bytes": 99}, "mode": "overwrite"}"#).unwrap();
        let Commit::Finish {
            run: RunRecord::Plan(plan),
            mode,
            ..
        } = planned
        else {
            panic!("{planned:?}")
        };
        assert_eq!(
            (plan.key.as_str(), mode),
            ("j/r/plan.json", WriteMode::Overwrite)
        );
        for (bad, word) in [
            (r#"{"phase": "finish"}"#, "needs `plan`"),
            (
                r#"{"phase": "finish", "plan": {"bucket": "b"}}"#,
                "missing field",
            ),
            (r#"{"phase": "done"}"#, "not `done`"),
            (r#"{"phase": "start", "x": 1}"#, "unknown field"),
            (
                r#"{"phase": "start", "mode": "overwrite"}"#,
                "belongs to the `finish`",
            ),
            (
                r#"{"phase": "finish", "results": {"Bucket": "b", "Key": "k"}, "mode": "all"}"#,
                "`commit.mode` must be",
            ),
        ] {
            let e = Commit::parse(bad).unwrap_err();
            assert!(e.to_string().contains(word), "{bad}: {e}");
        }
    }
}
