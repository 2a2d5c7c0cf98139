//! The Lambda `bootstrap`: configuration and the S3 client are built once, then every event
//! goes to [`Function::handle`].

use lambda_runtime::{Error, run, service_fn};
use rows_to_parquet::config::Config;
use rows_to_parquet::handler::Function;
use rows_to_parquet::store::S3Store;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    rows_to_parquet::memory::use_one_arena();
    rows_to_parquet::config::init_logging();
    let config = Config::from_env()?;
    let store =
        S3Store::from_env(config.custom_endpoint, config.expected_bucket_owner.clone()).await;
    let function = Function::new(store, config);
    run(service_fn(|event| function.handle(event))).await
}
