//! The Lambda `bootstrap`: configuration and the S3 client are built once, then every
//! invocation's raw body goes to [`Function::handle`].

use lambda_runtime::layers::TracingLayer;
use lambda_runtime::{Error, LambdaEvent, Runtime, service_fn};
use rows_to_parquet::handler::Function;
use rows_to_parquet::lambda::config::Config;
use rows_to_parquet::lambda::runtime::RawBodies;
use rows_to_parquet::store::s3::S3Store;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    rows_to_parquet::lambda::memory::tune_allocator();
    rows_to_parquet::lambda::config::init_logging();
    let config = Config::from_env()?;
    let store =
        S3Store::from_env(config.custom_endpoint, config.expected_bucket_owner.clone()).await;
    let function = Function::new(store, config);
    let bodies = RawBodies::default();
    let handler = service_fn(|event: LambdaEvent<()>| {
        let body = bodies.take(&event.context.request_id);
        // Boxed: the handler's future is deep enough to overflow the compiler's layout query
        // inside the runtime's own.
        Box::pin(function.handle(LambdaEvent::new(body, event.context)))
    });
    // The tracing layer outermost: every log line of an invocation carries its request id
    // and X-Ray trace id (the span's `requestId`, `xrayTraceId`).
    Runtime::new(handler)
        .layer(bodies.clone())
        .layer(TracingLayer::new())
        .run()
        .await
}
