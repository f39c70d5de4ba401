//! Lambda entry point of the `billing` function (HTTP).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(billing::state_from_env(), billing::router).await
}
