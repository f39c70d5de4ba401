//! Appointment routes: list a clinic's appointments, book one, read one, edit its free text or
//! queue position.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::get,
};
use shared::{
    ApiError,
    audit::AuditAction,
    authn::ClinicAccess,
    http::{Json, Query, created, page, present},
};

use super::{idempotent_post, shown};
use crate::{
    AppState,
    access::{load_visible, sees_phi},
    appointments::{self, ListQuery, PatchBody},
    booking::{self, BookBody},
    views,
};

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/appointments",
            get(list).merge(idempotent_post(state, book)),
        )
        .route(
            "/v1/clinics/{clinicId}/appointments/{appointmentId}",
            get(show).patch(update),
        )
}

async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let (found, next) = appointments::list(&state, &access, &q).await?;
    let mut items = Vec::with_capacity(found.len());
    for a in &found {
        // Lists carry no PHI; read one appointment for its reason and notes.
        items.push(views::view(&state, a, false).await?);
    }
    Ok(page(&items, next))
}

async fn book(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<BookBody>,
) -> Result<Response, ApiError> {
    let a = booking::book(&state, &access, body).await?;
    let v = shown(&state, &access, &a).await?;
    let location = format!("/v1/clinics/{}/appointments/{}", a.clinic, a.id);
    Ok(created(&v, Some(&location)))
}

async fn show(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (a, _) = load_visible(&state, &access, &id).await?;
    let v = shown(&state, &access, &a).await?;
    if sees_phi(&access, &a) && !a.sealed.is_empty() {
        state
            .audit
            .record(&booking::audit_of(&access, &a, AuditAction::Read))
            .await?;
    }
    Ok(present(&v))
}

async fn update(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
    Json(body): Json<PatchBody>,
) -> Result<Response, ApiError> {
    let (a, f) = load_visible(&state, &access, &id).await?;
    let b = appointments::update(&state, &access, &a, &f, &body).await?;
    Ok(present(&shown(&state, &access, &b).await?))
}
