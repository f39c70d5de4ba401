//! The audit trail's routes (a clinic's, a patient's access log) and the patient's own record
//! across clinics.

use axum::{Router, extract::State, response::Response, routing::get};
use shared::{
    ApiError,
    authn::{Caller, ClinicAccess},
    http::{Query, page, present},
};

use crate::{
    AppState, own,
    trail::{self, AccessLogQuery, TrailQuery},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/clinics/{clinicId}/audit", get(clinic_trail))
        .route("/v1/users/me/access-log", get(access_log))
        .route("/v1/users/me/health-record", get(health_record))
}

async fn clinic_trail(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<TrailQuery>,
) -> Result<Response, ApiError> {
    let (items, next) = trail::clinic_trail(&state, &access, q).await?;
    Ok(page(&items, next))
}

async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AccessLogQuery>,
) -> Result<Response, ApiError> {
    let (items, next) = trail::access_log(&state, &caller, q).await?;
    Ok(page(&items, next))
}

async fn health_record(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let clinics = own::health_record(&state, &caller).await?;
    Ok(present(&serde_json::json!({ "clinics": clinics })))
}
