//! `json-parsers EVENT.json...`: for each event, the median of 15 single-thread runs of each
//! parser over its bytes, in milliseconds and GB/s, one JSON line per event:
//!
//! - `utf8_std` / `utf8_simd`: UTF-8 validation alone (std's, simdutf8's), a floor;
//! - `serde_json_skip`: serde_json validating the whole event into `IgnoredAny` (no values);
//! - `simd_json_tape`: simd-json's validated tape (`to_tape`, on a copy it may write into;
//!   the copy is not timed), the closest to what the function's own tape holds; `_warm`: the
//!   same with its buffers kept from run to run;
//! - `sonic_rs_value`: sonic-rs's document (`Value`, values allocated).
//!
//! The function's own parse is timed by `examples/convert.rs` (its `parse` phase, on both
//! cores, and under `taskset -c 0` on one).

use std::time::Instant;

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn time(repeat: usize, mut run: impl FnMut()) -> f64 {
    median(
        (0..repeat)
            .map(|_| {
                let started = Instant::now();
                run();
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn main() {
    const REPEAT: usize = 15;
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).expect("an event file");
        let mb = bytes.len() as f64 / 1e6;
        let mut results = Vec::new();
        results.push((
            "utf8_std",
            time(REPEAT, || assert!(std::str::from_utf8(&bytes).is_ok())),
        ));
        results.push((
            "utf8_simd",
            time(REPEAT, || {
                assert!(simdutf8::basic::from_utf8(&bytes).is_ok())
            }),
        ));
        results.push((
            "serde_json_skip",
            time(REPEAT, || {
                serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).expect("valid JSON");
            }),
        ));
        let mut copies: Vec<Vec<u8>> = (0..REPEAT).map(|_| bytes.clone()).collect();
        let mut runs = Vec::with_capacity(REPEAT);
        for copy in &mut copies {
            let started = Instant::now();
            let tape = simd_json::to_tape(copy).expect("valid JSON");
            runs.push(started.elapsed().as_secs_f64() * 1e3);
            drop(tape);
        }
        results.push(("simd_json_tape", median(runs)));
        // Its buffers (a copy of the input, the strings, the structural indexes) kept from one
        // run to the next, as a warm function could keep them.
        let mut buffers = simd_json::Buffers::new(bytes.len());
        let mut copies: Vec<Vec<u8>> = (0..REPEAT).map(|_| bytes.clone()).collect();
        let mut runs = Vec::with_capacity(REPEAT);
        for copy in &mut copies {
            let started = Instant::now();
            let tape = simd_json::to_tape_with_buffers(copy, &mut buffers).expect("valid JSON");
            runs.push(started.elapsed().as_secs_f64() * 1e3);
            drop(tape);
        }
        results.push(("simd_json_tape_warm", median(runs)));
        results.push((
            "sonic_rs_value",
            time(REPEAT, || {
                sonic_rs::from_slice::<sonic_rs::Value>(&bytes).expect("valid JSON");
            }),
        ));
        let fields: Vec<String> = results
            .iter()
            .map(|(name, ms)| format!("\"{name}\": [{ms:.2}, {:.2}]", mb / ms))
            .collect();
        println!(
            "{{\"event\": \"{path}\", \"mb\": {mb:.2}, \"ms_and_gb_per_s\": {{{}}}}}",
            fields.join(", ")
        );
    }
}
