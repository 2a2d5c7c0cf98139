//! A local S3-compatible server for the local loop: serves a directory (one sub-directory per
//! bucket) on loopback with fixed credentials, until killed.
//!
//! `cargo run --example local-s3 -- [--port 9555] [--root DIR] [--bucket my-bucket ...]`

#[path = "../tests/common/s3_server.rs"]
mod s3_server;

use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 9555u16;
    let mut root = PathBuf::from("target/local-s3");
    let mut buckets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => port = value()?.parse()?,
            "--root" => root = value()?.into(),
            "--bucket" => buckets.push(value()?),
            other => {
                return Err(format!("unknown argument {other}; see the file's doc comment").into());
            }
        }
    }
    if buckets.is_empty() {
        buckets.push("my-bucket".to_owned());
    }
    for bucket in &buckets {
        std::fs::create_dir_all(root.join(bucket))?;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port} ({e}); is the port in use?"))?;
    let endpoint = s3_server::serve(&root, listener);
    println!(
        "local S3 on {endpoint} serving {} (buckets: {}; access key {}, secret {})",
        root.display(),
        buckets.join(", "),
        s3_server::ACCESS_KEY,
        s3_server::SECRET_KEY
    );
    std::future::pending::<()>().await;
    Ok(())
}
