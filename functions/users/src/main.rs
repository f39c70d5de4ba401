//! Lambda entry point of the `users` function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let state = users::AppState::from_env().await?;
    lambda_http::run(users::router(state)).await
}
