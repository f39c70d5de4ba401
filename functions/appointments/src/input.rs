//! Reading request fields strictly: times of day, dates, instants, a booking's timing, ids,
//! free text, and the field errors (422) they produce.

use jiff::{Timestamp, civil::Date};
use shared::{ApiError, FieldError, crypto::Phi};

use crate::{
    rules::{BookingProblem, Kind},
    store,
};

/// Free text (reasons, symptoms, notes) is capped so a record stays small.
pub const MAX_TEXT: usize = 4000;

pub fn err(
    field: impl Into<std::borrow::Cow<'static, str>>,
    code: &'static str,
    message: &'static str,
) -> FieldError {
    FieldError::new(field, code, message)
}

pub fn parse_time_of_day(v: &str) -> Option<jiff::civil::Time> {
    let b = v.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let h: i8 = v[..2].parse().ok()?;
    let m: i8 = v[3..].parse().ok()?;
    jiff::civil::Time::new(h, m, 0, 0).ok()
}

pub fn fmt_time(t: jiff::civil::Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

pub fn parse_date(v: &str) -> Option<Date> {
    (v.len() == 10).then(|| v.parse().ok()).flatten()
}

pub fn parse_instant(v: &str) -> Option<Timestamp> {
    v.parse().ok()
}

/// When a booking starts and how long it lasts, from `startsAt` and either `durationMinutes`
/// or `endsAt` (neither: `default_minutes`). Problems are added to `errors` under `prefix`.
pub fn timing(
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

pub fn booking_errors(prefix: &str, problems: &[BookingProblem]) -> Vec<FieldError> {
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
                BookingProblem::NotOneSlot => "Book one slot of the doctor's length.",
                BookingProblem::TooFarAhead => {
                    "This is further ahead than the clinic takes bookings."
                }
            };
            err(format!("{prefix}{}", p.field()), p.code(), message)
        })
        .collect()
}

pub fn validation(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

pub use shared::ids::query_id as opt_id;

pub fn text_ok(v: &Phi<String>) -> bool {
    let n = v.expose().trim().chars().count();
    n > 0 && n <= MAX_TEXT
}

pub fn parse_kind_field(v: &str, field: &str, errors: &mut Vec<FieldError>) -> Option<Kind> {
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
}
