//! An Iceberg table's files through the function's S3 client (`store::table_files`), against
//! the embedded S3 server: what iceberg-rust writes arrives whole (a large file as a
//! multipart upload), is read back whole and by range, is logged, and is removed on demand.

mod common;

use bytes::Bytes;
use common::LocalS3;
use iceberg::io::Storage;
use rows_to_parquet::store::s3::S3Store;
use rows_to_parquet::store::table_files::TableFiles;
use rows_to_parquet::store::transaction::PART_BYTES;

const LAKE: &str = "lake";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_written_whole_read_back_logged_and_removed() {
    let s3 = LocalS3::start(&[LAKE]).await;
    let files = TableFiles::new(&S3Store::new(s3.client.clone(), None));
    let big = "s3://lake/w/db.db/t/data/big.parquet";
    let small = "s3a://lake/w/db.db/t/metadata/v1.metadata.json";

    // Written in pieces that straddle the part size: several parts, then the rest.
    let body: Vec<u8> = (0..PART_BYTES * 2 + 12345)
        .map(|i| (i % 251) as u8)
        .collect();
    let mut writer = files.writer(big).await.unwrap();
    for piece in body.chunks(3 << 20) {
        writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    assert!(!files.exists(big).await.unwrap(), "visible before close");
    writer.close().await.unwrap();
    files.write(small, Bytes::from_static(b"{}")).await.unwrap();

    assert_eq!(files.read(big).await.unwrap(), body);
    assert_eq!(files.metadata(big).await.unwrap().size, body.len() as u64);
    let range = PART_BYTES as u64 - 5..PART_BYTES as u64 + 5;
    let part = files
        .reader(big)
        .await
        .unwrap()
        .read(range.clone())
        .await
        .unwrap();
    assert_eq!(part, body[range.start as usize..range.end as usize]);
    assert_eq!(files.read(small).await.unwrap(), Bytes::from_static(b"{}"));
    assert!(s3.uploads(LAKE).await.is_empty());
    assert_eq!(files.written(), [big, small]);

    // What a failed commit removes; a clone shares the log.
    let left = files.clone().remove_written().await;
    assert!(left.is_empty(), "{left:?}");
    assert!(!files.exists(big).await.unwrap() && !files.exists(small).await.unwrap());
    assert!(s3.keys(LAKE).await.is_empty());
    assert!(files.read("s3://lake/none").await.is_err());
    assert!(
        files.delete_prefix("s3://lake/w/").await.is_err(),
        "never deletes a folder"
    );
}
