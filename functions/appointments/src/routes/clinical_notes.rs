//! An appointment's clinical notes: the treating clinician adds one; those who treat or nurse
//! the patient, and the patient, read them all. No route changes or removes a note.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::get,
};
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{Json, created, present},
};

use crate::{
    AppState,
    access::load_visible,
    clinical_notes::{self, NewNote},
    common::who,
};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/clinics/{clinicId}/appointments/{appointmentId}/clinical-notes",
        get(list).post(add),
    )
}

async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (a, _) = load_visible(&state, &access, &id).await?;
    let items = clinical_notes::list(&state, &access, &a).await?;
    Ok(present(&serde_json::json!({ "items": items })))
}

async fn add(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
    Json(note): Json<NewNote>,
) -> Result<Response, ApiError> {
    let (a, _) = load_visible(&state, &access, &id).await?;
    let view = clinical_notes::add(&state, &access, &a, &who(&access), note).await?;
    Ok(created(&view, None))
}
