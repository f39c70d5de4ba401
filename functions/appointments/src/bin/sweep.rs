//! Lambda entry point of the appointment sweep, invoked by an EventBridge schedule.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_job(
        appointments::AppState::from_env(),
        |state: appointments::AppState| async move { appointments::sweep::run(&state).await },
    )
    .await
}
