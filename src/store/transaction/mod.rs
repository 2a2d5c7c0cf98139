//! The objects of one invocation, written all or none. One phase a file: writing (here: objects
//! added, parts uploaded, small objects held), `commit` (every object made visible at once)
//! and `abort` (every upload aborted and every object removed, after any failure).

mod abort;
mod commit;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedPart};
use bytes::Bytes;

use std::collections::HashSet;

use futures::future::join_all;

use super::s3::{CONTENT_TYPE, Object, S3Store, describe};
use crate::Error;

pub use abort::{not_removed, with_leftovers};

/// Multipart parts are at least this large (S3's minimum is 5 MiB).
pub const PART_BYTES: usize = 8 << 20;

/// Small objects' bytes a [`Transaction`] keeps in memory until its commit, in all; past it,
/// a small object goes up at once as a multipart upload of one part.
pub const HELD_BYTES: usize = 8 << 20;

/// The objects of one invocation, written all or none: each is a multipart upload once its
/// first part is ready ([`Transaction::part`]), else one PUT; none becomes visible before
/// every object's data is complete ([`Transaction::commit`]); on failure every upload is
/// aborted and every object it may have made visible removed.
///
/// Keys come from the work's identity, so a retry writes the keys of the attempt it replaces:
/// once its own commit is done, it aborts the uploads such an attempt left behind when it was
/// killed ([`Transaction::replaces`]).
pub struct Transaction {
    /// A clone (the client is shared): a transaction may outlive the borrow it came from.
    store: S3Store,
    objects: Vec<Pending>,
    /// Bytes of the small objects waiting for their PUT.
    held: usize,
    /// `(bucket, folder, id)`: uploads under the folder whose key holds the id are an earlier
    /// attempt's at this work, aborted after the commit.
    replaces: Vec<(String, String, String)>,
}

struct Pending {
    bucket: String,
    key: String,
    upload: Option<Multipart>,
    /// A small object's whole bytes, PUT at the commit.
    held: Option<Bytes>,
    /// Its PUT or completion was sent: it may be visible, and is this attempt's to remove.
    sent: bool,
    /// An object was at its key before this attempt wrote it (an earlier or twin delivery of
    /// the same work, whose reply may count on it): never this attempt's to remove.
    existed: bool,
}

impl Pending {
    fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

struct Multipart {
    upload_id: String,
    parts: Vec<CompletedPart>,
}

impl Transaction {
    /// An empty transaction; nothing is sent yet.
    pub fn new(store: &S3Store) -> Transaction {
        Transaction {
            store: store.clone(),
            objects: Vec::new(),
            held: 0,
            replaces: Vec::new(),
        }
    }

    /// Adds the object `s3://bucket/key`; its index for [`Transaction::part`] and
    /// [`Transaction::last`].
    pub fn add(&mut self, bucket: String, key: String) -> usize {
        self.objects.push(Pending {
            bucket,
            key,
            upload: None,
            held: None,
            sent: false,
            existed: false,
        });
        self.objects.len() - 1
    }

    /// Marks the objects whose keys (`bucket`, `key`) `existing` holds as there before this
    /// attempt: its clean-up leaves them.
    pub fn existing(&mut self, existing: &HashSet<(String, String)>) {
        for object in &mut self.objects {
            object.existed |= existing.contains(&(object.bucket.clone(), object.key.clone()));
        }
    }

    /// Looks up each object's key, concurrently: an object already there was written by an
    /// earlier or twin delivery of the same work, and this attempt's clean-up leaves it. Asked
    /// before the commit, not learnt from it: a PUT that fails, or that the SDK retries after
    /// its answer was lost, says nothing sure of what was there. Sound only while no other
    /// delivery of the work commits (its lease held).
    ///
    /// # Errors
    /// `S3WriteFailed` when a look-up fails; the caller then calls [`Transaction::abort`].
    pub async fn survey(&mut self) -> Result<(), Error> {
        let store = &self.store;
        for chunk in self.objects.chunks_mut(16) {
            let lookups = chunk.iter().map(|o| store.exists(&o.bucket, &o.key));
            let found = join_all(lookups).await;
            for (object, found) in chunk.iter_mut().zip(found) {
                object.existed = found?;
            }
        }
        Ok(())
    }

    /// Declares that this work's keys under `s3://bucket/folder` (and its partition folders)
    /// hold `id`: after the commit, any multipart upload there whose key holds it is an earlier
    /// attempt's at this same work, killed before it could clean up, and is aborted. Only after
    /// the commit: until then such an upload may be a concurrent delivery's, still running.
    pub fn replaces(&mut self, bucket: &str, folder: &str, id: &str) {
        let entry = (bucket.to_owned(), folder.to_owned(), id.to_owned());
        if !self.replaces.contains(&entry) {
            self.replaces.push(entry);
        }
    }

    /// A transaction of whole objects (inline rows' files, already in memory), each kept for
    /// one PUT at the commit whatever its size.
    pub fn of_whole(store: &S3Store, objects: Vec<Object>) -> Transaction {
        let mut transaction = Transaction::new(store);
        for object in objects {
            let index = transaction.add(object.bucket, object.key);
            transaction.hold(index, object.body);
        }
        transaction
    }

    /// Whether any object goes up as a multipart upload (a retry of the same work makes the
    /// same objects the same way: without uploads, an earlier attempt left none either).
    pub fn uploads(&self) -> bool {
        self.objects.iter().any(|o| o.upload.is_some())
    }

    /// How many objects it holds: a mark for [`Transaction::abort_from`].
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Uploads the next part of object `index` (starting its multipart upload first if this
    /// is its first part); no object becomes visible.
    ///
    /// # Errors
    /// `S3WriteFailed`; the caller then calls [`Transaction::abort`].
    pub async fn part(&mut self, index: usize, body: Bytes) -> Result<(), Error> {
        self.upload_part(index, body)
            .await
            .map_err(|e| Error::S3WriteFailed(format!("writing to S3 failed: {e}")))
    }

    /// The last bytes of object `index` (the whole object if no part was sent): its last
    /// part, or kept for a PUT at the commit while the kept bytes stay within
    /// [`HELD_BYTES`], else sent as an upload of one part. Nothing becomes visible.
    ///
    /// # Errors
    /// As [`Transaction::part`].
    pub async fn last(&mut self, index: usize, body: Bytes) -> Result<(), Error> {
        if self.objects[index].upload.is_none() && self.held + body.len() <= HELD_BYTES {
            self.hold(index, body);
            return Ok(());
        }
        self.part(index, body).await
    }

    /// Keeps `body` as object `index`'s whole bytes, for a PUT at the commit.
    fn hold(&mut self, index: usize, body: Bytes) {
        self.held += body.len();
        self.objects[index].held = Some(body);
    }

    /// [`Transaction::part`], failing with `uri: what went wrong`.
    async fn upload_part(&mut self, index: usize, body: Bytes) -> Result<(), String> {
        let store = &self.store;
        let object = &mut self.objects[index];
        let failed = |uri: String, what: String| format!("{uri}: {what}");
        if object.upload.is_none() {
            let out = store
                .client
                .create_multipart_upload()
                .bucket(&object.bucket)
                .key(&object.key)
                .content_type(CONTENT_TYPE)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .set_expected_bucket_owner(store.expected_bucket_owner.clone())
                .send()
                .await
                .map_err(|e| failed(object.uri(), describe(&e)))?;
            let upload_id = out
                .upload_id
                .ok_or_else(|| failed(object.uri(), "S3 returned no upload id".into()))?;
            object.upload = Some(Multipart {
                upload_id,
                parts: Vec::new(),
            });
        }
        let uri = object.uri();
        let upload = object.upload.as_mut().expect("started above");
        let number = upload.parts.len() as i32 + 1;
        let out = store
            .client
            .upload_part()
            .bucket(&object.bucket)
            .key(&object.key)
            .upload_id(&upload.upload_id)
            .part_number(number)
            .content_length(body.len() as i64)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .set_expected_bucket_owner(store.expected_bucket_owner.clone())
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| failed(format!("{uri} part {number}"), describe(&e)))?;
        upload.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .set_checksum_crc32_c(out.checksum_crc32_c)
                .build(),
        );
        Ok(())
    }
}
