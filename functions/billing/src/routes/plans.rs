//! Plan routes: list, create, read, change and delete a clinic's plans.

use std::collections::BTreeMap;

use axum::{
    Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::get,
};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{Json, Query},
    policy::{Action, Resource, Subject},
};

use super::{created, idempotent_post, page, who};
use crate::{
    AppState,
    common::iso,
    plans::{self, NewPlan, PlanChanges},
    store::PlanRecord,
};

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/plans",
            get(list).merge(idempotent_post(state, create)),
        )
        .route(
            "/v1/clinics/{clinicId}/plans/{planId}",
            get(show).patch(update).delete(delete),
        )
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanView {
    id: String,
    clinic_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    price: i64,
    currency: String,
    interval: &'static str,
    interval_count: i64,
    trial_days: i64,
    /// `null` is unlimited.
    appointments_included: Option<i64>,
    covered_types: Vec<String>,
    visit_prices: BTreeMap<String, i64>,
    active: bool,
    live_subscriptions: i64,
    created_at: String,
    updated_at: String,
    version: i64,
}

fn view(p: &PlanRecord) -> PlanView {
    PlanView {
        id: p.id.to_string(),
        clinic_id: p.clinic.to_string(),
        name: p.name.clone(),
        description: p.description.clone(),
        price: p.price,
        currency: p.currency.clone(),
        interval: p.cadence.unit.as_str(),
        interval_count: p.cadence.count,
        trial_days: p.trial_days,
        appointments_included: p.included,
        covered_types: p.covered_types.clone(),
        visit_prices: p.visit_prices.clone(),
        active: p.active,
        live_subscriptions: p.live_subscriptions,
        created_at: iso(p.created_at),
        updated_at: iso(p.updated_at),
        version: p.version,
    }
}

async fn create(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<NewPlan>,
) -> Result<Response, ApiError> {
    access.require(Resource::Plan, Action::Create, &Subject::default())?;
    let p = plans::create(&state, &access.clinic, &body, &who(&access)).await?;
    Ok(created(
        &view(&p),
        format!("/v1/clinics/{}/plans/{}", p.clinic, p.id),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListQuery {
    active: Option<bool>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    access.require(Resource::Plan, Action::Read, &Subject::default())?;
    let all = plans::list(&state, &access.clinic, q.active).await?;
    page(
        &state,
        &access.clinic,
        format!("plans?active={:?}", q.active),
        all,
        |p| format!("{}\u{1f}{}", p.name, p.id),
        q.limit,
        q.cursor.as_deref(),
        view,
    )
}

/// Every plan route reads the plan first, so reading is the least it needs.
async fn load(state: &AppState, access: &ClinicAccess, id: &str) -> Result<PlanRecord, ApiError> {
    access.require(Resource::Plan, Action::Read, &Subject::default())?;
    plans::find(state, &access.clinic, id).await
}

async fn show(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let p = load(&state, &access, &id).await?;
    Ok(shared::http::present(&view(&p)))
}

async fn update(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
    Json(body): Json<PlanChanges>,
) -> Result<Response, ApiError> {
    let p = load(&state, &access, &id).await?;
    access.require(Resource::Plan, Action::Update, &Subject::default())?;
    let after = plans::update(&state, &p, &body, &who(&access)).await?;
    Ok(shared::http::present(&view(&after)))
}

async fn delete(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let p = load(&state, &access, &id).await?;
    access.require(Resource::Plan, Action::Delete, &Subject::default())?;
    plans::delete(&state, &p, &who(&access)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
