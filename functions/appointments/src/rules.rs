//! Scheduling rules with no I/O: a doctor's availability (weekly hours, breaks, exceptions),
//! free slots for a date in the clinic's IANA time zone (correct across daylight-saving
//! changes), the appointment status machine, reschedule limits, booking checks, the 5-minute
//! cells a booking claims, and queue wait estimates.

use jiff::{
    SignedDuration, Timestamp,
    civil::{Date, Time, Weekday},
    tz::TimeZone,
};
use serde::{Deserialize, Serialize};

/// Bookings start and end on this grid (UTC minutes), and claim one cell per step.
pub const GRID_MINUTES: i64 = 5;
pub const MIN_DURATION_MINUTES: i64 = 5;
pub const MAX_DURATION_MINUTES: i64 = 480;
pub const MIN_SLOT_MINUTES: i64 = 5;
pub const MAX_SLOT_MINUTES: i64 = 240;
pub const MAX_RESCHEDULES: u32 = 2;

/// Wall-clock working time within one local day, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Interval {
    pub start: Time,
    pub end: Time,
}

impl Interval {
    pub fn new(start: Time, end: Time) -> Option<Self> {
        (start < end).then_some(Self { start, end })
    }
}

/// A working interval and where it is worked: a clinic location, or none (video calls and
/// home visits only).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shift {
    #[serde(flatten)]
    pub hours: Interval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
}

impl Shift {
    pub fn new(hours: Interval, location_id: Option<&str>) -> Self {
        Self {
            hours,
            location_id: location_id.map(str::to_string),
        }
    }
}

/// A date that differs from the weekly pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Exception {
    /// Day off or holiday.
    Closed { date: Date },
    /// Different hours that day (breaks still apply).
    Hours { date: Date, shifts: Vec<Shift> },
}

impl Exception {
    fn date(&self) -> Date {
        match self {
            Exception::Closed { date } | Exception::Hours { date, .. } => *date,
        }
    }
}

/// A doctor's availability: where and when they work each weekday, daily breaks, exceptions
/// and the slot length. One doctor is in one place at a time, so shifts never overlap, even
/// at different locations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    /// Shifts per weekday, Monday first.
    pub weekly: [Vec<Shift>; 7],
    /// Daily breaks, cut out of every working day.
    pub breaks: Vec<Interval>,
    pub exceptions: Vec<Exception>,
    pub slot_minutes: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvailabilityError {
    #[error(
        "slot length must be {MIN_SLOT_MINUTES} to {MAX_SLOT_MINUTES} minutes, in steps of {GRID_MINUTES}"
    )]
    SlotLength,
    #[error("working intervals overlap on {0}")]
    Overlap(String),
    #[error("two exceptions name the same date {0}")]
    DuplicateException(Date),
}

fn overlapping(shifts: &[Shift]) -> bool {
    let mut sorted: Vec<Interval> = shifts.iter().map(|s| s.hours).collect();
    sorted.sort();
    sorted.windows(2).any(|w| w[1].start < w[0].end)
}

/// Removes `cuts` from `shifts` (all within one day), keeping each piece's location.
fn subtract(shifts: &[Shift], cuts: &[Interval]) -> Vec<Shift> {
    let mut out: Vec<Shift> = shifts.to_vec();
    for cut in cuts {
        out = out
            .into_iter()
            .flat_map(|s| {
                let i = s.hours;
                let mut pieces = Vec::new();
                if cut.end <= i.start || cut.start >= i.end {
                    pieces.push(s);
                } else {
                    for piece in [
                        Interval::new(i.start, cut.start),
                        Interval::new(cut.end, i.end),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        pieces.push(Shift {
                            hours: piece,
                            location_id: s.location_id.clone(),
                        });
                    }
                }
                pieces
            })
            .collect();
    }
    out.sort();
    out
}

fn weekday_index(w: Weekday) -> usize {
    (w.to_monday_zero_offset()) as usize
}

impl Availability {
    /// No working time at all (a doctor who has not set any hours yet).
    pub fn closed(slot_minutes: i64) -> Self {
        Self {
            weekly: Default::default(),
            breaks: Vec::new(),
            exceptions: Vec::new(),
            slot_minutes,
        }
    }

    pub fn validate(&self) -> Result<(), AvailabilityError> {
        let s = self.slot_minutes;
        if !(MIN_SLOT_MINUTES..=MAX_SLOT_MINUTES).contains(&s) || s % GRID_MINUTES != 0 {
            return Err(AvailabilityError::SlotLength);
        }
        for (i, day) in self.weekly.iter().enumerate() {
            if overlapping(day) {
                return Err(AvailabilityError::Overlap(format!("weekday {}", i + 1)));
            }
        }
        let mut dates: Vec<Date> = self.exceptions.iter().map(Exception::date).collect();
        dates.sort();
        if let Some(w) = dates.windows(2).find(|w| w[0] == w[1]) {
            return Err(AvailabilityError::DuplicateException(w[0]));
        }
        for e in &self.exceptions {
            if let Exception::Hours { date, shifts } = e {
                if overlapping(shifts) {
                    return Err(AvailabilityError::Overlap(date.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Every location the availability names.
    pub fn locations(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .weekly
            .iter()
            .flatten()
            .chain(self.exceptions.iter().flat_map(|e| match e {
                Exception::Hours { shifts, .. } => shifts.as_slice(),
                Exception::Closed { .. } => &[],
            }))
            .filter_map(|s| s.location_id.as_deref())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Shifts (local wall time) on `date`: the exception if there is one, else the weekly
    /// pattern, minus breaks.
    pub fn intervals_on(&self, date: Date) -> Vec<Shift> {
        let base = match self.exceptions.iter().find(|e| e.date() == date) {
            Some(Exception::Closed { .. }) => return Vec::new(),
            Some(Exception::Hours { shifts, .. }) => shifts.clone(),
            None => self.weekly[weekday_index(date.weekday())].clone(),
        };
        subtract(&base, &self.breaks)
    }
}

/// A bookable period, as UTC instants, and where (if anywhere) it is worked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Slot {
    pub start: Timestamp,
    pub end: Timestamp,
    pub location_id: Option<String>,
}

/// The instant a local wall time on `date` names. A time skipped by a daylight-saving jump
/// resolves forward (02:30 on a spring-forward night is 03:30); a repeated time resolves to
/// its first occurrence.
fn instant(tz: &TimeZone, date: Date, time: Time) -> Option<Timestamp> {
    tz.to_ambiguous_timestamp(date.to_datetime(time))
        .compatible()
        .ok()
}

/// A shift as instants.
type Placed = (Timestamp, Timestamp, Option<String>);

/// Shifts on `date` as instants.
fn instants_on(avail: &Availability, date: Date, tz: &TimeZone) -> Vec<Placed> {
    avail
        .intervals_on(date)
        .into_iter()
        .filter_map(|s| {
            Some((
                instant(tz, date, s.hours.start)?,
                instant(tz, date, s.hours.end)?,
                s.location_id,
            ))
        })
        .filter(|(s, e, _)| s < e)
        .collect()
}

fn overlaps(a: (Timestamp, Timestamp), b: (Timestamp, Timestamp)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Free slots on a local `date`: each working interval is cut into slots of exactly
/// `slot_minutes` of real time, stepping in absolute time so a daylight-saving change inside an
/// interval gives one slot more or fewer, never a short or long one. Slots that overlap a busy
/// period (booked or held) or start before `now` are not offered.
pub fn free_slots(
    avail: &Availability,
    date: Date,
    tz: &TimeZone,
    busy: &[(Timestamp, Timestamp)],
    now: Timestamp,
) -> Vec<Slot> {
    let len = SignedDuration::from_mins(avail.slot_minutes);
    let mut out = Vec::new();
    for (start, end, location_id) in instants_on(avail, date, tz) {
        let mut s = start;
        while let Ok(e) = s.checked_add(len) {
            if e > end {
                break;
            }
            if s >= now && !busy.iter().any(|b| overlaps((s, e), *b)) {
                out.push(Slot {
                    start: s,
                    end: e,
                    location_id: location_id.clone(),
                });
            }
            s = e;
        }
    }
    out.sort();
    out
}

/// Whether `[start, start + minutes)` lies inside one of the doctor's shifts on its local date;
/// with `at_location`, a shift worked at that location.
pub fn within_hours(
    avail: &Availability,
    tz: &TimeZone,
    start: Timestamp,
    minutes: i64,
    at_location: Option<&str>,
) -> bool {
    let Ok(end) = start.checked_add(SignedDuration::from_mins(minutes)) else {
        return false;
    };
    let date = start.to_zoned(tz.clone()).date();
    instants_on(avail, date, tz).iter().any(|(s, e, loc)| {
        *s <= start && end <= *e && at_location.is_none_or(|l| loc.as_deref() == Some(l))
    })
}

/// How an appointment is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    InPerson,
    VideoCall,
    HomeVisit,
}

/// Why a booking request is refused; all problems are reported together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingProblem {
    DurationOutOfRange,
    NotOnGrid,
    InThePast,
    LocationRequired,
    OutsideHours,
}

impl BookingProblem {
    pub fn field(self) -> &'static str {
        match self {
            BookingProblem::DurationOutOfRange => "durationMinutes",
            BookingProblem::LocationRequired => "locationId",
            BookingProblem::NotOnGrid
            | BookingProblem::InThePast
            | BookingProblem::OutsideHours => "startsAt",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            BookingProblem::DurationOutOfRange => "out_of_range",
            BookingProblem::NotOnGrid => "not_on_grid",
            BookingProblem::InThePast => "in_the_past",
            BookingProblem::LocationRequired => "required",
            BookingProblem::OutsideHours => "outside_hours",
        }
    }
}

/// Checks a booking (or a reschedule target) against the rules that need no storage. An
/// in-person booking needs a location and a shift worked there.
pub fn check_booking(
    kind: Kind,
    location: Option<&str>,
    start: Timestamp,
    minutes: i64,
    now: Timestamp,
    avail: &Availability,
    tz: &TimeZone,
) -> Vec<BookingProblem> {
    let mut problems = Vec::new();
    let duration_ok = (MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&minutes);
    if !duration_ok {
        problems.push(BookingProblem::DurationOutOfRange);
    }
    let on_grid = start.as_second() % (GRID_MINUTES * 60) == 0
        && start.subsec_nanosecond() == 0
        && minutes % GRID_MINUTES == 0;
    if !on_grid {
        problems.push(BookingProblem::NotOnGrid);
    }
    if start <= now {
        problems.push(BookingProblem::InThePast);
    }
    if kind == Kind::InPerson && location.is_none() {
        problems.push(BookingProblem::LocationRequired);
    }
    let at = if kind == Kind::InPerson {
        location
    } else {
        None
    };
    if duration_ok && !within_hours(avail, tz, start, minutes, at) {
        problems.push(BookingProblem::OutsideHours);
    }
    problems
}

/// The 5-minute cells a booking occupies: one claim item each, written with the appointment
/// in one transaction under an "absent" condition, so two overlapping bookings of one doctor
/// can never both succeed.
pub fn claim_cells(start: Timestamp, minutes: i64) -> Vec<Timestamp> {
    (0..minutes / GRID_MINUTES)
        .filter_map(|k| {
            start
                .checked_add(SignedDuration::from_mins(k * GRID_MINUTES))
                .ok()
        })
        .collect()
}

/// The claim cells of a booking grouped by UTC date (one claims item per doctor and date), each
/// cell named by its UTC time of day (`c0905`).
pub fn claim_buckets(
    start: Timestamp,
    minutes: i64,
) -> std::collections::BTreeMap<Date, Vec<String>> {
    let mut out: std::collections::BTreeMap<Date, Vec<String>> = Default::default();
    for cell in claim_cells(start, minutes) {
        let utc = cell.to_zoned(TimeZone::UTC);
        out.entry(utc.date())
            .or_default()
            .push(format!("c{:02}{:02}", utc.hour(), utc.minute()));
    }
    out
}

/// The instant a claim cell name stands for on a UTC date (inverse of [`claim_buckets`]).
pub fn cell_instant(utc_date: Date, cell: &str) -> Option<Timestamp> {
    let digits = cell.strip_prefix('c')?;
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i8 = digits[..2].parse().ok()?;
    let m: i8 = digits[2..].parse().ok()?;
    let time = Time::new(h, m, 0, 0).ok()?;
    utc_date
        .to_datetime(time)
        .to_zoned(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Appointment lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Confirmed,
    CheckedIn,
    InProgress,
    Completed,
    Cancelled,
    NoShow,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Confirmed => "CONFIRMED",
            Status::CheckedIn => "CHECKED_IN",
            Status::InProgress => "IN_PROGRESS",
            Status::Completed => "COMPLETED",
            Status::Cancelled => "CANCELLED",
            Status::NoShow => "NO_SHOW",
            Status::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub const ALL: [Status; 8] = [
        Status::Pending,
        Status::Confirmed,
        Status::CheckedIn,
        Status::InProgress,
        Status::Completed,
        Status::Cancelled,
        Status::NoShow,
        Status::Expired,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Cancelled | Status::NoShow | Status::Expired
        )
    }

    /// Whether the appointment holds its time (its slot cells stay claimed).
    pub fn holds_slot(self) -> bool {
        matches!(
            self,
            Status::Pending
                | Status::Confirmed
                | Status::CheckedIn
                | Status::InProgress
                | Status::Completed
        )
    }
}

/// What can happen to an appointment (the `{action}` routes, plus the sweep's `Expire`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transition {
    Confirm,
    Reschedule,
    Cancel,
    CheckIn,
    Start,
    Complete,
    NoShow,
    Expire,
}

impl Transition {
    pub const ACTIONS: [Transition; 7] = [
        Transition::Confirm,
        Transition::Reschedule,
        Transition::Cancel,
        Transition::CheckIn,
        Transition::Start,
        Transition::Complete,
        Transition::NoShow,
    ];

    /// The action as it appears in routes (`check-in`) and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Confirm => "confirm",
            Transition::Reschedule => "reschedule",
            Transition::Cancel => "cancel",
            Transition::CheckIn => "check-in",
            Transition::Start => "start",
            Transition::Complete => "complete",
            Transition::NoShow => "no-show",
            Transition::Expire => "expire",
        }
    }

    /// A route action; `expire` is the sweep's alone.
    pub fn parse_action(s: &str) -> Option<Transition> {
        Transition::ACTIONS.into_iter().find(|t| t.as_str() == s)
    }

    /// The status the action leads to; a reschedule keeps the status.
    pub fn target(self) -> Option<Status> {
        match self {
            Transition::Confirm => Some(Status::Confirmed),
            Transition::Reschedule => None,
            Transition::Cancel => Some(Status::Cancelled),
            Transition::CheckIn => Some(Status::CheckedIn),
            Transition::Start => Some(Status::InProgress),
            Transition::Complete => Some(Status::Completed),
            Transition::NoShow => Some(Status::NoShow),
            Transition::Expire => Some(Status::Expired),
        }
    }
}

/// A transition the machine does not allow from the current status (a 409 naming both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action:?} an appointment that is {from:?}")]
pub struct IllegalTransition {
    pub from: Status,
    pub action: Transition,
}

/// The status after `action`, or why it is not allowed. Time conditions (no-show and expiry only
/// after the start) are checked by [`due`].
pub fn next(from: Status, action: Transition) -> Result<Status, IllegalTransition> {
    use Status as S;
    use Transition as T;
    let to = match (from, action) {
        (S::Pending, T::Confirm) => S::Confirmed,
        (S::Pending | S::Confirmed, T::Reschedule) => from,
        (S::Pending | S::Confirmed | S::CheckedIn, T::Cancel) => S::Cancelled,
        (S::Confirmed, T::CheckIn) => S::CheckedIn,
        (S::CheckedIn, T::Start) => S::InProgress,
        (S::InProgress, T::Complete) => S::Completed,
        (S::Confirmed, T::NoShow) => S::NoShow,
        (S::Pending, T::Expire) => S::Expired,
        _ => return Err(IllegalTransition { from, action }),
    };
    Ok(to)
}

/// Whether a time-bound transition may happen yet: no-show and expiry only once the start has
/// passed; everything else any time.
pub fn due(action: Transition, starts_at: Timestamp, now: Timestamp) -> bool {
    match action {
        Transition::NoShow | Transition::Expire => now >= starts_at,
        _ => true,
    }
}

/// Why a reschedule is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RescheduleRefusal {
    /// Already moved the maximum number of times.
    Limit,
    /// The appointment has started (its start time has passed).
    Started,
    Illegal(IllegalTransition),
}

pub fn can_reschedule(
    status: Status,
    times_rescheduled: u32,
    starts_at: Timestamp,
    now: Timestamp,
) -> Result<(), RescheduleRefusal> {
    next(status, Transition::Reschedule).map_err(RescheduleRefusal::Illegal)?;
    if now >= starts_at {
        return Err(RescheduleRefusal::Started);
    }
    if times_rescheduled >= MAX_RESCHEDULES {
        return Err(RescheduleRefusal::Limit);
    }
    Ok(())
}

/// What the sweep does with an appointment whose start has passed: unconfirmed ones expire,
/// confirmed ones that never checked in are no-shows.
pub fn sweep(status: Status, starts_at: Timestamp, now: Timestamp) -> Option<Transition> {
    if now < starts_at {
        return None;
    }
    match status {
        Status::Pending => Some(Transition::Expire),
        Status::Confirmed => Some(Transition::NoShow),
        _ => None,
    }
}

/// Estimated wait in minutes for each patient in a doctor's queue, in queue order: the time
/// until the doctor is free, plus the expected durations of everyone ahead.
pub fn estimated_waits(
    expected_minutes: &[i64],
    doctor_free_at: Timestamp,
    now: Timestamp,
) -> Vec<i64> {
    let until_free = ((doctor_free_at.as_second() - now.as_second()).max(0) + 59) / 60;
    let mut ahead = 0;
    expected_minutes
        .iter()
        .map(|m| {
            let wait = until_free + ahead;
            ahead += (*m).max(0);
            wait
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};
    use proptest::prelude::*;

    fn iv(h1: i8, m1: i8, h2: i8, m2: i8) -> Interval {
        Interval::new(time(h1, m1, 0, 0), time(h2, m2, 0, 0)).unwrap()
    }

    const LOC: &str = "loc-1";

    fn at_loc(intervals: Vec<Interval>) -> Vec<Shift> {
        intervals
            .into_iter()
            .map(|i| Shift::new(i, Some(LOC)))
            .collect()
    }

    fn weekdays(intervals: Vec<Interval>, slot: i64) -> Availability {
        let mut weekly: [Vec<Shift>; 7] = Default::default();
        for day in weekly.iter_mut().take(5) {
            *day = at_loc(intervals.clone());
        }
        Availability {
            weekly,
            breaks: Vec::new(),
            exceptions: Vec::new(),
            slot_minutes: slot,
        }
    }

    fn every_day(intervals: Vec<Interval>, slot: i64) -> Availability {
        Availability {
            weekly: std::array::from_fn(|_| at_loc(intervals.clone())),
            breaks: Vec::new(),
            exceptions: Vec::new(),
            slot_minutes: slot,
        }
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn long_ago() -> Timestamp {
        Timestamp::from_second(0).unwrap()
    }

    #[test]
    fn weekly_hours_breaks_and_exceptions() {
        let mut a = weekdays(vec![iv(9, 0, 17, 0)], 30);
        a.breaks = vec![iv(12, 0, 13, 0)];
        a.exceptions = vec![
            Exception::Closed {
                date: date(2026, 12, 25),
            },
            Exception::Hours {
                date: date(2026, 12, 24),
                shifts: at_loc(vec![iv(9, 0, 12, 30)]),
            },
        ];
        assert!(a.validate().is_ok());
        // Monday: two intervals around the break
        assert_eq!(
            a.intervals_on(date(2026, 11, 23)),
            at_loc(vec![iv(9, 0, 12, 0), iv(13, 0, 17, 0)])
        );
        // Saturday: nothing; holiday: nothing; Christmas Eve: short day, break still applies
        assert!(a.intervals_on(date(2026, 11, 28)).is_empty());
        assert!(a.intervals_on(date(2026, 12, 25)).is_empty());
        assert_eq!(
            a.intervals_on(date(2026, 12, 24)),
            at_loc(vec![iv(9, 0, 12, 0)])
        );
        let slots = free_slots(
            &a,
            date(2026, 11, 23),
            &tz("Europe/Berlin"),
            &[],
            long_ago(),
        );
        assert_eq!(slots.len(), 6 + 8);
        assert_eq!(
            slots[0].start,
            "2026-11-23T08:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn invalid_availability_is_refused() {
        let mut a = weekdays(vec![iv(9, 0, 12, 0), iv(11, 0, 13, 0)], 30);
        assert!(matches!(a.validate(), Err(AvailabilityError::Overlap(_))));
        a = weekdays(vec![iv(9, 0, 12, 0)], 7);
        assert_eq!(a.validate(), Err(AvailabilityError::SlotLength));
        a.slot_minutes = 300;
        assert_eq!(a.validate(), Err(AvailabilityError::SlotLength));
        a.slot_minutes = 30;
        a.exceptions = vec![
            Exception::Closed {
                date: date(2026, 1, 1),
            },
            Exception::Closed {
                date: date(2026, 1, 1),
            },
        ];
        assert_eq!(
            a.validate(),
            Err(AvailabilityError::DuplicateException(date(2026, 1, 1)))
        );
        assert!(Interval::new(time(10, 0, 0, 0), time(9, 0, 0, 0)).is_none());
    }

    /// (zone, spring-forward date, fall-back date) in 2026.
    type Ymd = (i16, i8, i8);
    const DST: &[(&str, Ymd, Ymd)] = &[
        ("Europe/Berlin", (2026, 3, 29), (2026, 10, 25)),
        ("America/New_York", (2026, 3, 8), (2026, 11, 1)),
        ("Australia/Sydney", (2026, 10, 4), (2026, 4, 5)),
    ];

    #[test]
    fn daylight_saving_days_have_one_hour_more_or_less_never_odd_slots() {
        // Night shift 00:00-06:00 with hourly slots spans every transition above.
        let a = every_day(vec![iv(0, 0, 6, 0)], 60);
        for (zone, spring, fall) in DST {
            let z = tz(zone);
            let normal = free_slots(&a, date(2026, 6, 15), &z, &[], long_ago());
            let short = free_slots(&a, date(spring.0, spring.1, spring.2), &z, &[], long_ago());
            let long = free_slots(&a, date(fall.0, fall.1, fall.2), &z, &[], long_ago());
            assert_eq!((normal.len(), short.len(), long.len()), (6, 5, 7), "{zone}");
            for s in short.iter().chain(&long) {
                assert_eq!(
                    s.end.duration_since(s.start),
                    SignedDuration::from_hours(1),
                    "{zone}"
                );
            }
        }
    }

    #[test]
    fn hours_that_do_not_exist_offer_nothing() {
        // 02:15-03:15 on Berlin's spring-forward night is skipped by the clocks.
        let a = every_day(vec![iv(2, 15, 3, 15)], 15);
        assert!(
            free_slots(&a, date(2026, 3, 29), &tz("Europe/Berlin"), &[], long_ago()).is_empty()
        );
        assert_eq!(
            free_slots(&a, date(2026, 3, 28), &tz("Europe/Berlin"), &[], long_ago()).len(),
            4
        );
    }

    #[test]
    fn a_working_day_keeps_its_local_hours_across_the_change() {
        // 09:00 local is a different UTC hour before and after the change, on both sides.
        let a = every_day(vec![iv(9, 0, 17, 0)], 30);
        let z = tz("Europe/Berlin");
        let before = free_slots(&a, date(2026, 3, 27), &z, &[], long_ago());
        let after = free_slots(&a, date(2026, 3, 30), &z, &[], long_ago());
        assert_eq!(before[0].start.to_string(), "2026-03-27T08:00:00Z");
        assert_eq!(after[0].start.to_string(), "2026-03-30T07:00:00Z");
        assert_eq!((before.len(), after.len()), (16, 16));
    }

    #[test]
    fn busy_and_past_slots_are_not_offered() {
        let a = every_day(vec![iv(9, 0, 12, 0)], 60);
        let z = tz("UTC");
        let day = date(2026, 5, 4);
        let at = |h: i8| day.at(h, 0, 0, 0).to_zoned(z.clone()).unwrap().timestamp();
        let busy = [(at(10), at(10) + SignedDuration::from_mins(15))];
        let free = free_slots(&a, day, &z, &busy, at(9) + SignedDuration::from_mins(1));
        assert_eq!(
            free,
            vec![Slot {
                start: at(11),
                end: at(12),
                location_id: Some(LOC.into()),
            }]
        );
    }

    #[test]
    fn booking_checks_report_every_problem() {
        let a = every_day(vec![iv(9, 0, 17, 0)], 30);
        let z = tz("Europe/Berlin");
        let now: Timestamp = "2026-11-23T06:00:00Z".parse().unwrap();
        let ok: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
        assert!(check_booking(Kind::InPerson, Some(LOC), ok, 30, now, &a, &z).is_empty());
        assert!(check_booking(Kind::VideoCall, None, ok, 30, now, &a, &z).is_empty());
        assert_eq!(
            check_booking(Kind::InPerson, Some("elsewhere"), ok, 30, now, &a, &z),
            vec![BookingProblem::OutsideHours]
        );
        type Case<'a> = (Kind, Option<&'a str>, &'a str, i64, Vec<BookingProblem>);
        let cases: Vec<Case> = vec![
            (
                Kind::InPerson,
                None,
                "2026-11-24T09:00:00Z",
                30,
                vec![BookingProblem::LocationRequired],
            ),
            (
                Kind::HomeVisit,
                None,
                "2026-11-24T09:00:00Z",
                0,
                vec![BookingProblem::DurationOutOfRange],
            ),
            (
                Kind::HomeVisit,
                None,
                "2026-11-24T09:00:00Z",
                10_000,
                vec![BookingProblem::DurationOutOfRange],
            ),
            (
                Kind::HomeVisit,
                None,
                "2026-11-24T09:00:00Z",
                7,
                vec![BookingProblem::NotOnGrid],
            ),
            (
                Kind::HomeVisit,
                None,
                "2026-11-24T09:03:00Z",
                30,
                vec![BookingProblem::NotOnGrid],
            ),
            (
                Kind::HomeVisit,
                None,
                "2026-11-22T09:00:00Z",
                30,
                vec![BookingProblem::InThePast],
            ),
            (
                Kind::HomeVisit,
                None,
                "2026-11-24T16:45:00Z",
                30,
                vec![BookingProblem::OutsideHours],
            ),
            (
                Kind::HomeVisit,
                None,
                "2026-11-24T03:00:00Z",
                30,
                vec![BookingProblem::OutsideHours],
            ),
        ];
        for (kind, loc, start, minutes, want) in cases {
            let got = check_booking(kind, loc, start.parse().unwrap(), minutes, now, &a, &z);
            let mut got_sorted = got.clone();
            got_sorted.sort_by_key(|p| p.code());
            let mut want_sorted = want.clone();
            want_sorted.sort_by_key(|p| p.code());
            assert_eq!(got_sorted, want_sorted, "{start} {minutes}");
        }
    }

    #[test]
    fn claim_cells_cover_the_booking_in_five_minute_steps() {
        let start: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
        let cells = claim_cells(start, 30);
        assert_eq!(cells.len(), 6);
        assert_eq!(cells[5].to_string(), "2026-11-24T09:25:00Z");
        assert_eq!(claim_cells(start, MAX_DURATION_MINUTES).len(), 96);
    }

    #[test]
    fn claims_split_at_utc_midnight_and_name_their_cells() {
        let start: Timestamp = "2026-11-24T23:50:00Z".parse().unwrap();
        let buckets = claim_buckets(start, 20);
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[&date(2026, 11, 24)], vec!["c2350", "c2355"]);
        assert_eq!(buckets[&date(2026, 11, 25)], vec!["c0000", "c0005"]);
        assert_eq!(
            cell_instant(date(2026, 11, 25), "c0005"),
            Some("2026-11-25T00:05:00Z".parse().unwrap())
        );
        assert_eq!(cell_instant(date(2026, 11, 25), "c2460"), None);
        assert_eq!(cell_instant(date(2026, 11, 25), "version"), None);
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for a in Transition::ACTIONS {
            assert_eq!(Transition::parse_action(a.as_str()), Some(a));
        }
        assert_eq!(Transition::parse_action("expire"), None);
    }

    #[test]
    fn every_transition_of_the_machine() {
        use Status as S;
        use Transition as T;
        let allowed = [
            (S::Pending, T::Confirm, S::Confirmed),
            (S::Pending, T::Reschedule, S::Pending),
            (S::Confirmed, T::Reschedule, S::Confirmed),
            (S::Pending, T::Cancel, S::Cancelled),
            (S::Confirmed, T::Cancel, S::Cancelled),
            (S::CheckedIn, T::Cancel, S::Cancelled),
            (S::Confirmed, T::CheckIn, S::CheckedIn),
            (S::CheckedIn, T::Start, S::InProgress),
            (S::InProgress, T::Complete, S::Completed),
            (S::Confirmed, T::NoShow, S::NoShow),
            (S::Pending, T::Expire, S::Expired),
        ];
        let actions = [
            T::Confirm,
            T::Reschedule,
            T::Cancel,
            T::CheckIn,
            T::Start,
            T::Complete,
            T::NoShow,
            T::Expire,
        ];
        for from in Status::ALL {
            for action in actions {
                let want = allowed
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, t)| *t);
                match want {
                    Some(to) => assert_eq!(next(from, action), Ok(to), "{from:?} {action:?}"),
                    None => assert_eq!(
                        next(from, action),
                        Err(IllegalTransition { from, action }),
                        "{from:?} {action:?}"
                    ),
                }
            }
            if from.is_terminal() {
                assert!(
                    actions.iter().all(|a| next(from, *a).is_err()),
                    "{from:?} is terminal"
                );
            }
        }
    }

    #[test]
    fn reschedules_are_limited_and_stop_at_the_start() {
        let start: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
        let before = start - SignedDuration::from_hours(1);
        assert_eq!(can_reschedule(Status::Pending, 0, start, before), Ok(()));
        assert_eq!(can_reschedule(Status::Confirmed, 1, start, before), Ok(()));
        assert_eq!(
            can_reschedule(Status::Confirmed, 2, start, before),
            Err(RescheduleRefusal::Limit)
        );
        assert_eq!(
            can_reschedule(Status::Confirmed, 0, start, start),
            Err(RescheduleRefusal::Started)
        );
        assert!(matches!(
            can_reschedule(Status::InProgress, 0, start, before),
            Err(RescheduleRefusal::Illegal(_))
        ));
    }

    #[test]
    fn the_sweep_expires_and_marks_no_shows_only_after_the_start() {
        let start: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
        let later = start + SignedDuration::from_mins(1);
        assert_eq!(
            sweep(Status::Pending, start, later),
            Some(Transition::Expire)
        );
        assert_eq!(
            sweep(Status::Confirmed, start, later),
            Some(Transition::NoShow)
        );
        assert_eq!(sweep(Status::CheckedIn, start, later), None);
        assert_eq!(
            sweep(Status::Pending, start, start - SignedDuration::from_mins(1)),
            None
        );
        assert!(!due(
            Transition::NoShow,
            start,
            start - SignedDuration::from_secs(1)
        ));
        assert!(due(Transition::Confirm, start, later));
    }

    #[test]
    fn queue_waits_add_up() {
        let now: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
        assert_eq!(
            estimated_waits(&[15, 30, 10], now + SignedDuration::from_mins(5), now),
            vec![5, 20, 50]
        );
        assert_eq!(
            estimated_waits(&[15, 30], now - SignedDuration::from_mins(5), now),
            vec![0, 15]
        );
        assert!(estimated_waits(&[], now, now).is_empty());
    }

    proptest! {
        /// Around every transition of two zones, for any working interval and slot length:
        /// slots are exactly one slot long, ordered, disjoint, inside the working time, and
        /// their number is the real length of the interval divided by the slot length.
        #[test]
        fn slots_are_sound_across_daylight_saving(
            zone in prop::sample::select(vec!["Europe/Berlin", "America/New_York"]),
            day_offset in -3i32..=3,
            transition in 0usize..2,
            start_h in 0i8..20, start_m in prop::sample::select(vec![0i8, 15, 30, 45]),
            hours in 1i8..=4,
            slot in prop::sample::select(vec![5i64, 10, 15, 20, 30, 45, 60, 90]),
        ) {
            let (_, spring, fall) = DST.iter().find(|(z, _, _)| *z == zone).unwrap();
            let (y, m, d) = if transition == 0 { *spring } else { *fall };
            let day = date(y, m, d).checked_add(jiff::Span::new().days(day_offset)).unwrap();
            let end_h = (start_h + hours).min(23);
            let interval = iv(start_h, start_m, end_h, start_m);
            let a = every_day(vec![interval], slot);
            let z = tz(zone);
            let slots = free_slots(&a, day, &z, &[], long_ago());
            // An interval wholly inside a spring-forward gap does not exist that day: no slots.
            let Some((lo, hi, _)) = instants_on(&a, day, &z).first().cloned() else {
                prop_assert!(slots.is_empty());
                return Ok(());
            };
            let real = hi.duration_since(lo).as_secs() / 60;
            prop_assert_eq!(slots.len() as i64, real / slot);
            for w in slots.windows(2) {
                prop_assert!(w[0].end <= w[1].start);
            }
            for s in &slots {
                prop_assert_eq!(s.end.duration_since(s.start), SignedDuration::from_mins(slot));
                prop_assert!(s.start >= lo && s.end <= hi);
                prop_assert!(within_hours(&a, &z, s.start, slot, None));
                prop_assert!(within_hours(&a, &z, s.start, slot, Some(LOC)));
            }
        }

        /// Claim cells of two bookings of one doctor intersect exactly when the bookings overlap,
        /// which is what lets the database refuse double bookings.
        #[test]
        fn cells_intersect_iff_bookings_overlap(a_start in 0i64..200, a_len in 1i64..=20, b_start in 0i64..200, b_len in 1i64..=20) {
            let base: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
            let at = |k: i64| base + SignedDuration::from_mins(k * GRID_MINUTES);
            let (a0, b0) = (at(a_start), at(b_start));
            let (am, bm) = (a_len * GRID_MINUTES, b_len * GRID_MINUTES);
            let cells_a = claim_cells(a0, am);
            let cells_b = claim_cells(b0, bm);
            let share = cells_a.iter().any(|c| cells_b.contains(c));
            let overlap = overlaps((a0, a0 + SignedDuration::from_mins(am)), (b0, b0 + SignedDuration::from_mins(bm)));
            prop_assert_eq!(share, overlap);
        }
    }
}
