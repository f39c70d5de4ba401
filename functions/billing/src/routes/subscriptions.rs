//! Subscription routes: list, take out, read, cancel or renew, and ask about coverage.

use std::collections::BTreeMap;

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{Json, OptionalJson, Query, page as page_of},
    ids::{LocationId, PlanId, UserId, query_id},
    policy::{Action, Resource, Role, Subject, may_ever},
};

use super::{created, idempotent_post, listed_patient, status_filter, who};
use crate::{
    AppState,
    common::iso,
    rules::{self, SubStatus},
    store::SubscriptionRecord,
    subscriptions::{self, Filter},
};

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/subscriptions",
            get(list).merge(idempotent_post(state, subscribe)),
        )
        .route(
            "/v1/clinics/{clinicId}/subscriptions/{subscriptionId}",
            get(show),
        )
        .route(
            "/v1/clinics/{clinicId}/subscriptions/{subscriptionId}/coverage",
            get(coverage),
        )
        .route(
            "/v1/clinics/{clinicId}/subscriptions/{subscriptionId}/{action}",
            post(act),
        )
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QuotaView {
    /// `null` is unlimited.
    included: Option<i64>,
    used: i64,
    /// `null` is unlimited.
    remaining: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionView {
    id: String,
    clinic_id: String,
    patient_id: String,
    plan_id: String,
    plan_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location_id: Option<String>,
    status: &'static str,
    price: i64,
    currency: String,
    interval: &'static str,
    interval_count: i64,
    covered_types: Vec<String>,
    visit_prices: BTreeMap<String, i64>,
    quota: QuotaView,
    current_period_start: String,
    current_period_end: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    trial_end: Option<String>,
    cancel_at_period_end: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_invoice_id: Option<String>,
    created_at: String,
    version: i64,
}

fn view(x: &SubscriptionRecord) -> SubscriptionView {
    SubscriptionView {
        id: x.id.to_string(),
        clinic_id: x.clinic.to_string(),
        patient_id: x.patient.to_string(),
        plan_id: x.plan.to_string(),
        plan_name: x.plan_name.clone(),
        location_id: x.location.as_ref().map(ToString::to_string),
        status: x.status.as_str(),
        price: x.price,
        currency: x.terms.currency.clone(),
        interval: x.cadence.unit.as_str(),
        interval_count: x.cadence.count,
        covered_types: x.terms.covered_types.clone(),
        visit_prices: x.terms.visit_prices.clone(),
        quota: QuotaView {
            included: x.terms.included,
            used: x.quota_used,
            remaining: rules::remaining(&x.terms, x.quota_used),
        },
        current_period_start: iso(x.period_start),
        current_period_end: iso(x.period_end),
        trial_end: x.trial_end.map(iso),
        cancel_at_period_end: x.cancel_at_period_end,
        cancelled_at: x.cancelled_at.map(iso),
        latest_invoice_id: x.latest_invoice.as_ref().map(ToString::to_string),
        created_at: iso(x.created_at),
        version: x.version,
    }
}

fn subject(x: &SubscriptionRecord) -> Subject<'_> {
    Subject {
        owner: Some(x.patient.as_str()),
        location: x.location.as_ref().map(LocationId::as_str),
        ..Default::default()
    }
}

/// The subscription if the caller may read it; 404 otherwise (indistinguishable from missing).
async fn load(
    state: &AppState,
    access: &ClinicAccess,
    id: &str,
) -> Result<SubscriptionRecord, ApiError> {
    let x = subscriptions::find(state, &access.clinic, id).await?;
    if !access.allows(Resource::Subscription, Action::Read, &subject(&x)) {
        return Err(ApiError::NotFound);
    }
    Ok(x)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubscribeBody {
    plan_id: String,
    /// A patient subscribing themselves may leave it out.
    patient_id: Option<String>,
    location_id: Option<String>,
}

async fn subscribe(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<SubscribeBody>,
) -> Result<Response, ApiError> {
    let patient_id = match &body.patient_id {
        Some(p) => p.clone(),
        None if access.role == Role::Patient => access.caller.user_id.to_string(),
        None => {
            return Err(ApiError::invalid_field(
                "patientId",
                "required",
                "Name the patient.",
            ));
        }
    };
    // Authorise on what the request names before looking anything up.
    let pre = Subject {
        owner: Some(patient_id.as_str()),
        location: body.location_id.as_deref(),
        ..Default::default()
    };
    access.require(Resource::Subscription, Action::Create, &pre)?;
    let x = subscriptions::subscribe(
        &state,
        &access.clinic,
        &body.plan_id,
        &patient_id,
        body.location_id.as_deref(),
        &who(&access),
    )
    .await?;
    Ok(created(
        &view(&x),
        format!("/v1/clinics/{}/subscriptions/{}", x.clinic, x.id),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListQuery {
    patient_id: Option<String>,
    plan_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    query_id(q.patient_id.as_deref(), "patientId", UserId::parse)?;
    query_id(q.plan_id.as_deref(), "planId", PlanId::parse)?;
    let status = status_filter(
        q.status.as_deref(),
        SubStatus::parse,
        "Unknown subscription status.",
    )?;
    if !may_ever(access.role, Resource::Subscription, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    // A caller who may read only their own lists their own: the patient's index, never the
    // clinic's filtered down.
    let own = access.caller.user_id.to_string();
    let Some(patient) = listed_patient(
        &access,
        Resource::Subscription,
        q.patient_id.as_deref(),
        &own,
    ) else {
        return Ok(page_of::<SubscriptionView>(&[], None));
    };
    let filter = Filter {
        patient,
        plan: q.plan_id.as_deref(),
        status,
    };
    let (mut out, next) =
        subscriptions::list(&state, &access.clinic, filter, q.limit, q.cursor.as_deref()).await?;
    out.retain(|x| access.allows(Resource::Subscription, Action::Read, &subject(x)));
    let views: Vec<SubscriptionView> = out.iter().map(view).collect();
    Ok(page_of(&views, next))
}

async fn show(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let x = load(&state, &access, &id).await?;
    Ok(shared::http::present(&view(&x)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActionBody {
    /// For `cancel`: end at the end of the current period (the default) or now.
    at_period_end: Option<bool>,
    version: Option<i64>,
}

/// `POST .../subscriptions/{subscriptionId}/{action}`: `cancel` needs Delete on the
/// subscription, `renew` needs Update.
async fn act(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id, action)): Path<(String, String, String)>,
    OptionalJson(body): OptionalJson<ActionBody>,
) -> Result<Response, ApiError> {
    let x = load(&state, &access, &id).await?;
    let who = who(&access);
    let now = state.clock.now();
    let after = match action.as_str() {
        "cancel" => {
            access.require(Resource::Subscription, Action::Delete, &subject(&x))?;
            subscriptions::cancel(&state, &x, body.at_period_end, body.version, &who, now).await?
        }
        "renew" => {
            access.require(Resource::Subscription, Action::Update, &subject(&x))?;
            if body.at_period_end.is_some() {
                return Err(ApiError::invalid_field(
                    "atPeriodEnd",
                    "unknown_field",
                    "Only cancel takes atPeriodEnd.",
                ));
            }
            subscriptions::renew(&state, &x, body.version, &who, now).await?
        }
        _ => return Err(ApiError::NotFound),
    };
    Ok(shared::http::present(&view(&after)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CoverageQuery {
    appointment_type: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CoverageView {
    subscription_id: String,
    appointment_type: String,
    covered: bool,
    /// Why not covered: `subscription_not_live`, `type_not_covered` or `quota_used_up`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// Units left in the period before this booking (`null` is unlimited).
    remaining: Option<i64>,
    /// What the patient pays for this visit: 0 when covered.
    amount_due: i64,
    currency: String,
    status: &'static str,
    current_period_start: String,
    current_period_end: String,
}

async fn coverage(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<CoverageQuery>,
) -> Result<Response, ApiError> {
    let kind = subscriptions::appointment_type(q.appointment_type)?;
    let x = load(&state, &access, &id).await?;
    let quote = subscriptions::quote(&x, &kind, state.clock.now());
    Ok(shared::http::present(&CoverageView {
        subscription_id: x.id.to_string(),
        appointment_type: kind,
        covered: quote.covered,
        reason: quote.reason,
        remaining: quote.remaining,
        amount_due: quote.amount_due,
        currency: x.terms.currency.clone(),
        status: x.status.as_str(),
        current_period_start: iso(x.period_start),
        current_period_end: iso(x.period_end),
    }))
}
