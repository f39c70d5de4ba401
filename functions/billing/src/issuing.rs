//! Issuing invoices: drafts, gapless numbers per clinic and year, and `billing.invoice.*` events.
//!
//! A clinic's invoice numbers come from one counter item per calendar year. Issuing an invoice
//! moves the counter from the value read to the next one, under a condition on the value read,
//! in the same transaction that writes the invoice with that number: a number is used exactly
//! when its invoice exists, so numbers have neither gaps nor duplicates. Two issuers that read
//! the same value cannot both commit; the loser reads again and retries.
//!
//! Subscriptions, coverage and the invoice routes all issue invoices, so this sits below them.

use jiff::{Timestamp, tz::TimeZone};
use shared::{
    ApiError,
    contracts::InvoiceData,
    db::{self, Tx},
    error::{FieldError, Guard},
    ids::{AppointmentId, ClinicId, InvoiceId, LocationId, SubscriptionId, UserId},
    outbox::Who,
    platform::Platform,
};

use crate::{
    common::{event, iso},
    rules::{self, InvoiceStatus, Line, TotalsProblem},
    store::{self, InvoiceRecord, StoredLine},
};

/// How many times issuing re-reads the counter before giving up (each try is one read and one
/// transaction; a hundred concurrent issuers in one clinic settle well within this).
pub(crate) const NUMBERING_ATTEMPTS: u32 = 200;

/// Another invoice took the number the counter read: read it again and retry.
const NUMBER_TAKEN: Guard = Guard::retryable(
    "invoice_number_taken",
    "Another invoice took this number; try again.",
);

/// Runs `attempt` until it does not fail because another invoice took the number it read
/// (or another retryable guard failed), backing off with jitter in between.
pub async fn retry_numbering<T, F, Fut>(attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    db::retrying(NUMBERING_ATTEMPTS, attempt).await
}

/// What an invoice is for, before it has a number.
#[derive(Debug, Clone)]
pub struct Draft {
    pub clinic: ClinicId,
    pub patient: UserId,
    pub subscription: Option<SubscriptionId>,
    pub appointment: Option<AppointmentId>,
    pub location: Option<LocationId>,
    pub currency: String,
    pub lines: Vec<Line>,
    pub tax: i64,
    pub discount: i64,
}

/// Adds an OPEN invoice for `draft` to `tx`: the counter move (guarded), the invoice and its
/// `billing.invoice.issued` event. Returns the invoice as it will be stored.
pub async fn issue(
    state: &Platform,
    tx: &mut Tx,
    draft: &Draft,
    tz: &TimeZone,
    who: &Who,
    now: Timestamp,
) -> Result<InvoiceRecord, ApiError> {
    let mut inv = record(draft, now)?;
    let number = take_number(state, tx, &draft.clinic, tz, now).await?;
    inv.status = InvoiceStatus::Open;
    inv.number = Some(number);
    tx.push(inv.put(&state.table)?);
    tx.push(issued_event(state, &inv, who, now)?);
    Ok(inv)
}

/// The invoice `draft` describes, as a DRAFT without a number; issuing numbers it and opens it.
pub(crate) fn record(draft: &Draft, now: Timestamp) -> Result<InvoiceRecord, ApiError> {
    let totals = rules::totals(&draft.lines, draft.tax, draft.discount)
        .map_err(|p| ApiError::Validation(vec![totals_error(p)]))?;
    let now_s = now.as_second();
    Ok(InvoiceRecord {
        id: InvoiceId::generate(),
        clinic: draft.clinic.clone(),
        number: None,
        patient: draft.patient.clone(),
        subscription: draft.subscription.clone(),
        appointment: draft.appointment.clone(),
        location: draft.location.clone(),
        status: InvoiceStatus::Draft,
        currency: draft.currency.clone(),
        lines: draft.lines.iter().map(StoredLine::from).collect(),
        totals,
        amount_paid: 0,
        due_at: due_after(now),
        issued_at: now_s,
        paid_at: None,
        voided_at: None,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
    })
}

/// Due a fixed number of days after issue (exact days: due times are instants).
pub(crate) fn due_after(issued: Timestamp) -> i64 {
    issued.as_second() + rules::DUE_DAYS * 86_400
}

/// Takes the clinic's next number for the year of `now` in `tz`: adds the guarded counter move
/// to `tx` and returns the number it stands for.
pub(crate) async fn take_number(
    state: &Platform,
    tx: &mut Tx,
    clinic: &ClinicId,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<String, ApiError> {
    let year = rules::local_year(now, tz);
    let last = store::invoice_counter(&state.table, clinic, year).await?;
    tx.guard(
        store::invoice_counter_next(&state.table, clinic, year, last)?,
        NUMBER_TAKEN,
    );
    Ok(rules::invoice_number(year, last + 1))
}

pub(crate) fn issued_event(
    state: &Platform,
    inv: &InvoiceRecord,
    who: &Who,
    now: Timestamp,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    invoice_event(
        state,
        "billing.invoice.issued",
        inv,
        who,
        now,
        serde_json::json!({ "dueAt": iso(inv.due_at) }),
    )
}

/// A `billing.invoice.*` event: the invoice's ids, number, total and currency, and `extra`.
pub(crate) fn invoice_event(
    state: &Platform,
    kind: &str,
    inv: &InvoiceRecord,
    who: &Who,
    now: Timestamp,
    extra: serde_json::Value,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    let data = InvoiceData {
        invoice_id: inv.id.clone(),
        number: inv.number.clone(),
        patient_id: inv.patient.clone(),
        subscription_id: inv.subscription.clone(),
        appointment_id: inv.appointment.clone(),
        total: inv.totals.total,
        currency: inv.currency.clone(),
        extra: match extra {
            serde_json::Value::Object(x) => x,
            _ => serde_json::Map::new(),
        },
    };
    event(
        kind,
        &inv.clinic,
        who,
        ("invoice", inv.id.as_str()),
        serde_json::to_value(data).map_err(ApiError::internal)?,
        now,
    )
    .outbox_write(&state.table.name, now.as_second())
}

pub(crate) fn totals_error(p: TotalsProblem) -> FieldError {
    let (field, code, msg) = match p {
        TotalsProblem::NoLines => ("lines", "required", "Add at least one line."),
        TotalsProblem::TooManyLines => ("lines", "too_many", "At most 100 lines."),
        TotalsProblem::BadQuantity => ("lines", "invalid_quantity", "Quantities are 1 to 1000."),
        TotalsProblem::BadUnitAmount => (
            "lines",
            "invalid_amount",
            "Unit amounts are whole minor units, 0 or more.",
        ),
        TotalsProblem::BadTax => (
            "tax",
            "invalid_amount",
            "Tax is whole minor units, 0 or more.",
        ),
        TotalsProblem::BadDiscount => (
            "discount",
            "invalid_amount",
            "The discount is whole minor units, 0 or more.",
        ),
        TotalsProblem::DiscountExceedsAmount => (
            "discount",
            "exceeds_amount",
            "The discount cannot exceed the lines plus tax.",
        ),
        TotalsProblem::TooLarge => ("lines", "too_large", "The amounts are too large."),
    };
    FieldError::new(field, code, msg)
}
