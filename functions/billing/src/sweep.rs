//! The scheduled billing job: subscriptions whose period has ended move on (a trial ends, a
//! cancel-at-period-end takes effect, or the next period starts with its quota reset and its
//! invoice issued), and open invoices past their due date become OVERDUE, putting the
//! subscription they bill PAST_DUE. Every change goes through the same code as the routes, under
//! the version read, so a run racing a request (or another run) changes nothing twice.

use jiff::Timestamp;
use serde::Serialize;
use shared::{
    ApiError,
    db::{Tx, VersionedUpdate, s},
    ids::ClinicId,
    keys,
    platform::Platform,
};

use crate::{
    Who, api, event,
    invoices::{retry_numbering, version_conflict},
    iso,
    rules::{self, InvoiceStatus, SubStatus},
    store::{self, InvoiceRecord, Record, SubscriptionRecord},
};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub clinics: usize,
    /// Subscriptions moved into a new period (trials ended included).
    pub renewed: usize,
    /// Subscriptions ended by a cancel-at-period-end.
    pub ended: usize,
    pub overdue: usize,
    pub past_due: usize,
    /// Changes that failed; the next run tries them again.
    pub failed: usize,
}

/// Runs the job over every clinic.
pub async fn run(state: &Platform) -> Result<SweepReport, ApiError> {
    let mut report = SweepReport::default();
    for clinic in clinics::store::clinic_ids(&state.table).await? {
        let r = sweep_clinic(state, &clinic, state.clock.now()).await?;
        report.clinics += 1;
        report.renewed += r.renewed;
        report.ended += r.ended;
        report.overdue += r.overdue;
        report.past_due += r.past_due;
        report.failed += r.failed;
    }
    Ok(report)
}

/// Runs the job over one clinic at `now`.
pub async fn sweep_clinic(
    state: &Platform,
    clinic: &ClinicId,
    now: Timestamp,
) -> Result<SweepReport, ApiError> {
    let mut report = SweepReport::default();
    let who = Who::system();
    for x in
        store::all::<SubscriptionRecord>(&state.table, clinic, keys::SUBSCRIPTION_PREFIX).await?
    {
        // An unpaid first period waits for its payment; a cancelled one is over.
        let due = matches!(
            x.status,
            SubStatus::Trialing | SubStatus::Active | SubStatus::PastDue
        ) && x.period_end <= now.as_second();
        if !due {
            continue;
        }
        match retry_numbering(|| api::advance(state, &x, &who, now)).await {
            Ok(after) if after.status == SubStatus::Cancelled => report.ended += 1,
            Ok(_) => report.renewed += 1,
            Err(e) => {
                tracing::warn!(subscription = %x.id, error = %e, "subscription not moved on");
                report.failed += 1;
            }
        }
    }
    for inv in store::all::<InvoiceRecord>(&state.table, clinic, keys::INVOICE_PREFIX).await? {
        let due = Timestamp::from_second(inv.due_at).unwrap_or(Timestamp::MAX);
        if !rules::overdue(inv.status, due, now) {
            continue;
        }
        match mark_overdue(state, &inv, &who, now).await {
            Ok(past_due) => {
                report.overdue += 1;
                report.past_due += usize::from(past_due);
            }
            Err(e) => {
                tracing::warn!(invoice = %inv.id, error = %e, "invoice not marked overdue");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// OPEN → OVERDUE, and the ACTIVE subscription it bills → PAST_DUE, in one transaction.
/// Returns whether a subscription became PAST_DUE.
async fn mark_overdue(
    state: &Platform,
    inv: &InvoiceRecord,
    who: &Who,
    now: Timestamp,
) -> Result<bool, ApiError> {
    let now_s = now.as_second();
    let mut tx = Tx::default();
    let mut u = VersionedUpdate::new();
    u.set("status", s(InvoiceStatus::Overdue.as_str()));
    tx.guard(inv.update(&state.table, u, now_s)?, version_conflict);
    tx.push(
        event(
            "billing.invoice.overdue",
            &inv.clinic,
            who,
            ("invoice", inv.id.as_str()),
            serde_json::json!({
                "invoiceId": inv.id,
                "number": inv.number,
                "patientId": inv.patient,
                "subscriptionId": inv.subscription,
                "total": inv.totals.total,
                "dueAt": iso(inv.due_at),
            }),
            now,
        )
        .outbox_write(&state.table.name, now_s)?,
    );
    let mut past_due = false;
    if let Some(sub) = &inv.subscription {
        if let Some(x) = store::get_subscription(&state.table, &inv.clinic, sub).await? {
            if x.status == SubStatus::Active && x.latest_invoice.as_ref() == Some(&inv.id) {
                let mut su = VersionedUpdate::new();
                su.set("status", s(SubStatus::PastDue.as_str()));
                tx.guard(x.update(&state.table, su, now_s)?, version_conflict);
                tx.push(
                    event(
                        "billing.subscription.past_due",
                        &x.clinic,
                        who,
                        ("subscription", x.id.as_str()),
                        serde_json::json!({
                            "subscriptionId": x.id,
                            "patientId": x.patient,
                            "invoiceId": inv.id,
                        }),
                        now,
                    )
                    .outbox_write(&state.table.name, now_s)?,
                );
                past_due = true;
            }
        }
    }
    tx.commit(&state.table).await?;
    Ok(past_due)
}
