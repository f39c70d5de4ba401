//! A person's clinic memberships (in force, and waiting for their consent), with each
//! clinic's name.

use serde::Serialize;
use shared::{ApiError, identity::store::current_memberships, ids::UserId, tenancy::get_clinics};

use crate::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipView {
    clinic_id: String,
    clinic_name: Option<String>,
    role: String,
    location_id: Option<String>,
    /// `ACTIVE`, or `PENDING` until accepted (`POST /v1/users/me/memberships/{clinicId}/accept`).
    status: String,
}

/// One query of the user's memberships and one batched read of their clinics.
pub async fn list(state: &AppState, user: &UserId) -> Result<Vec<MembershipView>, ApiError> {
    let memberships = current_memberships(&state.table, user).await?;
    let ids: Vec<_> = memberships.iter().map(|(c, _)| c.clone()).collect();
    let clinics = get_clinics(&state.table, &ids).await?;
    Ok(memberships
        .into_iter()
        .map(|(clinic, m)| MembershipView {
            clinic_name: clinics.get(&clinic).map(|c| c.name.clone()),
            clinic_id: clinic.to_string(),
            role: m.role.as_str().to_string(),
            location_id: m.location.map(|l| l.to_string()),
            status: m.status,
        })
        .collect())
}
