//! Billing rules with no I/O: billing periods in the clinic's time zone (month ends clamp and
//! never drift), the coverage decision for a booking, invoice totals in integer minor units,
//! and the subscription, invoice and payment status rules.

use jiff::{Span, Timestamp, ToSpan, Zoned, tz::TimeZone};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Appointment types a plan can cover (the appointments function's `kind`).
pub const APPOINTMENT_TYPES: [&str; 3] = ["IN_PERSON", "VIDEO_CALL", "HOME_VISIT"];

pub const MAX_INTERVAL_COUNT: i64 = 36;
pub const MAX_TRIAL_DAYS: i64 = 365;
pub const MAX_INCLUDED: i64 = 10_000;
/// Amounts are integer minor units; no single amount reaches ten million major units.
pub const MAX_AMOUNT: i64 = 1_000_000_000;
pub const MAX_LINES: usize = 100;

/// The unit of a plan's billing interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Interval {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Interval {
    pub const ALL: [Interval; 5] = [
        Interval::Day,
        Interval::Week,
        Interval::Month,
        Interval::Quarter,
        Interval::Year,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "DAY",
            Interval::Week => "WEEK",
            Interval::Month => "MONTH",
            Interval::Quarter => "QUARTER",
            Interval::Year => "YEAR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == s)
    }

    /// `n` intervals as a calendar span (quarters are three months).
    fn span(self, n: i64) -> Span {
        match self {
            Interval::Day => n.days(),
            Interval::Week => n.weeks(),
            Interval::Month => n.months(),
            Interval::Quarter => (3 * n).months(),
            Interval::Year => n.years(),
        }
    }
}

/// How often a plan bills: `count` x `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub unit: Interval,
    pub count: i64,
}

/// The `index`-th billing period of a subscription anchored at `anchor` (in the clinic's
/// zone). Every period is computed from the anchor, never from the previous period, so month
/// ends clamp without drifting: anchored on Jan 31, monthly periods start Feb 28 (or 29), then
/// Mar 31, Apr 30, and so on. Wall-clock time is kept across daylight-saving changes.
pub fn period(anchor: &Zoned, cadence: Cadence, index: i64) -> Option<(Timestamp, Timestamp)> {
    let start = anchor
        .checked_add(cadence.unit.span(cadence.count * index))
        .ok()?;
    let end = anchor
        .checked_add(cadence.unit.span(cadence.count * (index + 1)))
        .ok()?;
    Some((start.timestamp(), end.timestamp()))
}

/// When a trial of `days` local days starting at `start` ends.
pub fn trial_end(start: &Zoned, days: i64) -> Option<Timestamp> {
    start.checked_add(days.days()).ok().map(|z| z.timestamp())
}

/// Subscription statuses. Live subscriptions are every status but `Cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubStatus {
    Trialing,
    Incomplete,
    Active,
    PastDue,
    Cancelled,
}

impl SubStatus {
    pub const ALL: [SubStatus; 5] = [
        SubStatus::Trialing,
        SubStatus::Incomplete,
        SubStatus::Active,
        SubStatus::PastDue,
        SubStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubStatus::Trialing => "TRIALING",
            SubStatus::Incomplete => "INCOMPLETE",
            SubStatus::Active => "ACTIVE",
            SubStatus::PastDue => "PAST_DUE",
            SubStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_live(self) -> bool {
        self != SubStatus::Cancelled
    }

    /// Statuses under which bookings are covered.
    pub fn covers(self) -> bool {
        matches!(self, SubStatus::Trialing | SubStatus::Active)
    }
}

/// The status a new subscription starts in.
pub fn initial_status(trial_days: i64) -> SubStatus {
    if trial_days > 0 {
        SubStatus::Trialing
    } else {
        SubStatus::Incomplete
    }
}

/// What a subscription offers, frozen from its plan when it was taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// Appointments included per period; `None` is unlimited.
    pub included: Option<i64>,
    pub covered_types: Vec<String>,
    /// Pay-per-visit price of every appointment type, in minor units.
    pub visit_prices: BTreeMap<String, i64>,
    pub currency: String,
}

/// Why a booking is not covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCovered {
    /// The subscription is not trialing or active, or the booking is outside its period.
    NotLive,
    TypeNotCovered,
    QuotaUsedUp,
}

impl NotCovered {
    pub fn as_str(self) -> &'static str {
        match self {
            NotCovered::NotLive => "subscription_not_live",
            NotCovered::TypeNotCovered => "type_not_covered",
            NotCovered::QuotaUsedUp => "quota_used_up",
        }
    }
}

/// The coverage decision for one appointment of `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Covered; `remaining` is the quota left after this booking (`None` is unlimited).
    Covered { remaining: Option<i64> },
    /// To be paid per visit: `amount` minor units.
    Pay { reason: NotCovered, amount: i64 },
}

/// Decides coverage for a booking of `kind` made at `now`, given the subscription's status,
/// terms, current period and the units already used in it.
pub fn decide(
    status: SubStatus,
    terms: &Terms,
    period: (Timestamp, Timestamp),
    used: i64,
    kind: &str,
    now: Timestamp,
) -> Decision {
    let amount = terms.visit_prices.get(kind).copied().unwrap_or(0);
    let pay = |reason| Decision::Pay { reason, amount };
    if !status.covers() || now < period.0 || now >= period.1 {
        return pay(NotCovered::NotLive);
    }
    if !terms.covered_types.iter().any(|t| t == kind) {
        return pay(NotCovered::TypeNotCovered);
    }
    match terms.included {
        None => Decision::Covered { remaining: None },
        Some(n) if used < n => Decision::Covered {
            remaining: Some(n - used - 1),
        },
        Some(_) => pay(NotCovered::QuotaUsedUp),
    }
}

/// Units left in the period (`None` is unlimited), never below zero.
pub fn remaining(terms: &Terms, used: i64) -> Option<i64> {
    terms.included.map(|n| (n - used).max(0))
}

/// One invoice line: `quantity` x `unit_amount` minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

/// An invoice's amounts, all in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: i64,
    pub tax: i64,
    pub discount: i64,
    pub total: i64,
}

/// Why invoice amounts are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalsProblem {
    NoLines,
    TooManyLines,
    BadQuantity,
    BadUnitAmount,
    BadTax,
    BadDiscount,
    DiscountExceedsAmount,
    TooLarge,
}

/// total = sum of lines + tax - discount, checked: quantities 1..=1000, amounts and tax
/// non-negative, the discount no more than lines plus tax, nothing overflowing.
pub fn totals(lines: &[Line], tax: i64, discount: i64) -> Result<Totals, TotalsProblem> {
    if lines.is_empty() {
        return Err(TotalsProblem::NoLines);
    }
    if lines.len() > MAX_LINES {
        return Err(TotalsProblem::TooManyLines);
    }
    let mut subtotal: i64 = 0;
    for l in lines {
        if !(1..=1000).contains(&l.quantity) {
            return Err(TotalsProblem::BadQuantity);
        }
        if !(0..=MAX_AMOUNT).contains(&l.unit_amount) {
            return Err(TotalsProblem::BadUnitAmount);
        }
        subtotal = l
            .quantity
            .checked_mul(l.unit_amount)
            .and_then(|x| subtotal.checked_add(x))
            .ok_or(TotalsProblem::TooLarge)?;
    }
    if !(0..=MAX_AMOUNT).contains(&tax) {
        return Err(TotalsProblem::BadTax);
    }
    if !(0..=MAX_AMOUNT).contains(&discount) {
        return Err(TotalsProblem::BadDiscount);
    }
    let gross = subtotal.checked_add(tax).ok_or(TotalsProblem::TooLarge)?;
    if discount > gross {
        return Err(TotalsProblem::DiscountExceedsAmount);
    }
    let total = gross - discount;
    if total > MAX_AMOUNT * 100 {
        return Err(TotalsProblem::TooLarge);
    }
    Ok(Totals {
        subtotal,
        tax,
        discount,
        total,
    })
}

/// `INV-2026-000042`: the clinic's 42nd invoice of 2026.
pub fn invoice_number(year: i16, sequence: i64) -> String {
    format!("INV-{year}-{sequence:06}")
}

/// Invoice statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
    Overdue,
}

impl InvoiceStatus {
    pub const ALL: [InvoiceStatus; 6] = [
        InvoiceStatus::Draft,
        InvoiceStatus::Open,
        InvoiceStatus::Paid,
        InvoiceStatus::Void,
        InvoiceStatus::Uncollectible,
        InvoiceStatus::Overdue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "DRAFT",
            InvoiceStatus::Open => "OPEN",
            InvoiceStatus::Paid => "PAID",
            InvoiceStatus::Void => "VOID",
            InvoiceStatus::Uncollectible => "UNCOLLECTIBLE",
            InvoiceStatus::Overdue => "OVERDUE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether a payment may be taken against the invoice.
    pub fn payable(self) -> bool {
        matches!(
            self,
            InvoiceStatus::Open | InvoiceStatus::Overdue | InvoiceStatus::Uncollectible
        )
    }

    /// Whether the invoice may be voided (anything not paid and not already void).
    pub fn voidable(self) -> bool {
        !matches!(self, InvoiceStatus::Paid | InvoiceStatus::Void)
    }

    /// Where `action` takes an invoice in this status, or `None` when it may not.
    pub fn after(self, action: InvoiceAction) -> Option<InvoiceStatus> {
        match action {
            InvoiceAction::Finalize => {
                (self == InvoiceStatus::Draft).then_some(InvoiceStatus::Open)
            }
            InvoiceAction::Void => self.voidable().then_some(InvoiceStatus::Void),
            InvoiceAction::MarkUncollectible => {
                matches!(self, InvoiceStatus::Open | InvoiceStatus::Overdue)
                    .then_some(InvoiceStatus::Uncollectible)
            }
        }
    }
}

/// What staff do to an invoice after creating it: a draft is finalized (numbered and OPEN), an
/// unpaid one voided, or an unpaid issued one written off as UNCOLLECTIBLE (it stays payable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceAction {
    Finalize,
    Void,
    MarkUncollectible,
}

impl InvoiceAction {
    pub const ALL: [InvoiceAction; 3] = [
        InvoiceAction::Finalize,
        InvoiceAction::Void,
        InvoiceAction::MarkUncollectible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceAction::Finalize => "finalize",
            InvoiceAction::Void => "void",
            InvoiceAction::MarkUncollectible => "mark-uncollectible",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Why a payment amount is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentAmountProblem {
    /// Zero or negative.
    NotPositive,
    /// More than the invoice still owes.
    ExceedsDue,
}

/// The amount a payment takes against an invoice owing `due`: `requested` (a part payment) or,
/// when none is given, everything owed.
pub fn payment_amount(due: i64, requested: Option<i64>) -> Result<i64, PaymentAmountProblem> {
    match requested {
        None => Ok(due),
        Some(a) if a <= 0 => Err(PaymentAmountProblem::NotPositive),
        Some(a) if a > due => Err(PaymentAmountProblem::ExceedsDue),
        Some(a) => Ok(a),
    }
}

/// An invoice's amount paid after a completed payment of `amount`, and whether that settles it.
pub fn after_payment(total: i64, paid: i64, amount: i64) -> (i64, bool) {
    let paid = paid.saturating_add(amount);
    (paid, paid >= total)
}

/// Whether an invoice due at `due` and still `status` at `now` has become overdue.
pub fn overdue(status: InvoiceStatus, due: Timestamp, now: Timestamp) -> bool {
    status == InvoiceStatus::Open && now >= due
}

/// Days an issued invoice may stay unpaid before it is overdue.
pub const DUE_DAYS: i64 = 7;

/// Payment methods. Cash and insurance are recorded at the desk; the rest go through a
/// payment provider and complete when its signed webhook says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Cash,
    Card,
    Upi,
    NetBanking,
    Wallet,
    Insurance,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Cash,
        Method::Card,
        Method::Upi,
        Method::NetBanking,
        Method::Wallet,
        Method::Insurance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Cash => "CASH",
            Method::Card => "CARD",
            Method::Upi => "UPI",
            Method::NetBanking => "NET_BANKING",
            Method::Wallet => "WALLET",
            Method::Insurance => "INSURANCE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Card-like methods settle through a provider, asynchronously.
    pub fn via_provider(self) -> bool {
        matches!(
            self,
            Method::Card | Method::Upi | Method::NetBanking | Method::Wallet
        )
    }
}

/// Payment statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Completed,
    Failed,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 4] = [
        PaymentStatus::Pending,
        PaymentStatus::Completed,
        PaymentStatus::Failed,
        PaymentStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Completed => "COMPLETED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Why a refund is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundProblem {
    NotCompleted,
    BadAmount,
    MoreThanPaid,
}

/// Checks a refund of `amount` against a payment of `paid` with `refunded` already given
/// back; returns whether the payment is then fully refunded.
pub fn refund(
    status: PaymentStatus,
    paid: i64,
    refunded: i64,
    amount: i64,
) -> Result<bool, RefundProblem> {
    if status != PaymentStatus::Completed {
        return Err(RefundProblem::NotCompleted);
    }
    if amount <= 0 {
        return Err(RefundProblem::BadAmount);
    }
    if amount > paid - refunded {
        return Err(RefundProblem::MoreThanPaid);
    }
    Ok(refunded + amount == paid)
}

/// Whether `code` is an ISO 4217-shaped currency code (three capital letters).
pub fn currency_ok(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// The local calendar year of `t` in `tz` (invoice numbering restarts each year).
pub fn local_year(t: Timestamp, tz: &TimeZone) -> i16 {
    t.to_zoned(tz.clone()).year()
}

#[cfg(test)]
mod tests {
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
}
