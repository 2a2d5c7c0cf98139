//! Every file in `events/` goes through the handler against the local S3 server. A file with
//! a sibling `NAME.expect.json` (`{"errorType", "messageContains"}`) must fail that way and
//! write nothing; a dry run must write nothing; any other must succeed, and every object it
//! writes must be in the codec its target named and read back as its rows (without a
//! `schema`) or with the declared schema (with one; tests/e2e checks those values per
//! reader). A new file is tested without touching this code.

mod common;

use std::path::{Path, PathBuf};

use common::{Expectation, LocalS3, invocation, read_parquet, read_schema, same_data};
use serde_json::Value;

const BUCKET: &str = "my-bucket";

/// The function's `DEFAULT_TARGETS` for events without targets: the seed job's two outputs.
const DEFAULT_TARGETS: &str = r#"[{"prefix":"s3://my-bucket/out/parquet/","compression":"uncompressed"},{"prefix":"s3://my-bucket/out/parquet-snappy/","compression":"snappy"}]"#;

fn event_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
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

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_behaves_as_its_file_says() {
    let files = event_files();
    let (mut valid, mut invalid) = (0, 0);
    for path in &files {
        let name = path.display();
        let payload = std::fs::read_to_string(path).unwrap();
        let event = read_json(path);
        let s3 = LocalS3::start(&[BUCKET]).await;
        let function = s3.function(&[("DEFAULT_TARGETS", DEFAULT_TARGETS)]);
        let result = function.handle(invocation(&payload, "events-test")).await;

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
        let declared = rows_to_parquet::event::parse(payload.as_bytes())
            .unwrap()
            .schema;
        let rows = &event["rows"];
        let targets = event
            .get("targets")
            .cloned()
            .unwrap_or_else(|| serde_json::from_str(DEFAULT_TARGETS).unwrap());
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
        valid >= 5 && invalid >= 4,
        "events/ should hold valid and invalid samples ({valid}, {invalid})"
    );
}
