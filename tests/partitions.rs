//! `partition_by` and Distributed Map batches end to end against the embedded S3 server: Hive
//! folders per partition and target, the partition columns left out of the files, one
//! all-or-nothing write, and batches of objects converted together.

mod common;

use std::collections::BTreeMap;

use common::{LocalS3, invocation, read_parquet};
use rows_to_parquet::handler::job::STATE_OUTPUT_LIMIT;
use rows_to_parquet::handler::reply::{Reply, Response};
use serde_json::{Value, json};

const IN: &str = "in-bucket";
const OUT: &str = "out-bucket";

fn targets() -> Value {
    json!([
        {"prefix": "s3://out-bucket/out/parquet/", "compression": "uncompressed"},
        {"prefix": "s3://out-bucket/out/parquet-snappy/", "compression": "snappy"}
    ])
}

fn rows() -> Vec<Value> {
    vec![
        json!({"dt": "2024-01-01", "region": "eu", "n": 1, "name": "a"}),
        json!({"dt": "2024-01-02", "region": "us/east", "n": 2, "name": "b"}),
        json!({"dt": "2024-01-01", "region": "eu", "n": 3, "name": "c"}),
        json!({"dt": null, "region": "", "n": 4, "name": "d"}),
    ]
}

async fn run(
    s3: &LocalS3,
    vars: &[(&str, &str)],
    body: &Value,
    id: &str,
) -> Result<Reply, rows_to_parquet::Error> {
    s3.function(vars)
        .handle(invocation(&body.to_string(), id))
        .await
}

/// Every object's rows read back, by key, with the partition's values put back as columns.
async fn read_back(s3: &LocalS3, response: &Response) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    for object in &response.objects {
        let (bytes, _) = s3.get(&object.bucket, &object.key).await;
        assert_eq!(bytes.len(), object.bytes, "{}", object.key);
        let (rows, _) = read_parquet(bytes);
        assert_eq!(rows.len(), object.rows, "{}", object.key);
        out.insert(object.key.clone(), rows);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_rows_go_to_one_hive_folder_per_partition_and_target_without_their_columns() {
    let s3 = LocalS3::start(&[OUT]).await;
    let body = json!({"rows": rows(), "targets": targets(), "partition_by": ["dt", "region"]});
    let response = run(&s3, &[], &body, "req-1")
        .await
        .unwrap()
        .converted()
        .unwrap();
    assert_eq!(response.rows, 4);
    let folders: Vec<(&str, &str, usize)> = response
        .objects
        .iter()
        .map(|o| (o.partition.as_deref().unwrap(), o.compression, o.rows))
        .collect();
    let default = "dt=__HIVE_DEFAULT_PARTITION__/region=__HIVE_DEFAULT_PARTITION__";
    assert_eq!(
        folders,
        [
            ("dt=2024-01-01/region=eu", "uncompressed", 2),
            ("dt=2024-01-01/region=eu", "snappy", 2),
            ("dt=2024-01-02/region=us%2Feast", "uncompressed", 1),
            ("dt=2024-01-02/region=us%2Feast", "snappy", 1),
            (default, "uncompressed", 1),
            (default, "snappy", 1),
        ]
    );
    assert_eq!(
        response.objects[3].key,
        "out/parquet-snappy/dt=2024-01-02/region=us%2Feast/part-00000-req-1-c000.snappy.parquet"
    );
    let mut keys: Vec<String> = response.objects.iter().map(|o| o.key.clone()).collect();
    keys.sort();
    assert_eq!(s3.keys(OUT).await, keys);
    let back = read_back(&s3, &response).await;
    let eu = &back["out/parquet/dt=2024-01-01/region=eu/part-00000-req-1-c000.parquet"];
    assert_eq!(
        eu,
        &vec![json!({"n": 1, "name": "a"}), json!({"n": 3, "name": "c"})]
    );
    // The same invocation again overwrites its own objects.
    run(&s3, &[], &body, "req-1").await.unwrap();
    assert_eq!(s3.keys(OUT).await, keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_lists_every_key_and_a_partitioned_table_and_writes_nothing() {
    let s3 = LocalS3::start(&[OUT]).await;
    let body = json!({"rows": rows(), "targets": targets(), "partition_by": ["dt"],
                      "schema": "dt DATE, region STRING, n INT, name STRING", "dry_run": true});
    let response = run(&s3, &[], &body, "req-2")
        .await
        .unwrap()
        .converted()
        .unwrap();
    assert!(response.dry_run);
    assert_eq!(response.objects.len(), 6);
    assert!(s3.keys(OUT).await.is_empty());
    let ddl: Vec<&str> = response
        .objects
        .iter()
        .filter_map(|o| o.athena_ddl.as_deref())
        .collect();
    assert_eq!(ddl.len(), 2, "one table per target");
    assert!(ddl[1].contains("`parquet_snappy` (\n  region string,\n  n int,\n  name string\n)\nPARTITIONED BY (\n  dt date\n)"), "{}", ddl[1]);
    let schema = response.schema.as_ref().unwrap();
    assert_eq!(schema.ddl, "dt DATE, region STRING, n INT, name STRING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_partitioning_is_invalid_event_and_writes_nothing() {
    let s3 = LocalS3::start(&[OUT]).await;
    for (by, vars, word) in [
        (
            json!(["missing"]),
            &[][..],
            "column `missing` is not a column",
        ),
        (
            json!(["n", "dt", "region", "name"]),
            &[],
            "names every column",
        ),
        (
            json!(["name"]),
            &[("MAX_PARTITIONS", "3")][..],
            "more than MAX_PARTITIONS (3)",
        ),
        (json!("dt"), &[], "must be an array"),
    ] {
        let body = json!({"rows": rows(), "targets": targets(), "partition_by": by});
        let e = run(&s3, vars, &body, "req-3").await.unwrap_err();
        assert_eq!(e.error_type(), "InvalidEvent", "{by}: {e}");
        assert!(e.to_string().contains(word), "{by}: {e}");
    }
    let body =
        json!({"rows": [{"d": {"x": 1}, "v": 1}], "targets": targets(), "partition_by": ["d"]});
    let e = run(&s3, &[], &body, "req-3").await.unwrap_err();
    assert!(
        e.to_string().contains("column `d` is STRUCT<x: BIGINT>"),
        "{e}"
    );
    assert!(s3.keys(OUT).await.is_empty());
}

/// `n` rows of NDJSON whose partition column `dt` is null in the first `nulls` rows.
fn ndjson(n: usize, nulls: usize) -> String {
    (0..n)
        .map(|i| {
            let dt = if i < nulls {
                Value::Null
            } else {
                json!(format!("2024-01-0{}", i % 3 + 1))
            };
            format!("{}\n", json!({"i": i, "dt": dt, "pad": "x".repeat(40)}))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_partitioned_as_it_streams_even_when_the_types_change_late() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    // 3 MB: the first 2 MiB chunk has no `dt` value at all (a null column), the rest do.
    let rows = 45_000;
    s3.put(IN, "in/a.ndjson", ndjson(rows, 35_000), None).await;
    let body = json!({"source": {"uri": "s3://in-bucket/in/a.ndjson"}, "targets": targets(), "partition_by": ["dt"]});
    let response = run(&s3, &[], &body, "req-4")
        .await
        .unwrap()
        .converted()
        .unwrap();
    assert_eq!(response.rows, rows);
    let mut partitions: Vec<&str> = response
        .objects
        .iter()
        .step_by(2)
        .map(|o| o.partition.as_deref().unwrap())
        .collect();
    partitions.sort_unstable();
    assert_eq!(
        partitions,
        [
            "dt=2024-01-01",
            "dt=2024-01-02",
            "dt=2024-01-03",
            "dt=__HIVE_DEFAULT_PARTITION__"
        ]
    );
    let back = read_back(&s3, &response).await;
    let mut seen: Vec<i64> = back
        .iter()
        .filter(|(key, _)| key.starts_with("out/parquet-snappy/"))
        .flat_map(|(_, rows)| {
            rows.iter().map(|r| {
                assert!(r.get("dt").is_none(), "the partition column is left out");
                r["i"].as_i64().unwrap()
            })
        })
        .collect();
    seen.sort_unstable();
    assert!(
        seen.into_iter().eq(0..rows as i64),
        "every row exactly once"
    );
    assert_eq!(s3.keys(OUT).await.len(), 8);
    assert!(s3.uploads(OUT).await.is_empty());
}

/// A batch as Step Functions' Distributed Map delivers it from `s3:listObjectsV2`.
fn map_batch(keys: &[&str], input: Value) -> Value {
    let items: Vec<Value> = keys
        .iter()
        .map(|k| json!({"Etag": "\"e\"", "Key": k, "LastModified": 1732800000, "Size": 10, "StorageClass": "STANDARD"}))
        .collect();
    json!({"Items": items, "BatchInput": input})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_map_batch_converts_every_object_all_or_nothing() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    s3.put(IN, "in/a.ndjson", ndjson(10, 0), None).await;
    s3.put(IN, "in/b.ndjson", ndjson(5, 0), None).await;
    let input = json!({"bucket": IN, "targets": targets(), "partition_by": ["dt"]});
    let body = map_batch(&["in/", "in/a.ndjson", "in/b.ndjson"], input.clone());
    let Reply::Each { mut results } = run(&s3, &[], &body, "req-5").await.unwrap() else {
        panic!("one result for the batch")
    };
    assert_eq!(results.len(), 1, "the batch's objects share their files");
    let result = results.remove(0);
    assert_eq!(result.rows, 15);
    assert!(result.source.is_none());
    assert_eq!(
        result
            .sources
            .iter()
            .map(|s| s.uri.as_str())
            .collect::<Vec<_>>(),
        ["s3://in-bucket/in/a.ndjson", "s3://in-bucket/in/b.ndjson"]
    );
    // One file per partition per target for both objects, not one per object.
    let written = s3.keys(OUT).await;
    assert_eq!(written.len(), 2 * 3);
    let back = read_back(&s3, &result).await;
    let mut ids: Vec<i64> = back
        .iter()
        .filter(|(key, _)| key.starts_with("out/parquet-snappy/"))
        .flat_map(|(_, rows)| rows.iter().map(|r| r["i"].as_i64().unwrap()))
        .collect();
    ids.sort_unstable();
    let mut expected: Vec<i64> = (0..10).chain(0..5).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "every row of every object, once");
    // A retried batch overwrites its own output: the keys follow the batch's identity (its
    // keys and ETags), and another batch of the same keys with other ETags writes apart.
    run(&s3, &[], &body, "req-6").await.unwrap();
    assert_eq!(s3.keys(OUT).await, written);
    let changed = body.to_string().replace("\\\"e\\\"", "\\\"f\\\"");
    let changed: Value = serde_json::from_str(&changed).unwrap();
    assert_ne!(changed, body);
    run(&s3, &[], &changed, "req-6b").await.unwrap();
    assert_eq!(s3.keys(OUT).await.len(), 2 * written.len());

    // One missing object fails the batch, and the other's output is not left behind.
    let s3 = LocalS3::start(&[IN, OUT]).await;
    s3.put(IN, "in/a.ndjson", ndjson(10, 0), None).await;
    let body = map_batch(&["in/a.ndjson", "in/gone.ndjson"], input);
    let e = run(&s3, &[], &body, "req-7").await.unwrap_err();
    assert_eq!(e.error_type(), "SourceNotFound", "{e}");
    assert!(s3.keys(OUT).await.is_empty());
    assert!(s3.uploads(OUT).await.is_empty());

    let own = map_batch(
        &["in/a.ndjson", "out/parquet/x.parquet"],
        json!({"bucket": OUT, "targets": targets()}),
    );
    let e = run(&s3, &[], &own, "req-8").await.unwrap_err();
    assert_eq!(e.error_type(), "RecursiveTrigger", "{e}");
    let e = run(
        &s3,
        &[],
        &map_batch(&["in/a.ndjson"], json!({"targets": targets()})),
        "req-8",
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("`BatchInput.bucket`"), "{e}");
}

/// The map run's results as the Distributed Map's `ResultWriter` exports them: a
/// `manifest.json` naming one file per status, each a JSON array of child executions whose
/// `Output` is the item processor's output (here the function's reply, `$.Payload`).
async fn export_results(s3: &LocalS3, replies: &[Value], failed: usize) -> Value {
    let prefix = "results/6dbfba93-bcff-410b-9b5c-abf41ae9eddb";
    let executions: Vec<Value> = replies
        .iter()
        .enumerate()
        .map(|(i, reply)| json!({"ExecutionArn": format!("arn:aws:states:us-east-1:123456789012:execution:m/Map:{i}"),
            "Input": "{}", "InputDetails": {"Included": true}, "Name": i.to_string(),
            "Output": reply.to_string(), "OutputDetails": {"Included": true}, "RedriveCount": 0,
            "Status": "SUCCEEDED", "StartDate": "2026-11-29T00:00:00Z", "StopDate": "2026-11-29T00:00:01Z"}))
        .collect();
    s3.put(
        IN,
        &format!("{prefix}/SUCCEEDED_0.json"),
        Value::Array(executions).to_string(),
        None,
    )
    .await;
    let failed: Vec<Value> = (0..failed)
        .map(|i| json!({"Key": format!("{prefix}/FAILED_{i}.json"), "Size": 10}))
        .collect();
    let manifest = json!({"DestinationBucket": IN, "MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:m/Map:6dbf",
        "ResultFiles": {"FAILED": failed, "PENDING": [], "SUCCEEDED": [{"Key": format!("{prefix}/SUCCEEDED_0.json"), "Size": 100}]}});
    s3.put(
        IN,
        &format!("{prefix}/manifest.json"),
        manifest.to_string(),
        None,
    )
    .await;
    json!({"Bucket": IN, "Key": format!("{prefix}/manifest.json")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_commits_a_success_marker_listing_every_object_only_when_every_item_succeeded() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    let input = json!({"bucket": IN, "targets": targets(), "partition_by": ["dt"]});
    let mut replies = Vec::new();
    for (i, keys) in [
        ["in/a.ndjson", "in/b.ndjson"],
        ["in/c.ndjson", "in/d.ndjson"],
    ]
    .iter()
    .enumerate()
    {
        for (n, key) in keys.iter().enumerate() {
            s3.put(IN, key, ndjson(4 + n, 0), None).await;
        }
        let reply = run(
            &s3,
            &[],
            &map_batch(keys, input.clone()),
            &format!("batch-{i}"),
        )
        .await
        .unwrap();
        replies.push(serde_json::to_value(reply).unwrap());
    }
    let written = s3.keys(OUT).await;
    let start = json!({"commit": {"phase": "start"}, "targets": targets()});
    let results = export_results(&s3, &replies, 0).await;
    let finish = json!({"commit": {"phase": "finish", "results": results, "map_run": "arn:run"}, "targets": targets()});
    let Reply::Committed { phase, markers, .. } = run(&s3, &[], &finish, "commit").await.unwrap()
    else {
        panic!("a commit reply")
    };
    assert_eq!(phase, "finish");
    assert_eq!(
        markers
            .iter()
            .map(|m| (m.objects, m.rows))
            .collect::<Vec<_>>(),
        [(6, 18), (6, 18)],
        "a batch's two objects share one file per partition"
    );
    let (body, _) = s3.get(OUT, "out/parquet-snappy/_SUCCESS").await;
    let marker: Value = serde_json::from_slice(&body).unwrap();
    let listed: Vec<String> = marker["filenames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("out/parquet-snappy/{}", f.as_str().unwrap()))
        .collect();
    let snappy: Vec<String> = written
        .iter()
        .filter(|k| k.starts_with("out/parquet-snappy/"))
        .cloned()
        .collect();
    assert_eq!(
        listed, snappy,
        "the marker lists every object the run wrote there"
    );
    assert_eq!(marker["map_run"], "arn:run");

    // A rerun starts by removing the markers: no reader trusts a folder being rewritten.
    let Reply::Committed { markers, .. } = run(&s3, &[], &start, "start").await.unwrap() else {
        panic!()
    };
    assert_eq!(markers.len(), 2);
    assert!(s3.keys(OUT).await.iter().all(|k| !k.ends_with("_SUCCESS")));
    // A run whose map tolerated a failed item is not whole: no marker.
    let results = export_results(&s3, &replies, 1).await;
    let finish = json!({"commit": {"phase": "finish", "results": results}, "targets": targets()});
    let e = run(&s3, &[], &finish, "commit-2").await.unwrap_err();
    assert_eq!(e.error_type(), "JobIncomplete", "{e}");
    assert!(s3.keys(OUT).await.iter().all(|k| !k.ends_with("_SUCCESS")));
}

/// Another overwrite of the folders lands while a job runs: the job's overwrite at its finish
/// would leave a mix of the two, so it withdraws its remaining files and fails instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_overwrite_whose_files_another_overwrite_replaced_withdraws_and_fails() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    let input = json!({"bucket": IN, "targets": targets(), "partition_by": ["dt"]});
    let mut replies = Vec::new();
    for (i, key) in ["in/a.ndjson", "in/b.ndjson"].iter().enumerate() {
        s3.put(IN, key, ndjson(6, 0), None).await;
        let batch = map_batch(&[key], input.clone());
        let reply = run(&s3, &[], &batch, &format!("batch-{i}")).await.unwrap();
        replies.push(serde_json::to_value(reply).unwrap());
    }
    // Meanwhile another write replaces both folders whole.
    let other =
        json!({"rows": rows(), "partition_by": ["dt"], "mode": "overwrite", "targets": targets()});
    let Reply::Converted(other) = run(&s3, &[], &other, "other").await.unwrap() else {
        panic!("a conversion reply")
    };
    let mut others: Vec<String> = other.objects.iter().map(|o| o.key.clone()).collect();
    others.sort();
    assert_eq!(
        s3.keys(OUT).await,
        others,
        "the other write replaced the batches' files"
    );

    let results = export_results(&s3, &replies, 0).await;
    let finish = json!({"commit": {"phase": "finish", "results": results, "mode": "overwrite"}, "targets": targets()});
    let e = run(&s3, &[], &finish, "commit").await.unwrap_err();

    assert_eq!(e.error_type(), "JobIncomplete", "{e}");
    assert!(e.to_string().contains("concurrent overwrite"), "{e}");
    assert_eq!(
        s3.keys(OUT).await,
        others,
        "the other write stands whole, no _SUCCESS"
    );

    // With only some of its files gone, the rest are withdrawn too.
    for (i, key) in ["in/a.ndjson", "in/b.ndjson"].iter().enumerate() {
        run(
            &s3,
            &[],
            &map_batch(&[key], input.clone()),
            &format!("again-{i}"),
        )
        .await
        .unwrap();
    }
    let some = s3.keys(OUT).await;
    let first_batch = some.iter().find(|k| !others.contains(k)).unwrap().clone();
    s3.client
        .delete_object()
        .bucket(OUT)
        .key(&first_batch)
        .send()
        .await
        .unwrap();
    let e = run(&s3, &[], &finish, "commit-2").await.unwrap_err();
    assert_eq!(e.error_type(), "JobIncomplete", "{e}");
    assert!(e.to_string().contains(&first_batch), "{e}");
    assert_eq!(s3.keys(OUT).await, others);
}

/// Given a `manifests` folder, a batch answers with a reference to the listing of what it
/// wrote: Step Functions fails a state whose output passes 256 KiB, which a batch over many
/// partitions passes. The finish step reads the listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_given_a_manifests_folder_replies_small_whatever_the_partitions() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    // One row in each of 1,000 partitions (MAX_PARTITIONS' default).
    let rows: String = (0..1000)
        .map(|i| {
            format!(
                "{}\n",
                json!({"i": i, "dt": format!("d{i:04}"), "pad": "x".repeat(40)})
            )
        })
        .collect();
    s3.put(IN, "in/wide.ndjson", rows, None).await;
    let folder = "s3://out-bucket/out/_jobs/run-1/batches/";
    let with = |manifests: &str| {
        let input = json!({"bucket": IN, "targets": targets(), "partition_by": ["dt"], "manifests": manifests});
        map_batch(&["in/wide.ndjson"], input)
    };

    // Refused before anything is read or written: inside a target, or outside the allowed.
    let e = run(&s3, &[], &with("s3://out-bucket/out/parquet/m/"), "b-0")
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "InvalidEvent", "{e}");
    assert!(e.to_string().contains("inside the target"), "{e}");
    let allowed = [(
        "ALLOWED_PREFIXES",
        "s3://out-bucket/out/parquet/,s3://out-bucket/out/parquet-snappy/",
    )];
    let e = run(&s3, &allowed, &with(folder), "b-0").await.unwrap_err();
    assert_eq!(e.error_type(), "TargetNotAllowed", "{e}");
    assert!(e.to_string().contains("BatchInput.manifests"), "{e}");
    assert!(s3.keys(OUT).await.is_empty());

    let reply = run(&s3, &[], &with(folder), "b-1").await.unwrap();
    let reply = serde_json::to_value(reply).unwrap();
    assert!(reply.to_string().len() < 400, "{reply}");
    let batch = &reply["batch"];
    assert_eq!(
        (&batch["sources"], &batch["rows"], &batch["objects"]),
        (&json!(1), &json!(1000), &json!(2000))
    );
    let uri = batch["manifest"].as_str().unwrap();
    let key = uri.strip_prefix("s3://out-bucket/").unwrap();
    assert!(key.starts_with("out/_jobs/run-1/batches/"), "{key}");
    // The listing is the reply a batch gave without the folder: past the limit.
    let (listing, _) = s3.get(OUT, key).await;
    assert!(listing.len() > STATE_OUTPUT_LIMIT, "{}", listing.len());
    // A retried batch rewrites its own manifest.
    let again = serde_json::to_value(run(&s3, &[], &with(folder), "b-2").await.unwrap()).unwrap();
    assert_eq!(again, reply);

    let results = export_results(&s3, &[reply], 0).await;
    let finish = json!({"commit": {"phase": "finish", "results": results}, "targets": targets()});
    let Reply::Committed { markers, .. } = run(&s3, &[], &finish, "commit").await.unwrap() else {
        panic!("a commit reply")
    };
    let counts: Vec<_> = markers.iter().map(|m| (m.objects, m.rows)).collect();
    assert_eq!(counts, [(1000, 1000), (1000, 1000)]);
    let (body, _) = s3.get(OUT, "out/parquet/_SUCCESS").await;
    let marker: Value = serde_json::from_slice(&body).unwrap();
    let first = marker["filenames"][0].as_str().unwrap();
    assert!(first.starts_with("dt=d0000/part-"), "{first}");
    let (bytes, _) = s3.get(OUT, &format!("out/parquet/{first}")).await;
    assert_eq!(
        read_parquet(bytes).0,
        [json!({"i": 0, "pad": "x".repeat(40)})]
    );
}

/// The template's job as its states run it: the plan groups the prefix's objects by bytes, each
/// planned element is one batch (its `Items`, with the map's `BatchInput`), and the finish step
/// finds every batch's manifest from the plan alone (no `ResultWriter` export).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_job_groups_objects_by_bytes_and_commits_from_the_plan() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    let mut expected = Vec::new();
    for n in 0..7 {
        s3.put(IN, &format!("in/{n}.ndjson"), ndjson(20, 0), None)
            .await;
        expected.extend(0..20i64);
    }
    // Not planned: an upstream job's marker, an empty object.
    s3.put(IN, "in/_SUCCESS", String::new(), None).await;
    s3.put(IN, "in/empty.ndjson", String::new(), None).await;
    let size = ndjson(20, 0).len() as u64;
    let run_folder = "s3://out-bucket/out/_jobs/run-2/";
    let plan = |output: &str| json!({"plan": {"bucket": IN, "prefix": "in/", "output": output, "batch_bytes": 3 * size, "max_items": 100}});

    // The plan may not lie where the prefix is listed, nor outside the allowed folders.
    let e = run(&s3, &[], &plan("s3://in-bucket/in/run/"), "p-0")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("inside the listed"), "{e}");
    let allowed = [("ALLOWED_SOURCES", "s3://in-bucket/other/")];
    let e = run(&s3, &allowed, &plan(run_folder), "p-0")
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "SourceNotAllowed", "{e}");

    let reply =
        serde_json::to_value(run(&s3, &[], &plan(run_folder), "p-1").await.unwrap()).unwrap();
    let planned = &reply["plan"];
    assert_eq!(
        (
            &planned["batches"],
            &planned["objects"],
            &planned["bytes"],
            &planned["skipped"]
        ),
        (&json!(3), &json!(7), &json!(7 * size), &json!(2)),
        "{reply}"
    );
    assert_eq!(planned["key"], "out/_jobs/run-2/plan.json");
    // The batches' identities beside it, which the finish step reads instead of the plan.
    let (ids, _) = s3.get(OUT, planned["ids"].as_str().unwrap()).await;
    let ids: Vec<String> = serde_json::from_slice(&ids).unwrap();
    assert_eq!(ids.len(), 3);
    let (body, _) = s3.get(OUT, "out/_jobs/run-2/plan.json").await;
    let elements: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let keys: Vec<Vec<&str>> = elements
        .iter()
        .map(|e| {
            e["Items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["Key"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        keys,
        [
            vec!["in/0.ndjson", "in/1.ndjson", "in/2.ndjson"],
            vec!["in/3.ndjson", "in/4.ndjson", "in/5.ndjson"],
            vec!["in/6.ndjson"]
        ]
    );
    // (The embedded S3's listing gives no ETag; S3's does, and the plan keeps it.)
    assert_eq!(elements[0]["Items"][0]["Size"], json!(size));

    let input = json!({"bucket": IN, "targets": targets(), "partition_by": ["dt"], "manifests": planned["manifests"]});
    let finish = json!({"commit": {"phase": "finish", "plan": planned, "mode": "append"}, "targets": targets()});
    // The map's ItemSelector: each element's Items, with the BatchInput.
    for (i, element) in elements.iter().enumerate() {
        let batch = json!({"Items": element["Items"], "BatchInput": input});
        run(&s3, &[], &batch, &format!("b-{i}")).await.unwrap();
        if i == 0 {
            // A batch missing: not whole, no marker.
            let e = run(&s3, &[], &finish, "f-0").await.unwrap_err();
            assert_eq!(e.error_type(), "JobIncomplete", "{e}");
            assert!(e.to_string().contains("2 of the plan's 3 batches"), "{e}");
        }
    }
    let Reply::Committed { markers, .. } = run(&s3, &[], &finish, "f-1").await.unwrap() else {
        panic!("a commit reply")
    };
    // One file per partition (3 days) per target per batch: 3 batches, not 7 objects.
    assert_eq!(
        markers
            .iter()
            .map(|m| (m.objects, m.rows))
            .collect::<Vec<_>>(),
        [(9, 140), (9, 140)]
    );
    let (body, _) = s3.get(OUT, "out/parquet/_SUCCESS").await;
    let marker: Value = serde_json::from_slice(&body).unwrap();
    let mut seen = Vec::new();
    for file in marker["filenames"].as_array().unwrap() {
        let (bytes, _) = s3
            .get(OUT, &format!("out/parquet/{}", file.as_str().unwrap()))
            .await;
        seen.extend(
            read_parquet(bytes)
                .0
                .iter()
                .map(|r| r["i"].as_i64().unwrap()),
        );
    }
    seen.sort_unstable();
    expected.sort_unstable();
    assert_eq!(seen, expected, "every row of every object, once");
}

/// A plan larger than a multipart part goes up a part at a time, and reads back whole: the
/// function holds about a part of it, however many objects the prefix holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_larger_than_a_part_is_uploaded_in_parts_and_reads_back_whole() {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    // Keys of about 1,000 bytes (the embedded S3 keeps an object as a file at its key, so
    // they are written there directly): 9,500 of them make a plan of about 9 MB.
    let folder = ["a", "b", "c"].map(|d| d.repeat(240)).join("/");
    let dir = s3.root.path().join(IN).join("in").join(&folder);
    std::fs::create_dir_all(&dir).unwrap();
    let count = 9500;
    for n in 0..count {
        std::fs::write(
            dir.join(format!("{}-{n:05}.ndjson", "k".repeat(200))),
            "{}\n",
        )
        .unwrap();
    }
    let event =
        json!({"plan": {"bucket": IN, "prefix": "in/", "output": "s3://out-bucket/jobs/big/"}});
    let reply = serde_json::to_value(run(&s3, &[], &event, "plan-big").await.unwrap()).unwrap();
    assert_eq!(reply["plan"]["objects"], json!(count), "{reply}");
    let (body, _) = s3.get(OUT, "jobs/big/plan.json").await;
    assert!(
        body.len() > rows_to_parquet::store::transaction::PART_BYTES,
        "{}",
        body.len()
    );
    let elements: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        elements.len() as u64,
        reply["plan"]["batches"].as_u64().unwrap()
    );
    let keys: Vec<&str> = elements
        .iter()
        .flat_map(|e| e["Items"].as_array().unwrap())
        .map(|i| i["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), count);
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "in key order, each once"
    );
    for element in &elements {
        assert!(
            element.to_string().len() < 192 << 10,
            "a child's items fit its input"
        );
    }
    assert!(s3.uploads(OUT).await.is_empty());
}
