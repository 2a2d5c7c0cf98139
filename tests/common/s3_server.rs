//! An S3-protocol server on a directory (one sub-directory per bucket): `s3s-fs` over HTTP on
//! loopback, with fixed credentials. Used by the tests and by `examples/local-s3.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use tokio::net::TcpListener;

/// The fixed local credentials; the SDK must sign with these or every request is refused.
pub const ACCESS_KEY: &str = "local-test-key";
pub const SECRET_KEY: &str = "local-test-secret";

/// Makes s3s-fs answer like S3 where it is lenient: a request without valid credentials is
/// `AccessDenied`, and one naming a bucket that does not exist is `NoSuchBucket` (s3s-fs would
/// otherwise create the directory on PUT).
struct LikeS3 {
    root: PathBuf,
}

#[async_trait::async_trait]
impl S3Access for LikeS3 {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "credentials required"));
        }
        let bucket = match cx.s3_path() {
            S3Path::Root => return Ok(()),
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket,
        };
        if !self.root.join(&**bucket).is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(())
    }
}

/// s3s-fs with what it lacks that the tests need. `ListMultipartUploads`, answered from the
/// uploads it started and has not completed or aborted, as S3 answers it (a prefix, each
/// upload's `Initiated`, pages ordered by key and upload id with markers), so a test can prove
/// that no upload is left behind. And S3's conditional writes, which s3s-fs ignores:
/// `If-None-Match: *` and `If-Match: <etag>` on `PutObject` and `CompleteMultipartUpload`, and
/// `If-Match` on `DeleteObject`, answered `412 PreconditionFailed` (`404 NoSuchKey` for
/// `If-Match` on a missing key), each check and its write made one step under a lock of the
/// key, so two writers racing for one key get one success, as on S3. Every other operation is
/// s3s-fs's own.
///
/// Starting, completing and aborting an upload, and a PUT, run to their end even when the
/// client goes away mid-request (a test kills the function), as S3's do: dropped halfway,
/// s3s-fs's files and this list of uploads would disagree, or a key's lock stay taken.
struct WithUploads {
    fs: Arc<s3s_fs::FileSystem>,
    /// upload id -> (bucket, key, initiated) of each upload in progress.
    uploads: Uploads,
    keys: KeyLocks,
}

type Uploads = Arc<Mutex<BTreeMap<String, (String, String, SystemTime)>>>;

/// One lock per `(bucket, key)` ever written: a conditional write's check and write happen
/// under it, and so does every other write of the key.
type KeyLocks = Arc<Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>>;

fn key_lock(keys: &KeyLocks, bucket: &str, key: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut keys = keys.lock().unwrap();
    keys.entry((bucket.to_owned(), key.to_owned()))
        .or_default()
        .clone()
}

/// The ETag a condition names, without quotes or the weak mark.
fn condition_tag(condition: &ETagCondition) -> Option<&str> {
    match condition {
        ETagCondition::Any => None,
        ETagCondition::ETag(ETag::Strong(tag) | ETag::Weak(tag)) => Some(tag.as_str()),
    }
}

/// S3's answer to a write of `bucket/key` under `If-Match` / `If-None-Match`, given the key's
/// current ETag (`None`: no such object).
fn precondition(
    current: Option<&str>,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    if let Some(condition) = if_none_match {
        let exists = match (condition_tag(condition), current) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(tag), Some(now)) => tag == now,
        };
        if exists {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    }
    if let Some(condition) = if_match {
        let Some(now) = current else {
            return Err(s3_error!(NoSuchKey));
        };
        if condition_tag(condition).is_some_and(|tag| tag != now) {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    }
    Ok(())
}

/// A `HeadObject` of `bucket/key` with `like`'s credentials, for s3s-fs to answer.
fn head_of<T>(like: &S3Request<T>, bucket: &str, key: &str) -> S3Request<HeadObjectInput> {
    S3Request {
        input: HeadObjectInput {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            ..Default::default()
        },
        method: http::Method::HEAD,
        uri: like.uri.clone(),
        headers: http::HeaderMap::new(),
        extensions: http::Extensions::new(),
        credentials: like.credentials.clone(),
        region: like.region.clone(),
        service: like.service.clone(),
        trailing_headers: None,
    }
}

/// The current ETag of the object `head` names (unquoted); `None` when there is none.
async fn current_tag(
    fs: &s3s_fs::FileSystem,
    head: S3Request<HeadObjectInput>,
) -> S3Result<Option<String>> {
    match fs.head_object(head).await {
        Ok(out) => Ok(out.output.e_tag.map(|tag| match tag {
            ETag::Strong(t) | ETag::Weak(t) => t,
        })),
        Err(e) if *e.code() == S3ErrorCode::NoSuchKey => Ok(None),
        Err(e) => Err(e),
    }
}

/// `work` on a task of its own, so that it ends even if the request's connection is dropped.
async fn whole<T: Send + 'static>(
    work: impl Future<Output = S3Result<T>> + Send + 'static,
) -> S3Result<T> {
    tokio::spawn(work).await.expect("an S3 operation panicked")
}

/// S3's answer for an upload already completed or aborted (s3s-fs would say `AccessDenied`).
fn in_progress(uploads: &Uploads, upload_id: &str) -> S3Result<()> {
    match uploads.lock().unwrap().contains_key(upload_id) {
        true => Ok(()),
        false => Err(s3_error!(NoSuchUpload)),
    }
}

impl WithUploads {
    /// Completes or aborts upload `id` with `end` (to be run [`whole`]); it is then no longer
    /// in progress.
    fn end_upload<T, F>(
        &self,
        id: String,
        end: impl FnOnce(Arc<s3s_fs::FileSystem>) -> F + Send + 'static,
    ) -> impl Future<Output = S3Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = S3Result<T>> + Send + 'static,
    {
        let (fs, uploads) = (self.fs.clone(), self.uploads.clone());
        async move {
            in_progress(&uploads, &id)?;
            let out = end(fs).await?;
            uploads.lock().unwrap().remove(&id);
            Ok(out)
        }
    }

    /// `write` of the key `head` names, whole and under the key's lock, once `If-Match` /
    /// `If-None-Match` (`conditions`) hold for the object there.
    async fn guarded<T, F>(
        &self,
        head: S3Request<HeadObjectInput>,
        conditions: (Option<ETagCondition>, Option<ETagCondition>),
        write: F,
    ) -> S3Result<T>
    where
        T: Send + 'static,
        F: Future<Output = S3Result<T>> + Send + 'static,
    {
        let lock = key_lock(&self.keys, &head.input.bucket, &head.input.key);
        let fs = self.fs.clone();
        whole(async move {
            let _held = lock.lock().await;
            if let (None, None) = conditions {
                return write.await;
            }
            let current = current_tag(&fs, head).await?;
            precondition(
                current.as_deref(),
                conditions.0.as_ref(),
                conditions.1.as_ref(),
            )?;
            write.await
        })
        .await
    }
}

/// Passes each named operation to s3s-fs unchanged (spelled as `async_trait` expands an
/// `async fn`, which it cannot see inside a macro).
macro_rules! delegate {
    ($($op:ident: $input:ident -> $output:ident;)*) => {$(
        fn $op<'life0, 'async_trait>(
            &'life0 self,
            req: S3Request<$input>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = S3Result<S3Response<$output>>> + Send + 'async_trait>,
        >
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            self.fs.$op(req)
        }
    )*};
}

#[async_trait::async_trait]
impl S3 for WithUploads {
    delegate! {
        head_object: HeadObjectInput -> HeadObjectOutput;
        copy_object: CopyObjectInput -> CopyObjectOutput;
        delete_objects: DeleteObjectsInput -> DeleteObjectsOutput;
        list_objects: ListObjectsInput -> ListObjectsOutput;
        list_objects_v2: ListObjectsV2Input -> ListObjectsV2Output;
        list_buckets: ListBucketsInput -> ListBucketsOutput;
        head_bucket: HeadBucketInput -> HeadBucketOutput;
        create_bucket: CreateBucketInput -> CreateBucketOutput;
        get_bucket_location: GetBucketLocationInput -> GetBucketLocationOutput;
        list_parts: ListPartsInput -> ListPartsOutput;
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let head = head_of(&req, &req.input.bucket, &req.input.key);
        let conditions = (req.input.if_match.clone(), req.input.if_none_match.clone());
        let fs = self.fs.clone();
        self.guarded(head, conditions, async move { fs.put_object(req).await })
            .await
    }

    /// Read whole under the key's lock, so a read never meets a write of the same key halfway
    /// (S3's reads are of one version, whole).
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let head = head_of(&req, &req.input.bucket, &req.input.key);
        let fs = self.fs.clone();
        let read = async move {
            let mut out = fs.get_object(req).await?;
            if let Some(body) = out.output.body.take() {
                let mut body = s3s::Body::from(body);
                let bytes = (body.store_all_limited(usize::MAX).await)
                    .map_err(|e| s3_error!(InternalError, "reading the object failed: {e}"))?;
                out.output.body = Some(StreamingBlob::from(s3s::Body::from(bytes)));
            }
            Ok(out)
        };
        self.guarded(head, (None, None), read).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let head = head_of(&req, &req.input.bucket, &req.input.key);
        let conditions = (req.input.if_match.clone(), None);
        let fs = self.fs.clone();
        self.guarded(head, conditions, async move { fs.delete_object(req).await })
            .await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let (fs, uploads) = (self.fs.clone(), self.uploads.clone());
        whole(async move {
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            let out = fs.create_multipart_upload(req).await?;
            if let Some(id) = &out.output.upload_id {
                let started = (bucket, key, SystemTime::now());
                uploads.lock().unwrap().insert(id.clone(), started);
            }
            Ok(out)
        })
        .await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        in_progress(&self.uploads, &req.input.upload_id)?;
        self.fs.upload_part(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let head = head_of(&req, &req.input.bucket, &req.input.key);
        let conditions = (req.input.if_match.clone(), req.input.if_none_match.clone());
        let id = req.input.upload_id.clone();
        let end = self.end_upload(
            id,
            |fs| async move { fs.complete_multipart_upload(req).await },
        );
        self.guarded(head, conditions, end).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let id = req.input.upload_id.clone();
        whole(self.end_upload(id, |fs| async move { fs.abort_multipart_upload(req).await })).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = (
            input.key_marker.clone().unwrap_or_default(),
            input.upload_id_marker.clone().unwrap_or_default(),
        );
        let page = usize::try_from(input.max_uploads.unwrap_or(1000)).unwrap_or(1000);
        let mut uploads: Vec<(String, String, SystemTime)> = self
            .uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (b, key, _))| *b == input.bucket && key.starts_with(&prefix))
            .map(|(id, (_, key, at))| (key.clone(), id.clone(), *at))
            .filter(|(key, id, _)| (key, id) > (&after.0, &after.1))
            .collect();
        uploads.sort();
        let truncated = uploads.len() > page;
        uploads.truncate(page);
        let next = uploads.last().filter(|_| truncated).cloned();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            is_truncated: Some(truncated),
            next_key_marker: next.as_ref().map(|(key, _, _)| key.clone()),
            next_upload_id_marker: next.map(|(_, id, _)| id),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|(key, id, at)| MultipartUpload {
                        key: Some(key),
                        upload_id: Some(id),
                        initiated: Some(at.into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

/// Serves `root` on `listener` until the runtime ends; returns the endpoint URL.
pub fn serve(root: &Path, listener: TcpListener) -> String {
    let service = {
        let mut builder = S3ServiceBuilder::new(WithUploads {
            fs: Arc::new(s3s_fs::FileSystem::new(root).unwrap()),
            uploads: Uploads::default(),
            keys: KeyLocks::default(),
        });
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        builder.set_access(LikeS3 {
            root: root.to_owned(),
        });
        builder.build()
    };
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    endpoint
}
