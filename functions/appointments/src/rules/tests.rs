//! Tests of the scheduling rules.

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
    assert!(free_slots(&a, date(2026, 3, 29), &tz("Europe/Berlin"), &[], long_ago()).is_empty());
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
        sweep(Status::Pending, start, None, later),
        Some(Transition::Expire)
    );
    assert_eq!(
        sweep(Status::Confirmed, start, None, later),
        Some(Transition::NoShow)
    );
    assert_eq!(sweep(Status::CheckedIn, start, None, later), None);
    assert_eq!(
        sweep(
            Status::Pending,
            start,
            None,
            start - SignedDuration::from_mins(1)
        ),
        None
    );
    assert!(!due(
        Transition::NoShow,
        start,
        None,
        start - SignedDuration::from_secs(1)
    ));
    assert!(due(Transition::Confirm, start, None, later));
}

#[test]
fn a_patients_hold_expires_when_its_time_is_up_even_before_the_start() {
    let start: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
    let booked = start - SignedDuration::from_hours(48);
    let hold = Some((booked + SignedDuration::from_hours(24)).as_second());
    let before = booked + SignedDuration::from_hours(23);
    let after = booked + SignedDuration::from_hours(24);
    assert_eq!(sweep(Status::Pending, start, hold, before), None);
    assert_eq!(
        sweep(Status::Pending, start, hold, after),
        Some(Transition::Expire)
    );
    assert!(due(Transition::Expire, start, hold, after));
    assert!(!due(Transition::Expire, start, hold, before));
    // A confirmed booking holds nothing any more
    assert_eq!(sweep(Status::Confirmed, start, hold, after), None);
}

#[test]
fn patients_book_one_slot_and_not_too_far_ahead() {
    let now: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
    let soon = now + SignedDuration::from_hours(24);
    assert!(patient_limits(soon, 30, 30, now, 90).is_empty());
    assert_eq!(
        patient_limits(soon, 240, 30, now, 90),
        vec![BookingProblem::NotOneSlot]
    );
    let edge = now + SignedDuration::from_hours(90 * 24);
    assert!(patient_limits(edge, 30, 30, now, 90).is_empty());
    assert_eq!(
        patient_limits(edge + SignedDuration::from_mins(5), 30, 30, now, 90),
        vec![BookingProblem::TooFarAhead]
    );
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
