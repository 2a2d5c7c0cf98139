//! An S3-protocol server on a directory (one sub-directory per bucket): `s3s-fs` over HTTP on
//! loopback, with fixed credentials. Used by the tests and by `examples/local-s3.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
/// answered from the uploads it started and has not completed or aborted, so a test can
/// prove that no upload is left behind. Every other operation is s3s-fs's own.
struct WithUploads {
    fs: s3s_fs::FileSystem,
    /// upload id -> (bucket, key) of each upload in progress.
    uploads: Mutex<BTreeMap<String, (String, String)>>,
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
        upload_part: UploadPartInput -> UploadPartOutput;
        list_parts: ListPartsInput -> ListPartsOutput;
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.fs.create_multipart_upload(req).await?;
        if let Some(id) = &out.output.upload_id {
            self.uploads
                .lock()
                .unwrap()
                .insert(id.clone(), (bucket, key));
        }
        Ok(out)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let id = req.input.upload_id.clone();
        let out = self.fs.complete_multipart_upload(req).await?;
        self.uploads.lock().unwrap().remove(&id);
        Ok(out)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let id = req.input.upload_id.clone();
        let out = self.fs.abort_multipart_upload(req).await?;
        self.uploads.lock().unwrap().remove(&id);
        Ok(out)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let bucket = req.input.bucket;
        let uploads: Vec<MultipartUpload> = self
            .uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (b, _))| *b == bucket)
            .map(|(id, (_, key))| MultipartUpload {
                key: Some(key.clone()),
                upload_id: Some(id.clone()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(bucket),
            uploads: Some(uploads),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }
}

/// Serves `root` on `listener` until the runtime ends; returns the endpoint URL.
pub fn serve(root: &Path, listener: TcpListener) -> String {
    let service = {
        let mut builder = S3ServiceBuilder::new(WithUploads {
            fs: s3s_fs::FileSystem::new(root).unwrap(),
            uploads: Mutex::default(),
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
