//! Lambda entry point of the `appointments` function (HTTP).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(appointments::AppState::from_env(), appointments::router).await
}
