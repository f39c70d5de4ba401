//! Availability routes: read and replace a doctor's weekly hours, breaks and exceptions.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::get,
};
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{Json, present},
    policy::Action,
};

use crate::{
    AppState,
    access::schedule_access,
    availability::{self, AvailabilityBody},
    store,
};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/clinics/{clinicId}/doctors/{doctorId}/availability",
        get(show).put(replace),
    )
}

async fn show(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, doctor)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = schedule_access(&state, &access, &doctor, Action::Read).await?;
    let rec = store::get_schedule(&state.table, &access.clinic, &id).await?;
    Ok(present(&availability::view(&id, rec.as_ref())))
}

async fn replace(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, doctor)): Path<(String, String)>,
    Json(body): Json<AvailabilityBody>,
) -> Result<Response, ApiError> {
    let id = schedule_access(&state, &access, &doctor, Action::Update).await?;
    let rec = availability::replace(&state, &access.clinic, &id, &body).await?;
    Ok(present(&availability::view(&id, Some(&rec))))
}
