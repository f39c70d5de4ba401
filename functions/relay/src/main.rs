//! Lambda entry point of the events relay (DynamoDB stream → EventBridge).

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let bus = shared::config::required("EVENT_BUS_NAME")?;
    let clients = shared::aws::Clients::from_env().await;
    let relay = relay::Relay {
        eventbridge: clients.eventbridge.clone(),
        bus,
        dead_letters: relay::DeadLetters {
            sqs: clients.sqs.clone(),
            url: shared::config::required("EVENTS_RELAY_DLQ_URL")?,
        },
    };
    let relay = &relay;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| async move {
            Ok::<_, lambda_runtime::Error>(relay.handle(event.payload).await)
        },
    ))
    .await
}
