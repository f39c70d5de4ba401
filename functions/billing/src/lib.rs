//! The `billing` function: plans, subscriptions with quotas, coverage, invoices and payments.
//!
//! Invoices are numbered without gaps per clinic and year. Each resource's routes live in
//! `routes/` and call one operation of the module named after it ([`plans`],
//! [`subscriptions`], [`invoices`], [`payments`], [`analytics`]); pure rules live in
//! [`rules`], storage in [`store`]; [`coverage`] is what the booking transaction calls,
//! [`events`] what billing does with other contexts' events and [`sweep`] the scheduled job.
//!
//! Dependencies point one way, so nothing imports in a circle: `rules`, `store`, `providers`
//! and `common` at the bottom; `issuing` (invoice numbers) above them, since subscriptions,
//! coverage and invoices all issue; `subscriptions` above that, since invoices, payments and the
//! sweep all change subscriptions; then the other operations; `routes` on top.

pub mod analytics;
pub mod common;
pub mod coverage;
pub mod events;
pub mod invoices;
pub mod issuing;
pub mod payments;
pub mod plans;
pub mod providers;
mod routes;
pub mod rules;
pub mod stats;
pub mod store;
pub mod subscriptions;
pub mod sweep;

use std::sync::Arc;

use axum::Router;
use shared::{
    app::BoxError,
    aws::Clients,
    clock::{Clock, SystemClock},
    config::PlatformConfig,
};

pub use shared::outbox::Who;

/// Every route this function serves: (method, path). The integration tests hold it against
/// the OpenAPI document and `template.yaml`.
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

/// Opens the handlers' state (one KMS call); fails when the webhook secret is too short.
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

/// The routes with the platform's layers, for this function's own Lambda.
pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

/// The bare routes, for a gateway that merges several functions under one set of layers.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(routes::plans::router(&state))
        .merge(routes::subscriptions::router(&state))
        .merge(routes::invoices::router(&state))
        .merge(routes::payments::router(&state))
        .merge(routes::analytics::router())
        .merge(routes::webhooks::router())
        .with_state(state)
}

/// This context's part of the OpenAPI document (see `shared::openapi`).
pub fn openapi() -> serde_json::Value {
    shared::openapi::part(include_str!("../openapi.json"))
}
