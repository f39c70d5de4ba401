//! A patient's care team: listed, joined and left by the members clinic admins name.

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, put},
};
use shared::{ApiError, authn::ClinicAccess, http::present};

use crate::{AppState, access, care_team};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/patients/{patientId}/care-team",
            get(list),
        )
        .route(
            "/v1/clinics/{clinicId}/patients/{patientId}/care-team/{memberId}",
            put(add).delete(remove),
        )
}

async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let pa = access::patient(&state, &access, &patient).await?;
    let items = care_team::list(&state, &pa).await?;
    Ok(present(&serde_json::json!({ "items": items })))
}

async fn add(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient, member)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let pa = access::patient(&state, &access, &patient).await?;
    Ok(present(&care_team::add(&state, &pa, &member).await?))
}

async fn remove(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient, member)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let pa = access::patient(&state, &access, &patient).await?;
    care_team::remove(&state, &pa, &member).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
