//! Lambda entry point of the `auth` function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let state = auth::AppState::from_env().await?;
    lambda_http::run(auth::router(state)).await
}
