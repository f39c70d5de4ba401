//! Lambda entry point of `billing-events`: billing's queue of bus events (SQS), reporting
//! partial batch failures so only the failed messages are retried.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_events(
        billing::state_from_env(),
        |state: billing::AppState, e| async move {
            billing::events::handle(&state, &e, state.clock.now()).await
        },
    )
    .await
}
