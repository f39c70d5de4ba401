//! What appointments does with other contexts' events, from its own queue (at least once,
//! possibly out of order), idempotently.

use jiff::Timestamp;
use shared::{
    ApiError,
    contracts::InvoiceData,
    db::CHANGED_MEANWHILE,
    ids::{AppointmentId, ClinicId},
    outbox::{EventEnvelope, Who},
};

use crate::{
    AppState,
    common::clinic_zone,
    lifecycle::{self, Input},
    rules::{Status, Transition},
    store,
};

/// The event types the appointments queue receives (the bus rule in `template.yaml`).
pub const CONSUMED: &[&str] = &["billing.invoice.paid"];

/// Handles one event; unknown types are ignored.
pub async fn handle(state: &AppState, e: &EventEnvelope, _now: Timestamp) -> Result<(), ApiError> {
    if e.event_type != "billing.invoice.paid" {
        return Ok(());
    }
    let data: InvoiceData = e.data_as().map_err(ApiError::internal)?;
    let (Some(clinic), Some(appointment)) = (e.clinic(), data.appointment_id) else {
        // Invoices that pay for no appointment (subscriptions, manual invoices).
        return Ok(());
    };
    // Only an invoice that really is paid confirms anything.
    if !billing::coverage::invoice_paid(state, &clinic, &data.invoice_id).await? {
        tracing::warn!(event_id = %e.event_id, "billing.invoice.paid for an invoice that is not paid: ignored");
        return Ok(());
    }
    confirm_paid(state, &clinic, &appointment, data.invoice_id.as_str()).await
}

/// Paying a visit's invoice confirms the visit: a PENDING appointment whose pay-per-visit
/// invoice this is becomes CONFIRMED (through the same transition as the route, so it must
/// still hold its time). Anything else (already confirmed, cancelled, another invoice) is left
/// as it is, which makes redelivery harmless.
pub async fn confirm_paid(
    state: &AppState,
    clinic: &ClinicId,
    appointment: &AppointmentId,
    invoice: &str,
) -> Result<(), ApiError> {
    let Some(a) = store::get_appointment(&state.table, clinic, appointment).await? else {
        return Ok(());
    };
    let pays_for_it = a
        .billing
        .as_ref()
        .and_then(|b| b.invoice_id.as_deref())
        .is_some_and(|i| i == invoice);
    if a.status != Status::Pending || !pays_for_it {
        return Ok(());
    }
    let tz = clinic_zone(state, clinic).await?;
    match lifecycle::apply(
        state,
        &Who::system(),
        &a,
        Transition::Confirm,
        Input::None,
        &tz,
    )
    .await
    {
        Ok(_) => Ok(()),
        // Changed meanwhile (confirmed by reception, cancelled): nothing left to do.
        Err(ApiError::Guarded(CHANGED_MEANWHILE) | ApiError::IllegalTransition { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
