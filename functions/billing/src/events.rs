//! What billing does with other contexts' events.
//!
//! They arrive from the bus through billing's own queue (at least once, possibly out of
//! order), so every handler is idempotent.

use jiff::Timestamp;
use shared::{ApiError, contracts::AppointmentData, outbox::EventEnvelope, platform::Platform};

use crate::coverage;

/// The event types billing's queue receives (the bus rule in `template.yaml` matches these).
pub const CONSUMED: &[&str] = &["appointment.cancelled"];

/// Handles one event. Unknown types are ignored; a malformed event is an error (the message
/// goes back to the queue and, after its retries, to the dead-letter queue).
pub async fn handle(state: &Platform, e: &EventEnvelope, now: Timestamp) -> Result<(), ApiError> {
    match e.event_type.as_str() {
        "appointment.cancelled" => {
            let data: AppointmentData = e.data_as().map_err(ApiError::internal)?;
            let Some(clinic) = e.clinic() else {
                return Err(ApiError::internal("appointment.cancelled without a clinic"));
            };
            // Only an appointment that really is cancelled gives its unit back.
            let status =
                shared::contracts::appointment_status(&state.table, &clinic, &data.appointment_id)
                    .await?;
            if status.as_deref() != Some("CANCELLED") {
                tracing::warn!(event_id = %e.event_id, "appointment.cancelled for an appointment that is not cancelled: ignored");
                return Ok(());
            }
            let restored = coverage::restore(state, &clinic, &data.appointment_id, now).await?;
            tracing::info!(event_id = %e.event_id, restored, "appointment.cancelled handled");
            Ok(())
        }
        _ => Ok(()),
    }
}
