//! Lambda entry point of the `appointments` function (HTTP).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let state = appointments::AppState::from_env().await?;
    lambda_http::run(appointments::router(state)).await
}
