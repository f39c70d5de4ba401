//! Operations on health records, the same for every kind: create, read, list, the patient's
//! summary, update (a new version), remove (entered in error, a new version too) and history.
//! Every change commits with its audit record and its event in one transaction; every read
//! writes its audit record before it answers, and answers nothing when it cannot.

use aws_sdk_dynamodb::types::Put;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::{
    ApiError,
    audit::AuditAction,
    clinical::{Body, Kind, Status, Stored},
    clock::rfc3339,
    crypto::Phi,
    db::{Item, Tx, n, s, tx_put},
    error::Guard,
    ids::{AppointmentId, RecordId},
    keys,
    outbox::{EventEnvelope, Subject as EventSubject, Who},
    policy::Action,
};

use crate::{AppState, access::PatientAccess, store};

/// Another change to the record was saved since the version the caller read.
const VERSION_MOVED: Guard = Guard::new(
    "version_conflict",
    "The record changed since you read it; read it again and apply your change to the new version.",
);

/// A record as its readers see it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordView {
    pub id: String,
    pub kind: &'static str,
    pub clinic_id: String,
    pub patient_id: String,
    pub version: i64,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter_id: Option<String>,
    pub author_id: String,
    pub author_role: String,
    pub created_at: String,
    pub updated_at: String,
    pub data: Phi<Body>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entered_in_error_reason: Option<Phi<String>>,
}

async fn view(state: &AppState, r: &Stored) -> Result<RecordView, ApiError> {
    let (data, reason) = r.open(&state.envelope).await?;
    Ok(RecordView {
        data,
        entered_in_error_reason: reason,
        ..view_meta(r)
    })
}

async fn views(state: &AppState, rs: &[Stored]) -> Result<Vec<RecordView>, ApiError> {
    let mut out = Vec::with_capacity(rs.len());
    for r in rs {
        out.push(view(state, r).await?);
    }
    Ok(out)
}

fn resource(kind: &Kind) -> String {
    format!("ehr.{}", kind.slug)
}

/// Refuses with the policy's answer, recording the refusal.
async fn require(
    state: &AppState,
    pa: &PatientAccess,
    action: Action,
    kind: Option<&Kind>,
    audit: AuditAction,
) -> Result<(), ApiError> {
    if let Err(e) = pa.require(action, kind) {
        let what = kind.map_or_else(|| "ehr.summary".to_string(), resource);
        pa.denied(state, audit, what).await;
        return Err(e);
    }
    Ok(())
}

/// The body of a new record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewRecord {
    pub data: Value,
    #[serde(default)]
    pub encounter_id: Option<String>,
}

/// The body of a change: the version it applies to, and the fields it replaces (`null`
/// removes an optional one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Change {
    pub version: i64,
    #[serde(default)]
    pub data: Map<String, Value>,
    #[serde(default)]
    pub encounter_id: Option<String>,
}

/// The body of a removal: why, and optionally the version it applies to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Removal {
    pub reason: Phi<String>,
    #[serde(default)]
    pub version: Option<i64>,
}

async fn encounter(
    state: &AppState,
    pa: &PatientAccess,
    id: Option<&str>,
) -> Result<Option<AppointmentId>, ApiError> {
    let Some(id) = id else { return Ok(None) };
    let invalid = || {
        ApiError::invalid_field(
            "encounterId",
            "invalid_encounter",
            "Name an appointment of this patient in this clinic.",
        )
    };
    let a = AppointmentId::parse(id).ok_or_else(invalid)?;
    if store::is_patients_appointment(&state.table, &pa.access.clinic, &pa.patient, &a).await? {
        Ok(Some(a))
    } else {
        Err(invalid())
    }
}

fn version_put(
    state: &AppState,
    r: &Stored,
    sk: String,
    entity: &str,
) -> aws_sdk_dynamodb::types::builders::PutBuilder {
    let mut p = Put::builder()
        .table_name(&state.table.name)
        .item(keys::PK, s(keys::clinic_pk(&r.clinic)))
        .item(keys::SK, s(sk))
        .item(keys::ENTITY, s(entity));
    for (k, v) in r.attributes() {
        p = p.item(k, v);
    }
    p
}

/// Commits version `r` of a record: its current item (new, or replacing `expected`), its
/// version item, the audit record and the event, all or nothing.
async fn commit(
    state: &AppState,
    pa: &PatientAccess,
    r: &Stored,
    expected: Option<i64>,
    action: AuditAction,
    change: &str,
) -> Result<(), ApiError> {
    let mut tx = Tx::default();
    let current = version_put(state, r, r.current_sk(), "EHR_RECORD");
    let current = match expected {
        None => current.condition_expression("attribute_not_exists(pk)"),
        Some(v) => current
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(v)),
    };
    tx.guard(tx_put(current)?, VERSION_MOVED);
    tx.guard(
        tx_put(
            version_put(state, r, r.version_sk(), "EHR_VERSION")
                .condition_expression("attribute_not_exists(pk)"),
        )?,
        VERSION_MOVED,
    );
    tx.push(
        state
            .audit
            .put(&pa.audit(action, resource(r.kind), vec![r.id.to_string()]))
            .await?,
    );
    let who = Who::member(&pa.access.caller.user_id, pa.access.role);
    let now = state.clock.now();
    tx.push(
        EventEnvelope::new(
            &format!("ehr.{}.{change}", r.kind.event),
            Some(&r.clinic),
            who.actor(),
            EventSubject {
                kind: "ehr_record".into(),
                id: r.id.to_string(),
            },
            serde_json::json!({
                "recordId": r.id,
                "patientId": r.patient,
                "kind": r.kind.slug,
                "version": r.version,
            }),
            now,
        )
        .outbox_write(&state.table.name, now.as_second())?,
    );
    tx.commit(&state.table).await
}

pub async fn create(
    state: &AppState,
    pa: &PatientAccess,
    kind: &'static Kind,
    body: NewRecord,
) -> Result<RecordView, ApiError> {
    require(state, pa, Action::Create, Some(kind), AuditAction::Create).await?;
    let data = match body.data {
        Value::Object(_) => kind.read_body(body.data)?,
        _ => {
            return Err(ApiError::invalid_field(
                "data",
                "invalid_type",
                "Give the record's fields as an object.",
            ));
        }
    };
    let encounter = encounter(state, pa, body.encounter_id.as_deref()).await?;
    let now = state.clock.now().as_second();
    let mut r = Stored {
        clinic: pa.access.clinic.clone(),
        patient: pa.patient.clone(),
        kind,
        id: RecordId::generate(),
        version: 1,
        status: Status::Active,
        encounter,
        author: pa.access.caller.user_id.clone(),
        author_role: pa.access.role.as_str().to_string(),
        created_at: now,
        updated_at: now,
        sealed: Default::default(),
        sealed_reason: None,
    };
    r.seal(&state.envelope, &data, None).await?;
    commit(state, pa, &r, None, AuditAction::Create, "created").await?;
    Ok(RecordView {
        data: Phi::new(data),
        ..view_meta(&r)
    })
}

/// The view of `r` without opening its fields (the caller already holds them).
fn view_meta(r: &Stored) -> RecordView {
    RecordView {
        id: r.id.to_string(),
        kind: r.kind.slug,
        clinic_id: r.clinic.to_string(),
        patient_id: r.patient.to_string(),
        version: r.version,
        status: r.status.as_str(),
        encounter_id: r.encounter.as_ref().map(ToString::to_string),
        author_id: r.author.to_string(),
        author_role: r.author_role.clone(),
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
        data: Phi::new(Body::new()),
        entered_in_error_reason: None,
    }
}

async fn load(
    state: &AppState,
    pa: &PatientAccess,
    kind: &'static Kind,
    id: &str,
) -> Result<Stored, ApiError> {
    let id = RecordId::parse(id).ok_or(ApiError::NotFound)?;
    store::current(&state.table, &pa.access.clinic, &pa.patient, kind.slug, &id)
        .await?
        .ok_or(ApiError::NotFound)
}

pub async fn get(
    state: &AppState,
    pa: &PatientAccess,
    kind: &'static Kind,
    id: &str,
) -> Result<RecordView, ApiError> {
    require(state, pa, Action::Read, Some(kind), AuditAction::Read).await?;
    let r = load(state, pa, kind, id).await?;
    let v = view(state, &r).await?;
    state
        .audit
        .record(&pa.audit(AuditAction::Read, resource(kind), vec![v.id.clone()]))
        .await?;
    Ok(v)
}

/// One page of records under `prefix`, for the kinds in `kinds`.
#[allow(clippy::too_many_arguments)]
async fn page_of(
    state: &AppState,
    pa: &PatientAccess,
    query: &str,
    prefix: &str,
    kinds: &[&'static Kind],
    limit: Option<u32>,
    cursor: Option<&str>,
    audit_resource: String,
) -> Result<(Vec<RecordView>, Option<String>), ApiError> {
    let limit = shared::db::page_limit(limit)?;
    let clinic = pa.access.clinic.as_str();
    let start: Option<Item> = cursor
        .map(|c| state.cursors.open(clinic, query, c))
        .transpose()?;
    let (items, last) =
        store::page(&state.table, &pa.access.clinic, prefix, limit, start, true).await?;
    let items: Vec<Stored> = items
        .into_iter()
        .filter(|r| kinds.iter().any(|k| k.slug == r.kind.slug))
        .collect();
    let out = views(state, &items).await?;
    state
        .audit
        .record(&pa.audit(
            AuditAction::Read,
            audit_resource,
            out.iter().map(|v| v.id.clone()).collect(),
        ))
        .await?;
    Ok((out, last.map(|k| state.cursors.seal(clinic, query, &k))))
}

pub async fn list(
    state: &AppState,
    pa: &PatientAccess,
    kind: &'static Kind,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<RecordView>, Option<String>), ApiError> {
    require(state, pa, Action::Read, Some(kind), AuditAction::Read).await?;
    page_of(
        state,
        pa,
        &format!("ehr:{}:{}", pa.patient, kind.slug),
        &keys::ehr_kind_prefix(&pa.patient, kind.slug),
        &[kind],
        limit,
        cursor,
        resource(kind),
    )
    .await
}

/// Every kind of the patient's record the caller may read, one query per page.
pub async fn summary(
    state: &AppState,
    pa: &PatientAccess,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<RecordView>, Option<String>), ApiError> {
    require(state, pa, Action::Read, None, AuditAction::Read).await?;
    page_of(
        state,
        pa,
        &format!("ehr:{}", pa.patient),
        &keys::ehr_patient_prefix(&pa.patient),
        &pa.readable(),
        limit,
        cursor,
        "ehr.summary".into(),
    )
    .await
}

/// The next version of `r`, by the caller, now.
fn next_version(pa: &PatientAccess, r: &Stored, now: i64) -> Stored {
    Stored {
        version: r.version + 1,
        author: pa.access.caller.user_id.clone(),
        author_role: pa.access.role.as_str().to_string(),
        updated_at: now,
        sealed: Default::default(),
        sealed_reason: None,
        ..r.clone()
    }
}

fn entered_in_error() -> ApiError {
    ApiError::conflict(
        "entered_in_error",
        "The record was entered in error; it can no longer change.",
    )
}

pub async fn update(
    state: &AppState,
    pa: &PatientAccess,
    kind: &'static Kind,
    id: &str,
    change: Change,
) -> Result<RecordView, ApiError> {
    require(state, pa, Action::Update, Some(kind), AuditAction::Update).await?;
    let r = load(state, pa, kind, id).await?;
    if r.status == Status::EnteredInError {
        return Err(entered_in_error());
    }
    if r.version != change.version {
        return Err(VERSION_MOVED.into());
    }
    let (current, _) = r.open(&state.envelope).await?;
    let data = kind.merge(current.expose(), change.data)?;
    let mut next = next_version(pa, &r, state.clock.now().as_second());
    if change.encounter_id.is_some() {
        next.encounter = encounter(state, pa, change.encounter_id.as_deref()).await?;
    }
    next.seal(&state.envelope, &data, None).await?;
    commit(
        state,
        pa,
        &next,
        Some(r.version),
        AuditAction::Update,
        "updated",
    )
    .await?;
    Ok(RecordView {
        data: Phi::new(data),
        ..view_meta(&next)
    })
}

pub async fn remove(
    state: &AppState,
    pa: &PatientAccess,
    kind: &'static Kind,
    id: &str,
    removal: Removal,
) -> Result<RecordView, ApiError> {
    require(state, pa, Action::Update, Some(kind), AuditAction::Delete).await?;
    let n = removal.reason.expose().trim().chars().count();
    if !(3..=500).contains(&n) {
        return Err(ApiError::invalid_field(
            "reason",
            "invalid_length",
            "Say why in 3 to 500 characters.",
        ));
    }
    let r = load(state, pa, kind, id).await?;
    if r.status == Status::EnteredInError {
        return Err(entered_in_error());
    }
    if removal.version.is_some_and(|v| v != r.version) {
        return Err(VERSION_MOVED.into());
    }
    let (data, _) = r.open(&state.envelope).await?;
    let mut next = next_version(pa, &r, state.clock.now().as_second());
    next.status = Status::EnteredInError;
    next.seal(&state.envelope, data.expose(), Some(&removal.reason))
        .await?;
    commit(
        state,
        pa,
        &next,
        Some(r.version),
        AuditAction::Delete,
        "entered_in_error",
    )
    .await?;
    Ok(RecordView {
        data,
        entered_in_error_reason: Some(removal.reason),
        ..view_meta(&next)
    })
}

/// Every version of a record, oldest first, a page at a time.
pub async fn history(
    state: &AppState,
    pa: &PatientAccess,
    kind: &'static Kind,
    id: &str,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<RecordView>, Option<String>), ApiError> {
    require(state, pa, Action::Read, Some(kind), AuditAction::Read).await?;
    let r = load(state, pa, kind, id).await?;
    let limit = shared::db::page_limit(limit)?;
    let clinic = pa.access.clinic.as_str();
    let query = format!("ehr-history:{}", r.id);
    let start: Option<Item> = cursor
        .map(|c| state.cursors.open(clinic, &query, c))
        .transpose()?;
    let (items, last) = store::page(
        &state.table,
        &pa.access.clinic,
        &keys::ehr_version_prefix(&pa.patient, kind.slug, &r.id),
        limit,
        start,
        false,
    )
    .await?;
    let out = views(state, &items).await?;
    state
        .audit
        .record(&pa.audit(
            AuditAction::Read,
            format!("{}.history", resource(kind)),
            vec![r.id.to_string()],
        ))
        .await?;
    Ok((out, last.map(|k| state.cursors.seal(clinic, &query, &k))))
}
