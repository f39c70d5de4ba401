//! Break-glass: a clinician who does not treat a patient reads their record in an emergency.
//! They state why; the grant is time-boxed (60 minutes unless they ask for less or, up to four
//! hours, more); opening it is one audit record (action `break-glass`, purpose `emergency`,
//! the reason sealed) committed with the grant and an `ehr.break_glass.opened` event, from
//! which the notifications consumer tells the clinic's admins. Every read under the grant is
//! audited with purpose `emergency`, and the patient sees it all in their access log.

use aws_sdk_dynamodb::types::Put;
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    audit::AuditAction,
    clock::rfc3339,
    crypto::Phi,
    db::{Tx, n, s, tx_put},
    keys,
    outbox::{EventEnvelope, Subject as EventSubject, Who},
    policy::{Action, Limit, Resource, Scope, authorize},
};

use crate::{AppState, access::PatientAccess};

/// How long a grant lasts unless asked otherwise, and the bounds of what may be asked.
pub const DEFAULT_MINUTES: i64 = 60;
const MINUTES: std::ops::RangeInclusive<i64> = 5..=240;
/// A grant's item outlives it by a day (the audit trail keeps the record for good).
const KEEP_SECONDS: i64 = 24 * 60 * 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BreakGlassRequest {
    pub reason: Phi<String>,
    #[serde(default)]
    pub minutes: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassGrant {
    patient_id: String,
    clinician_id: String,
    opened_at: String,
    expires_at: String,
}

/// Whether the table lets `role` read records by break-glass.
fn may_break_glass(pa: &PatientAccess) -> bool {
    authorize(pa.access.role, Resource::EhrRecord, Action::Read)
        .iter()
        .any(|g| g.scope == Scope::Clinic && g.limit == Limit::BreakGlass)
}

pub async fn open(
    state: &AppState,
    pa: &PatientAccess,
    req: BreakGlassRequest,
) -> Result<BreakGlassGrant, ApiError> {
    if !may_break_glass(pa) {
        return Err(ApiError::Forbidden);
    }
    if pa.assigned {
        return Err(ApiError::conflict(
            "not_needed",
            "You treat this patient already; their record is open to you.",
        ));
    }
    let mut errs = Vec::new();
    let n_chars = req.reason.expose().trim().chars().count();
    if !(10..=500).contains(&n_chars) {
        errs.push(shared::FieldError::new(
            "reason",
            "invalid_length",
            "State the emergency in 10 to 500 characters.",
        ));
    }
    let minutes = req.minutes.unwrap_or(DEFAULT_MINUTES);
    if !MINUTES.contains(&minutes) {
        errs.push(shared::FieldError::new(
            "minutes",
            "out_of_range",
            "Ask for 5 to 240 minutes.",
        ));
    }
    if !errs.is_empty() {
        return Err(ApiError::Validation(errs));
    }
    let now = state.clock.now();
    let until = now.as_second() + minutes * 60;
    let clinician = &pa.access.caller.user_id;
    let mut entry = pa.audit(AuditAction::BreakGlass, "ehr".into(), Vec::new());
    entry.purpose = "emergency";
    entry.reason = Some(req.reason);
    let mut tx = Tx::default();
    tx.push(tx_put(
        Put::builder()
            .table_name(&state.table.name)
            .item(keys::PK, s(keys::clinic_pk(&pa.access.clinic)))
            .item(keys::SK, s(keys::break_glass_sk(&pa.patient, clinician)))
            .item(keys::ENTITY, s("BREAK_GLASS"))
            .item("patientId", s(pa.patient.as_str()))
            .item("clinicianId", s(clinician.as_str()))
            .item("openedAt", n(now.as_second()))
            .item("until", n(until))
            .item(keys::TTL, n(until + KEEP_SECONDS)),
    )?);
    tx.push(state.audit.put(&entry).await?);
    let who = Who::member(clinician, pa.access.role);
    tx.push(
        EventEnvelope::new(
            "ehr.break_glass.opened",
            Some(&pa.access.clinic),
            who.actor(),
            EventSubject {
                kind: "patient".into(),
                id: pa.patient.to_string(),
            },
            serde_json::json!({
                "patientId": pa.patient,
                "clinicianId": clinician,
                "expiresAt": rfc3339(until),
            }),
            now,
        )
        .outbox_write(&state.table.name, now.as_second())?,
    );
    tx.commit(&state.table).await?;
    tracing::warn!(
        log_type = "security",
        clinic_id = %pa.access.clinic,
        patient_id = %pa.patient,
        clinician_id = %clinician,
        minutes,
        "break-glass opened"
    );
    Ok(BreakGlassGrant {
        patient_id: pa.patient.to_string(),
        clinician_id: clinician.to_string(),
        opened_at: rfc3339(now.as_second()),
        expires_at: rfc3339(until),
    })
}
