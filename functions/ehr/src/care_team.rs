//! A patient's care team: members a clinic admin puts in a care relation with the patient
//! without an appointment (the nurse of a ward, the pharmacist who reviews their medicines).
//! Being on the team is the policy's "assigned", exactly like treating the patient.

use aws_sdk_dynamodb::types::{Delete, Put, Update};
use serde::Serialize;
use shared::{
    ApiError,
    authn::ClinicAccess,
    clock::rfc3339,
    db::{Tx, b, fault, get_opt_n, get_opt_s, s, tx_delete, tx_put, tx_update},
    ids::UserId,
    keys,
    policy::{Action, Resource, Role, Scope, Subject, authorize},
    tenancy::get_member,
};

use crate::{AppState, access::PatientAccess};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamMember {
    member_id: String,
    role: String,
    added_at: String,
}

/// Whether `role` treats patients it is assigned to (so a care team can hold it).
fn cares(role: Role) -> bool {
    authorize(role, Resource::EhrRecord, Action::Read)
        .iter()
        .any(|g| g.scope == Scope::Assigned)
}

fn may_see(access: &ClinicAccess) -> bool {
    access.allows(
        Resource::Member,
        Action::Manage,
        &Subject {
            member_role: Some(Role::Nurse),
            ..Default::default()
        },
    )
}

pub async fn list(state: &AppState, pa: &PatientAccess) -> Result<Vec<TeamMember>, ApiError> {
    if !may_see(&pa.access) {
        return Err(ApiError::Forbidden);
    }
    let out = state
        .table
        .client
        .query()
        .table_name(&state.table.name)
        .key_condition_expression("pk = :p AND begins_with(sk, :s)")
        .expression_attribute_values(":p", s(keys::clinic_pk(&pa.access.clinic)))
        .expression_attribute_values(":s", s(keys::care_team_prefix(&pa.patient)))
        .limit(100)
        .send()
        .await
        .map_err(fault)?;
    Ok(out
        .items()
        .iter()
        .map(|i| TeamMember {
            member_id: get_opt_s(i, "memberId").unwrap_or_default().to_string(),
            role: get_opt_s(i, "role").unwrap_or_default().to_string(),
            added_at: rfc3339(get_opt_n(i, "addedAt").unwrap_or(0)),
        })
        .collect())
}

fn team_flag(
    state: &AppState,
    pa: &PatientAccess,
    member: &UserId,
    on: bool,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&state.table.name)
            .key(keys::PK, s(keys::clinic_pk(&pa.access.clinic)))
            .key(keys::SK, s(keys::care_sk(member, &pa.patient)))
            .update_expression("SET team = :t, clinicianId = :c, patientId = :p")
            .expression_attribute_values(":t", b(on))
            .expression_attribute_values(":c", s(member.as_str()))
            .expression_attribute_values(":p", s(pa.patient.as_str())),
    )
}

/// The member named, if the caller may manage them (the policy's member row).
async fn managed_member(
    state: &AppState,
    pa: &PatientAccess,
    member_id: &str,
) -> Result<(UserId, shared::tenancy::MemberRecord), ApiError> {
    let member_id = UserId::parse(member_id).ok_or(ApiError::NotFound)?;
    let m = get_member(&state.table, &pa.access.clinic, &member_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let subject = Subject {
        member_role: Some(m.role),
        location: m.location.as_ref().map(|l| l.as_str()),
        ..Default::default()
    };
    pa.access
        .require(Resource::Member, Action::Manage, &subject)?;
    Ok((member_id, m))
}

/// Puts a member on the patient's care team (again: no change).
pub async fn add(
    state: &AppState,
    pa: &PatientAccess,
    member_id: &str,
) -> Result<TeamMember, ApiError> {
    let (member_id, m) = managed_member(state, pa, member_id).await?;
    if !cares(m.role) {
        return Err(ApiError::unprocessable(
            "not_a_carer",
            "Only members who treat, nurse or dispense for patients can be on a care team.",
        ));
    }
    let now = state.clock.now().as_second();
    let mut tx = Tx::default();
    tx.push(tx_put(
        Put::builder()
            .table_name(&state.table.name)
            .item(keys::PK, s(keys::clinic_pk(&pa.access.clinic)))
            .item(keys::SK, s(keys::care_team_sk(&pa.patient, &member_id)))
            .item(keys::ENTITY, s("CARE_TEAM_MEMBER"))
            .item("memberId", s(member_id.as_str()))
            .item("patientId", s(pa.patient.as_str()))
            .item("role", s(m.role.as_str()))
            .item("addedBy", s(pa.access.caller.user_id.as_str()))
            .item("addedAt", shared::db::n(now)),
    )?);
    tx.push(team_flag(state, pa, &member_id, true)?);
    tx.commit(&state.table).await?;
    Ok(TeamMember {
        member_id: member_id.to_string(),
        role: m.role.as_str().to_string(),
        added_at: rfc3339(now),
    })
}

/// Takes a member off the patient's care team (404 when they were not on it).
pub async fn remove(state: &AppState, pa: &PatientAccess, member_id: &str) -> Result<(), ApiError> {
    let (member_id, _) = managed_member(state, pa, member_id).await?;
    let mut tx = Tx::default();
    tx.guard(
        tx_delete(
            Delete::builder()
                .table_name(&state.table.name)
                .key(keys::PK, s(keys::clinic_pk(&pa.access.clinic)))
                .key(keys::SK, s(keys::care_team_sk(&pa.patient, &member_id)))
                .condition_expression("attribute_exists(pk)"),
        )?,
        NOT_ON_TEAM,
    );
    tx.push(team_flag(state, pa, &member_id, false)?);
    match tx.commit(&state.table).await {
        Err(ApiError::Guarded(g)) if g == NOT_ON_TEAM => Err(ApiError::NotFound),
        other => other,
    }
}

const NOT_ON_TEAM: shared::error::Guard =
    shared::error::Guard::new("not_on_care_team", "The member is not on the care team.");
