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
    /// A patient books one slot of the doctor's length; staff may book longer.
    NotOneSlot,
    /// Further ahead than the clinic lets patients book.
    TooFarAhead,
}

impl BookingProblem {
    pub fn field(self) -> &'static str {
        match self {
            BookingProblem::DurationOutOfRange | BookingProblem::NotOneSlot => "durationMinutes",
            BookingProblem::LocationRequired => "locationId",
            BookingProblem::TooFarAhead => "startsAt",
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
            BookingProblem::NotOneSlot => "slot_length_only",
            BookingProblem::TooFarAhead => "too_far_ahead",
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

/// What a patient booking (or moving) their own appointment may not do beyond what anyone may:
/// take more than one slot of the doctor's length, or book further ahead than the clinic allows.
pub fn patient_limits(
    start: Timestamp,
    minutes: i64,
    slot_minutes: i64,
    now: Timestamp,
    max_days_ahead: i64,
) -> Vec<BookingProblem> {
    let mut problems = Vec::new();
    if minutes != slot_minutes {
        problems.push(BookingProblem::NotOneSlot);
    }
    if start.as_second() > now.as_second() + max_days_ahead * 24 * 60 * 60 {
        problems.push(BookingProblem::TooFarAhead);
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

/// Whether a time-bound transition may happen yet: a no-show only once the start has passed,
/// expiry once the start has passed or the patient's hold has run out; everything else any
/// time.
pub fn due(
    action: Transition,
    starts_at: Timestamp,
    held_until: Option<i64>,
    now: Timestamp,
) -> bool {
    match action {
        Transition::NoShow => now >= starts_at,
        Transition::Expire => now >= starts_at || held_until.is_some_and(|h| now.as_second() >= h),
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

/// What the sweep does with an appointment: unconfirmed ones expire once their start has passed
/// or their hold (a patient's own unconfirmed booking) has run out; confirmed ones that never
/// checked in are no-shows once their start has passed.
pub fn sweep(
    status: Status,
    starts_at: Timestamp,
    held_until: Option<i64>,
    now: Timestamp,
) -> Option<Transition> {
    let started = now >= starts_at;
    let hold_over = held_until.is_some_and(|h| now.as_second() >= h);
    match status {
        Status::Pending if started || hold_over => Some(Transition::Expire),
        Status::Confirmed if started => Some(Transition::NoShow),
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
mod tests;
