//! Crash safety against the embedded S3 server. An attempt killed mid-write leaves multipart
//! uploads that nobody completes: the retry of the same work aborts them once its own commit is
//! done, and nothing else (not another work's, not one outside its folders). A failed attempt
//! removes only what it may have made visible, never what another delivery of the same work
//! wrote; a commit whose upload another delivery aborted leaves that delivery's objects
//! standing; two deliveries at once end with the right objects and no upload. A sweep aborts
//! what is never retried, once it is older than any invocation runs.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::timeout::TimeoutConfig;
use bytes::Bytes;
use common::proxy::{Fault, Proxy};
use common::{LocalS3, invocation, many_rows};
use http::Method;
use parquet::file::reader::{FileReader, SerializedFileReader};
use rows_to_parquet::handler::reply::Response;
use rows_to_parquet::handler::stream::identity;
use rows_to_parquet::store::s3::S3Store;
use rows_to_parquet::store::transaction::{PART_BYTES, Transaction};
use serde_json::json;

const IN: &str = "in-bucket";
const OUT: &str = "out-bucket";
const BIG: &str = "in/big.ndjson";
const ROWS: usize = 400_000;
/// Row groups small enough that the uncompressed file's parts go up while the object is read.
const VARS: [(&str, &str); 1] = [("ROW_GROUP_ROWS", "100000")];

fn event(key: &str) -> String {
    json!({"source": {"uri": format!("s3://{IN}/{key}")}, "targets": [
        {"prefix": format!("s3://{OUT}/out/parquet/"), "compression": "uncompressed"},
        {"prefix": format!("s3://{OUT}/out/parquet-snappy/"), "compression": "snappy"}]})
    .to_string()
}

/// A local server holding the large source object; the id in its output keys.
async fn with_big_object() -> (LocalS3, String) {
    let s3 = LocalS3::start(&[IN, OUT]).await;
    let etag = s3.put(IN, BIG, many_rows(ROWS), None).await;
    let id = identity(IN, BIG, None, Some(&etag));
    (s3, id)
}

/// The large object converted by a delivery with request id `id`.
async fn converted(s3: &LocalS3, id: &str) -> Response {
    let reply = s3.function(&VARS).handle(invocation(&event(BIG), id)).await;
    reply.unwrap().converted().unwrap()
}

/// Starts an upload of one part at `key`, as an attempt killed mid-write leaves it.
async fn open_upload(s3: &LocalS3, key: &str) -> String {
    let started = s3
        .client
        .create_multipart_upload()
        .bucket(OUT)
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = started.upload_id.unwrap();
    s3.client
        .upload_part()
        .bucket(OUT)
        .key(key)
        .upload_id(&upload_id)
        .part_number(1)
        .body(Bytes::from_static(b"half of a file").into())
        .send()
        .await
        .unwrap();
    upload_id
}

/// The ETag of `s3://out-bucket/key` (`None` if there is no such object).
async fn etag_of(s3: &LocalS3, key: &str) -> Option<String> {
    let head = s3.client.head_object().bucket(OUT).key(key).send().await;
    head.ok().and_then(|h| h.e_tag)
}

/// The rows of each object `response` names, from its footer.
async fn rows_stored(s3: &LocalS3, response: &Response) -> Vec<i64> {
    let mut rows = Vec::new();
    for object in &response.objects {
        let (bytes, _) = s3.get(&object.bucket, &object.key).await;
        rows.push(
            SerializedFileReader::new(bytes)
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows(),
        );
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_aborts_the_uploads_the_killed_attempt_left_and_nothing_else() {
    let (s3, id) = with_big_object().await;
    // The killed attempt's uploads: the keys the retry writes, a partition folder's and a
    // rolled-over file's of the same work; another work's, and one outside the targets.
    for key in [
        format!("out/parquet/part-00000-{id}-c000.parquet"),
        format!("out/parquet-snappy/part-00000-{id}-c000.snappy.parquet"),
        format!("out/parquet/dt=2024-01-01/part-00000-{id}-c001.parquet"),
    ] {
        open_upload(&s3, &key).await;
    }
    let others = [
        "out/parquet/part-00000-0b5a5d1e-0000-4000-8000-000000000000-c000.parquet".to_string(),
        format!("elsewhere/part-00000-{id}-c000.parquet"),
    ];
    for key in &others {
        open_upload(&s3, key).await;
    }
    assert_eq!(s3.uploads(OUT).await.len(), 5);

    let response = converted(&s3, "retry").await;
    assert!(
        response.objects[0].bytes > PART_BYTES,
        "not a multipart upload"
    );
    assert_eq!(rows_stored(&s3, &response).await, [ROWS as i64; 2]);
    let mut left = s3.uploads(OUT).await;
    left.sort();
    let mut expected = others.to_vec();
    expected.sort();
    assert_eq!(left, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_removes_nothing_another_delivery_wrote() {
    let (s3, _) = with_big_object().await;
    let first = converted(&s3, "first").await;
    let stored: Vec<_> = first.objects.iter().map(|o| o.etag.clone()).collect();

    // The same work delivered again fails while its parts go up: its uploads are aborted, and
    // the objects at its keys, which it never asked S3 to make visible, stay.
    let proxy = Proxy::start(&s3.endpoint).await;
    let again = s3.function_with(
        common::client(&proxy.endpoint, TimeoutConfig::disabled()),
        &VARS,
    );
    let failing = format!("/{OUT}/out/parquet/part-");
    proxy.fault_after(
        Method::PUT,
        &failing,
        1,
        Fault::Status(403, "AccessDenied"),
        None,
    );
    let e = again
        .handle(invocation(&event(BIG), "again"))
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "S3WriteFailed", "{e}");
    assert!(
        proxy.count(Method::PUT, &failing).1 > 0,
        "no part was refused"
    );
    assert!(s3.uploads(OUT).await.is_empty());
    for (object, etag) in first.objects.iter().zip(stored) {
        assert_eq!(etag_of(&s3, &object.key).await, etag, "{}", object.key);
    }
}

#[tokio::test]
async fn a_commit_whose_upload_another_delivery_aborted_leaves_its_objects_standing() {
    let s3 = LocalS3::start(&[OUT]).await;
    let key = "out/parquet/part-00000-same-work-c000.parquet";
    // The other delivery's object, and its abort of this attempt's upload after its commit.
    let theirs = s3.put(OUT, key, "the other delivery's object", None).await;
    let store = S3Store::new(s3.client.clone(), None);
    let mut attempt = Transaction::new(&store);
    let index = attempt.add(OUT.into(), key.into());
    attempt
        .part(index, Bytes::from(vec![7u8; PART_BYTES]))
        .await
        .unwrap();
    let listed = s3
        .client
        .list_multipart_uploads()
        .bucket(OUT)
        .send()
        .await
        .unwrap();
    let upload = &listed.uploads()[0];
    store
        .abort_upload(OUT, upload.key().unwrap(), upload.upload_id().unwrap())
        .await
        .unwrap();

    let e = attempt.commit(None).await.unwrap_err();
    assert_eq!(e.error_type(), "S3WriteFailed");
    assert!(
        e.to_string()
            .contains("another delivery of the same work committed it first"),
        "{e}"
    );
    assert_eq!(etag_of(&s3, key).await.as_deref(), Some(theirs.as_str()));
    assert!(s3.uploads(OUT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliveries_at_once_end_with_the_right_objects_and_no_upload() {
    let (s3, _) = with_big_object().await;
    let (a, b) = (s3.function(&VARS), s3.function(&VARS));
    let body = event(BIG);
    let (one, two) = tokio::join!(
        a.handle(invocation(&body, "one")),
        b.handle(invocation(&body, "two"))
    );
    let mut done = None;
    for result in [one, two] {
        match result {
            Ok(reply) => done = reply.converted(),
            // The later one may find its uploads aborted by the earlier one's clean-up.
            Err(e) => assert_eq!(e.error_type(), "S3WriteFailed", "{e}"),
        }
    }
    let response = done.expect("one of them committed");
    assert_eq!(rows_stored(&s3, &response).await, [ROWS as i64; 2]);
    assert_eq!(s3.keys(OUT).await.len(), 2);
    assert!(s3.uploads(OUT).await.is_empty());
}

#[tokio::test]
async fn a_sweep_aborts_old_uploads_in_the_functions_folders_only() {
    let s3 = LocalS3::start(&[OUT]).await;
    let function = s3.function(&[("ALLOWED_PREFIXES", "s3://out-bucket/out/")]);
    open_upload(&s3, "out/parquet/part-00000-abandoned-c000.parquet").await;
    open_upload(&s3, "elsewhere/someone-elses-upload").await;
    let sweep = |min_age: u64| json!({"sweep": {"min_age_seconds": min_age}}).to_string();
    let swept = |reply| serde_json::to_value(reply).unwrap()["swept"].clone();

    // Younger than asked, or than the invocation's own timeout: kept.
    let young = function
        .invoke(sweep(3600).as_bytes(), "young", 0)
        .await
        .unwrap();
    let in_a_minute = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 60_000;
    let timed = function
        .invoke(sweep(0).as_bytes(), "timed", in_a_minute)
        .await
        .unwrap();
    for reply in [swept(young), swept(timed)] {
        assert_eq!(
            (reply["aborted"].clone(), reply["kept"].clone()),
            (json!(0), json!(1)),
            "{reply}"
        );
    }
    assert_eq!(s3.uploads(OUT).await.len(), 2);

    let old = swept(
        function
            .invoke(sweep(0).as_bytes(), "old", 0)
            .await
            .unwrap(),
    );
    assert_eq!(old["folders"], json!(["s3://out-bucket/out/"]));
    assert_eq!(old["aborted"], 1);
    assert_eq!(old["complete"], true);
    assert_eq!(
        old["uploads"][0]["uri"],
        "s3://out-bucket/out/parquet/part-00000-abandoned-c000.parquet"
    );
    assert_eq!(s3.uploads(OUT).await, ["elsewhere/someone-elses-upload"]);

    for (vars, body, word) in [
        (vec![], sweep(0), "ALLOWED_PREFIXES or DEFAULT_TARGETS"),
        (
            vec![("ALLOWED_PREFIXES", "s3://out-bucket/out/")],
            json!({"sweep": {}}).to_string(),
            "min_age_seconds",
        ),
    ] {
        let e = s3
            .function(&vars)
            .invoke(body.as_bytes(), "bad", 0)
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), "InvalidEvent");
        assert!(e.to_string().contains(word), "{e}");
    }
}
