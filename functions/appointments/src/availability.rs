//! Doctors' availability documents (weekly shifts, breaks, dated exceptions; the same shape in
//! and out) and the free slots they leave on a local date.

use std::collections::BTreeMap;

use jiff::{SignedDuration, civil::Date, tz::TimeZone};
use serde::{Deserialize, Serialize};
use shared::{
    ApiError, FieldError,
    db::{CHANGED_MEANWHILE, Tx},
    ids::{ClinicId, LocationId, UserId},
};

use crate::{
    AppState,
    common::{clinic_zone, location_exists},
    input::{err, fmt_time, opt_id, parse_date, parse_time_of_day, validation},
    lifecycle,
    rules::{self, Availability, Exception, Interval, Shift},
    store,
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
const MAX_EXCEPTIONS: usize = 366;

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
pub struct AvailabilityView {
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

/// The document of `doctor`; without a stored one, closed every day.
pub fn view(doctor: &UserId, a: Option<&store::ScheduleRecord>) -> AvailabilityView {
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

/// Replaces the availability of `doctor` (already authorised) with `body`, under the version
/// the client read when it gave one.
pub async fn replace(
    state: &AppState,
    clinic: &ClinicId,
    doctor: &UserId,
    body: &AvailabilityBody,
) -> Result<store::ScheduleRecord, ApiError> {
    let av = parse_availability(body)?;
    let mut errors = Vec::new();
    for l in av.locations() {
        let known = match LocationId::parse(l) {
            Some(l) => location_exists(state, clinic, &l).await?,
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
    let current = store::get_schedule(&state.table, clinic, doctor).await?;
    let expected = current.as_ref().map(|c| c.version).unwrap_or(0);
    if body.version.is_some_and(|v| v != expected) {
        return Err(CHANGED_MEANWHILE.into());
    }
    let now = state.clock.now().as_second();
    let mut tx = Tx::default();
    tx.guard(
        store::put_schedule(&state.table, clinic, doctor, &av, expected, now)?,
        CHANGED_MEANWHILE,
    );
    tx.commit(&state.table).await?;
    state.ext().forget(clinic, doctor);
    Ok(store::ScheduleRecord {
        availability: av,
        version: expected + 1,
        updated_at: now,
    })
}

// ---------------------------------------------------------------- slots

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlotQuery {
    date: Option<String>,
    location_id: Option<String>,
}

/// A doctor's free slots on a local date, in the clinic's zone.
pub struct Slots {
    pub date: Date,
    pub tz: TimeZone,
    /// `None` when the doctor has no availability document yet.
    pub slot_minutes: Option<i64>,
    pub slots: Vec<rules::Slot>,
}

/// The UTC dates a local date touches (one or two; three around a large offset change).
pub fn utc_dates(date: Date, tz: &TimeZone) -> Result<Vec<Date>, ApiError> {
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

/// The free slots of `doctor` (already authorised) on the queried date, at the queried
/// location if any.
pub async fn slots(
    state: &AppState,
    clinic: &ClinicId,
    doctor: &UserId,
    q: &SlotQuery,
) -> Result<Slots, ApiError> {
    let date = q
        .date
        .as_deref()
        .and_then(parse_date)
        .ok_or_else(|| ApiError::invalid_field("date", "invalid_date", "Use YYYY-MM-DD."))?;
    let location = opt_id(q.location_id.as_deref(), "locationId", LocationId::parse)?;
    // Independent reads go together: the zone (usually cached) and the schedule.
    let (tz, rec) = tokio::join!(
        clinic_zone(state, clinic),
        state
            .ext()
            .get(&state.table, clinic, doctor, state.clock.epoch())
    );
    let (tz, rec) = (tz?, rec?);
    let slots = match &rec {
        Some(r) => free_slots(state, clinic, doctor, &r.availability, date, &tz).await?,
        None => Vec::new(),
    };
    let slots = slots
        .into_iter()
        .filter(|s| {
            location
                .as_ref()
                .is_none_or(|l| s.location_id.as_deref() == Some(l.as_str()))
        })
        .collect();
    Ok(Slots {
        date,
        tz,
        slot_minutes: rec.map(|r| r.availability.slot_minutes),
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
