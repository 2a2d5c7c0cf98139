//! Bad input: every file in `tests/corpus/` (and a few too large to keep as files) goes through
//! one function, as bytes, the way they would arrive. Each must be refused with the errorType
//! and the word its `NAME.expect.json` gives, write nothing, and leave the function able to
//! serve a valid event afterwards. No input may panic or hang.

mod common;

use std::path::Path;

use common::{Expectation, LocalS3};

const BUCKET: &str = "my-bucket";
const TARGETS: &str =
    r#""targets": [{"prefix": "s3://my-bucket/corpus/", "compression": "snappy"}]"#;

/// Inputs generated here rather than kept as files: (name, bytes, errorType, word).
fn generated() -> Vec<(String, Vec<u8>, &'static str, &'static str)> {
    let deep = format!(
        r#"{{"rows": [{{"a": {}{}}}], {TARGETS}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let columns: Vec<String> = (0..100_000).map(|i| format!(r#""c{i}": {i}"#)).collect();
    let wide = format!(r#"{{"rows": [{{{}}}], {TARGETS}}}"#, columns.join(","));
    vec![
        (
            "nested 100,000 deep".into(),
            deep.into_bytes(),
            "InvalidEvent",
            "recursion limit",
        ),
        (
            "100,000 columns".into(),
            wide.into_bytes(),
            "InvalidEvent",
            "100000 columns",
        ),
        (
            "6 MB of whitespace".into(),
            vec![b' '; 6 * 1024 * 1024],
            "InvalidEvent",
            "not valid JSON",
        ),
    ]
}

fn corpus() -> Vec<(String, Vec<u8>, Expectation)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".expect.json"))
        .map(|input| {
            let expect = Expectation::beside(&input)
                .unwrap_or_else(|| panic!("{} has no .expect.json", input.display()));
            let name = input.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&input).unwrap(), expect)
        })
        .collect();
    let expectations = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".expect.json")
        })
        .count();
    assert_eq!(
        expectations,
        cases.len(),
        "every .expect.json has its input"
    );
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_a_clear_error_that_writes_nothing() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let function = s3.function(&[]);
    let files = corpus();
    assert!(
        files.len() >= 30,
        "the corpus should hold at least 30 files, has {}",
        files.len()
    );
    let generated = generated().into_iter().map(|(name, bytes, kind, word)| {
        let expect = Expectation {
            error_type: kind.to_owned(),
            word: word.to_owned(),
        };
        (name, bytes, expect)
    });
    for (name, bytes, expect) in files.into_iter().chain(generated) {
        let started = std::time::Instant::now();
        let err = function.invoke(&bytes, "corpus", 0).await.expect_err(&name);
        expect.assert_matches(&err, &name);
        assert!(
            err.to_string().len() < 1_000,
            "{name}: a message of {} bytes",
            err.to_string().len()
        );
        assert!(
            started.elapsed().as_secs() < 10,
            "{name} took {:?}",
            started.elapsed()
        );
        assert_eq!(
            s3.keys(BUCKET).await,
            Vec::<String>::new(),
            "{name} wrote something"
        );
    }
    let valid = format!(r#"{{"rows": [{{"name": "John Doe", "age": 30}}], {TARGETS}}}"#);
    let response = function
        .invoke(valid.as_bytes(), "after-corpus", 0)
        .await
        .unwrap()
        .converted()
        .unwrap();
    assert_eq!(response.rows, 1);
    assert_eq!(s3.keys(BUCKET).await.len(), 1);
}
