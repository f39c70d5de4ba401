//! Status changes asked for by callers (confirm, check in, start, complete, cancel, reschedule,
//! no-show): each action's body read and validated, then applied through [`lifecycle`].

use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use serde::Deserialize;
use shared::{
    ApiError,
    authn::ClinicAccess,
    crypto::Phi,
    db,
    http::{parse_json, patch_field},
    ids::LocationId,
};

use crate::{
    AppState,
    availability::utc_dates,
    common::{clinic_zone, location_exists, who},
    input::{booking_errors, err, parse_date, parse_kind_field, text_ok, timing, validation},
    lifecycle::{self, Input, illegal},
    rules::{self, Availability, Transition},
    store::{self, AppointmentRecord},
};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: Option<Phi<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RescheduleBody {
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    duration_minutes: Option<i64>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, deserialize_with = "patch_field")]
    location_id: Option<Option<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FollowUpBody {
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    duration_minutes: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CompleteBody {
    #[serde(default)]
    notes: Option<Phi<String>>,
    #[serde(default)]
    follow_up: Option<FollowUpBody>,
}

/// The action's body; no body at all reads as an empty one.
fn body_of<T: serde::de::DeserializeOwned + Default>(v: &serde_json::Value) -> Result<T, ApiError> {
    if v.is_null() {
        return Ok(T::default());
    }
    parse_json(&serde_json::to_vec(v).map_err(ApiError::internal)?)
}

async fn schedule_of(state: &AppState, a: &AppointmentRecord) -> Result<Availability, ApiError> {
    Ok(state
        .ext()
        .get(&state.table, &a.clinic, &a.doctor, state.clock.epoch())
        .await?
        .map(|s| s.availability)
        .unwrap_or_else(|| Availability::closed(lifecycle::DEFAULT_MINUTES)))
}

/// Takes `action` on `a` (the caller may read it and take the action) with the body `raw`, and
/// returns the appointment as it now is, with the follow-up it created, if any.
pub async fn perform(
    state: &AppState,
    access: &ClinicAccess,
    a: &AppointmentRecord,
    action: Transition,
    raw: &serde_json::Value,
) -> Result<(AppointmentRecord, Option<AppointmentRecord>), ApiError> {
    // Illegal transitions answer 409 before any body is looked at.
    rules::next(a.status, action).map_err(|e| illegal(e.from, e.action))?;
    let tz = clinic_zone(state, &access.clinic).await?;
    let now = state.clock.now();
    let input = match action {
        Transition::Cancel => {
            let b: CancelBody = body_of(raw)?;
            match b.reason {
                Some(r) if text_ok(&r) => Input::Cancel { reason: r },
                _ => {
                    return Err(ApiError::invalid_field(
                        "reason",
                        "required",
                        "Say why the appointment is cancelled (1 to 4000 characters).",
                    ));
                }
            }
        }
        Transition::Reschedule => {
            let b: RescheduleBody = body_of(raw)?;
            let mut errors = Vec::new();
            let kind = match &b.kind {
                Some(k) => parse_kind_field(k, "kind", &mut errors),
                None => Some(a.kind),
            };
            let location = match &b.location_id {
                None => a.location.clone(),
                Some(None) => None,
                Some(Some(l)) => match LocationId::parse(l) {
                    Some(l) if location_exists(state, &access.clinic, &l).await? => Some(l),
                    _ => {
                        errors.push(err(
                            "locationId",
                            "unknown_location",
                            "No such location in this clinic.",
                        ));
                        None
                    }
                },
            };
            let Some(starts_at) = b.starts_at.as_deref() else {
                return Err(ApiError::invalid_field(
                    "startsAt",
                    "required",
                    "Give the new start time.",
                ));
            };
            let when = timing(
                "",
                starts_at,
                b.duration_minutes,
                b.ends_at.as_deref(),
                a.minutes,
                &mut errors,
            );
            validation(errors)?;
            let (Some((starts_at, minutes)), Some(kind)) = (when, kind) else {
                return Err(ApiError::internal("validated fields missing"));
            };
            lifecycle::billed_terms_kept(a, kind, minutes)?;
            let av = schedule_of(state, a).await?;
            let mut problems = rules::check_booking(
                kind,
                location.as_ref().map(LocationId::as_str),
                starts_at,
                minutes,
                now,
                &av,
                &tz,
            );
            if a.patient == access.caller.user_id {
                // A patient moves their own booking within the limits they book under.
                let limits = crate::common::booking_limits(state, &access.clinic).await?;
                problems.extend(rules::patient_limits(
                    starts_at,
                    minutes,
                    av.slot_minutes,
                    now,
                    limits.max_days_ahead,
                ));
            }
            validation(booking_errors("", &problems))?;
            Input::Reschedule {
                starts_at,
                minutes,
                kind,
                location,
            }
        }
        Transition::Complete => {
            let b: CompleteBody = body_of(raw)?;
            if b.notes.is_some() && !crate::clinical_notes::treats(access, a) {
                // Clinical notes are the treating clinician's alone.
                return Err(ApiError::Forbidden);
            }
            if b.notes.as_ref().is_some_and(|n| !text_ok(n)) {
                return Err(ApiError::invalid_field(
                    "notes",
                    "invalid_length",
                    "Use 1 to 4000 characters.",
                ));
            }
            let follow_up = match &b.follow_up {
                Some(fu) => Some(follow_up_time(state, a, fu, &tz, now).await?),
                None => None,
            };
            Input::Complete {
                notes: b.notes,
                follow_up,
            }
        }
        _ => {
            let _: Empty = body_of(raw)?;
            Input::None
        }
    };
    let who = who(access);
    // A follow-up may issue an invoice, whose number another invoice may take meanwhile, or
    // lose the period's last unit to another booking: then it is booked again, as a paid visit.
    let mut tries = 0;
    loop {
        let attempt = db::retrying(billing::coverage::NUMBERING_RETRIES, || {
            lifecycle::apply(state, &who, a, action, input.clone(), &tz)
        })
        .await;
        match attempt {
            Err(ApiError::Guarded(billing::coverage::QUOTA_EXHAUSTED)) if tries < 3 => tries += 1,
            other => break other,
        }
    }
}

/// When the follow-up of `a` happens: an exact `startsAt`, or the first free slot on `date`
/// (same doctor, kind and location).
async fn follow_up_time(
    state: &AppState,
    a: &AppointmentRecord,
    fu: &FollowUpBody,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<(Timestamp, i64), ApiError> {
    let av = schedule_of(state, a).await?;
    let minutes = fu.duration_minutes.unwrap_or(a.minutes);
    let location = a.location.as_ref().map(LocationId::as_str);
    let (starts_at, minutes) = match (&fu.starts_at, &fu.date) {
        (Some(at), None) => {
            let mut errors = Vec::new();
            let when = timing("followUp.", at, Some(minutes), None, minutes, &mut errors);
            validation(errors)?;
            when.ok_or_else(|| ApiError::internal("validated fields missing"))?
        }
        (None, Some(d)) => {
            let date = parse_date(d).ok_or_else(|| {
                ApiError::invalid_field("followUp.date", "invalid_date", "Use YYYY-MM-DD.")
            })?;
            // One read of the claims: slot starts are the candidates, and the follow-up's own
            // length (which may differ from the slot length) must be free too.
            let busy = store::busy_cells(&state.table, &a.clinic, &a.doctor, &utc_dates(date, tz)?)
                .await?;
            let slots = rules::free_slots(&av, date, tz, &busy, now);
            let first = slots.iter().find(|s| {
                let end = s.start + SignedDuration::from_mins(minutes);
                rules::check_booking(a.kind, location, s.start, minutes, now, &av, tz).is_empty()
                    && !busy.iter().any(|(b0, b1)| s.start < *b1 && *b0 < end)
            });
            let Some(first) = first else {
                return Err(ApiError::conflict(
                    "no_free_slot",
                    "The doctor has no free time on that date; choose another.",
                ));
            };
            (first.start, minutes)
        }
        _ => {
            return Err(ApiError::invalid_field(
                "followUp",
                "startsAt_or_date",
                "Give either startsAt or date for the follow-up.",
            ));
        }
    };
    let problems = rules::check_booking(a.kind, location, starts_at, minutes, now, &av, tz);
    validation(booking_errors("followUp.", &problems))?;
    Ok((starts_at, minutes))
}
