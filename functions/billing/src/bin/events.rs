//! Lambda entry point of `billing-events`: billing's queue of bus events (SQS), reporting
//! partial batch failures so only the failed messages are retried.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let state = billing::AppState::from_env().await?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let response = billing::events::handle_batch(event.payload, |e| async move {
            billing::events::handle(state, &e, state.clock.now()).await
        })
        .await;
        Ok::<_, lambda_runtime::Error>(response)
    }))
    .await
}
