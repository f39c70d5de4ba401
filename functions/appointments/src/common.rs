//! What every operation shares: the clinic's zone, doctors and locations, PHI sealing, the
//! appointment event and the guards of the slot claims.

use jiff::{Timestamp, tz::TimeZone};
use shared::{
    ApiError,
    authn::ClinicAccess,
    contracts::AppointmentData,
    crypto::{FieldContext, Phi},
    error::Guard,
    ids::{AppointmentId, ClinicId, LocationId, UserId},
    outbox::{EventEnvelope, Subject, Who},
    policy::{Facet, has_facet},
    tenancy::MemberRecord,
};

use crate::{
    AppState,
    store::{self, AppointmentRecord},
};

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

/// The caller, as events record them.
pub fn who(access: &ClinicAccess) -> Who {
    Who::member(&access.caller.user_id, access.role)
}

/// The clinic's time zone (calendar dates, the day's queue).
pub async fn clinic_zone(state: &AppState, clinic: &ClinicId) -> Result<TimeZone, ApiError> {
    let c = state.clinics.get(clinic).await?.ok_or(ApiError::NotFound)?;
    TimeZone::get(&c.time_zone).map_err(ApiError::internal)
}

/// What the clinic lets patients book for themselves (cached with the clinic's settings).
pub async fn booking_limits(
    state: &AppState,
    clinic: &ClinicId,
) -> Result<shared::tenancy::BookingLimits, ApiError> {
    Ok(state
        .clinics
        .get(clinic)
        .await?
        .map(|c| c.booking)
        .unwrap_or_default())
}

/// A doctor (any clinician with a schedule) who is a member of the clinic.
pub async fn clinician(
    state: &AppState,
    clinic: &ClinicId,
    user: &UserId,
) -> Result<Option<MemberRecord>, ApiError> {
    Ok(shared::tenancy::get_member(&state.table, clinic, user)
        .await?
        .filter(|m| has_facet(m.role, Facet::Clinician) && m.status == "ACTIVE"))
}

pub async fn location_exists(
    state: &AppState,
    clinic: &ClinicId,
    location: &LocationId,
) -> Result<bool, ApiError> {
    Ok(
        shared::tenancy::get_location(&state.table, clinic, location)
            .await?
            .is_some(),
    )
}

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
