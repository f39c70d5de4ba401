//! The scheduled billing job: subscriptions move into their next period, unpaid invoices lapse.
//!
//! Subscriptions whose period has ended move on (a trial ends, a cancel-at-period-end takes
//! effect, or the next period starts with its quota reset and its invoice issued), and open
//! invoices past their due date become OVERDUE, putting the subscription they bill PAST_DUE. A
//! subscription whose first invoice is never paid expires instead: it ends and that invoice is
//! voided. Every change goes through the same operations as the routes, under the version
//! read, so a run racing a request (or another run) changes nothing twice.

use jiff::Timestamp;
use serde::Serialize;
use shared::{
    ApiError,
    db::{CHANGED_MEANWHILE, Tx, VersionedUpdate, s},
    ids::ClinicId,
    keys,
    outbox::Who,
    platform::Platform,
};

use crate::{
    common::iso,
    issuing::{invoice_event, retry_numbering},
    rules::{self, InvoiceStatus, SubStatus},
    store::{self, InvoiceRecord, Record, SubscriptionRecord},
    subscriptions::{self, end_unstarted, subscription_event},
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
    /// INCOMPLETE subscriptions ended because their first invoice was not paid in time.
    pub expired: usize,
    /// Changes that failed; the next run tries them again.
    pub failed: usize,
}

/// The job's name on its work queue.
pub const JOB: &str = "billing.sweep";

/// Runs the job over one clinic at `now`.
pub async fn sweep_clinic(
    state: &Platform,
    clinic: &ClinicId,
    now: Timestamp,
) -> Result<SweepReport, ApiError> {
    let mut report = SweepReport {
        clinics: 1,
        ..SweepReport::default()
    };
    let who = Who::system();
    // Each work list holds only what is due or soon due, so a page at a time never reads the
    // clinic's history. What fails stays listed and is tried again on the next run.
    let until = now.as_second();
    let mut start = None;
    loop {
        let (due, next) = store::due_page::<SubscriptionRecord>(
            &state.table,
            keys::due_subscriptions_pk(clinic),
            until,
            start,
        )
        .await?;
        for x in due {
            // An unpaid first period waits for its payment; a cancelled one is over.
            let due = matches!(
                x.status,
                SubStatus::Trialing | SubStatus::Active | SubStatus::PastDue
            ) && x.period_end <= now.as_second();
            if !due {
                continue;
            }
            match retry_numbering(|| subscriptions::advance(state, &x, &who, now)).await {
                Ok(after) if after.status == SubStatus::Cancelled => report.ended += 1,
                Ok(_) => report.renewed += 1,
                Err(e) => {
                    tracing::warn!(subscription = %x.id, error = %e, "subscription not moved on");
                    report.failed += 1;
                }
            }
        }
        match next {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    let mut start = None;
    loop {
        let (due, next) = store::due_page::<InvoiceRecord>(
            &state.table,
            keys::due_invoices_pk(clinic),
            until,
            start,
        )
        .await?;
        for inv in due {
            let due = Timestamp::from_second(inv.due_at).unwrap_or(Timestamp::MAX);
            if !rules::overdue(inv.status, due, now) {
                continue;
            }
            match mark_overdue(state, &inv, &who, now).await {
                Ok(Unpaid::Overdue) => report.overdue += 1,
                Ok(Unpaid::PastDue) => {
                    report.overdue += 1;
                    report.past_due += 1;
                }
                Ok(Unpaid::Expired) => report.expired += 1,
                Err(e) => {
                    tracing::warn!(invoice = %inv.id, error = %e, "invoice not marked overdue");
                    report.failed += 1;
                }
            }
        }
        match next {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    Ok(report)
}

/// What became of an invoice left unpaid past its due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unpaid {
    Overdue,
    /// OVERDUE, and the ACTIVE subscription it bills PAST_DUE.
    PastDue,
    /// It was an INCOMPLETE subscription's first invoice: both ended.
    Expired,
}

/// OPEN → OVERDUE, and the ACTIVE subscription it bills → PAST_DUE, in one transaction; or, for
/// the first invoice of a subscription that never started, the invoice VOID and the
/// subscription ended (CANCELLED, its plan slot freed), in one transaction.
async fn mark_overdue(
    state: &Platform,
    inv: &InvoiceRecord,
    who: &Who,
    now: Timestamp,
) -> Result<Unpaid, ApiError> {
    let now_s = now.as_second();
    let billed = match &inv.subscription {
        Some(id) => store::get_subscription(&state.table, &inv.clinic, id).await?,
        None => None,
    }
    .filter(|x| x.latest_invoice.as_ref() == Some(&inv.id));
    let mut tx = Tx::default();
    // Nothing was paid towards a subscription that never started: it expires.
    if let Some(x) = billed
        .as_ref()
        .filter(|x| x.status == SubStatus::Incomplete && inv.amount_paid == 0)
    {
        let mut u = VersionedUpdate::new();
        u.set("status", s(InvoiceStatus::Void.as_str()))
            .set("voidedAt", shared::db::n(now_s));
        store::index_due(&mut u, None);
        tx.guard(inv.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
        let extra = serde_json::json!({
            "previousStatus": inv.status.as_str(),
            "reason": "subscription_expired",
        });
        tx.push(invoice_event(
            state,
            "billing.invoice.voided",
            inv,
            who,
            now,
            extra,
        )?);
        end_unstarted(state, &mut tx, x, inv, "first_invoice_unpaid", who, now)?;
        tx.commit(&state.table).await?;
        return Ok(Unpaid::Expired);
    }
    let mut u = VersionedUpdate::new();
    u.set("status", s(InvoiceStatus::Overdue.as_str()));
    store::index_due(&mut u, None);
    tx.guard(inv.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    tx.push(invoice_event(
        state,
        "billing.invoice.overdue",
        inv,
        who,
        now,
        serde_json::json!({ "dueAt": iso(inv.due_at) }),
    )?);
    let mut outcome = Unpaid::Overdue;
    if let Some(x) = billed.filter(|x| x.status == SubStatus::Active) {
        let mut su = VersionedUpdate::new();
        su.set("status", s(SubStatus::PastDue.as_str()));
        tx.guard(x.update(&state.table, su, now_s)?, CHANGED_MEANWHILE);
        let mut after = x.clone();
        after.status = SubStatus::PastDue;
        tx.push(subscription_event(
            state,
            "billing.subscription.past_due",
            &after,
            who,
            now,
            serde_json::json!({ "invoiceId": inv.id }),
        )?);
        outcome = Unpaid::PastDue;
    }
    tx.commit(&state.table).await?;
    Ok(outcome)
}
