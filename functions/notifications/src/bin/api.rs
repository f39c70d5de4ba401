//! Lambda entry point of `notifications-api` (HTTP): a person's inbox and push devices.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(notifications::state_from_env(), notifications::router).await
}
