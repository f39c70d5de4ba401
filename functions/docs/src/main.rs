//! Lambda entry point of the `docs` function (HTTP).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(async { Ok(()) }, |()| docs::router()).await
}
