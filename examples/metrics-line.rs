//! Times the metrics line as `Function::invoke` emits it: one invocation's Embedded Metric
//! Format line built and written, line-buffered, to a file (`/dev/null`, standing in for the
//! pipe Lambda reads stdout from). `cargo run --release --example metrics-line -- [LINES]`
//! prints the median nanoseconds per line over 5 rounds of LINES (default 100,000) and the
//! line's size in bytes, as JSON. Run by scripts/bench.

use std::io::{LineWriter, Write};
use std::time::{Duration, Instant};

use rows_to_parquet::Error;
use rows_to_parquet::lambda::metrics::{Measures, Metrics};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lines: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let metrics = Metrics::new("RowsToParquet".into(), "my-stack-rows-to-parquet".into());
    // An SQS batch of a few messages, one failed: every kind of member the line can hold.
    let measures = Measures::default();
    measures.trigger("sqs");
    measures.source_read(104_857_600);
    measures.converted(129_711, 2, 6_287_289);
    for phase in [
        &measures.parse,
        &measures.build,
        &measures.encode,
        &measures.upload,
        &measures.commit,
    ] {
        phase.add(Duration::from_micros(8_217));
    }
    measures.message_failed(&Error::InvalidEvent(String::new()));
    let request_id = "8f0d7c1e-3b2a-4c5d-9e6f-a7b8c9d0e1f2";
    let mut out = LineWriter::new(std::fs::File::create("/dev/null")?);
    let mut rounds = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..lines {
            let line = metrics.line(&measures, request_id, 6_291_456, None, 1_764_322_200_000);
            bytes = line.len() + 1;
            writeln!(out, "{line}")?;
        }
        rounds.push(started.elapsed().as_nanos() as f64 / f64::from(lines));
    }
    rounds.sort_by(f64::total_cmp);
    println!(
        r#"{{"ns_per_line": {:.0}, "bytes": {bytes}, "lines": {lines}}}"#,
        rounds[2]
    );
    Ok(())
}
