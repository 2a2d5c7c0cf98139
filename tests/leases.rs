//! Writes that take turns, against the embedded S3 server (which answers S3's conditional
//! writes as S3 does): leases taken, waited for, taken over once their holder's time is past,
//! given back, a whole folder and its partitions taking turns; and concurrent writes through
//! the function ending as if they had run one after the other.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::proxy::{Fault, Proxy};
use common::{LocalS3, read_parquet};
use http::Method;
use rows_to_parquet::handler::Function;
use rows_to_parquet::store::lease::{Claim, Holder, Turn};
use rows_to_parquet::store::s3::S3Store;
use serde_json::{Value, json};

const BUCKET: &str = "my-bucket";

fn status<E: std::fmt::Debug, R>(
    result: Result<R, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> u16 {
    match result {
        Ok(_) => 200,
        Err(SdkError::ServiceError(e)) => e.raw().status().as_u16(),
        Err(e) => panic!("no answer: {e:?}"),
    }
}

fn ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A holder whose time is past `SystemTime::now() + life` (a negative life: `past`).
fn holder(by: &str, life: Duration, past: bool) -> Holder {
    let now = SystemTime::now();
    Holder {
        by: by.to_owned(),
        sandbox: format!("sandbox of {by}"),
        expires_ms: ms(if past { now - life } else { now + life }),
        works: vec![format!("work-of-{by}")],
    }
}

fn alive(by: &str) -> Holder {
    holder(by, Duration::from_secs(600), false)
}

fn soon(millis: u64) -> Option<SystemTime> {
    Some(SystemTime::now() + Duration::from_millis(millis))
}

/// Whether `turn` is still waiting after `millis`.
async fn still_waiting<T>(turn: &mut tokio::task::JoinHandle<T>, millis: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(millis), turn)
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_answers_conditional_writes_as_s3_does() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let c = &s3.client;
    let put = |body: &'static str, none: Option<&str>, tag: Option<&str>| {
        c.put_object()
            .bucket(BUCKET)
            .key("k")
            .body(ByteStream::from_static(body.as_bytes()))
            .set_if_none_match(none.map(str::to_owned))
            .set_if_match(tag.map(str::to_owned))
            .send()
    };
    assert_eq!(
        status(put("a", None, Some("\"x\"")).await),
        404,
        "If-Match on no object"
    );
    let first = put("a", Some("*"), None).await.unwrap().e_tag.unwrap();
    let taken = put("b", Some("*"), None).await;
    assert_eq!(
        taken.as_ref().err().and_then(|e| e.code()),
        Some("PreconditionFailed")
    );
    assert_eq!(status(taken), 412);
    assert_eq!(status(put("b", None, Some("\"0123\"")).await), 412);
    let second = put("b", None, Some(&first)).await.unwrap().e_tag.unwrap();
    assert_ne!(first, second);
    assert_eq!(&s3.get(BUCKET, "k").await.0[..], b"b");

    let delete = |tag: &str| {
        c.delete_object()
            .bucket(BUCKET)
            .key("k")
            .if_match(tag)
            .send()
    };
    assert_eq!(
        status(delete(&first).await),
        412,
        "a stale ETag deletes nothing"
    );
    assert_eq!(s3.keys(BUCKET).await, ["k"]);
    assert_eq!(status(delete(&second).await), 200);
    assert!(s3.keys(BUCKET).await.is_empty());

    // A completion onto an existing key under If-None-Match is refused, the upload kept.
    put("a", None, None).await.unwrap();
    let upload = c
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("k")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id.unwrap();
    let part = (c
        .upload_part()
        .bucket(BUCKET)
        .key("k")
        .upload_id(&id)
        .part_number(1))
    .body(ByteStream::from_static(b"c"))
    .send()
    .await
    .unwrap();
    let parts = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .set_e_tag(part.e_tag)
                .build(),
        )
        .build();
    let complete = (c
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key("k")
        .upload_id(&id))
    .multipart_upload(parts)
    .if_none_match("*")
    .send()
    .await;
    assert_eq!(status(complete), 412);
    assert_eq!(&s3.get(BUCKET, "k").await.0[..], b"a");
    assert_eq!(s3.uploads(BUCKET).await, ["k"]);

    // Many writers racing for one free key: exactly one gets it.
    let racers = (0..16).map(|i| {
        let c = c.clone();
        tokio::spawn(async move {
            (c.put_object().bucket(BUCKET).key("race").if_none_match("*"))
                .body(ByteStream::from(format!("{i}").into_bytes()))
                .send()
                .await
                .is_ok()
        })
    });
    let won = futures::future::join_all(racers).await;
    assert_eq!(won.into_iter().filter(|w| *w.as_ref().unwrap()).count(), 1);
}

fn store(s3: &LocalS3) -> S3Store {
    S3Store::new(s3.client.clone(), None)
}

async fn lease_of(s3: &LocalS3, claim: &Claim) -> Option<Value> {
    let keys = s3.keys(BUCKET).await;
    match keys.contains(&claim.key()) {
        true => serde_json::from_slice(&s3.get(BUCKET, &claim.key()).await.0).ok(),
        false => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_is_waited_for_and_taken_once_given_back() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let day = Claim::replace(BUCKET, "out/x/", "dt=1/");
    let mut first = Turn::take(&store(&s3), vec![day.clone()], alive("a"), None)
        .await
        .unwrap();
    assert_eq!(lease_of(&s3, &day).await.unwrap()["by"], "a");

    let (store2, claim) = (store(&s3), day.clone());
    let mut second =
        tokio::spawn(
            async move { Turn::take(&store2, vec![claim], alive("b"), soon(10_000)).await },
        );
    assert!(still_waiting(&mut second, 400).await, "b took a held lease");
    first.release().await;
    let mut second = second.await.unwrap().unwrap();
    assert_eq!(lease_of(&s3, &day).await.unwrap()["by"], "b");
    second.release().await;
    assert_eq!(lease_of(&s3, &day).await, None, "given back: nothing left");
    assert!(s3.keys(BUCKET).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_holders_time_is_past_is_taken_over_naming_its_works() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let folder = Claim::replace(BUCKET, "out/x/", "");
    let dead = holder("killed", Duration::from_secs(1), true);
    let store = store(&s3);
    (store.write_lease(BUCKET, &folder.key(), &dead, None))
        .await
        .unwrap()
        .unwrap();

    let mut turn = Turn::take(&store, vec![folder.clone()], alive("next"), soon(0))
        .await
        .unwrap();

    assert_eq!(lease_of(&s3, &folder).await.unwrap()["by"], "next");
    let abandoned = (
        BUCKET.to_owned(),
        "out/x/".to_owned(),
        "work-of-killed".to_owned(),
    );
    assert_eq!(turn.abandoned, [abandoned]);
    turn.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_past_the_waiters_time_is_a_write_conflict_and_nothing_stays_held() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let (x, y) = (
        Claim::replace(BUCKET, "out/x/", ""),
        Claim::replace(BUCKET, "out/y/", ""),
    );
    let mut held = Turn::take(&store(&s3), vec![y.clone()], alive("a"), None)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let refused = Turn::take(
        &store(&s3),
        vec![y.clone(), x.clone()],
        alive("b"),
        soon(300),
    )
    .await;

    let e = refused.err().expect("b cannot have y");
    assert_eq!(e.error_type(), "WriteConflict", "{e}");
    assert!(e.to_string().contains("s3://my-bucket/out/y/"), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(250), "b waited");
    assert_eq!(lease_of(&s3, &x).await, None, "b gave back x");
    assert_eq!(lease_of(&s3, &y).await.unwrap()["by"], "a");
    held.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_folder_and_its_partitions_take_turns_both_ways_and_partitions_do_not() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let whole = Claim::replace(BUCKET, "out/x/", "");
    let day1 = Claim::replace(BUCKET, "out/x/", "dt=1/");
    let day2 = Claim::replace(BUCKET, "out/x/", "dt=2/");
    let take = |claim: &Claim, by: &'static str| {
        let (store, claim) = (store(&s3), claim.clone());
        tokio::spawn(async move { Turn::take(&store, vec![claim], alive(by), soon(10_000)).await })
    };

    // A partition held: the whole folder waits for it.
    let mut day = take(&day1, "day").await.unwrap().unwrap();
    let mut folder = take(&whole, "folder");
    assert!(
        still_waiting(&mut folder, 400).await,
        "the folder went past a partition"
    );
    day.release().await;
    let mut folder = folder.await.unwrap().unwrap();

    // The whole folder held: a partition waits for it.
    let mut other = take(&day2, "other day");
    assert!(
        still_waiting(&mut other, 400).await,
        "a partition went past the folder"
    );
    folder.release().await;
    let mut other = other.await.unwrap().unwrap();

    // Two partitions do not wait for each other.
    let mut first = tokio::time::timeout(Duration::from_secs(2), take(&day1, "first day"))
        .await
        .expect("a partition waited for another")
        .unwrap()
        .unwrap();
    first.release().await;
    other.release().await;
    assert!(s3.keys(BUCKET).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_naming_two_folders_in_opposite_orders_never_wait_on_each_other() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let x = Claim::replace(BUCKET, "out/x/", "");
    let y = Claim::replace(BUCKET, "out/y/", "");
    let writers = (0..6).map(|i| {
        let store = store(&s3);
        let claims = match i % 2 {
            0 => vec![x.clone(), y.clone()],
            _ => vec![y.clone(), x.clone()],
        };
        tokio::spawn(async move {
            let by = format!("writer {i}");
            let mut turn = Turn::take(&store, claims, alive(&by), soon(20_000)).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            turn.release().await;
            Ok::<_, rows_to_parquet::Error>(())
        })
    });
    let all = tokio::time::timeout(Duration::from_secs(15), futures::future::join_all(writers))
        .await
        .expect("writers waited on each other");
    for writer in all {
        writer.unwrap().unwrap();
    }
    assert!(s3.keys(BUCKET).await.is_empty());
}

/// Rows tagged with their writer, in one day (`dt`).
fn rows(writer: u64, count: u64, day: &str) -> Vec<Value> {
    (0..count)
        .map(|i| json!({"id": i, "dt": day, "writer": writer}))
        .collect()
}

fn targets(reversed: bool) -> Value {
    let mut targets = vec![
        json!({"prefix": "s3://my-bucket/out/plain/", "compression": "uncompressed"}),
        json!({"prefix": "s3://my-bucket/out/snappy/", "compression": "snappy"}),
    ];
    if reversed {
        targets.reverse();
    }
    Value::Array(targets)
}

fn deadline_ms(seconds: u64) -> u64 {
    ms(SystemTime::now() + Duration::from_secs(seconds))
}

/// The writers whose rows a folder holds in day `day`, and how many rows of each.
async fn writers_in(s3: &LocalS3, folder: &str, day: &str) -> Vec<(u64, usize)> {
    let mut found = std::collections::BTreeMap::new();
    for key in s3.keys(BUCKET).await {
        if !key.starts_with(&format!("{folder}dt={day}/")) {
            continue;
        }
        let (rows, _) = read_parquet(s3.get(BUCKET, &key).await.0);
        for row in rows {
            *found.entry(row["writer"].as_u64().unwrap()).or_insert(0) += 1;
        }
    }
    found.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_through_the_function_leave_one_writes_output_in_every_target() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let vars = [("ALLOWED_PREFIXES", "s3://my-bucket/out/")];
    let sandboxes: Vec<Function> = (0..2).map(|_| s3.function(&vars)).collect();
    let mut earlier = rows(9, 30, "2024-05-01");
    earlier.extend(rows(9, 20, "2024-05-02"));
    let seed = json!({"rows": earlier, "partition_by": ["dt"], "targets": targets(false)});
    sandboxes[0]
        .invoke(seed.to_string().as_bytes(), "seed", deadline_ms(60))
        .await
        .unwrap();

    for (round, mode) in ["overwrite_partitions", "overwrite"]
        .iter()
        .cycle()
        .take(8)
        .enumerate()
    {
        let events: Vec<String> = (0..2)
            .map(|w| {
                let event = json!({"rows": rows(w, 40 + w, "2024-05-01"), "partition_by": ["dt"],
                                   "mode": mode, "targets": targets(w == 1)});
                event.to_string()
            })
            .collect();
        let ids = [format!("r{round}-a"), format!("r{round}-b")];
        let (a, b) = tokio::join!(
            sandboxes[0].invoke(events[0].as_bytes(), &ids[0], deadline_ms(60)),
            sandboxes[1].invoke(events[1].as_bytes(), &ids[1], deadline_ms(60)),
        );
        let succeeded: BTreeSet<u64> = [(0, a), (1, b)]
            .into_iter()
            .filter_map(|(w, r)| match r {
                Ok(_) => Some(w),
                Err(e) => {
                    assert_eq!(e.error_type(), "WriteConflict", "round {round}: {e}");
                    None
                }
            })
            .collect();
        let plain = writers_in(&s3, "out/plain/", "2024-05-01").await;
        let snappy = writers_in(&s3, "out/snappy/", "2024-05-01").await;
        assert_eq!(
            plain.len(),
            1,
            "round {round} ({mode}): one write in the day, not {plain:?}"
        );
        assert_eq!(
            plain, snappy,
            "round {round} ({mode}): the same write in both targets"
        );
        let (winner, count) = plain[0];
        assert_eq!(count as u64, 40 + winner, "round {round}: the whole of it");
        assert!(
            succeeded.contains(&winner),
            "round {round}: it answered success"
        );
        let other_day = writers_in(&s3, "out/plain/", "2024-05-02").await;
        // The other day: gone with the folder, or left whole by a partition overwrite.
        let want: &[(u64, usize)] = match *mode {
            "overwrite" => &[],
            _ => &[(9, 20)],
        };
        assert_eq!(other_day, want, "round {round} ({mode})");
        let leases: Vec<String> = (s3.keys(BUCKET).await.into_iter())
            .filter(|k| k.contains("/_leases/"))
            .collect();
        assert!(leases.is_empty(), "round {round}: leases left: {leases:?}");
        // The next round overwrites a day of the other day's folder too.
        let reseed = json!({"rows": rows(9, 20, "2024-05-02"), "partition_by": ["dt"], "targets": targets(false)});
        (sandboxes[0].invoke(
            reseed.to_string().as_bytes(),
            &format!("reseed-{round}"),
            deadline_ms(60),
        ))
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_fails_leaves_what_an_earlier_one_of_the_same_work_made_visible() {
    let s3 = LocalS3::start(&[BUCKET]).await;
    let event = json!({"rows": rows(1, 25, "2024-05-01"), "targets": targets(false)}).to_string();
    let first = s3.function(&[]);
    let done = first
        .invoke(event.as_bytes(), "same-request", 0)
        .await
        .unwrap();
    let made = done.converted().unwrap().objects;
    assert_eq!(made.len(), 2);

    // The same work again (the same request id: the same keys), its second target's PUT
    // failing: before, its clean-up deleted the first target's object, which the first
    // delivery had answered success for.
    let proxy = Proxy::start(&s3.endpoint).await;
    proxy.fault(
        Method::PUT,
        "/out/snappy/part-",
        Fault::Status(500, "InternalError"),
        None,
    );
    let twin = s3.function_with(
        common::client(&proxy.endpoint, common::short_timeouts()),
        &[],
    );
    let e = twin
        .invoke(event.as_bytes(), "same-request", 0)
        .await
        .unwrap_err();

    assert_eq!(e.error_type(), "S3WriteFailed", "{e}");
    let keys = s3.keys(BUCKET).await;
    for object in &made {
        assert!(
            keys.contains(&object.key),
            "{} was removed: {keys:?}",
            object.key
        );
        let (back, _) = read_parquet(s3.get(BUCKET, &object.key).await.0);
        assert_eq!(back.len(), 25);
    }
    assert_eq!(
        proxy.count(Method::DELETE, "/out/plain/part-").0,
        0,
        "nothing of the first was deleted"
    );
    assert!(keys.iter().all(|k| !k.contains("/_leases/")), "{keys:?}");
}
