//! The HTTP edge: one router per resource, each handler extracting, authorising, calling one
//! operation and rendering; and the little those handlers share.

pub mod actions;
pub mod appointments;
pub mod availability;
pub mod clinical_notes;
pub mod queue;
pub mod slots;

use axum::{handler::Handler, routing::MethodRouter};
use shared::{ApiError, authn::ClinicAccess};

use crate::{
    AppState,
    access::sees_phi,
    store::AppointmentRecord,
    views::{self, AppointmentView},
};

/// A `POST` that a client may retry with the same `Idempotency-Key` without booking twice.
fn idempotent_post<H, T>(state: &AppState, handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    shared::idempotency::idempotent_post(&state.idempotency, handler)
}

/// The view of `a` for this caller: with its reason, symptoms and notes only if they may see
/// them.
async fn shown(
    state: &AppState,
    access: &ClinicAccess,
    a: &AppointmentRecord,
) -> Result<AppointmentView, ApiError> {
    views::view(state, a, sees_phi(access, a)).await
}
