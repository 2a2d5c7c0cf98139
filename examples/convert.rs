//! Times the conversion core on an event file, with no network:
//! `cargo run --release --example convert -- EVENT.json [REPEAT [OUT_DIR]]`.
//! Prints rows, columns, each codec's size, the median time of REPEAT runs (and of each
//! phase: parsing the event onto the tape, building the Arrow batch, encoding the codecs in
//! parallel) and the process's peak RSS. With OUT_DIR, writes each codec's file there
//! (`<codec>.parquet`), to compare column by column with an anchor's.

use std::time::Instant;

use rows_to_parquet::encode::writer;
use rows_to_parquet::input::event;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: convert EVENT.json [REPEAT [OUT_DIR]]")?;
    let repeat: usize = args
        .next()
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(1)
        .max(1);
    let out_dir = args.next();
    // As the function runs it.
    rows_to_parquet::lambda::memory::tune_allocator();
    let bytes = std::fs::read(&path)?;
    // Total, parse, build, encode: milliseconds per run.
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut last = None;
    for _ in 0..repeat {
        let started = Instant::now();
        let event = event::parse(&bytes)?;
        let parse = started.elapsed();
        let codecs: Vec<_> = event.targets.iter().flatten().map(|t| t.codec).collect();
        let rows = event
            .input
            .rows()
            .ok_or("the event has a `source`, not `rows`")?;
        last = Some(writer::rows_to_parquet(
            rows,
            event.schema,
            event.unknown_keys,
            &codecs,
            writer::Partitioning::NONE,
        )?);
        let total = started.elapsed();
        let encoded = last.as_ref().expect("just set");
        for (phase, t) in
            times
                .iter_mut()
                .zip([total, parse, encoded.build_time, encoded.encode_time])
        {
            phase.push(t.as_secs_f64() * 1e3);
        }
    }
    let [total, parse, build, encode] = times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        (t[t.len() / 2], t[0])
    });
    let encoded = last.expect("at least one run");
    if let Some(dir) = out_dir {
        for (codec, bytes) in &encoded.partitions[0].files {
            std::fs::write(format!("{dir}/{}.parquet", codec.name()), bytes)?;
        }
    }
    let sizes: Vec<String> = encoded.partitions[0]
        .files
        .iter()
        .map(|(c, b)| format!("{}={}", c.name(), b.len()))
        .collect();
    println!(
        "{path}: {} bytes, rows={} columns={} {} median_ms={:.2} min_ms={:.2} parse_ms={:.2} build_ms={:.2} encode_ms={:.2} runs={repeat} peak_rss_kib={}",
        bytes.len(),
        encoded.rows,
        encoded.schema.fields().len(),
        sizes.join(" "),
        total.0,
        total.1,
        parse.0,
        build.0,
        encode.0,
        peak_rss_kib()
    );
    Ok(())
}

/// This process's peak resident set (Linux `VmHWM`), or 0 where /proc is not available.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
