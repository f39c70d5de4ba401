//! HTTP handlers. Every handler authorises through the policy table; anything the caller may
//! not read answers 404, exactly like something that does not exist.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    response::Response,
};
use http::StatusCode;
use jiff::{SignedDuration, Timestamp, civil::Date, tz::TimeZone};
use serde::{Deserialize, Deserializer, Serialize};
use shared::{
    ApiError, FieldError,
    authn::ClinicAccess,
    crypto::Phi,
    db::{self, CHANGED_MEANWHILE, Tx, VersionedUpdate, s},
    error::Guard,
    http::{Json, OptionalJson, Query, json_response, parse_json},
    ids::{AppointmentId, ClinicId, LocationId, SubscriptionId, UserId},
    keys,
    policy::{
        Action, Facet, Limit, Resource, Role, Scope, Subject, has_facet, reaches_assigned,
        widest_scope,
    },
};

use crate::{
    AppState, Who, appointment_event, clinic_zone,
    lifecycle::{self, Input, illegal},
    phi_field,
    rules::{
        self, Availability, BookingProblem, Exception, Interval, Kind, Shift, Status, Transition,
    },
    seal,
    store::{self, AppointmentRecord},
};

const WEEKDAYS: [&str; 7] = [
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
];
/// Free text (reasons, symptoms, notes) is capped so a record stays small.
const MAX_TEXT: usize = 4000;
const MAX_EXCEPTIONS: usize = 366;

/// `null` clears a field; an absent field stays as it is.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Whether the caller sees the appointment's reason, symptoms and notes.
fn sees_phi(access: &ClinicAccess, a: &AppointmentRecord) -> bool {
    a.patient == access.caller.user_id || has_facet(access.role, Facet::ReadsAppointmentText)
}

/// What the policy needs to know about an appointment.
struct Facts {
    patient: String,
    location: Option<String>,
    assigned: bool,
}

impl Facts {
    fn subject(&self, facet: Option<Limit>) -> Subject<'_> {
        Subject {
            owner: Some(&self.patient),
            location: self.location.as_deref(),
            assigned: self.assigned,
            member_role: None,
            facet,
        }
    }
}

/// A clinician is assigned to an appointment when they are its doctor or have a non-cancelled
/// appointment with its patient.
async fn assigned(
    state: &AppState,
    access: &ClinicAccess,
    doctor: &UserId,
    patient: &UserId,
) -> Result<bool, ApiError> {
    if access.caller.user_id == *doctor {
        return Ok(true);
    }
    if !reaches_assigned(access.role, Resource::Appointment) {
        return Ok(false);
    }
    store::is_assigned(
        &state.table,
        &access.clinic,
        &access.caller.user_id,
        patient,
    )
    .await
}

async fn facts(
    state: &AppState,
    access: &ClinicAccess,
    a: &AppointmentRecord,
) -> Result<Facts, ApiError> {
    Ok(Facts {
        patient: a.patient.to_string(),
        location: a.location.as_ref().map(ToString::to_string),
        assigned: assigned(state, access, &a.doctor, &a.patient).await?,
    })
}

/// The appointment, if it exists in this clinic and the caller may read it; else 404.
async fn load_visible(
    state: &AppState,
    access: &ClinicAccess,
    id: &str,
) -> Result<(AppointmentRecord, Facts), ApiError> {
    let id = AppointmentId::parse(id).ok_or(ApiError::NotFound)?;
    let a = store::get_appointment(&state.table, &access.clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let f = facts(state, access, &a).await?;
    if !access.allows(Resource::Appointment, Action::Read, &f.subject(None)) {
        return Err(ApiError::NotFound);
    }
    Ok((a, f))
}

// ---------------------------------------------------------------- views

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentView {
    id: String,
    clinic_id: String,
    doctor_id: String,
    patient_id: String,
    location_id: Option<String>,
    kind: &'static str,
    status: &'static str,
    starts_at: String,
    ends_at: String,
    duration_minutes: i64,
    reschedules: u32,
    follow_up_of: Option<String>,
    follow_up_id: Option<String>,
    checked_in_at: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
    cancelled_at: Option<String>,
    version: i64,
    created_at: String,
    updated_at: String,
    /// Coverage by a subscription, when booked with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    billing: Option<store::Billing>,
    #[serde(flatten)]
    phi: BTreeMap<&'static str, String>,
}

fn opt_time(t: Option<i64>) -> Option<String> {
    t.map(shared::clock::rfc3339)
}

/// The view of `a`; PHI fields are decrypted only when `with_phi`.
async fn view(
    state: &AppState,
    a: &AppointmentRecord,
    with_phi: bool,
) -> Result<AppointmentView, ApiError> {
    let mut phi = BTreeMap::new();
    if with_phi {
        for (field, blob) in &a.sealed {
            let value = state
                .envelope
                .decrypt_str(&phi_field(&a.clinic, &a.id, field), blob)
                .await?;
            phi.insert(*field, value.into_inner());
        }
    }
    Ok(AppointmentView {
        id: a.id.to_string(),
        clinic_id: a.clinic.to_string(),
        doctor_id: a.doctor.to_string(),
        patient_id: a.patient.to_string(),
        location_id: a.location.as_ref().map(ToString::to_string),
        kind: store::kind_str(a.kind),
        status: a.status.as_str(),
        starts_at: store::iso(a.starts_at),
        ends_at: store::iso(a.ends_at()),
        duration_minutes: a.minutes,
        reschedules: a.reschedules,
        follow_up_of: a.follow_up_of.as_ref().map(ToString::to_string),
        follow_up_id: a.follow_up_id.as_ref().map(ToString::to_string),
        checked_in_at: opt_time(a.checked_in_at),
        started_at: opt_time(a.started_at),
        completed_at: opt_time(a.completed_at),
        cancelled_at: opt_time(a.cancelled_at),
        version: a.version,
        created_at: shared::clock::rfc3339(a.created_at),
        updated_at: shared::clock::rfc3339(a.updated_at),
        billing: a.billing.clone(),
        phi,
    })
}

// ---------------------------------------------------------------- parsing helpers

fn err(
    field: impl Into<std::borrow::Cow<'static, str>>,
    code: &'static str,
    message: &'static str,
) -> FieldError {
    FieldError::new(field, code, message)
}

fn parse_time_of_day(v: &str) -> Option<jiff::civil::Time> {
    let b = v.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let h: i8 = v[..2].parse().ok()?;
    let m: i8 = v[3..].parse().ok()?;
    jiff::civil::Time::new(h, m, 0, 0).ok()
}

fn fmt_time(t: jiff::civil::Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

fn parse_date(v: &str) -> Option<Date> {
    (v.len() == 10).then(|| v.parse().ok()).flatten()
}

fn parse_instant(v: &str) -> Option<Timestamp> {
    v.parse().ok()
}

/// When a booking starts and how long it lasts, from `startsAt` and either `durationMinutes`
/// or `endsAt` (neither: `default_minutes`). Problems are added to `errors` under `prefix`.
fn timing(
    prefix: &str,
    starts_at: &str,
    duration: Option<i64>,
    ends_at: Option<&str>,
    default_minutes: i64,
    errors: &mut Vec<FieldError>,
) -> Option<(Timestamp, i64)> {
    let start = parse_instant(starts_at);
    if start.is_none() {
        errors.push(err(
            format!("{prefix}startsAt"),
            "invalid_timestamp",
            "Use an RFC 3339 time with an offset, such as 2026-11-24T09:00:00Z.",
        ));
    }
    let minutes = match (duration, ends_at) {
        (Some(_), Some(_)) => {
            errors.push(err(
                format!("{prefix}endsAt"),
                "conflicting",
                "Give durationMinutes or endsAt, not both.",
            ));
            None
        }
        (Some(m), None) => Some(m),
        (None, Some(e)) => match (parse_instant(e), start) {
            (None, _) => {
                errors.push(err(
                    format!("{prefix}endsAt"),
                    "invalid_timestamp",
                    "Use an RFC 3339 time with an offset, such as 2026-11-24T09:30:00Z.",
                ));
                None
            }
            (Some(end), Some(start)) => {
                let secs = end.duration_since(start).as_secs();
                if secs <= 0 {
                    errors.push(err(
                        format!("{prefix}endsAt"),
                        "end_before_start",
                        "The end must be after the start.",
                    ));
                    None
                } else if secs % 60 != 0 {
                    errors.push(err(
                        format!("{prefix}endsAt"),
                        "not_on_grid",
                        "Appointments start and end on 5-minute steps.",
                    ));
                    None
                } else {
                    Some(secs / 60)
                }
            }
            (Some(_), None) => None,
        },
        (None, None) => Some(default_minutes),
    };
    Some((start?, minutes?))
}

fn booking_errors(prefix: &str, problems: &[BookingProblem]) -> Vec<FieldError> {
    problems
        .iter()
        .map(|p| {
            let message = match p {
                BookingProblem::DurationOutOfRange => "Use 5 to 480 minutes.",
                BookingProblem::NotOnGrid => "Appointments start and end on 5-minute steps.",
                BookingProblem::InThePast => "The time has already passed.",
                BookingProblem::LocationRequired => "In-person appointments need a location.",
                BookingProblem::OutsideHours => {
                    "The doctor does not work at this time (and place)."
                }
            };
            err(format!("{prefix}{}", p.field()), p.code(), message)
        })
        .collect()
}

fn validation(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// An optional id query parameter: absent, or well-formed (422 naming the field).
fn opt_id<T>(
    v: Option<&str>,
    field: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    v.map(|v| {
        parse(v).ok_or_else(|| ApiError::invalid_field(field, "invalid_id", "Not a valid id."))
    })
    .transpose()
}

fn text_ok(v: &Phi<String>) -> bool {
    let n = v.expose().trim().chars().count();
    n > 0 && n <= MAX_TEXT
}

/// A doctor (any clinician with a schedule) who is a member of the clinic.
async fn clinician(
    state: &AppState,
    clinic: &ClinicId,
    user: &UserId,
) -> Result<Option<shared::tenancy::MemberRecord>, ApiError> {
    Ok(shared::tenancy::get_member(&state.table, clinic, user)
        .await?
        .filter(|m| has_facet(m.role, Facet::Clinician) && m.status == "ACTIVE"))
}

async fn location_exists(
    state: &AppState,
    clinic: &ClinicId,
    location: &LocationId,
) -> Result<bool, ApiError> {
    Ok(
        shared::tenancy::get_location(&state.table, clinic, location)
            .await?
            .is_some(),
    )
}

/// The doctor in the path, or 404.
async fn path_doctor(
    state: &AppState,
    access: &ClinicAccess,
    doctor: &str,
) -> Result<(UserId, shared::tenancy::MemberRecord), ApiError> {
    let id = UserId::parse(doctor).ok_or(ApiError::NotFound)?;
    let m = clinician(state, &access.clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((id, m))
}

/// The doctor in the path, if the caller may `action` their schedule (404 for no such doctor,
/// 403 for a schedule the caller may not touch).
async fn schedule_access(
    state: &AppState,
    access: &ClinicAccess,
    doctor: &str,
    action: Action,
) -> Result<UserId, ApiError> {
    let (id, m) = path_doctor(state, access, doctor).await?;
    access.require(
        Resource::Schedule,
        action,
        &schedule_subject(id.as_str(), &m),
    )?;
    Ok(id)
}

fn schedule_subject<'a>(doctor: &'a str, m: &'a shared::tenancy::MemberRecord) -> Subject<'a> {
    Subject {
        owner: Some(doctor),
        location: m.location.as_ref().map(LocationId::as_str),
        assigned: false,
        member_role: Some(m.role),
        facet: None,
    }
}

// ---------------------------------------------------------------- availability

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShiftBody {
    start: String,
    end: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    location_id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct IntervalBody {
    start: String,
    end: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExceptionBody {
    date: String,
    /// Absent or empty: closed that day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shifts: Vec<ShiftBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AvailabilityBody {
    slot_minutes: i64,
    #[serde(default)]
    weekly: BTreeMap<String, Vec<ShiftBody>>,
    #[serde(default)]
    breaks: Vec<IntervalBody>,
    #[serde(default)]
    exceptions: Vec<ExceptionBody>,
    /// The version read; when given, the write fails if someone changed it meanwhile.
    #[serde(default)]
    version: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AvailabilityView {
    doctor_id: String,
    slot_minutes: i64,
    weekly: BTreeMap<&'static str, Vec<ShiftBody>>,
    breaks: Vec<IntervalBody>,
    exceptions: Vec<ExceptionBody>,
    version: i64,
    updated_at: Option<String>,
}

fn shift_view(s: &Shift) -> ShiftBody {
    ShiftBody {
        start: fmt_time(s.hours.start),
        end: fmt_time(s.hours.end),
        location_id: s.location_id.clone(),
    }
}

fn availability_view(doctor: &UserId, a: Option<&store::ScheduleRecord>) -> AvailabilityView {
    let empty = Availability::closed(lifecycle::DEFAULT_MINUTES);
    let av = a.map(|r| &r.availability).unwrap_or(&empty);
    AvailabilityView {
        doctor_id: doctor.to_string(),
        slot_minutes: av.slot_minutes,
        weekly: WEEKDAYS
            .iter()
            .zip(&av.weekly)
            .filter(|(_, v)| !v.is_empty())
            .map(|(d, v)| (*d, v.iter().map(shift_view).collect()))
            .collect(),
        breaks: av
            .breaks
            .iter()
            .map(|i| IntervalBody {
                start: fmt_time(i.start),
                end: fmt_time(i.end),
            })
            .collect(),
        exceptions: av
            .exceptions
            .iter()
            .map(|e| match e {
                Exception::Closed { date } => ExceptionBody {
                    date: date.to_string(),
                    shifts: Vec::new(),
                },
                Exception::Hours { date, shifts } => ExceptionBody {
                    date: date.to_string(),
                    shifts: shifts.iter().map(shift_view).collect(),
                },
            })
            .collect(),
        version: a.map(|r| r.version).unwrap_or(0),
        updated_at: a.map(|r| shared::clock::rfc3339(r.updated_at)),
    }
}

fn parse_interval(
    field: &str,
    start: &str,
    end: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Interval> {
    let (s, e) = (parse_time_of_day(start), parse_time_of_day(end));
    if s.is_none() {
        errors.push(err(format!("{field}.start"), "invalid_time", "Use HH:MM."));
    }
    if e.is_none() {
        errors.push(err(format!("{field}.end"), "invalid_time", "Use HH:MM."));
    }
    let (s, e) = (s?, e?);
    let i = Interval::new(s, e);
    if i.is_none() {
        errors.push(err(
            format!("{field}.end"),
            "end_before_start",
            "The end must be after the start.",
        ));
    }
    if s.minute() % 5 != 0 || e.minute() % 5 != 0 {
        errors.push(err(
            field.to_string(),
            "not_on_grid",
            "Working hours start and end on 5-minute steps.",
        ));
        return None;
    }
    i
}

fn parse_shifts(field: &str, body: &[ShiftBody], errors: &mut Vec<FieldError>) -> Vec<Shift> {
    body.iter()
        .enumerate()
        .filter_map(|(k, sh)| {
            let f = format!("{field}[{k}]");
            let location = match &sh.location_id {
                Some(l) => match LocationId::parse(l) {
                    Some(l) => Some(l.to_string()),
                    None => {
                        errors.push(err(
                            format!("{f}.locationId"),
                            "unknown_location",
                            "No such location in this clinic.",
                        ));
                        return None;
                    }
                },
                None => None,
            };
            let hours = parse_interval(&f, &sh.start, &sh.end, errors)?;
            Some(Shift {
                hours,
                location_id: location,
            })
        })
        .collect()
}

fn parse_availability(body: &AvailabilityBody) -> Result<Availability, ApiError> {
    let mut errors = Vec::new();
    let mut weekly: [Vec<Shift>; 7] = Default::default();
    for (day, shifts) in &body.weekly {
        match WEEKDAYS.iter().position(|d| d == day) {
            Some(i) => weekly[i] = parse_shifts(&format!("weekly.{day}"), shifts, &mut errors),
            None => errors.push(err(
                "weekly",
                "invalid_weekday",
                "Weekdays are MONDAY to SUNDAY.",
            )),
        }
    }
    let breaks = body
        .breaks
        .iter()
        .enumerate()
        .filter_map(|(k, b)| parse_interval(&format!("breaks[{k}]"), &b.start, &b.end, &mut errors))
        .collect();
    if body.exceptions.len() > MAX_EXCEPTIONS {
        errors.push(err("exceptions", "too_many", "Use at most 366 exceptions."));
    }
    let exceptions = body
        .exceptions
        .iter()
        .enumerate()
        .filter_map(|(k, e)| {
            let Some(date) = parse_date(&e.date) else {
                errors.push(err(
                    format!("exceptions[{k}].date"),
                    "invalid_date",
                    "Use YYYY-MM-DD.",
                ));
                return None;
            };
            let shifts = parse_shifts(&format!("exceptions[{k}].shifts"), &e.shifts, &mut errors);
            Some(if e.shifts.is_empty() {
                Exception::Closed { date }
            } else {
                Exception::Hours { date, shifts }
            })
        })
        .collect();
    let av = Availability {
        weekly,
        breaks,
        exceptions,
        slot_minutes: body.slot_minutes,
    };
    if let Err(e) = av.validate() {
        let (field, code, message) = match e {
            rules::AvailabilityError::SlotLength => (
                "slotMinutes",
                "out_of_range",
                "Use 5 to 240 minutes, in steps of 5.",
            ),
            rules::AvailabilityError::Overlap(_) => (
                "weekly",
                "overlapping_shifts",
                "Shifts on one day must not overlap, even at different locations.",
            ),
            rules::AvailabilityError::DuplicateException(_) => (
                "exceptions",
                "duplicate_date",
                "Each date may have one exception.",
            ),
        };
        errors.push(err(field, code, message));
    }
    validation(errors)?;
    Ok(av)
}

pub async fn get_availability(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, doctor)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = schedule_access(&state, &access, &doctor, Action::Read).await?;
    let rec = store::get_schedule(&state.table, &access.clinic, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &availability_view(&id, rec.as_ref()),
    ))
}

pub async fn put_availability(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, doctor)): Path<(String, String)>,
    Json(body): Json<AvailabilityBody>,
) -> Result<Response, ApiError> {
    let id = schedule_access(&state, &access, &doctor, Action::Update).await?;
    let av = parse_availability(&body)?;
    let mut errors = Vec::new();
    for l in av.locations() {
        let known = match LocationId::parse(l) {
            Some(l) => location_exists(&state, &access.clinic, &l).await?,
            None => false,
        };
        if !known {
            errors.push(err(
                "weekly",
                "unknown_location",
                "A shift names a location that is not in this clinic.",
            ));
        }
    }
    validation(errors)?;
    let current = store::get_schedule(&state.table, &access.clinic, &id).await?;
    let expected = current.as_ref().map(|c| c.version).unwrap_or(0);
    if body.version.is_some_and(|v| v != expected) {
        return Err(CHANGED_MEANWHILE.into());
    }
    let now = state.clock.now().as_second();
    let mut tx = Tx::default();
    tx.guard(
        store::put_schedule(&state.table, &access.clinic, &id, &av, expected, now)?,
        CHANGED_MEANWHILE,
    );
    tx.commit(&state.table).await?;
    let rec = store::ScheduleRecord {
        availability: av,
        version: expected + 1,
        updated_at: now,
    };
    Ok(json_response(
        StatusCode::OK,
        &availability_view(&id, Some(&rec)),
    ))
}

// ---------------------------------------------------------------- slots

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlotQuery {
    date: Option<String>,
    location_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SlotView {
    starts_at: String,
    ends_at: String,
    location_id: Option<String>,
}

/// The UTC dates a local date touches (one or two; three around a large offset change).
fn utc_dates(date: Date, tz: &TimeZone) -> Result<Vec<Date>, ApiError> {
    let start = date
        .to_zoned(tz.clone())
        .map_err(|_| ApiError::invalid_field("date", "invalid_date", "Use YYYY-MM-DD."))?;
    let end = start
        .tomorrow()
        .map_err(|_| ApiError::invalid_field("date", "invalid_date", "Use YYYY-MM-DD."))?;
    let first = start.timestamp().to_zoned(TimeZone::UTC).date();
    let last = (end.timestamp() - SignedDuration::from_secs(1))
        .to_zoned(TimeZone::UTC)
        .date();
    let mut out = vec![first];
    let mut d = first;
    while d < last {
        d = d.tomorrow().map_err(ApiError::internal)?;
        out.push(d);
    }
    Ok(out)
}

/// Free slots of `doctor` on a local `date`, given the claims on the dates around it.
async fn free_slots(
    state: &AppState,
    clinic: &ClinicId,
    doctor: &UserId,
    av: &Availability,
    date: Date,
    tz: &TimeZone,
) -> Result<Vec<rules::Slot>, ApiError> {
    let busy = store::busy_cells(&state.table, clinic, doctor, &utc_dates(date, tz)?).await?;
    Ok(rules::free_slots(av, date, tz, &busy, state.clock.now()))
}

pub async fn get_slots(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, doctor)): Path<(String, String)>,
    Query(q): Query<SlotQuery>,
) -> Result<Response, ApiError> {
    let id = schedule_access(&state, &access, &doctor, Action::Read).await?;
    let date = q
        .date
        .as_deref()
        .and_then(parse_date)
        .ok_or_else(|| ApiError::invalid_field("date", "invalid_date", "Use YYYY-MM-DD."))?;
    let location = opt_id(q.location_id.as_deref(), "locationId", LocationId::parse)?;
    let tz = clinic_zone(&state, &access.clinic).await?;
    let rec = store::get_schedule(&state.table, &access.clinic, &id).await?;
    let slots = match &rec {
        Some(r) => free_slots(&state, &access.clinic, &id, &r.availability, date, &tz).await?,
        None => Vec::new(),
    };
    let slots: Vec<SlotView> = slots
        .into_iter()
        .filter(|s| {
            location
                .as_ref()
                .is_none_or(|l| s.location_id.as_deref() == Some(l.as_str()))
        })
        .map(|s| SlotView {
            starts_at: store::iso(s.start),
            ends_at: store::iso(s.end),
            location_id: s.location_id,
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "doctorId": id,
            "date": date.to_string(),
            "timeZone": tz.iana_name(),
            "slotMinutes": rec.map(|r| r.availability.slot_minutes),
            "slots": slots,
        }),
    ))
}

// ---------------------------------------------------------------- booking

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BookBody {
    doctor_id: String,
    #[serde(default)]
    patient_id: Option<String>,
    #[serde(default)]
    location_id: Option<String>,
    kind: String,
    starts_at: String,
    #[serde(default)]
    duration_minutes: Option<i64>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    reason: Option<Phi<String>>,
    #[serde(default)]
    symptoms: Option<Phi<String>>,
    #[serde(default)]
    notes: Option<Phi<String>>,
    /// Book under this subscription of the patient: covered (one unit of quota) or, when not
    /// covered, PENDING with a pay-per-visit invoice.
    #[serde(default)]
    subscription_id: Option<String>,
}

fn parse_kind_field(v: &str, field: &str, errors: &mut Vec<FieldError>) -> Option<Kind> {
    let k = store::parse_kind(v);
    if k.is_none() {
        errors.push(err(
            field.to_string(),
            "invalid_kind",
            "Use IN_PERSON, VIDEO_CALL or HOME_VISIT.",
        ));
    }
    k
}

/// Adds the subscription's coverage of `a` to the booking transaction.
pub(crate) async fn cover(
    state: &AppState,
    tx: &mut Tx,
    a: &AppointmentRecord,
    subscription: &SubscriptionId,
    tz: &TimeZone,
    who: &Who,
    now: Timestamp,
) -> Result<store::Billing, ApiError> {
    use billing::coverage::{Booking, Outcome};
    let booking = Booking {
        clinic: &a.clinic,
        subscription,
        patient: &a.patient,
        appointment: &a.id,
        location: a.location.as_ref(),
        kind: store::kind_str(a.kind),
        tz,
    };
    let outcome = billing::coverage::for_booking(state, tx, &booking, who, now).await?;
    Ok(match outcome {
        Outcome::Covered { currency, .. } => store::Billing {
            subscription_id: subscription.to_string(),
            covered: true,
            reason: None,
            amount_due: 0,
            currency,
            invoice_id: None,
            invoice_number: None,
        },
        Outcome::Uncovered {
            reason,
            amount,
            currency,
            invoice,
        } => store::Billing {
            subscription_id: subscription.to_string(),
            covered: false,
            reason: Some(reason.as_str().to_string()),
            amount_due: amount,
            currency,
            invoice_id: invoice.as_ref().map(|(id, _)| id.to_string()),
            invoice_number: invoice.map(|(_, n)| n),
        },
    })
}

pub async fn book(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<BookBody>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let doctor = UserId::parse(&body.doctor_id);
    if doctor.is_none() {
        errors.push(err(
            "doctorId",
            "unknown_doctor",
            "No such doctor in this clinic.",
        ));
    }
    let patient = match &body.patient_id {
        Some(p) => {
            let id = UserId::parse(p);
            if id.is_none() {
                errors.push(err(
                    "patientId",
                    "unknown_patient",
                    "No such patient in this clinic.",
                ));
            }
            id
        }
        None if access.role == Role::Patient => Some(access.caller.user_id.clone()),
        None => {
            errors.push(err("patientId", "required", "Name the patient."));
            None
        }
    };
    let location = match &body.location_id {
        Some(l) => {
            let id = LocationId::parse(l);
            if id.is_none() {
                errors.push(err(
                    "locationId",
                    "unknown_location",
                    "No such location in this clinic.",
                ));
            }
            id
        }
        None => None,
    };
    let kind = parse_kind_field(&body.kind, "kind", &mut errors);
    let subscription = match &body.subscription_id {
        Some(v) => {
            let id = SubscriptionId::parse(v);
            if id.is_none() {
                errors.push(err(
                    "subscriptionId",
                    "unknown_subscription",
                    "No such subscription for this patient.",
                ));
            }
            id
        }
        None => None,
    };
    for (name, v) in [
        ("reason", &body.reason),
        ("symptoms", &body.symptoms),
        ("notes", &body.notes),
    ] {
        if v.as_ref().is_some_and(|v| !text_ok(v)) {
            errors.push(err(name, "invalid_length", "Use 1 to 4000 characters."));
        }
    }
    validation(std::mem::take(&mut errors))?;
    let (Some(doctor), Some(patient), Some(kind)) = (doctor, patient, kind) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    // Authorise before looking anything up, so a refused caller learns nothing about others.
    let f = Facts {
        patient: patient.to_string(),
        location: location.as_ref().map(ToString::to_string),
        assigned: assigned(&state, &access, &doctor, &patient).await?,
    };
    access.require(Resource::Appointment, Action::Create, &f.subject(None))?;
    if clinician(&state, &access.clinic, &doctor).await?.is_none() {
        errors.push(err(
            "doctorId",
            "unknown_doctor",
            "No such doctor in this clinic.",
        ));
    }
    let patient_ok = shared::tenancy::get_member(&state.table, &access.clinic, &patient)
        .await?
        .is_some_and(|m| m.role == Role::Patient && m.status == "ACTIVE");
    if !patient_ok {
        errors.push(err(
            "patientId",
            "unknown_patient",
            "No such patient in this clinic.",
        ));
    }
    if let Some(l) = &location {
        if !location_exists(&state, &access.clinic, l).await? {
            errors.push(err(
                "locationId",
                "unknown_location",
                "No such location in this clinic.",
            ));
        }
    }
    validation(std::mem::take(&mut errors))?;
    let tz = clinic_zone(&state, &access.clinic).await?;
    let schedule = store::get_schedule(&state.table, &access.clinic, &doctor).await?;
    let av = schedule.map(|s| s.availability);
    let default_minutes = av
        .as_ref()
        .map(|a| a.slot_minutes)
        .unwrap_or(lifecycle::DEFAULT_MINUTES);
    let Some((starts_at, minutes)) = timing(
        "",
        &body.starts_at,
        body.duration_minutes,
        body.ends_at.as_deref(),
        default_minutes,
        &mut errors,
    ) else {
        return Err(ApiError::Validation(errors));
    };
    validation(std::mem::take(&mut errors))?;
    let now = state.clock.now();
    let closed = Availability::closed(default_minutes);
    let problems = rules::check_booking(
        kind,
        location.as_ref().map(LocationId::as_str),
        starts_at,
        minutes,
        now,
        av.as_ref().unwrap_or(&closed),
        &tz,
    );
    validation(booking_errors("", &problems))?;
    let id = AppointmentId::generate();
    let mut sealed = BTreeMap::new();
    for (name, v) in [
        ("reason", &body.reason),
        ("symptoms", &body.symptoms),
        ("notes", &body.notes),
    ] {
        if let Some(v) = v {
            sealed.insert(name, seal(&state, &access.clinic, &id, name, v).await?);
        }
    }
    let mut a = AppointmentRecord {
        id,
        clinic: access.clinic.clone(),
        doctor,
        patient,
        location,
        kind,
        status: Status::Pending,
        starts_at,
        minutes,
        reschedules: 0,
        version: 1,
        created_at: now.as_second(),
        updated_at: now.as_second(),
        created_by: Some(access.caller.user_id.to_string()),
        follow_up_of: None,
        follow_up_id: None,
        checked_in_at: None,
        started_at: None,
        completed_at: None,
        cancelled_at: None,
        sealed,
        billing: None,
    };
    let who = Who::member(&access.caller.user_id, access.role);
    a = db::retrying(billing::coverage::NUMBERING_RETRIES, || {
        let (state, who, subscription, tz, mut a) = (&state, &who, &subscription, &tz, a.clone());
        async move {
            let mut tx = Tx::default();
            if let Some(sub) = subscription {
                a.billing = Some(cover(state, &mut tx, &a, sub, tz, who, now).await?);
            }
            lifecycle::add_booking(state, &mut tx, &a, who, now).await?;
            tx.commit(&state.table).await?;
            Ok(a)
        }
    })
    .await?;
    let v = view(&state, &a, sees_phi(&access, &a)).await?;
    let mut resp = json_response(StatusCode::CREATED, &v);
    if let Ok(loc) =
        http::HeaderValue::from_str(&format!("/v1/clinics/{}/appointments/{}", a.clinic, a.id))
    {
        resp.headers_mut().insert(http::header::LOCATION, loc);
    }
    Ok(resp)
}

// ---------------------------------------------------------------- list / get / patch

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

pub async fn list_appointments(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
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
        clinic_zone(&state, &access.clinic).await?
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
    let (index, pk_name, sk_name, pk) = match (&patient, &doctor) {
        (Some(p), _) => (
            keys::GSI2,
            keys::GSI2PK,
            keys::GSI2SK,
            keys::patient_appointments_pk(&access.clinic, p),
        ),
        (None, Some(d)) => (
            keys::GSI1,
            keys::GSI1PK,
            keys::GSI1SK,
            keys::doctor_appointments_pk(&access.clinic, d),
        ),
        (None, None) => (
            keys::GSI3,
            keys::GSI3PK,
            keys::GSI3SK,
            keys::clinic_appointments_pk(&access.clinic),
        ),
    };
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
    let mut req = state
        .table
        .client
        .query()
        .table_name(&state.table.name)
        .index_name(index)
        .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
        .expression_attribute_names("#pk", pk_name)
        .expression_attribute_names("#sk", sk_name)
        .expression_attribute_values(":pk", s(pk))
        .expression_attribute_values(":lo", s(lo))
        .expression_attribute_values(":hi", s(hi))
        .limit(limit)
        .set_exclusive_start_key(start);
    let mut filters = Vec::new();
    if let (Some(d), Some(_)) = (&doctor, &patient) {
        filters.push("doctorId = :d");
        req = req.expression_attribute_values(":d", s(d.as_str()));
    }
    if let Some(l) = &location {
        filters.push("locationId = :l");
        req = req.expression_attribute_values(":l", s(l.as_str()));
    }
    if let Some(st) = status {
        filters.push("#status = :s");
        req = req
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":s", s(st.as_str()));
    }
    if !filters.is_empty() {
        req = req.filter_expression(filters.join(" AND "));
    }
    let out = req.send().await.map_err(db::internal)?;
    let mut items = Vec::new();
    for i in out.items() {
        let a = AppointmentRecord::from_item(i)?;
        // Defence in depth: every row passes the policy on its own.
        let f = Facts {
            patient: a.patient.to_string(),
            location: a.location.as_ref().map(ToString::to_string),
            assigned: a.doctor == me,
        };
        if access.allows(Resource::Appointment, Action::Read, &f.subject(None)) {
            // Lists carry no PHI; read one appointment for its reason and notes.
            items.push(view(&state, &a, false).await?);
        }
    }
    let next = out
        .last_evaluated_key()
        .filter(|k| !k.is_empty())
        .map(|k| state.cursors.seal(access.clinic.as_str(), &query_key, k));
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "items": items, "nextCursor": next }),
    ))
}

pub async fn get_appointment(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (a, _) = load_visible(&state, &access, &id).await?;
    let v = view(&state, &a, sees_phi(&access, &a)).await?;
    Ok(json_response(StatusCode::OK, &v))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchBody {
    #[serde(default, deserialize_with = "present")]
    reason: Option<Option<Phi<String>>>,
    #[serde(default, deserialize_with = "present")]
    symptoms: Option<Option<Phi<String>>>,
    #[serde(default, deserialize_with = "present")]
    notes: Option<Option<Phi<String>>>,
    /// 1-based position in the doctor's waiting queue (reception and nurses).
    #[serde(default)]
    queue_position: Option<u32>,
    #[serde(default)]
    version: Option<i64>,
}

pub async fn update_appointment(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
    Json(body): Json<PatchBody>,
) -> Result<Response, ApiError> {
    let (a, f) = load_visible(&state, &access, &id).await?;
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
        reorder(&state, &access, &a, position).await?;
    }
    if edits_text {
        let mut u = VersionedUpdate::new();
        for (name, v) in texts {
            match v {
                Some(Some(v)) => {
                    let sealed = seal(&state, &a.clinic, &a.id, name, v).await?;
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
        let who = Who::member(&access.caller.user_id, access.role);
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
        tx.commit(&state.table).await?;
    }
    let v = view(&state, &b, sees_phi(&access, &b)).await?;
    Ok(json_response(StatusCode::OK, &v))
}

/// Moves a waiting appointment to `position` in its doctor's queue at its location, rewriting
/// the ranks of that queue under conditions on the ranks read.
async fn reorder(
    state: &AppState,
    access: &ClinicAccess,
    a: &AppointmentRecord,
    position: u32,
) -> Result<(), ApiError> {
    if a.status != Status::CheckedIn {
        return Err(not_waiting());
    }
    let tz = clinic_zone(state, &access.clinic).await?;
    let day = lifecycle::local_date(a, &tz);
    let entries = store::queue(&state.table, &access.clinic, day).await?;
    let mut waiting: Vec<&store::QueueEntry> = entries
        .iter()
        .filter(|e| e.doctor == a.doctor && e.location == a.location && e.started_at.is_none())
        .collect();
    let Some(from) = waiting.iter().position(|e| e.appointment == a.id) else {
        return Err(not_waiting());
    };
    let me = waiting.remove(from);
    let to = (position as usize - 1).min(waiting.len());
    waiting.insert(to, me);
    let mut tx = Tx::default();
    for (i, e) in waiting.iter().enumerate() {
        let rank = (i as i64 + 1) * 1000;
        if e.rank != rank {
            tx.guard(
                store::queue_rank(
                    &state.table,
                    &access.clinic,
                    day,
                    &e.appointment,
                    e.rank,
                    rank,
                )?,
                Guard::new(
                    "queue_changed",
                    "The queue changed meanwhile; read it again.",
                ),
            );
        }
    }
    if !tx.is_empty() {
        tx.commit(&state.table).await?;
    }
    Ok(())
}

/// Only checked-in (waiting) appointments have a queue position.
fn not_waiting() -> ApiError {
    ApiError::conflict(
        "not_waiting",
        "Only patients waiting in the queue have a position.",
    )
}

// ---------------------------------------------------------------- actions

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
    #[serde(default, deserialize_with = "present")]
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

fn body_of<T: serde::de::DeserializeOwned + Default>(v: &serde_json::Value) -> Result<T, ApiError> {
    if v.is_null() {
        return Ok(T::default());
    }
    parse_json(&serde_json::to_vec(v).map_err(ApiError::internal)?)
}

async fn schedule_of(state: &AppState, a: &AppointmentRecord) -> Result<Availability, ApiError> {
    Ok(store::get_schedule(&state.table, &a.clinic, &a.doctor)
        .await?
        .map(|s| s.availability)
        .unwrap_or_else(|| Availability::closed(lifecycle::DEFAULT_MINUTES)))
}

pub async fn act(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id, action)): Path<(String, String, String)>,
    OptionalJson(raw): OptionalJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let action = Transition::parse_action(&action).ok_or(ApiError::NotFound)?;
    let (a, f) = load_visible(&state, &access, &id).await?;
    let can = |act: Action, facet: Option<Limit>| {
        access.allows(Resource::Appointment, act, &f.subject(facet))
    };
    let allowed = match action {
        Transition::Confirm | Transition::Start | Transition::Complete | Transition::NoShow => {
            can(Action::Manage, None)
        }
        Transition::CheckIn => can(Action::Manage, Some(Limit::CheckInOnly)),
        Transition::Cancel => can(Action::Delete, None),
        // Moving is changing the booking; a patient, who may cancel and book their own
        // appointments, may also move them.
        Transition::Reschedule => {
            can(Action::Update, None) || (can(Action::Create, None) && can(Action::Delete, None))
        }
        Transition::Expire => false,
    };
    if !allowed {
        return Err(ApiError::Forbidden);
    }
    // Illegal transitions answer 409 before any body is looked at.
    rules::next(a.status, action).map_err(|e| illegal(e.from, e.action))?;
    let tz = clinic_zone(&state, &access.clinic).await?;
    let now = state.clock.now();
    let input = match action {
        Transition::Cancel => {
            let b: CancelBody = body_of(&raw)?;
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
            let b: RescheduleBody = body_of(&raw)?;
            let mut errors = Vec::new();
            let kind = match &b.kind {
                Some(k) => parse_kind_field(k, "kind", &mut errors),
                None => Some(a.kind),
            };
            let location = match &b.location_id {
                None => a.location.clone(),
                Some(None) => None,
                Some(Some(l)) => match LocationId::parse(l) {
                    Some(l) if location_exists(&state, &access.clinic, &l).await? => Some(l),
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
            let av = schedule_of(&state, &a).await?;
            let problems = rules::check_booking(
                kind,
                location.as_ref().map(LocationId::as_str),
                starts_at,
                minutes,
                now,
                &av,
                &tz,
            );
            validation(booking_errors("", &problems))?;
            Input::Reschedule {
                starts_at,
                minutes,
                kind,
                location,
            }
        }
        Transition::Complete => {
            let b: CompleteBody = body_of(&raw)?;
            if b.notes.as_ref().is_some_and(|n| !text_ok(n)) {
                return Err(ApiError::invalid_field(
                    "notes",
                    "invalid_length",
                    "Use 1 to 4000 characters.",
                ));
            }
            let follow_up = match &b.follow_up {
                Some(fu) => Some(follow_up_time(&state, &a, fu, &tz, now).await?),
                None => None,
            };
            Input::Complete {
                notes: b.notes,
                follow_up,
            }
        }
        _ => {
            let _: Empty = body_of(&raw)?;
            Input::None
        }
    };
    let who = Who::member(&access.caller.user_id, access.role);
    // A follow-up may issue an invoice, whose number another invoice may take meanwhile, or
    // lose the period's last unit to another booking: then it is booked again, as a paid visit.
    let mut tries = 0;
    let (b, follow_up) = loop {
        let attempt = db::retrying(billing::coverage::NUMBERING_RETRIES, || {
            lifecycle::apply(&state, &who, &a, action, input.clone(), &tz)
        })
        .await;
        match attempt {
            Err(ApiError::Guarded(billing::coverage::QUOTA_EXHAUSTED)) if tries < 3 => tries += 1,
            other => break other?,
        }
    };
    let phi = sees_phi(&access, &b);
    let mut v = serde_json::to_value(view(&state, &b, phi).await?).map_err(ApiError::internal)?;
    if let (Some(fu), Some(obj)) = (follow_up, v.as_object_mut()) {
        obj.insert(
            "followUp".into(),
            serde_json::to_value(view(&state, &fu, phi).await?).map_err(ApiError::internal)?,
        );
    }
    Ok(json_response(StatusCode::OK, &v))
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

// ---------------------------------------------------------------- queue

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueQuery {
    doctor_id: Option<String>,
    location_id: Option<String>,
    date: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueView {
    appointment_id: String,
    doctor_id: String,
    patient_id: String,
    location_id: Option<String>,
    status: &'static str,
    position: Option<usize>,
    estimated_wait_minutes: Option<i64>,
    checked_in_at: String,
    started_at: Option<String>,
}

pub async fn get_queue(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<QueueQuery>,
) -> Result<Response, ApiError> {
    if !shared::policy::may_ever(access.role, Resource::Queue, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    let doctor = opt_id(q.doctor_id.as_deref(), "doctorId", UserId::parse)?;
    let location = opt_id(q.location_id.as_deref(), "locationId", LocationId::parse)?;
    let tz = clinic_zone(&state, &access.clinic).await?;
    let now = state.clock.now();
    let day = match q.date.as_deref() {
        Some(d) => parse_date(d)
            .ok_or_else(|| ApiError::invalid_field("date", "invalid_date", "Use YYYY-MM-DD."))?,
        None => now.to_zoned(tz.clone()).date(),
    };
    let entries = store::queue(&state.table, &access.clinic, day).await?;
    // Positions and waits per doctor and location, in rank order.
    let mut groups: BTreeMap<(String, Option<String>), Vec<&store::QueueEntry>> = BTreeMap::new();
    for e in &entries {
        groups
            .entry((
                e.doctor.to_string(),
                e.location.as_ref().map(ToString::to_string),
            ))
            .or_default()
            .push(e);
    }
    let mut out = Vec::new();
    for group in groups.values() {
        let busy_until = group
            .iter()
            .filter_map(|e| {
                e.started_at.map(|s| {
                    Timestamp::from_second(s).unwrap_or(now)
                        + SignedDuration::from_mins(e.expected_minutes)
                })
            })
            .max()
            .unwrap_or(now);
        let waiting: Vec<&&store::QueueEntry> =
            group.iter().filter(|e| e.started_at.is_none()).collect();
        let waits = rules::estimated_waits(
            &waiting
                .iter()
                .map(|e| e.expected_minutes)
                .collect::<Vec<_>>(),
            busy_until,
            now,
        );
        let mut positions = BTreeMap::new();
        for (i, e) in waiting.iter().enumerate() {
            positions.insert(e.appointment.clone(), (i + 1, waits[i]));
        }
        for e in group {
            if doctor.as_ref().is_some_and(|d| *d != e.doctor)
                || location
                    .as_ref()
                    .is_some_and(|l| Some(l) != e.location.as_ref())
            {
                continue;
            }
            let loc = e.location.as_ref().map(ToString::to_string);
            let own_position = Subject {
                owner: Some(e.patient.as_str()),
                location: loc.as_deref(),
                facet: Some(Limit::OwnPosition),
                ..Subject::default()
            };
            let as_doctor = Subject {
                owner: Some(e.doctor.as_str()),
                location: loc.as_deref(),
                ..Subject::default()
            };
            if !access.allows(Resource::Queue, Action::Read, &own_position)
                && !access.allows(Resource::Queue, Action::Read, &as_doctor)
            {
                continue;
            }
            let (position, wait) = match positions.get(&e.appointment) {
                Some((p, w)) => (Some(*p), Some(*w)),
                None => (None, None),
            };
            out.push(QueueView {
                appointment_id: e.appointment.to_string(),
                doctor_id: e.doctor.to_string(),
                patient_id: e.patient.to_string(),
                location_id: loc,
                status: if e.started_at.is_some() {
                    "IN_PROGRESS"
                } else {
                    "WAITING"
                },
                position,
                estimated_wait_minutes: wait,
                checked_in_at: shared::clock::rfc3339(e.checked_in_at),
                started_at: opt_time(e.started_at),
            });
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "date": day.to_string(), "entries": out }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_and_dates_parse_strictly() {
        assert_eq!(
            parse_time_of_day("09:30").map(fmt_time).as_deref(),
            Some("09:30")
        );
        for bad in ["9:30", "24:00", "09:60", "0930", "09:30:00", ""] {
            assert!(parse_time_of_day(bad).is_none(), "{bad}");
        }
        assert!(parse_date("2026-11-24").is_some());
        for bad in [
            "2026-13-01",
            "2026-11-31",
            "24.11.2026",
            "2026-11-24T00:00:00Z",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn timing_reports_every_problem() {
        let mut e = Vec::new();
        assert_eq!(
            timing(
                "",
                "2026-11-24T09:00:00Z",
                None,
                Some("2026-11-24T09:30:00Z"),
                15,
                &mut e
            ),
            Some(("2026-11-24T09:00:00Z".parse().unwrap(), 30))
        );
        assert!(e.is_empty());
        assert!(
            timing(
                "",
                "2026-11-24T09:00:00Z",
                None,
                Some("2026-11-24T08:30:00Z"),
                15,
                &mut e
            )
            .is_none()
        );
        assert_eq!(e[0].code, "end_before_start");
        e.clear();
        assert!(
            timing(
                "",
                "tomorrow",
                Some(30),
                Some("2026-11-24T08:30:00Z"),
                15,
                &mut e
            )
            .is_none()
        );
        let codes: Vec<&str> = e.iter().map(|f| f.code).collect();
        assert_eq!(codes, vec!["invalid_timestamp", "conflicting"]);
    }

    #[test]
    fn utc_dates_cover_the_local_day() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let d: Date = "2026-11-24".parse().unwrap();
        assert_eq!(
            utc_dates(d, &berlin).unwrap(),
            vec!["2026-11-23".parse::<Date>().unwrap(), d]
        );
        assert_eq!(utc_dates(d, &TimeZone::UTC).unwrap(), vec![d]);
    }
}
