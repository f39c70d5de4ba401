//! A patient's own health record across every clinic they are a patient of: each clinic's
//! summary as that clinic's policy and audit trail see it (one audit record per clinic, in
//! that clinic's trail).

use serde::Serialize;
use shared::{ApiError, authn::Caller, identity::store::current_memberships, policy::Role};

use crate::{AppState, access, records};

/// The first page of one clinic's records of the caller.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClinicRecords {
    clinic_id: String,
    items: Vec<records::RecordView>,
    /// Continues at `GET /v1/clinics/{clinicId}/patients/{patientId}/ehr?cursor=`.
    next_cursor: Option<String>,
}

/// At most this many records per clinic in one answer.
const PER_CLINIC: u32 = 100;

pub async fn health_record(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<ClinicRecords>, ApiError> {
    let mut out = Vec::new();
    for (clinic, m) in current_memberships(&state.table, &caller.user_id).await? {
        if m.role != Role::Patient || m.status != "ACTIVE" {
            continue;
        }
        let access = state
            .authn
            .clinic_access(caller.clone(), clinic.clone())
            .await?;
        let pa = access::patient(state, &access, caller.user_id.as_str()).await?;
        let (items, next_cursor) = records::summary(state, &pa, Some(PER_CLINIC), None).await?;
        out.push(ClinicRecords {
            clinic_id: clinic.to_string(),
            items,
            next_cursor,
        });
    }
    Ok(out)
}
