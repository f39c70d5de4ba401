//! Lambda entry point of the `auth` function (HTTP).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(auth::AppState::from_env(), auth::router).await
}
