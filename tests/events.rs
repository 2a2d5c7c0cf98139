//! Every file in `events/` goes through the handler against the local S3 server, with the
//! objects under `events/objects/<bucket>/` stored first (the sources that `source` events
//! and notifications name). A file with a sibling `NAME.expect.json` must behave as it says:
//! `{"errorType", "messageContains"}` fail that way and write nothing; `{"reply",
//! "objectsWritten"}` answer with a reply that holds `reply` and write that many objects. A dry
//! run must write nothing. Any other must succeed, and every object it writes must be in the
//! codec its target named and read back as its rows (inline, or the source object's) without a
//! `schema`, or with the declared schema (tests/e2e checks those values per reader). A new
//! file is tested without touching this code.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::{Expectation, LocalS3, invocation, read_parquet, read_schema, same_data};
use rows_to_parquet::input::trigger::{Trigger, decode_key, detect};
use serde_json::Value;

const BUCKET: &str = "my-bucket";
const SOURCES: &str = "in-bucket";

/// The function's `DEFAULT_TARGETS` for events without targets: the seed job's two outputs.
const DEFAULT_TARGETS: &str = r#"[{"prefix":"s3://my-bucket/out/parquet/","compression":"uncompressed"},{"prefix":"s3://my-bucket/out/parquet-snappy/","compression":"snappy"}]"#;

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

fn event_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.ends_with(".expect.json")
        })
        .collect();
    files.sort();
    files
}

/// Every file under `events/objects/`, as `(bucket, key, path)`.
fn source_objects() -> Vec<(String, String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let root = events_dir().join("objects");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let relative = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let (bucket, key) = relative.split_once('/').unwrap();
            (bucket.to_owned(), key.to_owned(), path)
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows a source fixture holds, decompressed and parsed here independently of the
/// function (NDJSON by `.ndjson`, else a JSON array; `.gz`, `.zst`).
fn fixture_rows(bucket: &str, key: &str) -> Value {
    let path = events_dir().join("objects").join(bucket).join(key);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (text, name) = if let Some(name) = key.strip_suffix(".zst") {
        (zstd::decode_all(&raw[..]).unwrap(), name)
    } else if let Some(name) = key.strip_suffix(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        (out, name)
    } else {
        (raw, key)
    };
    let text = String::from_utf8(text).unwrap();
    if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
        Value::Array(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// The rows and targets a sample converts: inline, or those of the object it names.
fn rows_and_targets(event: &Value) -> (Value, Value) {
    let defaults: Value = serde_json::from_str(DEFAULT_TARGETS).unwrap();
    let own = |e: &Value| {
        e.get("targets")
            .cloned()
            .unwrap_or_else(|| defaults.clone())
    };
    let from_uri = |uri: &str| {
        let (bucket, key) = uri.strip_prefix("s3://").unwrap().split_once('/').unwrap();
        fixture_rows(bucket, key)
    };
    if let Some(rows) = event.get("rows") {
        return (rows.clone(), own(event));
    }
    if let Some(uri) = event["source"]["uri"].as_str() {
        return (from_uri(uri), own(event));
    }
    if let Some(record) = event.get("Records").and_then(|r| r.get(0)) {
        let key = decode_key(record["s3"]["object"]["key"].as_str().unwrap()).unwrap();
        let bucket = record["s3"]["bucket"]["name"].as_str().unwrap();
        return (fixture_rows(bucket, &key), defaults);
    }
    let detail = &event["detail"];
    if event["source"] == "aws.s3" {
        let (bucket, key) = (
            detail["bucket"]["name"].as_str().unwrap(),
            detail["object"]["key"].as_str().unwrap(),
        );
        return (fixture_rows(bucket, key), defaults);
    }
    (detail["rows"].clone(), own(detail))
}

/// Whether `got` holds everything in `want` (objects: at least its keys; arrays: the same
/// length, element by element).
fn holds(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| holds(gv, wv))),
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(g, w)| holds(g, w))
        }
        (g, w) => g == w,
    }
}

async fn local_s3_with_sources() -> LocalS3 {
    let s3 = LocalS3::start(&[BUCKET, SOURCES]).await;
    for (bucket, key, path) in source_objects() {
        s3.put(&bucket, &key, std::fs::read(path).unwrap(), None)
            .await;
    }
    s3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_behaves_as_its_file_says() {
    let files = event_files();
    let (mut valid, mut invalid, mut replies) = (0, 0, 0);
    for path in &files {
        let name = path.display();
        let payload = std::fs::read_to_string(path).unwrap();
        let event = read_json(path);
        let s3 = local_s3_with_sources().await;
        let function = s3.function(&[("DEFAULT_TARGETS", DEFAULT_TARGETS)]);
        let result = function.handle(invocation(&payload, "events-test")).await;

        let expect_path = path.with_extension("expect.json");
        if let Some(reply) = expect_path
            .exists()
            .then(|| read_json(&expect_path))
            .filter(|e| e.get("reply").is_some())
        {
            replies += 1;
            let got =
                serde_json::to_value(result.unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap();
            assert!(holds(&got, &reply["reply"]), "{name}: replied {got}");
            assert_eq!(
                Some(s3.keys(BUCKET).await.len() as u64),
                reply["objectsWritten"].as_u64(),
                "{name}"
            );
            continue;
        }

        if let Some(expect) = Expectation::beside(path) {
            invalid += 1;
            let err = result.expect_err(&name.to_string());
            expect.assert_matches(&err, &name.to_string());
            assert_eq!(
                s3.keys(BUCKET).await,
                Vec::<String>::new(),
                "{name} wrote something"
            );
            continue;
        }
        valid += 1;
        let response = result
            .unwrap_or_else(|e| panic!("{name}: {} {e}", e.error_type()))
            .converted()
            .unwrap_or_else(|| panic!("{name}: not one conversion"));
        if response.dry_run {
            assert_eq!(
                s3.keys(BUCKET).await,
                Vec::<String>::new(),
                "{name} wrote in a dry run"
            );
            assert!(
                response.objects.iter().all(|o| o.athena_ddl.is_some()),
                "{name}"
            );
            continue;
        }
        let declared = match detect(payload.as_bytes()).unwrap() {
            Trigger::Event(event) => event.schema,
            _ => None,
        };
        let (rows, targets) = rows_and_targets(&event);
        let rows = &rows;
        assert_eq!(
            response.objects.len(),
            targets.as_array().unwrap().len(),
            "{name}"
        );
        assert_eq!(
            s3.keys(BUCKET).await.len(),
            response.objects.len(),
            "{name}"
        );
        for (object, target) in response.objects.iter().zip(targets.as_array().unwrap()) {
            let codec = target["compression"].as_str().unwrap().to_lowercase();
            assert_eq!(object.compression, codec, "{name}");
            assert!(
                object.uri.starts_with(target["prefix"].as_str().unwrap()),
                "{name}: {}",
                object.uri
            );
            let (back, meta) = read_parquet(s3.get(BUCKET, &object.key).await.0);
            let back = Value::Array(back);
            match &declared {
                None => assert!(
                    same_data(&back, rows),
                    "{name} ({codec}) read back as {back}"
                ),
                Some(declared) => {
                    let file = read_schema(s3.get(BUCKET, &object.key).await.0);
                    assert_eq!(file.fields().len(), declared.fields().len(), "{name}");
                    for (read, want) in file.fields().iter().zip(declared.fields()) {
                        assert_eq!(
                            (read.name(), read.is_nullable()),
                            (want.name(), want.is_nullable()),
                            "{name}"
                        );
                        assert!(
                            read.data_type().equals_datatype(want.data_type()),
                            "{name}: {read:?} vs {want:?}"
                        );
                    }
                    assert_eq!(
                        back.as_array().unwrap().len(),
                        rows.as_array().unwrap().len(),
                        "{name}"
                    );
                }
            }
            let written = format!("{:?}", meta.row_group(0).column(0).compression());
            let expected = if codec == "lz4" {
                "LZ4_RAW".to_owned()
            } else {
                codec.to_uppercase()
            };
            assert!(
                written.starts_with(&expected),
                "{name}: {written} for {codec}"
            );
        }
    }
    assert!(
        valid >= 12 && invalid >= 9 && replies >= 2,
        "events/ should hold samples of every kind ({valid} valid, {invalid} invalid, {replies} replies)"
    );
}
