//! The `billing` function: plans, subscriptions with appointment quotas, coverage of bookings,
//! invoices numbered without gaps per clinic and year, and payments. Pure rules live in
//! [`rules`], storage in [`store`]; [`coverage`] is what the booking transaction calls.

pub mod analytics;
pub mod api;
pub mod coverage;
pub mod events;
pub mod invoices;
pub mod payments;
pub mod providers;
pub mod rules;
pub mod store;
pub mod sweep;

use std::sync::Arc;

use axum::{
    Router, middleware,
    routing::{get, post},
};
use jiff::{Timestamp, tz::TimeZone};
use shared::{
    ApiError,
    app::BoxError,
    aws::Clients,
    clock::{Clock, SystemClock},
    config::PlatformConfig,
    idempotency::idempotent,
    ids::ClinicId,
    outbox::{EventEnvelope, Subject},
    platform::Platform,
};

pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/clinics/{clinicId}/plans"),
    ("POST", "/v1/clinics/{clinicId}/plans"),
    ("GET", "/v1/clinics/{clinicId}/plans/{planId}"),
    ("PATCH", "/v1/clinics/{clinicId}/plans/{planId}"),
    ("DELETE", "/v1/clinics/{clinicId}/plans/{planId}"),
    ("GET", "/v1/clinics/{clinicId}/subscriptions"),
    ("POST", "/v1/clinics/{clinicId}/subscriptions"),
    (
        "GET",
        "/v1/clinics/{clinicId}/subscriptions/{subscriptionId}",
    ),
    (
        "POST",
        "/v1/clinics/{clinicId}/subscriptions/{subscriptionId}/{action}",
    ),
    (
        "GET",
        "/v1/clinics/{clinicId}/subscriptions/{subscriptionId}/coverage",
    ),
    ("GET", "/v1/clinics/{clinicId}/invoices"),
    ("POST", "/v1/clinics/{clinicId}/invoices"),
    ("GET", "/v1/clinics/{clinicId}/invoices/{invoiceId}"),
    (
        "POST",
        "/v1/clinics/{clinicId}/invoices/{invoiceId}/{action}",
    ),
    ("GET", "/v1/clinics/{clinicId}/payments"),
    ("POST", "/v1/clinics/{clinicId}/payments"),
    ("GET", "/v1/clinics/{clinicId}/payments/{paymentId}"),
    ("POST", "/v1/clinics/{clinicId}/payments/{paymentId}/refund"),
    ("GET", "/v1/clinics/{clinicId}/billing/analytics"),
    ("POST", "/v1/webhooks/payments/{provider}"),
];

/// Handlers' state: the platform and the payment providers (cash desk, signed-webhook
/// gateway).
pub type AppState = shared::app::AppState<providers::Providers>;

pub async fn state(
    clients: &Clients,
    cfg: &PlatformConfig,
    webhook_secret: &str,
    clock: Arc<dyn Clock>,
) -> Result<AppState, BoxError> {
    let providers = providers::Providers::new(webhook_secret)
        .map_err(|_| "the payment webhook secret must have at least 16 characters")?;
    AppState::open(clients, cfg, clock, providers).await
}

/// [`state`] from the environment.
pub async fn state_from_env() -> Result<AppState, BoxError> {
    let cfg = PlatformConfig::from_env()?;
    let secret = shared::config::required("PAYMENT_WEBHOOK_SECRET")?;
    let clients = Clients::from_env().await;
    state(&clients, &cfg, &secret, Arc::new(SystemClock)).await
}

pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

pub fn routes(state: AppState) -> Router {
    let idem = || middleware::from_fn_with_state(state.idempotency.clone(), idempotent);
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/plans",
            get(api::list_plans).merge(post(api::create_plan).layer(idem())),
        )
        .route(
            "/v1/clinics/{clinicId}/plans/{planId}",
            get(api::get_plan)
                .patch(api::update_plan)
                .delete(api::delete_plan),
        )
        .route(
            "/v1/clinics/{clinicId}/subscriptions",
            get(api::list_subscriptions).merge(post(api::subscribe).layer(idem())),
        )
        .route(
            "/v1/clinics/{clinicId}/subscriptions/{subscriptionId}",
            get(api::get_subscription),
        )
        .route(
            "/v1/clinics/{clinicId}/subscriptions/{subscriptionId}/coverage",
            get(api::get_coverage),
        )
        .route(
            "/v1/clinics/{clinicId}/subscriptions/{subscriptionId}/{action}",
            post(api::subscription_action),
        )
        .route(
            "/v1/clinics/{clinicId}/invoices",
            get(invoices::list).merge(post(invoices::create).layer(idem())),
        )
        .route(
            "/v1/clinics/{clinicId}/invoices/{invoiceId}",
            get(invoices::get),
        )
        .route(
            "/v1/clinics/{clinicId}/invoices/{invoiceId}/{action}",
            post(invoices::act),
        )
        .route(
            "/v1/clinics/{clinicId}/payments",
            get(payments::list).merge(post(payments::create).layer(idem())),
        )
        .route(
            "/v1/clinics/{clinicId}/payments/{paymentId}",
            get(payments::get),
        )
        .route(
            "/v1/clinics/{clinicId}/payments/{paymentId}/refund",
            post(payments::refund),
        )
        .route(
            "/v1/clinics/{clinicId}/billing/analytics",
            get(analytics::get),
        )
        .route("/v1/webhooks/payments/{provider}", post(payments::webhook))
        .with_state(state)
}

pub use shared::outbox::Who;

/// A billing event: ids, codes, amounts and times only.
pub fn event(
    kind: &str,
    clinic: &ClinicId,
    who: &Who,
    subject: (&str, &str),
    data: serde_json::Value,
    now: Timestamp,
) -> EventEnvelope {
    EventEnvelope::new(
        kind,
        Some(clinic),
        who.actor(),
        Subject {
            kind: subject.0.into(),
            id: subject.1.into(),
        },
        data,
        now,
    )
}

/// `base` with the members of `extra` added (both JSON objects).
pub fn merged(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(d), serde_json::Value::Object(m)) = (base.as_object_mut(), extra) {
        d.extend(m);
    }
    base
}

/// The clinic's time zone and currency.
pub async fn clinic_settings(
    state: &Platform,
    clinic: &ClinicId,
) -> Result<(TimeZone, String), ApiError> {
    let c = shared::tenancy::get_clinic(&state.table, clinic)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tz = TimeZone::get(&c.time_zone).map_err(ApiError::internal)?;
    Ok((tz, c.currency))
}

/// A list's `status` filter read with `parse`: 422 `invalid_status` when it names no status.
pub fn status_filter<T>(
    raw: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
    message: &'static str,
) -> Result<Option<T>, ApiError> {
    raw.map(|v| {
        parse(v).ok_or_else(|| ApiError::invalid_field("status", "invalid_status", message))
    })
    .transpose()
}

/// A sort key part that orders later instants first.
pub fn newest_first(t: i64) -> String {
    format!("{:020}", i64::MAX.saturating_sub(t))
}

/// One page of a clinic's list, in the ascending order of `key` (unique per item), answered
/// as `{items, nextCursor}`. `filters` names the query, so a cursor only continues the
/// list and filters it was made for.
#[allow(clippy::too_many_arguments)]
pub fn page<T, V: serde::Serialize>(
    state: &Platform,
    clinic: &ClinicId,
    filters: String,
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    limit: Option<u32>,
    cursor: Option<&str>,
    view: impl Fn(&T) -> V,
) -> Result<axum::response::Response, ApiError> {
    let limit = shared::db::page_limit(limit)?;
    items.sort_by_cached_key(&key);
    let (items, next) = shared::db::sorted_page(
        &state.cursors,
        clinic.as_str(),
        &filters,
        items,
        key,
        limit,
        cursor,
    )?;
    let views: Vec<V> = items.iter().map(view).collect();
    Ok(shared::http::json_response(
        http::StatusCode::OK,
        &serde_json::json!({ "items": views, "nextCursor": next }),
    ))
}

/// RFC 3339 in UTC with seconds.
pub fn iso(t: i64) -> String {
    shared::clock::rfc3339(t)
}
