//! An S3-protocol server on a directory (one sub-directory per bucket): `s3s-fs` over HTTP on
//! loopback, with fixed credentials. Used by the tests and by `examples/local-s3.rs`.

use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};
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

/// Serves `root` on `listener` until the runtime ends; returns the endpoint URL.
pub fn serve(root: &Path, listener: TcpListener) -> String {
    let service = {
        let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).unwrap());
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
