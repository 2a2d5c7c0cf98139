//! Bad input: every file in `tests/corpus/` (and a few too large to keep as files) goes through
//! one function, as bytes, the way they would arrive. Each must be refused with the errorType
//! and the word its `NAME.expect.json` gives, write nothing, and leave the function able to
//! serve a valid event afterwards. No input may panic or hang.

mod common;

use std::path::Path;

use common::LocalS3;
use serde_json::Value;

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

fn corpus() -> Vec<(String, Vec<u8>, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".expect.json"))
        .map(|expect_path| {
            let input = expect_path
                .to_string_lossy()
                .replace(".expect.json", ".json");
            let expect: Value =
                serde_json::from_slice(&std::fs::read(&expect_path).unwrap()).unwrap();
            (
                Path::new(&input)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read(&input).unwrap_or_else(|e| panic!("{input}: {e}")),
                expect["errorType"].as_str().unwrap().to_owned(),
                expect["messageContains"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    cases.sort();
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
    let all = files.into_iter().chain(
        generated()
            .into_iter()
            .map(|(name, bytes, kind, word)| (name, bytes, kind.to_owned(), word.to_owned())),
    );
    for (name, bytes, error_type, word) in all {
        let started = std::time::Instant::now();
        let err = function.invoke(&bytes, "corpus", 0).await.expect_err(&name);
        assert_eq!(err.error_type(), error_type, "{name}: {err}");
        assert!(
            err.to_string().contains(&word),
            "{name}: `{err}` lacks `{word}`"
        );
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
        .unwrap();
    assert_eq!(response.rows, 1);
    assert_eq!(s3.keys(BUCKET).await.len(), 1);
}
