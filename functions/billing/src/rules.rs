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
mod tests;
