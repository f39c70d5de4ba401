//! Reading the audit trail: a clinic's, for its admins (filtered by patient, actor, action and
//! time, newest first, one page read per page), and a patient's own access log (who looked at
//! their record, in which role, when and why, across their clinics). Reading the trail is
//! itself audited.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    audit::{AuditAction, AuditEntry, AuditView, Outcome, purpose_of},
    authn::{Caller, ClinicAccess},
    crypto::Phi,
    db::{Item, fault, get_opt_s, s},
    ids::{ClinicId, UserId},
    keys,
    policy::{Action, Resource, Role, Subject},
};

use crate::AppState;

/// The filters of a clinic's trail.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrailQuery {
    pub patient_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn bad(field: &'static str, message: &'static str) -> ApiError {
    ApiError::bad_request("invalid_query", format!("`{field}`: {message}"))
}

fn instant_ms(field: &'static str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|v| {
        v.parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|_| bad(field, "use an RFC 3339 time."))
    })
    .transpose()
}

/// One page of the trail: the index and partition the narrowest filter names, its time range
/// as a key range, the other filters as a filter, newest first.
struct Page<'a> {
    index: Option<(&'static str, &'static str, &'static str)>,
    pk: String,
    filters: Vec<(&'static str, AttributeValue)>,
    not_actor: Option<&'a UserId>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
}

async fn read_page(
    state: &AppState,
    p: Page<'_>,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<Item>, Option<Item>), ApiError> {
    let (pk_attr, sk_attr) = match p.index {
        Some((_, pk, sk)) => (pk, sk),
        None => (keys::PK, keys::SK),
    };
    let mut cond = "#pk = :pk".to_string();
    let mut q = state
        .audit
        .table
        .client
        .query()
        .table_name(&state.audit.table.name)
        .set_index_name(p.index.map(|(i, _, _)| i.to_string()))
        .expression_attribute_names("#pk", pk_attr)
        .expression_attribute_values(":pk", s(p.pk))
        .scan_index_forward(false)
        .limit(limit)
        .set_exclusive_start_key(start);
    if p.from_ms.is_some() || p.to_ms.is_some() {
        cond.push_str(" AND #sk BETWEEN :from AND :to");
        q = q
            .expression_attribute_names("#sk", sk_attr)
            .expression_attribute_values(":from", s(format!("{:013}", p.from_ms.unwrap_or(0))))
            .expression_attribute_values(
                ":to",
                s(format!("{:013}~", p.to_ms.unwrap_or(9_999_999_999_999))),
            );
    }
    let mut filters = Vec::new();
    for (i, (attr, v)) in p.filters.into_iter().enumerate() {
        filters.push(format!("#f{i} = :f{i}"));
        q = q
            .expression_attribute_names(format!("#f{i}"), attr)
            .expression_attribute_values(format!(":f{i}"), v);
    }
    if let Some(me) = p.not_actor {
        filters.push("#actor <> :me AND #outcome = :ok".into());
        q = q
            .expression_attribute_names("#actor", "actorId")
            .expression_attribute_names("#outcome", "outcome")
            .expression_attribute_values(":me", s(me.as_str()))
            .expression_attribute_values(":ok", s(Outcome::Success.as_str()));
    }
    if !filters.is_empty() {
        q = q.filter_expression(filters.join(" AND "));
    }
    let out = q
        .key_condition_expression(cond)
        .send()
        .await
        .map_err(fault)?;
    Ok((
        out.items().to_vec(),
        out.last_evaluated_key.filter(|k| !k.is_empty()),
    ))
}

/// A clinic's trail, for those the policy lets read it (clinic admins, super admins).
pub async fn clinic_trail(
    state: &AppState,
    access: &ClinicAccess,
    q: TrailQuery,
) -> Result<(Vec<AuditView>, Option<String>), ApiError> {
    access.require(Resource::AuditTrail, Action::Read, &Subject::default())?;
    let patient = q
        .patient_id
        .as_deref()
        .map(|p| UserId::parse(p).ok_or_else(|| bad("patientId", "not a user id.")))
        .transpose()?;
    let actor = q
        .actor_id
        .as_deref()
        .map(|a| UserId::parse(a).ok_or_else(|| bad("actorId", "not a user id.")))
        .transpose()?;
    let action = q
        .action
        .as_deref()
        .map(|a| {
            AuditAction::parse(a).ok_or_else(|| {
                bad(
                    "action",
                    "use read, create, update, delete, export, search or break-glass.",
                )
            })
        })
        .transpose()?;
    let (from_ms, to_ms) = (
        instant_ms("from", q.from.as_deref())?,
        instant_ms("to", q.to.as_deref())?,
    );
    let clinic = &access.clinic;
    let mut filters = Vec::new();
    let (index, pk) = if let Some(p) = &patient {
        filters.push(("clinicId", s(clinic.as_str())));
        (
            Some((keys::GSI1, keys::GSI1PK, keys::GSI1SK)),
            keys::audit_patient_pk(p),
        )
    } else if let Some(a) = &actor {
        (
            Some((keys::GSI2, keys::GSI2PK, keys::GSI2SK)),
            keys::audit_actor_pk(clinic, a),
        )
    } else if let Some(a) = action {
        (
            Some((keys::GSI3, keys::GSI3PK, keys::GSI3SK)),
            keys::audit_action_pk(clinic, a.as_str()),
        )
    } else {
        (None, keys::audit_pk(clinic))
    };
    if let (Some(_), Some(a)) = (&patient, &actor) {
        filters.push(("actorId", s(a.as_str())));
    }
    if let Some(a) = action.filter(|_| patient.is_some() || actor.is_some()) {
        filters.push(("action", s(a.as_str())));
    }
    let query = format!(
        "audit:{}:{}:{}:{}:{}",
        q.patient_id.as_deref().unwrap_or_default(),
        q.actor_id.as_deref().unwrap_or_default(),
        q.action.as_deref().unwrap_or_default(),
        from_ms.unwrap_or(0),
        to_ms.unwrap_or(0),
    );
    let limit = shared::db::page_limit(q.limit)?;
    let start = q
        .cursor
        .as_deref()
        .map(|c| state.cursors.open(clinic.as_str(), &query, c))
        .transpose()?;
    let page = Page {
        index,
        pk,
        filters,
        not_actor: None,
        from_ms,
        to_ms,
    };
    let (items, last) = read_page(state, page, limit, start).await?;
    let mut views = Vec::with_capacity(items.len());
    for i in &items {
        views.push(state.audit.view(i, true).await?);
    }
    state
        .audit
        .record(&AuditEntry {
            clinic: clinic.clone(),
            actor: access.caller.user_id.clone(),
            role: Some(access.role),
            patient,
            action: AuditAction::Read,
            resource: "audit".into(),
            ids: views.iter().map(|v| v.id.clone()).collect(),
            purpose: purpose_of(access.role, false, false),
            reason: None,
            outcome: Outcome::Success,
        })
        .await?;
    Ok((
        views,
        last.map(|k| state.cursors.seal(clinic.as_str(), &query, &k)),
    ))
}

/// One access to a patient's record, as they see it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessView {
    at: String,
    clinic_id: String,
    actor: Actor,
    action: String,
    resource: String,
    purpose: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Phi<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Actor {
    id: String,
    name: Phi<String>,
    role: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLogQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Who else accessed the caller's record: every successful access by someone else, newest
/// first, with their name and role, when, what and why.
pub async fn access_log(
    state: &AppState,
    caller: &Caller,
    q: AccessLogQuery,
) -> Result<(Vec<AccessView>, Option<String>), ApiError> {
    let me = &caller.user_id;
    let tenant = format!("user:{me}");
    let limit = shared::db::page_limit(q.limit)?;
    let start = q
        .cursor
        .as_deref()
        .map(|c| state.cursors.open(&tenant, "access-log", c))
        .transpose()?;
    let page = Page {
        index: Some((keys::GSI1, keys::GSI1PK, keys::GSI1SK)),
        pk: keys::audit_patient_pk(me),
        filters: Vec::new(),
        not_actor: Some(me),
        from_ms: None,
        to_ms: None,
    };
    let (items, last) = read_page(state, page, limit, start).await?;
    let mut actors: Vec<UserId> = items
        .iter()
        .filter_map(|i| get_opt_s(i, "actorId").and_then(UserId::parse))
        .collect();
    actors.sort();
    actors.dedup();
    let profiles = state.identities.profiles(&actors).await?;
    let name_of = |id: &str| {
        UserId::parse(id)
            .and_then(|u| profiles.get(&u))
            .map(|p| {
                let part = |f: &str| p.get(f).map(|v| v.expose().clone()).unwrap_or_default();
                format!("{} {}", part("givenName"), part("familyName"))
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::with_capacity(items.len());
    let mut clinics: Vec<(ClinicId, Vec<String>)> = Vec::new();
    for i in &items {
        let v = state.audit.view(i, true).await?;
        if let Some(c) = ClinicId::parse(&v.clinic_id) {
            match clinics.iter_mut().find(|(k, _)| *k == c) {
                Some((_, ids)) => ids.push(v.id.clone()),
                None => clinics.push((c, vec![v.id.clone()])),
            }
        }
        out.push(AccessView {
            at: v.at,
            clinic_id: v.clinic_id,
            actor: Actor {
                name: Phi::new(name_of(&v.actor_id)),
                id: v.actor_id,
                role: v.role,
            },
            action: v.action,
            resource: v.resource,
            purpose: v.purpose,
            reason: v.reason,
        });
    }
    // Reading the trail is audited too: in each clinic whose records were shown.
    for (clinic, ids) in clinics {
        state
            .audit
            .record(&AuditEntry {
                clinic,
                actor: me.clone(),
                role: Some(Role::Patient),
                patient: Some(me.clone()),
                action: AuditAction::Read,
                resource: "audit.access-log".into(),
                ids,
                purpose: purpose_of(Role::Patient, true, false),
                reason: None,
                outcome: Outcome::Success,
            })
            .await?;
    }
    Ok((
        out,
        last.map(|k| state.cursors.seal(&tenant, "access-log", &k)),
    ))
}
