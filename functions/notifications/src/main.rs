//! Lambda entry point of `notifications-worker`: the notification queues' batches (SQS),
//! reporting partial batch failures so only the failed messages are retried.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let state = notifications::state_from_env().await?;
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            Ok::<_, lambda_runtime::Error>(
                notifications::worker::handle_batch(state, event.payload).await,
            )
        },
    ))
    .await
}
