//! The `/v1/clinics` resource: the clinics a caller may see, and a clinic's settings.

use axum::{Router, extract::State, response::Response, routing::get};
use http::StatusCode;
use shared::{
    ApiError,
    authn::{Caller, ClinicAccess},
    http::{Json, Query, json_response},
    policy::{Action, Resource, Subject as Target},
};

use super::post_once;
use crate::{
    AppState,
    clinics::{self, CreateClinic, Page, UpdateClinic},
};

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics",
            get(list_clinics).merge(post_once(state, create_clinic)),
        )
        .route(
            "/v1/clinics/{clinicId}",
            get(get_clinic).patch(update_clinic),
        )
}

/// A super admin creates a clinic and invites its first clinic admin (an existing person, or a
/// new one); the membership is pending until they accept.
async fn create_clinic(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateClinic>,
) -> Result<Response, ApiError> {
    caller.require_super_admin()?;
    let created = clinics::create(&state, &caller, req).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "clinic": created.clinic, "admin": { "userId": created.admin, "status": "PENDING" } }),
    ))
}

/// Super admins list every clinic; everyone else the clinics they belong to.
async fn list_clinics(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let (items, next) = clinics::list(&state, &caller, page).await?;
    Ok(shared::http::present(
        &serde_json::json!({ "items": items, "nextCursor": next }),
    ))
}

async fn get_clinic(
    State(state): State<AppState>,
    access: ClinicAccess,
) -> Result<Response, ApiError> {
    access.require(Resource::Clinic, Action::Read, &Target::default())?;
    let clinic = clinics::get(&state, &access.clinic).await?;
    Ok(shared::http::present(&clinic))
}

async fn update_clinic(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(req): Json<UpdateClinic>,
) -> Result<Response, ApiError> {
    access.require(Resource::Clinic, Action::Update, &Target::default())?;
    let clinic = clinics::update(&state, &access, req).await?;
    Ok(shared::http::present(&clinic))
}
