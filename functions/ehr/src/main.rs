//! Lambda entry point of the `ehr` function (HTTP).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(ehr::AppState::from_env(), ehr::router).await
}
