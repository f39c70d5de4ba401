//! Queue routes: the day's check-in queue with positions and estimated waits.

use axum::{Router, extract::State, response::Response, routing::get};
use serde::Serialize;
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{Query, present},
    policy::{Action, Resource, may_ever},
};

use crate::{
    AppState,
    queue::{self, Line, QueueQuery},
    views::opt_time,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/clinics/{clinicId}/queue", get(show))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueView {
    appointment_id: String,
    doctor_id: String,
    patient_id: String,
    location_id: Option<String>,
    status: &'static str,
    position: Option<usize>,
    estimated_wait_minutes: Option<i64>,
    checked_in_at: String,
    started_at: Option<String>,
}

fn view(l: Line) -> QueueView {
    let e = l.entry;
    QueueView {
        appointment_id: e.appointment.to_string(),
        doctor_id: e.doctor.to_string(),
        patient_id: e.patient.to_string(),
        location_id: e.location.as_ref().map(ToString::to_string),
        status: if e.started_at.is_some() {
            "IN_PROGRESS"
        } else {
            "WAITING"
        },
        position: l.position,
        estimated_wait_minutes: l.estimated_wait_minutes,
        checked_in_at: shared::clock::rfc3339(e.checked_in_at),
        started_at: opt_time(e.started_at),
    }
}

async fn show(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<QueueQuery>,
) -> Result<Response, ApiError> {
    if !may_ever(access.role, Resource::Queue, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    let (day, lines) = queue::of_day(&state, &access, &q).await?;
    let entries: Vec<QueueView> = lines.into_iter().map(view).collect();
    Ok(present(
        &serde_json::json!({ "date": day.to_string(), "entries": entries }),
    ))
}
