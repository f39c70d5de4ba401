//! The `clinics` function: clinics, their locations and their members, every route checked
//! against the policy table. A caller who is not a member of the clinic in the path gets 404
//! for anything inside it, exactly like a clinic that does not exist.
//!
//! `routes/` holds one file per resource (extract, authorize, call one operation, render);
//! `clinics`, `locations` and `members` hold the operations; `store` the raw DynamoDB calls;
//! `people`, `events` and `rules` what several operations share.

mod clinics;
mod events;
mod locations;
mod members;
mod people;
mod routes;
mod rules;
mod store;

use axum::Router;
use shared::identity::{AccountMail, LinksConfig};

pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/clinics"),
    ("POST", "/v1/clinics"),
    ("GET", "/v1/clinics/{clinicId}"),
    ("PATCH", "/v1/clinics/{clinicId}"),
    ("GET", "/v1/clinics/{clinicId}/locations"),
    ("POST", "/v1/clinics/{clinicId}/locations"),
    ("GET", "/v1/clinics/{clinicId}/locations/{locationId}"),
    ("PATCH", "/v1/clinics/{clinicId}/locations/{locationId}"),
    ("DELETE", "/v1/clinics/{clinicId}/locations/{locationId}"),
    ("GET", "/v1/clinics/{clinicId}/members"),
    ("POST", "/v1/clinics/{clinicId}/members"),
    ("POST", "/v1/clinics/{clinicId}/members/search"),
    ("GET", "/v1/clinics/{clinicId}/members/{userId}"),
    ("PATCH", "/v1/clinics/{clinicId}/members/{userId}"),
    ("DELETE", "/v1/clinics/{clinicId}/members/{userId}"),
];

/// Handlers' state: the platform and the account mail (invitations, role notices).
pub type AppState = shared::app::AppState<AccountMail>;

/// The same settings as the auth function: platform, the notifications queue (account mail)
/// and the app URL (the links' pages).
pub type ClinicsConfig = LinksConfig;

pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

/// The bare routes, for a gateway that merges several functions under one set of layers.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(routes::clinics::router(&state))
        .merge(routes::locations::router(&state))
        .merge(routes::members::router(&state))
        .with_state(state)
}

/// This context's part of the OpenAPI document (see `shared::openapi`).
pub fn openapi() -> serde_json::Value {
    shared::openapi::part(include_str!("../openapi.json"))
}
