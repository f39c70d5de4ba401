//! Lambda entry point of the `billing` function (HTTP).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let state = billing::AppState::from_env().await?;
    lambda_http::run(billing::router(state)).await
}
