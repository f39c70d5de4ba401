//! Lambda entry point of `notifications-events`: the notifications queue of bus events (SQS),
//! each event turned into jobs for its recipients; partial batch failures are reported.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_events(
        notifications::state_from_env(),
        |state: notifications::AppState, e| async move {
            notifications::events::handle(&state, &e).await
        },
    )
    .await
}
