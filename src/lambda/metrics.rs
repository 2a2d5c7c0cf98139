//! CloudWatch metrics as one Embedded Metric Format (EMF) line per invocation.
//!
//! CloudWatch Logs turns a JSON log line with an `_aws` member into metrics, so publishing
//! them costs one line on stdout: no API call, no agent, no time on the network. The line
//! holds counts, sizes and durations only; no row value, key or URI is ever a metric or a
//! dimension. The dimensions are the function's name and the trigger kind, a handful of
//! values, so the number of metrics (each billed) stays small.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Error;

/// The phases an invocation's time is split into, in the line's order.
const PHASES: [&str; 5] = ["Parse", "Build", "Encode", "Upload", "Commit"];

/// Time spent in one phase over an invocation, added to from wherever the phase runs.
#[derive(Debug, Default)]
pub struct Phase(AtomicU64);

impl Phase {
    pub fn add(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Runs `work`, adding its time to this phase.
    pub fn measure<T>(&self, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = work();
        self.add(started.elapsed());
        out
    }

    /// Adds the time since `started`. (Awaited work is timed this way, not wrapped in a
    /// timing future: a conversion's futures are large, and a wrapper would copy them onto
    /// the stack.)
    pub fn since(&self, started: Instant) {
        self.add(started.elapsed());
    }

    fn ms(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// What one invocation measured as it went. The handler resets it when an invocation starts
/// (they run one at a time) and the conversion adds to it, so no result type carries timings.
#[derive(Debug, Default)]
pub struct Measures {
    pub parse: Phase,
    pub build: Phase,
    pub encode: Phase,
    pub upload: Phase,
    pub commit: Phase,
    /// Reads of source objects (a source whose types change after its first chunk is read
    /// twice) and the bytes they fetched.
    source_reads: AtomicU64,
    source_bytes: AtomicU64,
    rows: AtomicU64,
    objects: AtomicU64,
    bytes_written: AtomicU64,
    /// What arrived (`event`, `sqs`...), once known.
    trigger: Mutex<Option<&'static str>>,
    /// The `errorType` of each failed SQS message.
    failed_messages: Mutex<Vec<&'static str>>,
    /// A table maintenance's counts, when one ran.
    maintained: Mutex<Option<Maintained>>,
    /// A stream batch's counts, when one arrived.
    streamed: Mutex<Option<Streamed>>,
}

/// What a stream batch did with its records (its EMF metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Streamed {
    pub records: u64,
    /// Bad records written to `ERROR_OUTPUT`.
    pub to_error_output: u64,
    /// Bad records reported to Lambda, and those after them in their shard, left for its
    /// retry.
    pub failed: u64,
    /// Records a table already held (their shard's mark was at or past them), per table.
    pub already_committed: u64,
}

/// What a table maintenance did, in counts (its EMF metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Maintained {
    /// Data files read and written again by the rewrite.
    pub files_rewritten: u64,
    /// Files (data, manifests, metadata) written.
    pub files_written: u64,
    pub snapshots_expired: u64,
    /// Files deleted by the expiry and the orphan removal.
    pub files_deleted: u64,
    /// Steps the deadline stopped before their work was done.
    pub unfinished: u64,
}

impl Measures {
    /// Ready for the next invocation.
    pub fn reset(&self) {
        for phase in self.phases() {
            phase.0.store(0, Ordering::Relaxed);
        }
        for count in [
            &self.source_reads,
            &self.source_bytes,
            &self.rows,
            &self.objects,
            &self.bytes_written,
        ] {
            count.store(0, Ordering::Relaxed);
        }
        *lock(&self.trigger) = None;
        lock(&self.failed_messages).clear();
        *lock(&self.maintained) = None;
        *lock(&self.streamed) = None;
    }

    pub fn streamed(&self, counts: Streamed) {
        *lock(&self.streamed) = Some(counts);
    }

    pub fn maintained(&self, counts: Maintained) {
        *lock(&self.maintained) = Some(counts);
    }

    pub fn source_read(&self, bytes: u64) {
        self.source_reads.fetch_add(1, Ordering::Relaxed);
        self.source_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Rows converted, and the objects (with their bytes) written for them.
    pub fn converted(&self, rows: usize, objects: usize, bytes: usize) {
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.objects.fetch_add(objects as u64, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn trigger(&self, kind: &'static str) {
        *lock(&self.trigger) = Some(kind);
    }

    pub fn message_failed(&self, error: &Error) {
        lock(&self.failed_messages).push(error.error_type());
    }

    fn phases(&self) -> [&Phase; 5] {
        [
            &self.parse,
            &self.build,
            &self.encode,
            &self.upload,
            &self.commit,
        ]
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where the metrics go, read once at start; and whether the process has served an
/// invocation yet (the first one is the cold start).
#[derive(Debug)]
pub struct Metrics {
    namespace: String,
    function_name: String,
    warm: AtomicBool,
}

impl Metrics {
    /// Metrics under `namespace` (checked by [`Config`](super::config::Config)) for the
    /// function `function_name`.
    pub fn new(namespace: String, function_name: String) -> Metrics {
        Metrics {
            namespace,
            function_name,
            warm: AtomicBool::new(false),
        }
    }

    /// The EMF line of one invocation: `input_bytes` is its body's size, `failure` the
    /// `errorType` it failed with, if it did. Its request id rides along as a property (not a
    /// dimension), so a Logs Insights query finds the invocation's other lines.
    pub fn line(
        &self,
        measures: &Measures,
        request_id: &str,
        input_bytes: usize,
        failure: Option<&'static str>,
        timestamp_ms: u64,
    ) -> String {
        let cold = !self.warm.swap(true, Ordering::Relaxed);
        let failed_messages = lock(&measures.failed_messages).clone();
        let count = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut values: Vec<(String, &str, f64)> = vec![
            ("Rows".into(), "Count", count(&measures.rows) as f64),
            (
                "InputBytes".into(),
                "Bytes",
                (input_bytes as u64 + count(&measures.source_bytes)) as f64,
            ),
            (
                "ObjectsWritten".into(),
                "Count",
                count(&measures.objects) as f64,
            ),
            (
                "BytesWritten".into(),
                "Bytes",
                count(&measures.bytes_written) as f64,
            ),
            (
                "SourceReads".into(),
                "Count",
                count(&measures.source_reads) as f64,
            ),
            ("ColdStart".into(), "Count", f64::from(u8::from(cold))),
            (
                "Failures".into(),
                "Count",
                f64::from(u8::from(failure.is_some())),
            ),
            (
                "FailedMessages".into(),
                "Count",
                failed_messages.len() as f64,
            ),
        ];
        for (name, phase) in PHASES.iter().zip(measures.phases()) {
            values.push((format!("{name}Time"), "Milliseconds", phase.ms()));
        }
        if let Some(m) = *lock(&measures.maintained) {
            for (name, n) in [
                ("MaintenanceFilesRewritten", m.files_rewritten),
                ("MaintenanceFilesWritten", m.files_written),
                ("MaintenanceSnapshotsExpired", m.snapshots_expired),
                ("MaintenanceFilesDeleted", m.files_deleted),
                ("MaintenanceUnfinished", m.unfinished),
            ] {
                values.push((name.into(), "Count", n as f64));
            }
        }
        if let Some(m) = *lock(&measures.streamed) {
            for (name, n) in [
                ("StreamRecords", m.records),
                ("StreamRecordsToErrorOutput", m.to_error_output),
                ("StreamRecordsFailed", m.failed),
                ("StreamRecordsAlreadyCommitted", m.already_committed),
            ] {
                values.push((name.into(), "Count", n as f64));
            }
        }
        // A metric per errorType that occurred: alarms and graphs by kind of failure, with
        // no dimension that would multiply every other metric.
        let mut kinds: Vec<&str> = failure.into_iter().chain(failed_messages).collect();
        kinds.sort_unstable();
        for kind in kinds.chunk_by(|a, b| a == b) {
            values.push((format!("Failures.{}", kind[0]), "Count", kind.len() as f64));
        }
        let trigger = lock(&measures.trigger).unwrap_or("unknown");
        let mut line = String::with_capacity(1024);
        let _ = write!(
            line,
            r#"{{"_aws":{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":[{{"Namespace":{},"Dimensions":[["FunctionName","Trigger"]],"Metrics":["#,
            json(&self.namespace)
        );
        for (i, (name, unit, _)) in values.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(line, r#"{comma}{{"Name":"{name}","Unit":"{unit}"}}"#);
        }
        let _ = write!(
            line,
            r#"]}}]}},"FunctionName":{},"Trigger":"{trigger}","RequestId":{}"#,
            json(&self.function_name),
            json(request_id)
        );
        for (name, _, value) in &values {
            let _ = write!(line, r#","{name}":{value}"#);
        }
        line.push('}');
        line
    }
}

/// A string as a JSON string literal.
fn json(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn line(metrics: &Metrics, measures: &Measures, failure: Option<&'static str>) -> Value {
        let text = metrics.line(measures, "req-1", 1000, failure, 1_700_000_000_000);
        serde_json::from_str(&text).unwrap()
    }

    /// Every metric the directive declares, with its unit, and its value in the line.
    fn declared(line: &Value) -> Vec<(String, String, f64)> {
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let name = m["Name"].as_str().unwrap().to_owned();
                let value = line[&name]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{name} has no value"));
                (name, m["Unit"].as_str().unwrap().to_owned(), value)
            })
            .collect()
    }

    fn value(line: &Value, name: &str) -> f64 {
        declared(line)
            .into_iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .2
    }

    #[test]
    fn a_conversion_is_counted_under_its_trigger_and_the_first_is_the_cold_start() {
        let metrics = Metrics::new("Team/Parquet".into(), "fn-1".into());
        let measures = Measures::default();
        measures.trigger("s3-notification");
        measures.source_read(500);
        measures.source_read(500);
        measures.converted(3, 2, 1234);
        measures.upload.add(Duration::from_micros(2500));
        let first = line(&metrics, &measures, None);
        assert_eq!(first["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directive = &first["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Team/Parquet");
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["FunctionName", "Trigger"]])
        );
        assert_eq!(
            [
                &first["FunctionName"],
                &first["Trigger"],
                &first["RequestId"]
            ],
            ["fn-1", "s3-notification", "req-1"]
        );
        for (name, want) in [
            ("Rows", 3.0),
            ("InputBytes", 2000.0),
            ("ObjectsWritten", 2.0),
            ("BytesWritten", 1234.0),
            ("SourceReads", 2.0),
            ("ColdStart", 1.0),
            ("Failures", 0.0),
            ("FailedMessages", 0.0),
            ("UploadTime", 2.5),
            ("ParseTime", 0.0),
        ] {
            assert_eq!(value(&first, name), want, "{name}");
        }
        let units: Vec<_> = declared(&first)
            .into_iter()
            .map(|(n, u, _)| (n, u))
            .collect();
        assert!(units.contains(&("InputBytes".into(), "Bytes".into())));
        assert!(units.contains(&("CommitTime".into(), "Milliseconds".into())));
        assert_eq!(value(&line(&metrics, &measures, None), "ColdStart"), 0.0);
    }

    #[test]
    fn failures_are_counted_by_error_type_and_reset_clears_everything() {
        let metrics = Metrics::new("RowsToParquet".into(), "fn-1".into());
        let measures = Measures::default();
        measures.trigger("sqs");
        measures.converted(5, 2, 100);
        for e in [
            Error::InvalidEvent(String::new()),
            Error::SourceNotFound(String::new()),
            Error::InvalidEvent(String::new()),
        ] {
            measures.message_failed(&e);
        }
        let batch = line(&metrics, &measures, None);
        assert_eq!(value(&batch, "FailedMessages"), 3.0);
        assert_eq!(value(&batch, "Failures.InvalidEvent"), 2.0);
        assert_eq!(value(&batch, "Failures.SourceNotFound"), 1.0);
        assert_eq!(value(&batch, "Failures"), 0.0, "the batch itself succeeded");

        measures.reset();
        let failed = line(&metrics, &measures, Some("InvalidEvent"));
        assert_eq!(failed["Trigger"], "unknown", "nothing was recognised");
        assert_eq!(value(&failed, "Failures"), 1.0);
        assert_eq!(value(&failed, "Failures.InvalidEvent"), 1.0);
        assert!(
            declared(&failed)
                .iter()
                .all(|(n, _, v)| *v == 0.0 || n.starts_with("Failures") || n == "InputBytes"),
            "{failed}"
        );
    }
}
