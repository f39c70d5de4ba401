//! Lambda entry point of `appointments-events`: the appointments queue of bus events (SQS):
//! a paid pay-per-visit invoice confirms its appointment.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_events(
        appointments::AppState::from_env(),
        |state: appointments::AppState, e| async move {
            appointments::events::handle(&state, &e, state.clock.now()).await
        },
    )
    .await
}
