//! The floor for a function that needs its secrets: a `lambda_runtime` hello-world that loads
//! the AWS configuration and opens the platform secrets (one KMS decrypt) before serving. The
//! second baseline for cold-start ratios in `make bench`.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let sealed = std::env::var("PLATFORM_SECRETS")?;
    shared::secrets::PlatformSecrets::open(&kms, &sealed).await?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async {
        Ok::<_, lambda_runtime::Error>(serde_json::json!({ "hello": "world" }))
    }))
    .await
}
