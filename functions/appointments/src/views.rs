//! What clients see of an appointment; its PHI is decrypted only for a caller who may read it.

use std::collections::BTreeMap;

use serde::Serialize;
use shared::ApiError;

use crate::{
    AppState,
    common::phi_field,
    store::{self, AppointmentRecord},
};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentView {
    id: String,
    clinic_id: String,
    doctor_id: String,
    patient_id: String,
    location_id: Option<String>,
    kind: &'static str,
    status: &'static str,
    starts_at: String,
    ends_at: String,
    duration_minutes: i64,
    reschedules: u32,
    follow_up_of: Option<String>,
    follow_up_id: Option<String>,
    checked_in_at: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
    cancelled_at: Option<String>,
    /// While a patient's own booking is unconfirmed: when its hold runs out and it expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    held_until: Option<String>,
    version: i64,
    created_at: String,
    updated_at: String,
    /// Coverage by a subscription, when booked with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    billing: Option<store::Billing>,
    #[serde(flatten)]
    phi: BTreeMap<&'static str, String>,
}

pub fn opt_time(t: Option<i64>) -> Option<String> {
    t.map(shared::clock::rfc3339)
}

/// The view of `a`; PHI fields are decrypted only when `with_phi`.
pub async fn view(
    state: &AppState,
    a: &AppointmentRecord,
    with_phi: bool,
) -> Result<AppointmentView, ApiError> {
    let mut phi = BTreeMap::new();
    if with_phi {
        for (field, blob) in &a.sealed {
            let value = state
                .envelope
                .decrypt_str(&phi_field(&a.clinic, &a.id, field), blob)
                .await?;
            phi.insert(*field, value.into_inner());
        }
    }
    Ok(AppointmentView {
        id: a.id.to_string(),
        clinic_id: a.clinic.to_string(),
        doctor_id: a.doctor.to_string(),
        patient_id: a.patient.to_string(),
        location_id: a.location.as_ref().map(ToString::to_string),
        kind: store::kind_str(a.kind),
        status: a.status.as_str(),
        starts_at: store::iso(a.starts_at),
        ends_at: store::iso(a.ends_at()),
        duration_minutes: a.minutes,
        reschedules: a.reschedules,
        follow_up_of: a.follow_up_of.as_ref().map(ToString::to_string),
        follow_up_id: a.follow_up_id.as_ref().map(ToString::to_string),
        checked_in_at: opt_time(a.checked_in_at),
        started_at: opt_time(a.started_at),
        completed_at: opt_time(a.completed_at),
        cancelled_at: opt_time(a.cancelled_at),
        held_until: opt_time(
            a.held_until
                .filter(|_| a.status == crate::rules::Status::Pending),
        ),
        version: a.version,
        created_at: shared::clock::rfc3339(a.created_at),
        updated_at: shared::clock::rfc3339(a.updated_at),
        billing: a.billing.clone(),
        phi,
    })
}
