//! Tests of the billing rules.

use super::*;
use jiff::civil::date;
use proptest::prelude::*;

fn zoned(y: i16, m: i8, d: i8, zone: &str) -> Zoned {
    date(y, m, d).at(9, 30, 0, 0).in_tz(zone).unwrap()
}

fn local(t: Timestamp, zone: &str) -> jiff::civil::DateTime {
    t.in_tz(zone).unwrap().datetime()
}

fn monthly() -> Cadence {
    Cadence {
        unit: Interval::Month,
        count: 1,
    }
}

#[test]
fn month_ends_clamp_without_drifting() {
    let a = zoned(2027, 1, 31, "Europe/Berlin");
    let starts: Vec<_> = (0..5)
        .map(|i| local(period(&a, monthly(), i).unwrap().0, "Europe/Berlin").date())
        .collect();
    assert_eq!(
        starts,
        vec![
            date(2027, 1, 31),
            date(2027, 2, 28),
            date(2027, 3, 31),
            date(2027, 4, 30),
            date(2027, 5, 31)
        ]
    );
    // A leap year gives Feb 29.
    let leap = zoned(2028, 1, 31, "Europe/Berlin");
    let end = period(&leap, monthly(), 0).unwrap().1;
    assert_eq!(local(end, "Europe/Berlin").date(), date(2028, 2, 29));
    // A yearly plan anchored on Feb 29 renews on Feb 28.
    let yearly = Cadence {
        unit: Interval::Year,
        count: 1,
    };
    let end = period(&zoned(2028, 2, 29, "UTC"), yearly, 0).unwrap().1;
    assert_eq!(local(end, "UTC").date(), date(2029, 2, 28));
}

#[test]
fn quarters_and_counts() {
    let a = zoned(2026, 11, 30, "America/New_York");
    let q = Cadence {
        unit: Interval::Quarter,
        count: 1,
    };
    let (s, e) = period(&a, q, 0).unwrap();
    assert_eq!(local(s, "America/New_York").date(), date(2026, 11, 30));
    assert_eq!(local(e, "America/New_York").date(), date(2027, 2, 28));
    let two_weeks = Cadence {
        unit: Interval::Week,
        count: 2,
    };
    let (s, e) = period(&a, two_weeks, 3).unwrap();
    assert_eq!(local(s, "America/New_York").date(), date(2027, 1, 11));
    assert_eq!(local(e, "America/New_York").date(), date(2027, 1, 25));
}

#[test]
fn daily_periods_keep_wall_time_across_daylight_saving() {
    // 2027-03-14 is 23 hours long in New York; the period still ends at 09:30 local.
    let a = zoned(2027, 3, 13, "America/New_York");
    let daily = Cadence {
        unit: Interval::Day,
        count: 1,
    };
    let (s, e) = period(&a, daily, 0).unwrap();
    assert_eq!(e.duration_since(s).as_hours(), 23);
    let (s, e) = period(&a, daily, 1).unwrap();
    assert_eq!(e.duration_since(s).as_hours(), 24);
    assert_eq!(
        local(e, "America/New_York").time(),
        jiff::civil::time(9, 30, 0, 0)
    );
}

#[test]
fn trials_start_trialing_and_end_after_local_days() {
    assert_eq!(initial_status(14), SubStatus::Trialing);
    assert_eq!(initial_status(0), SubStatus::Incomplete);
    let s = zoned(2026, 10, 20, "Europe/Berlin");
    let end = trial_end(&s, 14).unwrap();
    assert_eq!(local(end, "Europe/Berlin").date(), date(2026, 11, 3));
    assert_eq!(
        local(end, "Europe/Berlin").time(),
        jiff::civil::time(9, 30, 0, 0)
    );
}

fn terms(included: Option<i64>) -> Terms {
    Terms {
        included,
        covered_types: vec!["IN_PERSON".into(), "VIDEO_CALL".into()],
        visit_prices: APPOINTMENT_TYPES
            .iter()
            .zip([5000, 3000, 9000])
            .map(|(t, p)| (t.to_string(), p))
            .collect(),
        currency: "EUR".into(),
    }
}

#[test]
fn coverage_decisions() {
    let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    let p = (now - 1.hours(), now + 24.hours());
    let t = terms(Some(2));
    let d = |status, used, kind| decide(status, &t, p, used, kind, now);
    assert_eq!(
        d(SubStatus::Active, 0, "IN_PERSON"),
        Decision::Covered { remaining: Some(1) }
    );
    assert_eq!(
        d(SubStatus::Trialing, 1, "VIDEO_CALL"),
        Decision::Covered { remaining: Some(0) }
    );
    assert_eq!(
        d(SubStatus::Active, 2, "IN_PERSON"),
        Decision::Pay {
            reason: NotCovered::QuotaUsedUp,
            amount: 5000
        }
    );
    assert_eq!(
        d(SubStatus::Active, 0, "HOME_VISIT"),
        Decision::Pay {
            reason: NotCovered::TypeNotCovered,
            amount: 9000
        }
    );
    for s in [
        SubStatus::Incomplete,
        SubStatus::PastDue,
        SubStatus::Cancelled,
    ] {
        assert_eq!(
            d(s, 0, "IN_PERSON"),
            Decision::Pay {
                reason: NotCovered::NotLive,
                amount: 5000
            }
        );
    }
    // Outside the current period (the sweep has not rolled it yet) nothing is covered.
    let later = decide(SubStatus::Active, &t, p, 0, "IN_PERSON", now + 25.hours());
    assert!(matches!(
        later,
        Decision::Pay {
            reason: NotCovered::NotLive,
            ..
        }
    ));
    let unlimited = terms(None);
    assert_eq!(
        decide(SubStatus::Active, &unlimited, p, 500, "IN_PERSON", now),
        Decision::Covered { remaining: None }
    );
    assert_eq!(remaining(&t, 5), Some(0));
    assert_eq!(remaining(&unlimited, 5), None);
}

fn line(q: i64, a: i64) -> Line {
    Line {
        description: "Visit".into(),
        quantity: q,
        unit_amount: a,
    }
}

#[test]
fn invoice_totals() {
    let t = totals(&[line(2, 1500), line(1, 700)], 370, 200).unwrap();
    assert_eq!(
        t,
        Totals {
            subtotal: 3700,
            tax: 370,
            discount: 200,
            total: 3870
        }
    );
    assert_eq!(totals(&[], 0, 0), Err(TotalsProblem::NoLines));
    assert_eq!(totals(&[line(0, 1)], 0, 0), Err(TotalsProblem::BadQuantity));
    assert_eq!(
        totals(&[line(1, -5)], 0, 0),
        Err(TotalsProblem::BadUnitAmount)
    );
    assert_eq!(totals(&[line(1, 5)], -1, 0), Err(TotalsProblem::BadTax));
    assert_eq!(
        totals(&[line(1, 5)], 0, -1),
        Err(TotalsProblem::BadDiscount)
    );
    assert_eq!(
        totals(&[line(1, 5)], 1, 7),
        Err(TotalsProblem::DiscountExceedsAmount)
    );
    assert_eq!(totals(&[line(1, 5)], 1, 6).unwrap().total, 0);
    let many = vec![line(1000, MAX_AMOUNT); 100];
    assert_eq!(totals(&many, 0, 0), Err(TotalsProblem::TooLarge));
    assert_eq!(invoice_number(2026, 42), "INV-2026-000042");
}

#[test]
fn statuses_round_trip_and_rules() {
    for s in SubStatus::ALL {
        assert_eq!(SubStatus::parse(s.as_str()), Some(s));
    }
    for s in InvoiceStatus::ALL {
        assert_eq!(InvoiceStatus::parse(s.as_str()), Some(s));
    }
    for s in PaymentStatus::ALL {
        assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
    }
    for m in Method::ALL {
        assert_eq!(Method::parse(m.as_str()), Some(m));
    }
    for i in Interval::ALL {
        assert_eq!(Interval::parse(i.as_str()), Some(i));
    }
    assert!(!InvoiceStatus::Paid.payable());
    assert!(!InvoiceStatus::Void.payable());
    assert!(!InvoiceStatus::Draft.payable());
    assert!(InvoiceStatus::Overdue.payable());
    assert!(!InvoiceStatus::Paid.voidable());
    assert!(!InvoiceStatus::Void.voidable());
    let due: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
    assert!(overdue(InvoiceStatus::Open, due, due));
    assert!(!overdue(InvoiceStatus::Paid, due, due + 1.hours()));
    assert!(!overdue(InvoiceStatus::Open, due, due - 1.seconds()));
    assert!(Method::Card.via_provider() && !Method::Cash.via_provider());
    assert!(currency_ok("EUR") && !currency_ok("eur") && !currency_ok("EURO"));
}

#[test]
fn every_invoice_action_from_every_status() {
    use InvoiceAction as A;
    use InvoiceStatus::*;
    for s in InvoiceStatus::ALL {
        let want = |a| match (s, a) {
            (Draft, A::Finalize) => Some(Open),
            (Draft | Open | Overdue | Uncollectible, A::Void) => Some(Void),
            (Open | Overdue, A::MarkUncollectible) => Some(Uncollectible),
            _ => None,
        };
        for a in InvoiceAction::ALL {
            assert_eq!(s.after(a), want(a), "{s:?} {a:?}");
            assert_eq!(InvoiceAction::parse(a.as_str()), Some(a));
        }
    }
    // Paid, void and draft invoices take no payment; a written-off one still does.
    assert!(Uncollectible.payable() && !Draft.payable());
}

#[test]
fn part_payments_add_up_and_never_exceed_what_is_owed() {
    use PaymentAmountProblem::*;
    assert_eq!(payment_amount(5000, None), Ok(5000));
    assert_eq!(payment_amount(5000, Some(2000)), Ok(2000));
    assert_eq!(payment_amount(5000, Some(5000)), Ok(5000));
    assert_eq!(payment_amount(5000, Some(5001)), Err(ExceedsDue));
    assert_eq!(payment_amount(5000, Some(0)), Err(NotPositive));
    assert_eq!(payment_amount(5000, Some(-1)), Err(NotPositive));
    assert_eq!(after_payment(5000, 0, 2000), (2000, false));
    assert_eq!(after_payment(5000, 2000, 3000), (5000, true));
    // Two parts racing for what was owed both count; the excess is refunded.
    assert_eq!(after_payment(800, 300, 600), (900, true));
}

#[test]
fn refunds_never_exceed_what_was_paid() {
    use PaymentStatus::*;
    assert_eq!(refund(Completed, 1000, 0, 400), Ok(false));
    assert_eq!(refund(Completed, 1000, 400, 600), Ok(true));
    assert_eq!(
        refund(Completed, 1000, 400, 601),
        Err(RefundProblem::MoreThanPaid)
    );
    assert_eq!(refund(Completed, 1000, 0, 0), Err(RefundProblem::BadAmount));
    assert_eq!(
        refund(Pending, 1000, 0, 1),
        Err(RefundProblem::NotCompleted)
    );
    assert_eq!(
        refund(Refunded, 1000, 1000, 1),
        Err(RefundProblem::NotCompleted)
    );
}

proptest! {
    /// For any anchor (including month ends and daylight-saving days), cadence and index:
    /// periods are non-empty, follow each other without gaps or overlaps, start on the
    /// anchor's day of month or the last day of a shorter month, and keep the anchor's
    /// wall-clock time whenever that time exists on the day.
    #[test]
    fn periods_tile_time(
        zone in prop::sample::select(vec!["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]),
        y in 2024i16..2030, m in 1i8..=12, d in 1i8..=31,
        unit in prop::sample::select(Interval::ALL.to_vec()),
        count in 1i64..=12,
        index in 0i64..40,
    ) {
        let day = date(y, m, 1);
        let d = d.min(day.days_in_month());
        let anchor = date(y, m, d).at(9, 30, 0, 0).in_tz(zone).unwrap();
        let cadence = Cadence { unit, count };
        let (s, e) = period(&anchor, cadence, index).unwrap();
        let (s2, _) = period(&anchor, cadence, index + 1).unwrap();
        prop_assert!(s < e);
        prop_assert_eq!(e, s2);
        let start = s.in_tz(zone).unwrap();
        if matches!(unit, Interval::Month | Interval::Quarter | Interval::Year) {
            let expected = d.min(start.date().days_in_month());
            prop_assert_eq!(start.day(), expected);
        }
        if matches!(unit, Interval::Day | Interval::Week) {
            let days = (e.as_second() - s.as_second()) as f64 / 86_400.0;
            let want = if unit == Interval::Week { 7.0 } else { 1.0 } * count as f64;
            prop_assert!((days - want).abs() <= 1.0 / 24.0 + 1e-9);
        }
        prop_assert_eq!(start.time(), jiff::civil::time(9, 30, 0, 0));
    }

    /// Totals are exactly lines + tax - discount, and never negative.
    #[test]
    fn totals_add_up(
        lines in prop::collection::vec((1i64..=1000, 0i64..=1_000_000), 1..20),
        tax in 0i64..=1_000_000,
        discount in 0i64..=1_000_000,
    ) {
        let ls: Vec<Line> = lines.iter().map(|(q, a)| line(*q, *a)).collect();
        let sum: i64 = lines.iter().map(|(q, a)| q * a).sum();
        match totals(&ls, tax, discount) {
            Ok(t) => {
                prop_assert_eq!(t.total, sum + tax - discount);
                prop_assert!(t.total >= 0);
            }
            Err(p) => prop_assert_eq!(p, TotalsProblem::DiscountExceedsAmount),
        }
    }

    /// Coverage never grants more units than the quota, and the price is always the
    /// type's pay-per-visit price when not covered.
    #[test]
    fn coverage_never_exceeds_quota(included in 0i64..20, used in 0i64..30, k in 0usize..3) {
        let t = terms(Some(included));
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let p = (now - 1.hours(), now + 1.hours());
        let kind = APPOINTMENT_TYPES[k];
        match decide(SubStatus::Active, &t, p, used, kind, now) {
            Decision::Covered { remaining } => {
                prop_assert!(used < included);
                prop_assert_eq!(remaining, Some(included - used - 1));
            }
            Decision::Pay { amount, .. } => prop_assert_eq!(amount, t.visit_prices[kind]),
        }
    }
}
