//! Lambda entry point of the `clinics` function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let state = clinics::AppState::from_env().await?;
    lambda_http::run(clinics::router(state)).await
}
