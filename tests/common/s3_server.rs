//! An S3-protocol server on a directory (one sub-directory per bucket): `s3s-fs` over HTTP on
//! loopback, with fixed credentials. Used by the tests and by `examples/local-s3.rs`.

use std::collections::BTreeMap;
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
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
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

/// s3s-fs with the one operation it lacks that the tests need: `ListMultipartUploads`,
/// answered from the uploads it started and has not completed or aborted, as S3 answers it
/// (a prefix, each upload's `Initiated`, pages ordered by key and upload id with markers), so
/// a test can prove that no upload is left behind. Every other operation is s3s-fs's own.
///
/// Starting, completing and aborting an upload run to their end even when the client goes
/// away mid-request (a test kills the function), as S3's do: dropped halfway, s3s-fs's files
/// and this list of uploads would disagree.
struct WithUploads {
    fs: Arc<s3s_fs::FileSystem>,
    /// upload id -> (bucket, key, initiated) of each upload in progress.
    uploads: Uploads,
}

type Uploads = Arc<Mutex<BTreeMap<String, (String, String, SystemTime)>>>;

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
    /// Completes or aborts upload `id` with `end`, whole; it is then no longer in progress.
    async fn end_upload<T, F>(
        &self,
        id: String,
        end: impl FnOnce(Arc<s3s_fs::FileSystem>) -> F + Send + 'static,
    ) -> S3Result<T>
    where
        T: Send + 'static,
        F: Future<Output = S3Result<T>> + Send + 'static,
    {
        let (fs, uploads) = (self.fs.clone(), self.uploads.clone());
        whole(async move {
            in_progress(&uploads, &id)?;
            let out = end(fs).await?;
            uploads.lock().unwrap().remove(&id);
            Ok(out)
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
        put_object: PutObjectInput -> PutObjectOutput;
        get_object: GetObjectInput -> GetObjectOutput;
        head_object: HeadObjectInput -> HeadObjectOutput;
        copy_object: CopyObjectInput -> CopyObjectOutput;
        delete_object: DeleteObjectInput -> DeleteObjectOutput;
        delete_objects: DeleteObjectsInput -> DeleteObjectsOutput;
        list_objects: ListObjectsInput -> ListObjectsOutput;
        list_objects_v2: ListObjectsV2Input -> ListObjectsV2Output;
        list_buckets: ListBucketsInput -> ListBucketsOutput;
        head_bucket: HeadBucketInput -> HeadBucketOutput;
        create_bucket: CreateBucketInput -> CreateBucketOutput;
        get_bucket_location: GetBucketLocationInput -> GetBucketLocationOutput;
        list_parts: ListPartsInput -> ListPartsOutput;
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
        let id = req.input.upload_id.clone();
        self.end_upload(
            id,
            |fs| async move { fs.complete_multipart_upload(req).await },
        )
        .await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let id = req.input.upload_id.clone();
        self.end_upload(id, |fs| async move { fs.abort_multipart_upload(req).await })
            .await
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
