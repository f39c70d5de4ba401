//! The `users` function: a person's own profile (every field PHI, encrypted at rest, never
//! logged) and their clinic memberships. Profile `RU own` holds for every role in the table.

pub mod memberships;
pub mod profile;
mod routes;

use axum::Router;

pub use profile::{Address, EmergencyContact};

pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/users/me"),
    ("PATCH", "/v1/users/me"),
    ("GET", "/v1/users/me/memberships"),
    ("GET", "/v1/users/me/notification-preferences"),
    ("PUT", "/v1/users/me/notification-preferences"),
];

/// Handlers' state: the platform alone.
pub type AppState = shared::app::AppState;

pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

pub fn routes(state: AppState) -> Router {
    Router::new().merge(routes::me::router()).with_state(state)
}

/// This context's part of the OpenAPI document (see `shared::openapi`).
pub fn openapi() -> serde_json::Value {
    shared::openapi::part(include_str!("../openapi.json"))
}
