//! Slot routes: a doctor's free time on one local date.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::get,
};
use serde::Serialize;
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{Query, present},
    ids::UserId,
    policy::Action,
};

use crate::{
    AppState,
    access::schedule_access,
    availability::{self, SlotQuery},
    store,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/clinics/{clinicId}/doctors/{doctorId}/slots", get(list))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SlotView {
    starts_at: String,
    ends_at: String,
    location_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, doctor)): Path<(String, String)>,
    Query(q): Query<SlotQuery>,
) -> Result<Response, ApiError> {
    // The doctor's membership (for the policy) and their free time are read together; the
    // policy's answer still comes first, so nothing is shown to a caller it refuses.
    let Some(path_id) = UserId::parse(&doctor) else {
        return Err(ApiError::NotFound);
    };
    let (allowed, free) = tokio::join!(
        schedule_access(&state, &access, &doctor, Action::Read),
        availability::slots(&state, &access.clinic, &path_id, &q)
    );
    let id = allowed?;
    let free = free?;
    let slots: Vec<SlotView> = free
        .slots
        .into_iter()
        .map(|s| SlotView {
            starts_at: store::iso(s.start),
            ends_at: store::iso(s.end),
            location_id: s.location_id,
        })
        .collect();
    Ok(present(&serde_json::json!({
        "doctorId": id,
        "date": free.date.to_string(),
        "timeZone": free.tz.iana_name(),
        "slotMinutes": free.slot_minutes,
        "slots": slots,
    })))
}
