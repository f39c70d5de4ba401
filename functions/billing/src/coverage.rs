//! Coverage of bookings by a subscription: the facade the booking transaction calls.
//!
//! What the booking transaction adds (the quota unit and the link, or a pay-per-visit invoice)
//! and giving the unit back when a covered appointment is cancelled.

use jiff::{Timestamp, tz::TimeZone};
use shared::{
    ApiError,
    db::Tx,
    error::Guard,
    ids::{AppointmentId, ClinicId, InvoiceId, LocationId, SubscriptionId, UserId},
    outbox::Who,
    platform::Platform,
};

use crate::{
    common::event,
    issuing::{self, Draft},
    rules::{self, Decision, Line, NotCovered},
    store::{self, CoverageLink},
};

/// A booking that names a subscription, as far as coverage is concerned.
#[derive(Debug, Clone)]
pub struct Booking<'a> {
    pub clinic: &'a ClinicId,
    pub subscription: &'a SubscriptionId,
    pub patient: &'a UserId,
    pub appointment: &'a AppointmentId,
    pub location: Option<&'a LocationId>,
    /// The appointment type (`IN_PERSON`, `VIDEO_CALL`, `HOME_VISIT`).
    pub kind: &'a str,
    /// The clinic's time zone (the booking has it already; an invoice's year is local).
    pub tz: &'a TimeZone,
}

/// What coverage did for a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// One unit of quota is taken; `remaining` after it (`None` is unlimited).
    Covered {
        remaining: Option<i64>,
        currency: String,
    },
    /// Not covered: the visit is paid per visit. `invoice` is the OPEN invoice issued for it
    /// (none when the price is zero).
    Uncovered {
        reason: NotCovered,
        amount: i64,
        currency: String,
        invoice: Option<(InvoiceId, String)>,
    },
}

/// The period's last unit went to another booking between the read and the commit.
pub const QUOTA_EXHAUSTED: Guard = Guard::new(
    "quota_exhausted",
    "The subscription's appointments for this period were used up meanwhile; check coverage and book again.",
);

/// How many times a booking transaction that issues an invoice is run again when another
/// invoice takes its number meanwhile (see [`shared::db::retrying`]).
pub const NUMBERING_RETRIES: u32 = issuing::NUMBERING_ATTEMPTS;

fn unknown_subscription() -> ApiError {
    ApiError::invalid_field(
        "subscriptionId",
        "unknown_subscription",
        "No such subscription for this patient.",
    )
}

/// Adds coverage for `b` to the booking transaction `tx`: when covered, the guarded quota
/// decrement (never below zero), the link and `billing.appointment.booked`; when not, an OPEN
/// invoice for the visit. The caller commits `tx` with the appointment (and retries with
/// [`shared::db::retrying`] and [`NUMBERING_RETRIES`], since an invoice number may be taken
/// meanwhile).
pub async fn for_booking(
    state: &Platform,
    tx: &mut Tx,
    b: &Booking<'_>,
    who: &Who,
    now: Timestamp,
) -> Result<Outcome, ApiError> {
    let sub = store::get_subscription(&state.table, b.clinic, b.subscription)
        .await?
        .filter(|s| &s.patient == b.patient)
        .ok_or_else(unknown_subscription)?;
    let now_s = now.as_second();
    match rules::decide(
        sub.status,
        &sub.terms,
        sub.period(),
        sub.quota_used,
        b.kind,
        now,
    ) {
        Decision::Covered { remaining } => {
            tx.guard(store::quota_take(&state.table, &sub)?, QUOTA_EXHAUSTED);
            let link = CoverageLink {
                appointment: b.appointment.clone(),
                subscription: sub.id.clone(),
                period_start: sub.period_start,
            };
            tx.push(store::link_put(&state.table, b.clinic, &link, now_s)?);
            tx.push(
                event(
                    "billing.appointment.booked",
                    b.clinic,
                    who,
                    ("subscription", sub.id.as_str()),
                    serde_json::json!({
                        "appointmentId": b.appointment,
                        "subscriptionId": sub.id,
                        "patientId": sub.patient,
                        "appointmentType": b.kind,
                        "remaining": remaining,
                    }),
                    now,
                )
                .outbox_write(&state.table.name, now_s)?,
            );
            Ok(Outcome::Covered {
                remaining,
                currency: sub.terms.currency.clone(),
            })
        }
        Decision::Pay { reason, amount } => {
            let currency = sub.terms.currency.clone();
            let invoice = if amount > 0 {
                let draft = Draft {
                    clinic: b.clinic.clone(),
                    patient: sub.patient.clone(),
                    subscription: None,
                    appointment: Some(b.appointment.clone()),
                    location: b.location.cloned(),
                    currency: currency.clone(),
                    lines: vec![Line {
                        description: format!("Visit ({})", b.kind),
                        quantity: 1,
                        unit_amount: amount,
                    }],
                    tax: 0,
                    discount: 0,
                };
                let inv = issuing::issue(state, tx, &draft, b.tz, who, now).await?;
                Some((inv.id, inv.number.unwrap_or_default()))
            } else {
                None
            };
            Ok(Outcome::Uncovered {
                reason,
                amount,
                currency,
                invoice,
            })
        }
    }
}

/// Whether the invoice is paid now (read from the invoice itself): what the appointments
/// context checks before confirming a visit on a `billing.invoice.paid` event.
pub async fn invoice_paid(
    state: &Platform,
    clinic: &ClinicId,
    invoice: &shared::ids::InvoiceId,
) -> Result<bool, ApiError> {
    Ok(store::get_invoice(&state.table, clinic, invoice)
        .await?
        .is_some_and(|i| i.status == crate::rules::InvoiceStatus::Paid))
}

/// Gives back the unit a cancelled appointment took, exactly once: the link is deleted under
/// an `attribute_exists` condition in the same transaction as the give-back, so a redelivered
/// cancellation finds no link and does nothing. A unit taken in a period that has since ended
/// is not carried into the new one (the link is removed without a give-back). Returns whether
/// this call gave the unit back.
pub async fn restore(
    state: &Platform,
    clinic: &ClinicId,
    appointment: &AppointmentId,
    now: Timestamp,
) -> Result<bool, ApiError> {
    for _ in 0..3 {
        let Some(link) = store::get_link(&state.table, clinic, appointment).await? else {
            return Ok(false);
        };
        let sub = store::get_subscription(&state.table, clinic, &link.subscription).await?;
        let same_period = sub
            .as_ref()
            .is_some_and(|s| s.period_start == link.period_start && s.quota_used > 0);
        let mut tx = Tx::default();
        tx.guard(
            store::link_take(&state.table, clinic, appointment)?,
            ALREADY_RESTORED,
        );
        if same_period {
            tx.guard(
                store::quota_give_back(
                    &state.table,
                    clinic,
                    &link.subscription,
                    link.period_start,
                )?,
                PERIOD_MOVED,
            );
        }
        let now_s = now.as_second();
        tx.push(
            event(
                "billing.quota.restored",
                clinic,
                &Who::system(),
                ("subscription", link.subscription.as_str()),
                serde_json::json!({
                    "appointmentId": appointment,
                    "subscriptionId": link.subscription,
                    "restored": same_period,
                }),
                now,
            )
            .outbox_write(&state.table.name, now_s)?,
        );
        match tx.commit(&state.table).await {
            Ok(()) => return Ok(same_period),
            Err(ApiError::Guarded(ALREADY_RESTORED)) => return Ok(false),
            Err(ApiError::Guarded(PERIOD_MOVED)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        "concurrent_request",
        "The subscription kept changing; try again.",
    ))
}

const ALREADY_RESTORED: Guard = Guard::new("already_restored", "The unit was already given back.");

const PERIOD_MOVED: Guard = Guard::new(
    "period_moved",
    "The subscription's period changed meanwhile.",
);
