//! Health record routes: the patient's summary, and per kind: list, create, read, update,
//! remove (entered in error) and history.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use serde::Deserialize;
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{Json, Query, created, page, present},
    idempotency::idempotent_post,
};

use crate::{
    AppState, access,
    kinds::by_slug,
    records::{self, Change, NewRecord, Removal},
};

const RECORD: &str = "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}/{recordId}";

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/patients/{patientId}/ehr",
            get(summary),
        )
        .route(
            "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}",
            get(list).merge(idempotent_post(&state.idempotency, create)),
        )
        .route(
            "/v1/clinics/{clinicId}/patients/{patientId}/break-glass",
            post(break_glass),
        )
        .route(RECORD, get(read).patch(update).delete(remove))
        .route(&format!("{RECORD}/history"), get(history))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn summary(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let pa = access::patient(&state, &access, &patient).await?;
    let (items, next) = records::summary(&state, &pa, q.limit, q.cursor.as_deref()).await?;
    Ok(page(&items, next))
}

async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient, kind)): Path<(String, String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let kind = by_slug(&kind)?;
    let pa = access::patient(&state, &access, &patient).await?;
    let (items, next) = records::list(&state, &pa, kind, q.limit, q.cursor.as_deref()).await?;
    Ok(page(&items, next))
}

async fn create(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((clinic, patient, kind)): Path<(String, String, String)>,
    Json(body): Json<NewRecord>,
) -> Result<Response, ApiError> {
    let kind = by_slug(&kind)?;
    let pa = access::patient(&state, &access, &patient).await?;
    let view = records::create(&state, &pa, kind, body).await?;
    let location = format!(
        "/v1/clinics/{clinic}/patients/{patient}/ehr/{}/{}",
        kind.slug, view.id
    );
    Ok(created(&view, Some(&location)))
}

async fn break_glass(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient)): Path<(String, String)>,
    Json(req): Json<crate::break_glass::BreakGlassRequest>,
) -> Result<Response, ApiError> {
    let pa = access::patient(&state, &access, &patient).await?;
    Ok(created(
        &crate::break_glass::open(&state, &pa, req).await?,
        None,
    ))
}

async fn read(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient, kind, id)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let kind = by_slug(&kind)?;
    let pa = access::patient(&state, &access, &patient).await?;
    Ok(present(&records::get(&state, &pa, kind, &id).await?))
}

async fn update(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient, kind, id)): Path<(String, String, String, String)>,
    Json(change): Json<Change>,
) -> Result<Response, ApiError> {
    let kind = by_slug(&kind)?;
    let pa = access::patient(&state, &access, &patient).await?;
    Ok(present(
        &records::update(&state, &pa, kind, &id, change).await?,
    ))
}

async fn remove(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient, kind, id)): Path<(String, String, String, String)>,
    Json(removal): Json<Removal>,
) -> Result<Response, ApiError> {
    let kind = by_slug(&kind)?;
    let pa = access::patient(&state, &access, &patient).await?;
    Ok(present(
        &records::remove(&state, &pa, kind, &id, removal).await?,
    ))
}

async fn history(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, patient, kind, id)): Path<(String, String, String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let kind = by_slug(&kind)?;
    let pa = access::patient(&state, &access, &patient).await?;
    let (items, next) =
        records::history(&state, &pa, kind, &id, q.limit, q.cursor.as_deref()).await?;
    Ok(page(&items, next))
}
