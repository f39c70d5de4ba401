//! One runner each for the kinds of Lambda entry point: HTTP behind API Gateway, bus events
//! from an SQS queue (reporting partial batch failures), scheduled jobs (fanned out one clinic
//! per message) and the table's stream. Each function's `main.rs` names its state and its handler;
//! nothing else.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};

use crate::{ApiError, app::BoxError, outbox::EventEnvelope};

pub use lambda_runtime::Error;

/// Serves `router(state)` on Lambda (API Gateway HTTP API payloads).
pub async fn run_http<S>(
    state: impl Future<Output = Result<S, BoxError>>,
    router: impl FnOnce(S) -> axum::Router,
) -> Result<(), Error> {
    crate::telemetry::init();
    let state = state.await?;
    lambda_http::run(router(state)).await
}

/// Runs `handle` for each bus event of every SQS batch, reporting the failed messages so only
/// those are retried (and reach the dead-letter queue after their receives).
pub async fn run_events<S, H, Fut>(
    state: impl Future<Output = Result<S, BoxError>>,
    handle: H,
) -> Result<(), Error>
where
    S: Clone + Send + Sync + 'static,
    H: Fn(S, EventEnvelope) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ApiError>> + Send,
{
    crate::telemetry::init();
    let state = state.await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (state, handle) = (state.clone(), handle.clone());
        async move {
            let response = handle_batch(event.payload, |e| handle(state.clone(), e)).await;
            Ok::<_, Error>(response)
        }
    }))
    .await
}

/// A scheduled job run one clinic at a time (see [`crate::jobs`]). The schedule's invocation
/// fans out to the work queue named by `WORK_QUEUE_URL`; that queue's batches (the same
/// function's SQS event source) run `run` for each clinic, reporting the failed ones.
pub async fn run_clinic_job<S, J, Fut, R>(
    state: impl Future<Output = Result<S, BoxError>>,
    job: &'static str,
    run: J,
) -> Result<(), Error>
where
    S: std::ops::Deref<Target = crate::platform::Platform> + Clone + Send + Sync + 'static,
    J: Fn(S, crate::ids::ClinicId) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ApiError>> + Send,
    R: serde::Serialize,
{
    crate::telemetry::init();
    let queue = crate::config::required("WORK_QUEUE_URL")?;
    let state = state.await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (state, run, queue) = (state.clone(), run.clone(), queue.clone());
        async move {
            if event.payload.get("Records").is_some() {
                let batch: SqsEvent = serde_json::from_value(event.payload)?;
                let response =
                    crate::jobs::handle_work(batch, job, |c| run(state.clone(), c)).await;
                Ok::<_, Error>(serde_json::to_value(response)?)
            } else {
                let clinics = crate::jobs::fan_out(&state, &queue, job).await?;
                Ok(serde_json::json!({ "clinics": clinics }))
            }
        }
    }))
    .await
}

/// Feeds every batch of the table's stream to the sink `sink(state)` makes, reporting the first
/// change that failed so the event source mapping retries from there.
pub async fn run_stream<S, K>(
    state: impl Future<Output = Result<S, BoxError>>,
    sink: impl FnOnce(S) -> K,
) -> Result<(), Error>
where
    K: crate::stream::ChangeSink,
{
    crate::telemetry::init();
    let sink = sink(state.await?);
    let sink = &sink;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| async move {
            Ok::<_, Error>(crate::stream::handle_event(sink, event.payload).await)
        },
    ))
    .await
}

/// Handles one SQS batch of bus events with `handle`, reporting the messages that failed (or
/// could not be read) so only those are retried.
pub async fn handle_batch<F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(EventEnvelope) -> Fut,
    Fut: Future<Output = Result<(), ApiError>>,
{
    handle_messages(
        event,
        |body| EventEnvelope::from_bus_message(body).ok(),
        |e| {
            let event_id = e.event_id.clone();
            // The consumer continues the event's work: what it logs, raises and queues carries
            // the event's correlation id and trace.
            let done = crate::correlation::continuing(
                e.correlation_id.clone(),
                e.trace_id.clone(),
                handle(e),
            );
            async move {
                done.await
                    .map_err(|err| tracing::error!(%event_id, error = %err, "event failed"))
            }
        },
    )
    .await
}

/// Handles every message of one SQS batch that `read` understands with `handle`, and reports
/// the ones that failed or could not be read, so only those are retried.
pub async fn handle_messages<T, R, F, Fut>(event: SqsEvent, read: R, handle: F) -> SqsBatchResponse
where
    R: Fn(&str) -> Option<T>,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), ()>>,
{
    let mut response = SqsBatchResponse::default();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let ok = match m.body.as_deref().and_then(&read) {
            Some(message) => handle(message).await.is_ok(),
            None => {
                tracing::error!(message_id = %id, "undecodable message");
                false
            }
        };
        if !ok {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            response.batch_item_failures.push(f);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessage;

    fn message(id: &str, body: Option<String>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = body;
        m
    }

    fn bus_message(kind: &str) -> String {
        let e = EventEnvelope::new(
            kind,
            None,
            crate::outbox::Actor::default(),
            crate::outbox::Subject {
                kind: "test".into(),
                id: "1".into(),
            },
            serde_json::json!({}),
            jiff::Timestamp::UNIX_EPOCH,
        );
        serde_json::json!({ "detail-type": kind, "detail": e }).to_string()
    }

    #[tokio::test]
    async fn only_failed_and_unreadable_messages_are_reported() {
        // GIVEN a batch: one event that succeeds, one whose handler fails, one unreadable body
        // and one with no body at all
        let mut batch = SqsEvent::default();
        batch.records = vec![
            message("ok", Some(bus_message("x.ok"))),
            message("fails", Some(bus_message("x.fail"))),
            message("garbage", Some("not json".into())),
            message("empty", None),
        ];
        // WHEN it is handled
        let seen = std::sync::Mutex::new(Vec::new());
        let response = handle_batch(batch, |e| {
            seen.lock().expect("lock").push(e.event_type.clone());
            async move {
                if e.event_type == "x.fail" {
                    Err(ApiError::internal("boom"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        // THEN every readable event was handled, and exactly the three bad ones are retried
        assert_eq!(*seen.lock().expect("lock"), ["x.ok", "x.fail"]);
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["fails", "garbage", "empty"]);
    }
}
