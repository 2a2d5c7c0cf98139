//! An Iceberg table's files in S3, through this function's own S3 client: iceberg-rust reads
//! and writes table metadata, manifests and data files through [`TableFiles`], so one client,
//! one credential chain and one endpoint setting (`AWS_ENDPOINT_URL_S3`) serve folders and
//! tables alike. Every file written is logged, so that a commit that fails removes them all.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::s3::{S3Store, split_uri};
use super::transaction::{PART_BYTES, Transaction};

/// The S3 store as an iceberg [`Storage`]: `s3://bucket/key` paths (also `s3a://`, `s3n://`).
/// It serializes to nothing (iceberg requires the trait, never uses it here).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableFiles {
    #[serde(skip)]
    store: Option<S3Store>,
    /// Every path written through this value or its clones, in order.
    #[serde(skip)]
    written: Arc<Mutex<Vec<String>>>,
    /// A dry run's: files are measured by their writers and dropped, never sent.
    #[serde(skip)]
    discard: bool,
}

impl TableFiles {
    pub fn new(store: &S3Store) -> TableFiles {
        TableFiles {
            store: Some(store.clone()),
            written: Arc::default(),
            discard: false,
        }
    }

    /// Files that go nowhere: what a dry run would write, without writing it.
    pub fn discarding() -> TableFiles {
        TableFiles {
            discard: true,
            ..TableFiles::default()
        }
    }

    /// The paths written so far (a file is logged before its first byte is sent).
    pub fn written(&self) -> Vec<String> {
        self.written.lock().expect("not poisoned").clone()
    }

    /// Stops tracking `path`: it now belongs to a table (the first metadata file of one
    /// created), and no clean-up may remove it.
    pub fn keep(&self, path: &str) {
        self.written
            .lock()
            .expect("not poisoned")
            .retain(|written| written != path);
    }

    /// Stops tracking what was written, so that nothing of it is removed: for a commit whose
    /// outcome is unknown (a snapshot may refer to the files).
    pub fn forget(&self) {
        self.written.lock().expect("not poisoned").clear();
    }

    /// Deletes every file written, as far as it can; the paths it could not delete.
    pub async fn remove_written(&self) -> Vec<String> {
        self.remove(self.written()).await
    }

    /// Deletes `paths`, as far as it can; those it could not delete.
    pub async fn remove(&self, paths: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut left = Vec::new();
        for path in paths {
            if self.delete(&path).await.is_err() {
                left.push(path);
            }
        }
        left
    }

    /// The S3 store the files go through; `None` for a dry run's, which writes nowhere.
    pub fn s3(&self) -> Option<&S3Store> {
        self.store.as_ref()
    }

    fn store(&self) -> Result<&S3Store> {
        self.store
            .as_ref()
            .ok_or_else(|| iceberg::Error::new(ErrorKind::Unexpected, "table files without S3"))
    }

    fn log(&self, path: &str) {
        self.written
            .lock()
            .expect("not poisoned")
            .push(path.to_owned());
    }
}

/// `(bucket, key)` of an `s3://` path.
fn locate(path: &str) -> Result<(&str, &str)> {
    split_uri(path).ok_or_else(|| {
        iceberg::Error::new(
            ErrorKind::DataInvalid,
            format!("{path} is not an s3://bucket/key path"),
        )
    })
}

fn failed(e: crate::Error) -> iceberg::Error {
    iceberg::Error::new(ErrorKind::Unexpected, e.to_string())
}

#[typetag::serde]
#[async_trait]
impl Storage for TableFiles {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (bucket, key) = locate(path)?;
        Ok(self
            .store()?
            .size(bucket, key)
            .await
            .map_err(failed)?
            .is_some())
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (bucket, key) = locate(path)?;
        match self.store()?.size(bucket, key).await.map_err(failed)? {
            Some(size) => Ok(FileMetadata { size }),
            None => Err(iceberg::Error::new(
                ErrorKind::DataInvalid,
                format!("{path} does not exist"),
            )),
        }
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (bucket, key) = locate(path)?;
        let all = self.store()?.read_all(bucket, key, usize::MAX).await;
        all.map(Bytes::from).map_err(failed)
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (bucket, key) = locate(path)?;
        Ok(Box::new(Ranges {
            store: self.store()?.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let mut writer = self.writer(path).await?;
        writer.write(bs).await?;
        writer.close().await
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (bucket, key) = locate(path)?;
        if self.discard {
            return Ok(Box::new(Discard));
        }
        self.log(path);
        let mut transaction = Transaction::new(self.store()?);
        let index = transaction.add(bucket.to_owned(), key.to_owned());
        Ok(Box::new(Upload {
            transaction: Some(transaction),
            index,
            pending: BytesMut::new(),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (bucket, key) = locate(path)?;
        self.store()?.delete(bucket, key).await.map_err(failed)
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        Err(iceberg::Error::new(
            ErrorKind::FeatureUnsupported,
            format!("deleting everything under {path}: this function never does"),
        ))
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_owned()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_owned()))
    }
}

/// Hands iceberg the same [`TableFiles`] (and so the same log) for every file IO it builds.
#[derive(Debug, Serialize, Deserialize)]
pub struct TableFilesFactory(pub TableFiles);

#[typetag::serde]
impl StorageFactory for TableFilesFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.0.clone()))
    }
}

/// A dry run's file: its bytes dropped.
struct Discard;

#[async_trait]
impl FileWrite for Discard {
    async fn write(&mut self, _: Bytes) -> Result<()> {
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Range reads of one object.
struct Ranges {
    store: S3Store,
    bucket: String,
    key: String,
}

#[async_trait]
impl FileRead for Ranges {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        let read = self.store.read_range(&self.bucket, &self.key, range).await;
        read.map_err(failed)
    }
}

/// One file written as the folders' objects are: parts of [`PART_BYTES`] as they fill, the
/// whole visible at `close`; a failure aborts what was sent.
struct Upload {
    /// `None` once closed.
    transaction: Option<Transaction>,
    index: usize,
    pending: BytesMut,
}

impl Upload {
    async fn send(&mut self, last: bool) -> std::result::Result<(), crate::Error> {
        let transaction = self.transaction.as_mut().ok_or_else(|| {
            crate::Error::S3WriteFailed("a table file was written after it was closed".into())
        })?;
        let body = self.pending.split().freeze();
        match last {
            true => {
                transaction.last(self.index, body).await?;
                transaction.commit(None).await.map(drop)
            }
            false => transaction.part(self.index, body).await,
        }
    }

    async fn sent(&mut self, last: bool) -> Result<()> {
        let sent = self.send(last).await;
        if sent.is_err()
            && let Some(mut transaction) = self.transaction.take()
        {
            transaction.abort().await;
        }
        if last {
            self.transaction = None;
        }
        sent.map_err(failed)
    }
}

#[async_trait]
impl FileWrite for Upload {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.pending.extend_from_slice(&bs);
        match self.pending.len() >= PART_BYTES {
            true => self.sent(false).await,
            false => Ok(()),
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.sent(true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_bucket_and_a_key() {
        assert_eq!(
            locate("s3://b/w/db.db/t/data/x.parquet").unwrap(),
            ("b", "w/db.db/t/data/x.parquet")
        );
        assert_eq!(locate("s3a://b/k").unwrap(), ("b", "k"));
        for bad in ["b/k", "s3://b", "s3://b/", "s3:///k", "gs://b/k"] {
            assert!(locate(bad).is_err(), "{bad}");
        }
    }
}
