//! The audit trail of protected health information: one record per request that reads or
//! changes PHI, in a table of its own that no function may update or delete in.
//!
//! A change writes its record in the same transaction ([`AuditTrail::put`]); a read writes it
//! before anything is returned ([`AuditTrail::record`]) and fails closed: when the record cannot
//! be written the request answers 503 and no PHI leaves. Records carry ids, roles, codes and
//! times only; a break-glass reason, which a clinician writes freely, is sealed under the
//! clinic's keys like any PHI.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::Serialize;

use crate::{
    ApiError,
    clock::Clock,
    crypto::{Envelope, FieldContext, Phi},
    db::{Item, Table, get_opt_n, get_opt_s, get_s, n, s, tx_put},
    http::current_correlation_id,
    ids::{AuditId, ClinicId, UserId},
    keys,
    policy::Role,
};

/// What a request did with the PHI it touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    Read,
    Create,
    Update,
    Delete,
    Export,
    Search,
    BreakGlass,
}

impl AuditAction {
    pub const ALL: [AuditAction; 7] = [
        AuditAction::Read,
        AuditAction::Create,
        AuditAction::Update,
        AuditAction::Delete,
        AuditAction::Export,
        AuditAction::Search,
        AuditAction::BreakGlass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Read => "read",
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Export => "export",
            AuditAction::Search => "search",
            AuditAction::BreakGlass => "break-glass",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Whether the request got what it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused by the policy (the caller was told 403 or 404).
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
        }
    }
}

/// Why the access happened, as far as the platform can tell from the caller's relation to
/// the patient: treatment, the patient's own access, clinic operations, platform support, or
/// an emergency override.
pub fn purpose_of(role: Role, own: bool, break_glass: bool) -> &'static str {
    if break_glass {
        "emergency"
    } else if own {
        "own-record"
    } else {
        match role {
            Role::SuperAdmin => "platform-support",
            Role::ClinicAdmin | Role::ClinicLocationHead => "operations",
            _ => "treatment",
        }
    }
}

/// One access, before it is written.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub clinic: ClinicId,
    pub actor: UserId,
    /// The actor's role in the clinic; none for a person's access to their own information
    /// outside any clinic (recorded as `self`).
    pub role: Option<Role>,
    /// The person whose information it was (a patient, or a member whose contact details
    /// were read), when there is one.
    pub patient: Option<UserId>,
    pub action: AuditAction,
    /// What kind of information, e.g. `ehr.vitals`, `ehr.summary`, `appointment`.
    pub resource: String,
    /// Every record returned or changed.
    pub ids: Vec<String>,
    pub purpose: &'static str,
    /// A break-glass reason (sealed when written).
    pub reason: Option<Phi<String>>,
    pub outcome: Outcome,
}

impl AuditEntry {
    /// A successful access by a clinic's member to `patient`'s information.
    pub fn by(
        access: &crate::authn::ClinicAccess,
        patient: &UserId,
        action: AuditAction,
        resource: &str,
        ids: Vec<String>,
    ) -> Self {
        let own = access.caller.user_id == *patient;
        Self {
            clinic: access.clinic.clone(),
            actor: access.caller.user_id.clone(),
            role: Some(access.role),
            patient: Some(patient.clone()),
            action,
            resource: resource.to_string(),
            ids,
            purpose: purpose_of(access.role, own, false),
            reason: None,
            outcome: Outcome::Success,
        }
    }

    /// A successful access by a clinic's member to information about several people at once
    /// (a page of members): the ids say whose.
    pub fn of_clinic(
        access: &crate::authn::ClinicAccess,
        action: AuditAction,
        resource: &str,
        ids: Vec<String>,
    ) -> Self {
        Self {
            clinic: access.clinic.clone(),
            actor: access.caller.user_id.clone(),
            role: Some(access.role),
            patient: None,
            action,
            resource: resource.to_string(),
            ids,
            purpose: purpose_of(access.role, false, false),
            reason: None,
            outcome: Outcome::Success,
        }
    }

    /// A person's access to their own information outside any clinic (their profile, their
    /// inbox), in the platform scope ([`ClinicId::platform`]).
    pub fn own(user: &UserId, action: AuditAction, resource: &str, ids: Vec<String>) -> Self {
        Self {
            clinic: ClinicId::platform(),
            actor: user.clone(),
            role: None,
            patient: Some(user.clone()),
            action,
            resource: resource.to_string(),
            ids,
            purpose: "own-record",
            reason: None,
            outcome: Outcome::Success,
        }
    }
}

/// The scheduled job that seals each clinic's trail (and the platform scope's) day by day.
pub const SEAL_JOB: &str = "audit-seal";

/// The role recorded for an access outside any clinic.
pub const SELF_ROLE: &str = "self";

/// An audit record as its readers see it (the reason opened for those allowed to read it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub id: String,
    pub at: String,
    pub clinic_id: String,
    pub actor_id: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    pub action: String,
    pub resource: String,
    pub resource_ids: Vec<String>,
    pub purpose: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Phi<String>>,
    pub outcome: String,
    pub correlation_id: String,
}

/// The audit table, and the keys that seal a break-glass reason.
#[derive(Clone)]
pub struct AuditTrail {
    pub table: Table,
    envelope: Arc<Envelope>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail")
            .field("table", &self.table.name)
            .finish_non_exhaustive()
    }
}

/// How long a caller should wait before asking again when the trail cannot be written.
const RETRY_AFTER_SECONDS: i64 = 5;

/// The answer when an access cannot be recorded: nothing was returned or changed.
pub fn unavailable() -> ApiError {
    ApiError::Unavailable {
        code: "audit_unavailable",
        detail: "The access could not be recorded, so nothing was returned or changed. Try again shortly."
            .into(),
        retry_after_seconds: RETRY_AFTER_SECONDS,
    }
}

fn reason_field<'a>(clinic: &'a ClinicId, id: &'a str) -> FieldContext<'a> {
    FieldContext {
        tenant: clinic.as_str(),
        entity: "audit",
        record: id,
        field: "reason",
    }
}

impl AuditTrail {
    pub fn new(table: Table, envelope: Arc<Envelope>, clock: Arc<dyn Clock>) -> Self {
        Self {
            table,
            envelope,
            clock,
        }
    }

    /// The put of `e` as a new record (never overwriting one), for a change's transaction.
    pub async fn put(&self, e: &AuditEntry) -> Result<TransactWriteItem, ApiError> {
        let id = AuditId::generate();
        let at = self.clock.now().as_millisecond();
        let sk = keys::audit_sk(at, &id);
        let mut put = Put::builder()
            .table_name(&self.table.name)
            .item(keys::PK, s(keys::audit_pk(&e.clinic)))
            .item(keys::SK, s(&sk))
            .item(keys::ENTITY, s("AUDIT"))
            .item("auditId", s(id.as_str()))
            .item("at", n(at))
            .item("clinicId", s(e.clinic.as_str()))
            .item("actorId", s(e.actor.as_str()))
            .item("role", s(e.role.map_or(SELF_ROLE, Role::as_str)))
            .item("action", s(e.action.as_str()))
            .item("resource", s(&e.resource))
            .item(
                "resourceIds",
                AttributeValue::L(e.ids.iter().map(s).collect()),
            )
            .item("purpose", s(e.purpose))
            .item("outcome", s(e.outcome.as_str()))
            .item("correlationId", s(current_correlation_id()))
            .item(keys::GSI2PK, s(keys::audit_actor_pk(&e.clinic, &e.actor)))
            .item(keys::GSI2SK, s(&sk))
            .item(
                keys::GSI3PK,
                s(keys::audit_action_pk(&e.clinic, e.action.as_str())),
            )
            .item(keys::GSI3SK, s(&sk))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(p) = &e.patient {
            put = put
                .item("patientId", s(p.as_str()))
                .item(keys::GSI1PK, s(keys::audit_patient_pk(p)))
                .item(keys::GSI1SK, s(&sk));
        }
        if let Some(reason) = &e.reason {
            let sealed = self
                .envelope
                .encrypt_str(&reason_field(&e.clinic, id.as_str()), reason)
                .await?;
            put = put.item("reason", s(sealed));
        }
        tx_put(put)
    }

    /// Writes `e` on its own, before a read returns anything. Fails closed: any failure is
    /// the 503 of [`unavailable`], so the caller returns no PHI.
    pub async fn record(&self, e: &AuditEntry) -> Result<(), ApiError> {
        let put = self
            .put(e)
            .await
            .map_err(|_| unavailable())?
            .put
            .ok_or_else(unavailable)?;
        self.table
            .client
            .put_item()
            .table_name(put.table_name)
            .set_item(Some(put.item))
            .set_condition_expression(put.condition_expression)
            .send()
            .await
            .map_err(|err| {
                tracing::error!(
                    error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err),
                    "audit record not written; nothing returned"
                );
                unavailable()
            })?;
        Ok(())
    }

    /// A record as its readers see it; the reason is opened only when `with_reason`.
    pub async fn view(&self, i: &Item, with_reason: bool) -> Result<AuditView, ApiError> {
        let id = get_s(i, "auditId")?.to_string();
        let clinic = ClinicId::parse(get_s(i, "clinicId")?)
            .ok_or_else(|| ApiError::internal("bad clinic id in audit record"))?;
        let reason = match (with_reason, get_opt_s(i, "reason")) {
            (true, Some(blob)) => Some(
                self.envelope
                    .decrypt_str(&reason_field(&clinic, &id), blob)
                    .await?,
            ),
            _ => None,
        };
        let at = get_opt_n(i, "at").unwrap_or(0);
        Ok(AuditView {
            at: jiff::Timestamp::from_millisecond(at)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            clinic_id: clinic.to_string(),
            actor_id: get_s(i, "actorId")?.to_string(),
            role: get_s(i, "role")?.to_string(),
            patient_id: get_opt_s(i, "patientId").map(str::to_string),
            action: get_s(i, "action")?.to_string(),
            resource: get_s(i, "resource")?.to_string(),
            resource_ids: match i.get("resourceIds") {
                Some(AttributeValue::L(l)) => {
                    l.iter().filter_map(|v| v.as_s().ok().cloned()).collect()
                }
                _ => Vec::new(),
            },
            purpose: get_opt_s(i, "purpose").unwrap_or_default().to_string(),
            reason,
            outcome: get_opt_s(i, "outcome").unwrap_or_default().to_string(),
            correlation_id: get_opt_s(i, "correlationId")
                .unwrap_or_default()
                .to_string(),
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_back_and_purposes_follow_the_relation() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("erase"), None);
        assert_eq!(purpose_of(Role::Doctor, false, true), "emergency");
        assert_eq!(purpose_of(Role::Patient, true, false), "own-record");
        assert_eq!(purpose_of(Role::Nurse, false, false), "treatment");
        assert_eq!(
            purpose_of(Role::SuperAdmin, false, false),
            "platform-support"
        );
        assert_eq!(purpose_of(Role::ClinicAdmin, false, false), "operations");
    }

    #[test]
    fn the_unavailable_answer_is_a_503_with_retry_after() {
        let e = unavailable();
        assert_eq!(e.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "audit_unavailable");
    }
}
