//! What billing does with other contexts' events. They arrive from the bus through billing's
//! own queue (at least once, possibly out of order), so every handler is idempotent.

use jiff::Timestamp;
use shared::{ApiError, ids::AppointmentId, outbox::EventEnvelope, platform::Platform};

use crate::coverage;

/// The event types billing's queue receives (the bus rule in `template.yaml` matches these).
pub const CONSUMED: &[&str] = &["appointment.cancelled"];

/// Handles one SQS batch of bus events with `handle`, reporting the messages that failed (or
/// could not be read) so only those are retried. Shared by every queue consumer.
pub async fn handle_batch<F, Fut>(
    event: aws_lambda_events::event::sqs::SqsEvent,
    handle: F,
) -> aws_lambda_events::event::sqs::SqsBatchResponse
where
    F: Fn(EventEnvelope) -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
    let mut response = SqsBatchResponse::default();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let ok = match m.body.as_deref().map(EventEnvelope::from_bus_message) {
            Some(Ok(e)) => {
                let event_id = e.event_id.clone();
                handle(e)
                    .await
                    .map_err(|err| tracing::error!(%event_id, error = %err, "event failed"))
                    .is_ok()
            }
            _ => {
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

/// Handles one event. Unknown types are ignored; a malformed event is an error (the message
/// goes back to the queue and, after its retries, to the dead-letter queue).
pub async fn handle(state: &Platform, e: &EventEnvelope, now: Timestamp) -> Result<(), ApiError> {
    match e.event_type.as_str() {
        "appointment.cancelled" => {
            let appointment = e.data_str("appointmentId").and_then(AppointmentId::parse);
            let (Some(clinic), Some(appointment)) = (e.clinic(), appointment) else {
                return Err(ApiError::internal("appointment.cancelled without ids"));
            };
            let restored = coverage::restore(state, &clinic, &appointment, now).await?;
            tracing::info!(event_id = %e.event_id, restored, "appointment.cancelled handled");
            Ok(())
        }
        _ => Ok(()),
    }
}
