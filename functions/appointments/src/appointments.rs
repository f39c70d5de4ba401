//! Reading and editing appointments: a clinic's list narrowed to the caller's scope, and the
//! edits that are not status changes (free text, queue position).

use jiff::{Timestamp, tz::TimeZone};
use serde::Deserialize;
use shared::{
    ApiError,
    authn::ClinicAccess,
    crypto::Phi,
    db::{self, CHANGED_MEANWHILE, Tx, VersionedUpdate, s},
    http::patch_field,
    ids::{LocationId, UserId},
    policy::{Action, Resource, Scope, widest_scope},
    record::Record,
};

use crate::{
    AppState,
    access::Facts,
    common::{appointment_event, clinic_zone, seal, who},
    input::{err, opt_id, parse_date, parse_instant, text_ok, validation},
    queue,
    rules::Status,
    store::{self, AppointmentRecord},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    doctor_id: Option<String>,
    patient_id: Option<String>,
    location_id: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `from`/`to` as an instant, or a date in the clinic's zone (`from` its start, `to` its end).
fn bound(v: &str, field: &'static str, end: bool, tz: &TimeZone) -> Result<Timestamp, ApiError> {
    if let Some(t) = parse_instant(v) {
        return Ok(t);
    }
    let bad = || {
        ApiError::invalid_field(
            field,
            "invalid_timestamp",
            "Use an RFC 3339 time or a date (YYYY-MM-DD).",
        )
    };
    let d = parse_date(v).ok_or_else(bad)?;
    let d = if end {
        d.tomorrow().map_err(|_| bad())?
    } else {
        d
    };
    d.to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|_| bad())
}

/// One page of the appointments the caller may read, in start order, and the cursor of the
/// next page. Narrow scopes see their own slice whatever they ask for, and every row still
/// passes the policy on its own.
pub async fn list(
    state: &AppState,
    access: &ClinicAccess,
    q: &ListQuery,
) -> Result<(Vec<AppointmentRecord>, Option<String>), ApiError> {
    let Some(scope) = widest_scope(access.role, Resource::Appointment, Action::Read) else {
        return Err(ApiError::Forbidden);
    };
    let mut doctor = opt_id(q.doctor_id.as_deref(), "doctorId", UserId::parse)?;
    let mut patient = opt_id(q.patient_id.as_deref(), "patientId", UserId::parse)?;
    let mut location = opt_id(q.location_id.as_deref(), "locationId", LocationId::parse)?;
    let status = q
        .status
        .as_deref()
        .map(|v| {
            Status::parse(v).ok_or_else(|| {
                ApiError::invalid_field("status", "invalid_status", "Not an appointment status.")
            })
        })
        .transpose()?;
    let me = access.caller.user_id.clone();
    // Narrow scopes see their own slice: patients their appointments, clinicians their own
    // schedule, location heads their location.
    match scope {
        Scope::Own => {
            if patient.as_ref().is_some_and(|p| *p != me) {
                return Err(ApiError::Forbidden);
            }
            patient = Some(me.clone());
        }
        Scope::Assigned => {
            if doctor.as_ref().is_some_and(|d| *d != me) {
                return Err(ApiError::Forbidden);
            }
            doctor = Some(me.clone());
        }
        Scope::Location => {
            let mine = access.location.as_deref().and_then(LocationId::parse);
            if location.is_some() && location != mine {
                return Err(ApiError::Forbidden);
            }
            location = Some(mine.ok_or(ApiError::Forbidden)?);
        }
        Scope::Clinic | Scope::Any => {}
    }
    // The clinic's zone matters only for bounds given as dates: no read otherwise.
    let dated = [&q.from, &q.to]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| parse_instant(v).is_none()));
    let tz = if dated {
        clinic_zone(state, &access.clinic).await?
    } else {
        TimeZone::UTC
    };
    let from = q
        .from
        .as_deref()
        .map(|v| bound(v, "from", false, &tz))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|v| bound(v, "to", true, &tz))
            .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            return Err(ApiError::invalid_field(
                "to",
                "end_before_start",
                "`to` must be after `from`.",
            ));
        }
    }
    let limit = db::page_limit(q.limit)?;
    let query_key = format!(
        "appointments?d={:?}&p={:?}&l={:?}&s={:?}&f={:?}&t={:?}",
        doctor.as_ref().map(UserId::as_str),
        patient.as_ref().map(UserId::as_str),
        location.as_ref().map(LocationId::as_str),
        status.map(Status::as_str),
        from.map(store::iso),
        to.map(store::iso),
    );
    let start = q
        .cursor
        .as_deref()
        .map(|c| state.cursors.open(access.clinic.as_str(), &query_key, c))
        .transpose()?;
    let lo = from.map(store::iso).unwrap_or_else(|| "0".into());
    // Sort keys are "<start>#<id>": "~" sorts after every such key with the same start prefix.
    let hi = to.map(store::iso).unwrap_or_else(|| "~".into());
    let (page, last) = store::appointment_page(
        &state.table,
        &access.clinic,
        store::Narrowing {
            patient: patient.as_ref(),
            doctor: doctor.as_ref(),
            location: location.as_ref(),
            status,
        },
        (lo, hi),
        limit,
        start,
    )
    .await?;
    let mut items = Vec::new();
    for a in page {
        // Defence in depth: every row passes the policy on its own.
        let f = Facts {
            patient: a.patient.to_string(),
            location: a.location.as_ref().map(ToString::to_string),
            assigned: a.doctor == me,
        };
        if access.allows(Resource::Appointment, Action::Read, &f.subject(None)) {
            items.push(a);
        }
    }
    let next = last.map(|k| state.cursors.seal(access.clinic.as_str(), &query_key, &k));
    Ok((items, next))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchBody {
    #[serde(default, deserialize_with = "patch_field")]
    reason: Option<Option<Phi<String>>>,
    #[serde(default, deserialize_with = "patch_field")]
    symptoms: Option<Option<Phi<String>>>,
    #[serde(default, deserialize_with = "patch_field")]
    notes: Option<Option<Phi<String>>>,
    /// 1-based position in the doctor's waiting queue (reception and nurses).
    #[serde(default)]
    queue_position: Option<u32>,
    #[serde(default)]
    version: Option<i64>,
}

/// Applies `body` to `a` (which the caller may read; `f` are its facts) and returns it as it
/// now is. What the caller must be allowed depends on which fields the body changes, so that
/// is checked here, once the body is known not to be empty.
pub async fn update(
    state: &AppState,
    access: &ClinicAccess,
    a: &AppointmentRecord,
    f: &Facts,
    body: &PatchBody,
) -> Result<AppointmentRecord, ApiError> {
    let texts = [
        ("reason", &body.reason),
        ("symptoms", &body.symptoms),
        ("notes", &body.notes),
    ];
    let edits_text = texts.iter().any(|(_, v)| v.is_some());
    if !edits_text && body.queue_position.is_none() {
        return Err(ApiError::invalid_field(
            "body",
            "empty_update",
            "Give at least one field to change.",
        ));
    }
    if edits_text {
        access.require(Resource::Appointment, Action::Update, &f.subject(None))?;
    }
    if body.queue_position.is_some() {
        access.require(Resource::Queue, Action::Manage, &f.subject(None))?;
    }
    if body.version.is_some_and(|v| v != a.version) {
        return Err(CHANGED_MEANWHILE.into());
    }
    let mut errors = Vec::new();
    for (name, v) in texts {
        if let Some(Some(v)) = v {
            if !text_ok(v) {
                errors.push(err(name, "invalid_length", "Use 1 to 4000 characters."));
            }
        }
    }
    if body.queue_position == Some(0) {
        errors.push(err(
            "queuePosition",
            "out_of_range",
            "Positions start at 1.",
        ));
    }
    validation(errors)?;
    let now = state.clock.now();
    let mut b = a.clone();
    if let Some(position) = body.queue_position {
        queue::reorder(state, access, a, position).await?;
    }
    if edits_text {
        let mut u = VersionedUpdate::new();
        for (name, v) in texts {
            match v {
                Some(Some(v)) => {
                    let sealed = seal(state, &a.clinic, &a.id, name, v).await?;
                    u.set(name, s(&sealed));
                    b.sealed.insert(name, sealed);
                }
                Some(None) => {
                    u.remove(name);
                    b.sealed.remove(name);
                }
                None => {}
            }
        }
        let who = who(access);
        let fields: Vec<&str> = texts
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(n, _)| *n)
            .collect();
        b.version += 1;
        b.updated_at = now.as_second();
        let mut tx = Tx::default();
        tx.guard(
            a.update(&state.table, u, now.as_second())?,
            CHANGED_MEANWHILE,
        );
        tx.push(
            appointment_event(
                "appointment.updated",
                &b,
                &who,
                now,
                serde_json::json!({ "fields": fields }),
            )
            .outbox_write(&state.table.name, now.as_second())?,
        );
        tx.push(
            state
                .audit
                .put(&crate::booking::audit_of(
                    access,
                    &b,
                    shared::audit::AuditAction::Update,
                ))
                .await?,
        );
        tx.commit(&state.table).await?;
    }
    Ok(b)
}
