//! What the policy needs to know about a request on a patient's health record, and its
//! answer. The tenant comes from the path; the patient must be a patient of that clinic; the
//! caller's relation to them (their own record, a care relation, an open break-glass grant) is
//! read once per request, in one batch.
//!
//! Refusals follow `ROLES.md`: a role the table gives no access of this kind answers 403; a
//! role that would have access to a patient it is not related to answers 404, as if the
//! patient did not exist, and so does anyone looking for a patient of another clinic.

use shared::{
    ApiError,
    audit::{AuditAction, AuditEntry, Outcome, purpose_of},
    authn::ClinicAccess,
    clinical::Kind,
    db::{get_opt_n, get_opt_s, key},
    ids::UserId,
    keys,
    policy::{Action, Limit, Resource, Role, Scope, Subject, authorize},
    tenancy::{MemberRecord, care_holds},
};

use crate::AppState;

/// A caller in a clinic, facing one of its patients.
#[derive(Debug, Clone)]
pub struct PatientAccess {
    pub access: ClinicAccess,
    pub patient: UserId,
    pub own: bool,
    pub assigned: bool,
    pub break_glass: bool,
}

fn relates_by(role: Role, scope: Scope, limit: Option<Limit>) -> bool {
    [Action::Read, Action::Create, Action::Update]
        .into_iter()
        .flat_map(|a| authorize(role, Resource::EhrRecord, a))
        .any(|g| g.scope == scope && limit.is_none_or(|l| g.limit == l))
}

/// Resolves the patient of the path for this caller: 404 unless they are a patient of the
/// clinic. Reads the care relation and break-glass grant only for roles the table relates
/// that way.
pub async fn patient(
    state: &AppState,
    access: &ClinicAccess,
    patient_id: &str,
) -> Result<PatientAccess, ApiError> {
    let patient = UserId::parse(patient_id).ok_or(ApiError::NotFound)?;
    let caller = &access.caller.user_id;
    let own = patient == *caller;
    let pk = keys::clinic_pk(&access.clinic);
    let (member_sk, care_sk, glass_sk) = (
        keys::member_sk(&patient),
        keys::care_sk(caller, &patient),
        keys::break_glass_sk(&patient, caller),
    );
    // The patient's membership, and the relations the table could give this role, in one read.
    let mut wanted = vec![key(pk.clone(), member_sk.clone())];
    if !own && relates_by(access.role, Scope::Assigned, None) {
        wanted.push(key(pk.clone(), care_sk.clone()));
    }
    if !own && relates_by(access.role, Scope::Clinic, Some(Limit::BreakGlass)) {
        wanted.push(key(pk.clone(), glass_sk.clone()));
    }
    let items = state.table.batch_get(wanted).await?;
    let item = |sk: &str| items.iter().find(|i| get_opt_s(i, keys::SK) == Some(sk));
    let is_patient = item(&member_sk)
        .map(MemberRecord::from_item)
        .transpose()?
        .is_some_and(|m| m.role == Role::Patient);
    if !is_patient {
        return Err(ApiError::NotFound);
    }
    let now = state.clock.now().as_second();
    let assigned = item(&care_sk).is_some_and(|i| care_holds(i, now));
    let break_glass = !assigned
        && item(&glass_sk).is_some_and(|i| get_opt_n(i, "until").is_some_and(|u| u > now));
    Ok(PatientAccess {
        access: access.clone(),
        patient,
        own,
        assigned,
        break_glass,
    })
}

impl PatientAccess {
    fn subject(&self, kind: Option<&Kind>) -> Subject<'_> {
        // The hypothetical "related" caller of [`Self::require`] owns the record.
        let owner = if self.own {
            self.access.caller.user_id.as_str()
        } else {
            self.patient.as_str()
        };
        Subject {
            owner: Some(owner),
            assigned: self.assigned,
            facet: kind.and_then(|k| k.facet),
            break_glass: self.break_glass,
            ..Default::default()
        }
    }

    /// Whether the caller may do `action` on records of `kind`.
    pub fn may(&self, action: Action, kind: &Kind) -> bool {
        self.access
            .allows(Resource::EhrRecord, action, &self.subject(Some(kind)))
    }

    /// The kinds the caller may read, in summary order.
    pub fn readable(&self) -> Vec<&'static Kind> {
        crate::kinds::ALL
            .iter()
            .copied()
            .filter(|k| self.may(Action::Read, k))
            .collect()
    }

    /// Ok when the caller may do `action` on `kind` (or, without a kind, read some kind);
    /// otherwise 404 when only a relation to the patient is missing, else 403.
    pub fn require(&self, action: Action, kind: Option<&Kind>) -> Result<(), ApiError> {
        let ok = match kind {
            Some(k) => self.may(action, k),
            None => !self.readable().is_empty(),
        };
        if ok {
            return Ok(());
        }
        // Would the caller have it with a relation to this patient?
        let related = PatientAccess {
            own: true,
            assigned: true,
            break_glass: true,
            ..self.clone()
        };
        let with_relation = match kind {
            Some(k) => related.may(action, k),
            None => !related.readable().is_empty(),
        };
        if with_relation && !self.own && !self.assigned {
            Err(ApiError::NotFound)
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// The audit entry of this request.
    pub fn audit(&self, action: AuditAction, resource: String, ids: Vec<String>) -> AuditEntry {
        AuditEntry {
            clinic: self.access.clinic.clone(),
            actor: self.access.caller.user_id.clone(),
            role: Some(self.access.role),
            patient: Some(self.patient.clone()),
            action,
            resource,
            ids,
            purpose: purpose_of(self.access.role, self.own, self.break_glass),
            reason: None,
            outcome: Outcome::Success,
        }
    }

    /// Records a refusal (best effort: no PHI is returned either way).
    pub async fn denied(&self, state: &AppState, action: AuditAction, resource: String) {
        let mut e = self.audit(action, resource, Vec::new());
        e.outcome = Outcome::Denied;
        if state.audit.record(&e).await.is_err() {
            tracing::warn!("a refused access could not be recorded");
        }
    }
}
