//! Lambda entry point of the `clinics` function (HTTP).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(clinics::AppState::from_env(), clinics::router).await
}
