//! The `appointments` function: doctors' availability, free slots, booking without double
//! booking, the appointment lifecycle and the day's check-in queue, every route checked against
//! the policy table.
//!
//! Each resource's routes live in `routes/` and call one operation: [`availability`] (hours
//! and free slots), [`booking`], [`appointments`] (list and edits), [`actions`] (status changes)
//! and [`queue`]. Pure rules live in [`rules`], storage in [`store`], what appointments does
//! with other contexts' events in [`events`], and the expiry / no-show sweep in [`sweep`].
//!
//! Dependencies point one way, so nothing imports in a circle: [`rules`] and [`store`] at the
//! bottom; [`common`] (zone, doctors, locations, PHI sealing, the event) and [`input`] (field
//! parsing) above them; then [`access`] (what the policy needs to know) and [`lifecycle`]
//! (bookings and status changes as transactions, coverage included); the operations above
//! those, of which `appointments` uses `queue` and `actions` uses `availability`, with
//! [`events`] and [`sweep`] beside them; [`views`] and `routes` on top.

pub mod access;
pub mod actions;
pub mod appointments;
pub mod availability;
pub mod booking;
pub mod clinical_notes;
pub mod common;
pub mod events;
pub mod input;
pub mod lifecycle;
pub mod queue;
mod routes;
pub mod rules;
pub mod store;
pub mod sweep;
pub mod views;

use axum::Router;

pub use shared::outbox::Who;

/// Every route this function serves: (method, path). The integration tests hold it against
/// the OpenAPI document and `template.yaml`.
pub const ROUTES: &[(&str, &str)] = &[
    (
        "GET",
        "/v1/clinics/{clinicId}/doctors/{doctorId}/availability",
    ),
    (
        "PUT",
        "/v1/clinics/{clinicId}/doctors/{doctorId}/availability",
    ),
    ("GET", "/v1/clinics/{clinicId}/doctors/{doctorId}/slots"),
    ("GET", "/v1/clinics/{clinicId}/appointments"),
    ("POST", "/v1/clinics/{clinicId}/appointments"),
    ("GET", "/v1/clinics/{clinicId}/appointments/{appointmentId}"),
    (
        "PATCH",
        "/v1/clinics/{clinicId}/appointments/{appointmentId}",
    ),
    (
        "POST",
        "/v1/clinics/{clinicId}/appointments/{appointmentId}/{action}",
    ),
    (
        "GET",
        "/v1/clinics/{clinicId}/appointments/{appointmentId}/clinical-notes",
    ),
    (
        "POST",
        "/v1/clinics/{clinicId}/appointments/{appointmentId}/clinical-notes",
    ),
    ("GET", "/v1/clinics/{clinicId}/queue"),
];

/// Handlers' state: the platform alone.
pub type AppState = shared::app::AppState<store::Schedules>;

/// The routes with the platform's layers, for this function's own Lambda.
pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

/// The bare routes, for a gateway that merges several functions under one set of layers.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(routes::availability::router())
        .merge(routes::slots::router())
        .merge(routes::appointments::router(&state))
        .merge(routes::actions::router())
        .merge(routes::clinical_notes::router())
        .merge(routes::queue::router())
        .with_state(state)
}

/// This context's part of the OpenAPI document (see `shared::openapi`).
pub fn openapi() -> serde_json::Value {
    shared::openapi::part(include_str!("../openapi.json"))
}
