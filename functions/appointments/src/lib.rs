//! The `appointments` function: doctors' availability, free slots, booking without double
//! booking, the appointment lifecycle and the day's check-in queue, every route checked against
//! the policy table. Pure rules live in [`rules`], storage in [`store`], the expiry / no-show
//! sweep in [`sweep`].

pub mod api;
pub mod events;
pub mod lifecycle;
pub mod rules;
pub mod store;
pub mod sweep;

use axum::{
    Router, middleware,
    routing::{get, post},
};
use jiff::{Timestamp, tz::TimeZone};
use shared::{
    ApiError,
    contracts::AppointmentData,
    crypto::{FieldContext, Phi},
    error::Guard,
    idempotency::idempotent,
    ids::{AppointmentId, ClinicId},
    outbox::{EventEnvelope, Subject},
};

use store::AppointmentRecord;

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
    ("GET", "/v1/clinics/{clinicId}/queue"),
];

/// Handlers' state: the platform alone.
pub type AppState = shared::app::AppState;

pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

pub fn routes(state: AppState) -> Router {
    let idem = || middleware::from_fn_with_state(state.idempotency.clone(), idempotent);
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/doctors/{doctorId}/availability",
            get(api::get_availability).put(api::put_availability),
        )
        .route(
            "/v1/clinics/{clinicId}/doctors/{doctorId}/slots",
            get(api::get_slots),
        )
        .route(
            "/v1/clinics/{clinicId}/appointments",
            get(api::list_appointments).merge(post(api::book).layer(idem())),
        )
        .route(
            "/v1/clinics/{clinicId}/appointments/{appointmentId}",
            get(api::get_appointment).patch(api::update_appointment),
        )
        .route(
            "/v1/clinics/{clinicId}/appointments/{appointmentId}/{action}",
            post(api::act),
        )
        .route("/v1/clinics/{clinicId}/queue", get(api::get_queue))
        .with_state(state)
}

pub use shared::outbox::Who;

/// The encryption context of an appointment's PHI field.
pub fn phi_field<'a>(
    clinic: &'a ClinicId,
    id: &'a AppointmentId,
    field: &'a str,
) -> FieldContext<'a> {
    FieldContext {
        tenant: clinic.as_str(),
        entity: "appointment",
        record: id.as_str(),
        field,
    }
}

/// Encrypts an appointment's PHI field for storage.
pub async fn seal(
    state: &AppState,
    clinic: &ClinicId,
    id: &AppointmentId,
    field: &'static str,
    value: &Phi<String>,
) -> Result<String, ApiError> {
    Ok(state
        .envelope
        .encrypt_str(&phi_field(clinic, id, field), value)
        .await?)
}

/// The event announcing a change of `a`: ids, codes and times only, never notes or reasons.
pub fn appointment_event(
    kind: &str,
    a: &AppointmentRecord,
    who: &Who,
    now: Timestamp,
    extra: serde_json::Value,
) -> EventEnvelope {
    let data = AppointmentData {
        appointment_id: a.id.clone(),
        doctor_id: a.doctor.clone(),
        patient_id: a.patient.clone(),
        location_id: a.location.clone(),
        kind: store::kind_str(a.kind).to_string(),
        status: a.status.as_str().to_string(),
        starts_at: store::iso(a.starts_at),
        ends_at: store::iso(a.ends_at()),
        extra: match extra {
            serde_json::Value::Object(x) => x,
            _ => serde_json::Map::new(),
        },
    };
    EventEnvelope::new(
        kind,
        Some(&a.clinic),
        who.actor(),
        Subject {
            kind: "appointment".into(),
            id: a.id.to_string(),
        },
        serde_json::to_value(data).unwrap_or_default(),
        now,
    )
}

/// A cell of the requested time is claimed by another appointment.
pub const SLOT_TAKEN: Guard = Guard::new(
    "slot_taken",
    "The doctor already has an appointment at this time.",
);

/// The appointment's own claims are gone (its time was released meanwhile).
pub const CLAIMS_LOST: Guard = Guard::new(
    "slot_not_held",
    "The appointment no longer holds its time; reschedule it.",
);

/// The clinic's time zone (calendar dates, the day's queue).
pub async fn clinic_zone(state: &AppState, clinic: &ClinicId) -> Result<TimeZone, ApiError> {
    let c = shared::tenancy::get_clinic(&state.table, clinic)
        .await?
        .ok_or(ApiError::NotFound)?;
    TimeZone::get(&c.time_zone).map_err(ApiError::internal)
}
