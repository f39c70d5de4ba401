//! Lambda entry point of the `users` function (HTTP).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(users::AppState::from_env(), users::router).await
}
