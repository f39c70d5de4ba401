//! Payment operations: take, complete, fail and refund payments against invoices.
//!
//! Payments are recorded at the cash desk (cash, insurance) or started through the payment
//! provider port (card, UPI, net banking, wallet) and completed by the provider's signed
//! webhook. A payment may pay part of what an invoice owes; the one that settles it marks the
//! invoice PAID and activates what it pays for.

use jiff::Timestamp;
use shared::{
    ApiError,
    db::{CHANGED_MEANWHILE, MOVED_MEANWHILE, Tx, VersionedUpdate, n, s},
    ids::{ClinicId, InvoiceId, PaymentId, UserId},
    outbox::Who,
    platform::Platform,
};

use crate::{
    common::{event, id_filter, merged},
    issuing::invoice_event,
    providers::{Charge, Notification, Providers, Started},
    rules::{self, InvoiceStatus, Method, PaymentStatus, RefundProblem, SubStatus},
    store::{self, InvoiceRecord, PaymentList, PaymentRecord, Record},
    subscriptions::subscription_event,
};

/// The payment method `raw` names (422 `invalid_method` otherwise).
pub fn method(raw: &str) -> Result<Method, ApiError> {
    Method::parse(raw).ok_or_else(|| {
        ApiError::invalid_field(
            "method",
            "invalid_method",
            "Use CASH, CARD, UPI, NET_BANKING, WALLET or INSURANCE.",
        )
    })
}

/// 422 `unknown_invoice`: also the answer for an invoice the caller may not see, so the two
/// cannot be told apart.
pub fn unknown_invoice() -> ApiError {
    ApiError::invalid_field("invoiceId", "unknown_invoice", "No such invoice.")
}

/// The invoice a new payment names; [`unknown_invoice`] when the id is malformed or unknown.
pub async fn invoice_to_pay(
    state: &Platform,
    clinic: &ClinicId,
    id: &str,
) -> Result<InvoiceRecord, ApiError> {
    let id = InvoiceId::parse(id).ok_or_else(unknown_invoice)?;
    store::get_invoice(&state.table, clinic, &id)
        .await?
        .ok_or_else(unknown_invoice)
}

fn not_payable() -> ApiError {
    ApiError::conflict(
        "invoice_not_payable",
        "The invoice is paid, void or still a draft; it cannot be paid.",
    )
}

/// Takes a payment of `amount` (by default everything still owed) against `inv`. Desk methods
/// complete at once; card-like methods start a PENDING payment with the provider and complete
/// when its signed webhook arrives.
pub async fn take(
    state: &Platform,
    providers: &Providers,
    inv: &InvoiceRecord,
    method: Method,
    amount: Option<i64>,
    who: &Who,
) -> Result<PaymentRecord, ApiError> {
    if !inv.status.payable() {
        return Err(not_payable());
    }
    let amount =
        rules::payment_amount(inv.totals.total - inv.amount_paid, amount).map_err(|p| match p {
            rules::PaymentAmountProblem::NotPositive => ApiError::invalid_field(
                "amount",
                "invalid_amount",
                "Pay a positive amount in minor units.",
            ),
            rules::PaymentAmountProblem::ExceedsDue => ApiError::invalid_field(
                "amount",
                "exceeds_due",
                "A payment cannot exceed what the invoice still owes.",
            ),
        })?;
    let provider = providers
        .for_method(method)
        .ok_or_else(|| ApiError::internal("no provider takes this method"))?;
    let id = PaymentId::generate();
    let started = provider
        .start(Charge {
            payment: &id,
            method,
            amount,
            currency: &inv.currency,
        })
        .await?;
    let reference = match &started {
        Started::Pending { reference } => Some(reference.clone()),
        Started::Settled => None,
    };
    let now = state.clock.now();
    let now_s = now.as_second();
    let p = PaymentRecord {
        id,
        clinic: inv.clinic.clone(),
        invoice: inv.id.clone(),
        patient: inv.patient.clone(),
        location: inv.location.clone(),
        method,
        provider: provider.name().into(),
        provider_ref: reference.clone(),
        status: PaymentStatus::Pending,
        amount,
        refunded: 0,
        currency: inv.currency.clone(),
        refund_of: None,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
        completed_at: None,
    };
    let mut tx = Tx::default();
    tx.push(p.put(&state.table)?);
    if let Some(r) = &reference {
        tx.push(store::provider_ref_put(
            &state.table,
            provider.name(),
            r,
            &p,
        )?);
    }
    tx.push(payment_event(
        state,
        "billing.payment.created",
        &p,
        who,
        now,
        serde_json::json!({}),
    )?);
    tx.commit(&state.table).await?;
    Ok(match started {
        Started::Pending { .. } => p,
        Started::Settled => complete(state, &p, who, now).await?.unwrap_or(p),
    })
}

fn payment_event(
    state: &Platform,
    kind: &str,
    p: &PaymentRecord,
    who: &Who,
    now: Timestamp,
    extra: serde_json::Value,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    event(
        kind,
        &p.clinic,
        who,
        ("payment", p.id.as_str()),
        merged(
            serde_json::json!({
                "paymentId": p.id,
                "invoiceId": p.invoice,
                "patientId": p.patient,
                "method": p.method.as_str(),
                "status": p.status.as_str(),
                "amount": p.amount,
                "currency": p.currency,
            }),
            extra,
        ),
        now,
    )
    .outbox_write(&state.table.name, now.as_second())
}

/// Completes a PENDING payment: the payment, its invoice (PAID) and the subscription it pays
/// for (ACTIVE) change in one transaction, each under the version read. Returns the completed
/// payment, or `None` when it was no longer pending (a redelivered webhook): completing twice
/// is impossible because the payment's version moves on the first time.
pub async fn complete(
    state: &Platform,
    p: &PaymentRecord,
    who: &Who,
    now: Timestamp,
) -> Result<Option<PaymentRecord>, ApiError> {
    let mut p = p.clone();
    for _ in 0..5 {
        if p.status != PaymentStatus::Pending {
            return Ok(None);
        }
        let inv = store::get_invoice(&state.table, &p.clinic, &p.invoice)
            .await?
            .ok_or_else(|| ApiError::internal("payment without invoice"))?;
        let now_s = now.as_second();
        let mut tx = Tx::default();
        let mut u = VersionedUpdate::new();
        u.set("status", s(PaymentStatus::Completed.as_str()))
            .set("completedAt", n(now_s));
        tx.guard(p.update(&state.table, u, now_s)?, MOVED_MEANWHILE);
        let mut done = p.clone();
        done.status = PaymentStatus::Completed;
        done.completed_at = Some(now_s);
        done.version += 1;
        tx.push(payment_event(
            state,
            "billing.payment.completed",
            &done,
            who,
            now,
            serde_json::json!({}),
        )?);
        let (paid, settled) = rules::after_payment(inv.totals.total, inv.amount_paid, p.amount);
        // Money the invoice did not need (two payments racing for what it owed, or one
        // completing after it was settled or voided) is recorded and announced for a refund.
        let excess = if inv.status.payable() {
            (paid - inv.totals.total).max(0)
        } else {
            p.amount
        };
        if excess > 0 {
            tx.push(payment_event(
                state,
                "billing.payment.overpaid",
                &done,
                who,
                now,
                serde_json::json!({ "excess": excess, "invoiceStatus": inv.status.as_str() }),
            )?);
        }
        if inv.status.payable() && !settled {
            // A part payment: the invoice owes less and stays as it is.
            let mut iu = VersionedUpdate::new();
            iu.set("amountPaid", n(paid));
            tx.guard(inv.update(&state.table, iu, now_s)?, MOVED_MEANWHILE);
            tx.push(invoice_event(
                state,
                "billing.invoice.partially_paid",
                &inv,
                who,
                now,
                serde_json::json!({
                    "paymentId": p.id,
                    "amountPaid": paid,
                    "amountDue": inv.totals.total - paid,
                }),
            )?);
        } else if inv.status.payable() {
            let mut iu = VersionedUpdate::new();
            iu.set("status", s(InvoiceStatus::Paid.as_str()))
                .set("amountPaid", n(paid))
                .set("paidAt", n(now_s));
            store::index_due(&mut iu, None);
            tx.guard(inv.update(&state.table, iu, now_s)?, MOVED_MEANWHILE);
            tx.push(invoice_event(
                state,
                "billing.invoice.paid",
                &inv,
                who,
                now,
                serde_json::json!({ "paymentId": p.id }),
            )?);
            if let Some(sub) = &inv.subscription {
                if let Some(x) = store::get_subscription(&state.table, &inv.clinic, sub).await? {
                    if matches!(x.status, SubStatus::Incomplete | SubStatus::PastDue) {
                        let mut su = VersionedUpdate::new();
                        su.set("status", s(SubStatus::Active.as_str()));
                        let mut active = x.clone();
                        active.status = SubStatus::Active;
                        store::index_due(&mut su, active.due_key());
                        tx.guard(x.update(&state.table, su, now_s)?, MOVED_MEANWHILE);
                        tx.push(subscription_event(
                            state,
                            "billing.subscription.activated",
                            &active,
                            who,
                            now,
                            serde_json::json!({
                                "previousStatus": x.status.as_str(),
                                "invoiceId": inv.id,
                            }),
                        )?);
                    }
                }
            }
        }
        match tx.commit(&state.table).await {
            Ok(()) => {
                shared::metrics::count(shared::metrics::Metric::PaymentsCompleted);
                return Ok(Some(done));
            }
            Err(ApiError::Guarded(MOVED_MEANWHILE)) => {
                p = store::get_payment(&state.table, &p.clinic, &p.id)
                    .await?
                    .ok_or_else(|| ApiError::internal("payment vanished"))?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        "concurrent_request",
        "The invoice kept changing; try again.",
    ))
}

/// The payment `id` names in the clinic; 404 when the id is malformed or unknown.
pub async fn find(
    state: &Platform,
    clinic: &ClinicId,
    id: &str,
) -> Result<PaymentRecord, ApiError> {
    let id = PaymentId::parse(id).ok_or(ApiError::NotFound)?;
    store::get_payment(&state.table, clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// What a list of payments is narrowed to; `None` keeps everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filter<'a> {
    pub invoice: Option<&'a str>,
    pub patient: Option<&'a str>,
    pub status: Option<PaymentStatus>,
}

/// One page of the clinic's payments and refunds that pass `f`, newest first, cut by DynamoDB
/// from the index that fits the filter: the invoice's, the patient's, or the clinic's. Reads
/// at most one page, whatever the clinic's size; the cursor is sealed to clinic and filter.
pub async fn list(
    state: &Platform,
    clinic: &ClinicId,
    f: Filter<'_>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<PaymentRecord>, Option<String>), ApiError> {
    let query = format!(
        "payments?invoice={:?}&patient={:?}&status={:?}",
        f.invoice,
        f.patient,
        f.status.map(|s| s.as_str())
    );
    let (Ok(patient), Ok(invoice)) = (
        id_filter(f.patient, UserId::parse),
        id_filter(f.invoice, InvoiceId::parse),
    ) else {
        return Ok((Vec::new(), None));
    };
    let status = f.status.map(|s| s.as_str());
    let q = match (&invoice, &patient) {
        (Some(i), p) => PaymentList::Invoice(i).query(clinic, p.as_ref(), status),
        (None, Some(p)) => PaymentList::Patient(p).query(clinic, None, status),
        (None, None) => PaymentList::Clinic.query(clinic, None, status),
    };
    shared::record::page(
        &state.table,
        &state.cursors,
        clinic,
        &query,
        q,
        limit,
        cursor,
    )
    .await
}

/// Gives money back from a completed payment: partial or full (the default), never more than
/// was paid. The refund is its own record (`refundOf`); the payment counts what was refunded
/// and becomes REFUNDED when all of it was. Both change in one transaction under the
/// payment's version.
pub async fn refund(
    state: &Platform,
    p: &PaymentRecord,
    amount: Option<i64>,
    who: &Who,
) -> Result<PaymentRecord, ApiError> {
    if p.refund_of.is_some() {
        return Err(ApiError::conflict(
            "not_refundable",
            "A refund cannot itself be refunded.",
        ));
    }
    let amount = amount.unwrap_or(p.amount - p.refunded);
    let full = rules::refund(p.status, p.amount, p.refunded, amount).map_err(|e| match e {
        RefundProblem::NotCompleted => ApiError::conflict(
            "not_refundable",
            "Only a completed payment with money left on it can be refunded.",
        ),
        RefundProblem::BadAmount => ApiError::invalid_field(
            "amount",
            "invalid_amount",
            "Refund a positive amount in minor units.",
        ),
        RefundProblem::MoreThanPaid => ApiError::invalid_field(
            "amount",
            "exceeds_paid",
            "A refund cannot exceed what was paid and not yet refunded.",
        ),
    })?;
    let now = state.clock.now();
    let now_s = now.as_second();
    let r = PaymentRecord {
        id: PaymentId::generate(),
        refund_of: Some(p.id.clone()),
        status: PaymentStatus::Completed,
        amount,
        refunded: 0,
        provider_ref: None,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
        completed_at: Some(now_s),
        ..p.clone()
    };
    let mut u = VersionedUpdate::new();
    u.set("refunded", n(p.refunded + amount));
    if full {
        u.set("status", s(PaymentStatus::Refunded.as_str()));
    }
    let mut tx = Tx::default();
    tx.guard(p.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    tx.push(r.put(&state.table)?);
    tx.push(payment_event(
        state,
        "billing.payment.refunded",
        &r,
        who,
        now,
        serde_json::json!({}),
    )?);
    tx.commit(&state.table).await?;
    Ok(r)
}

/// Applies a verified notification from `provider` to the payment it names: completed or
/// FAILED. Returns whether it changed anything; a redelivery changes nothing, since a payment
/// leaves PENDING once.
pub async fn apply_notification(
    state: &Platform,
    provider: &str,
    w: &Notification,
    now: Timestamp,
) -> Result<bool, ApiError> {
    let Some((clinic, id)) =
        store::resolve_provider_ref(&state.table, provider, &w.reference).await?
    else {
        return Err(ApiError::NotFound);
    };
    let p = store::get_payment(&state.table, &clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if w.amount != p.amount || w.currency != p.currency {
        tracing::warn!(payment = %p.id, "webhook amount or currency differs from the payment");
        return Err(ApiError::unprocessable(
            "amount_mismatch",
            "The notified amount differs from the payment.",
        ));
    }
    let who = Who::system();
    if w.succeeded {
        Ok(complete(state, &p, &who, now).await?.is_some())
    } else {
        fail(state, &p, &who, now).await
    }
}

/// Marks a PENDING payment FAILED (the invoice stays open). Returns whether it changed.
async fn fail(
    state: &Platform,
    p: &PaymentRecord,
    who: &Who,
    now: Timestamp,
) -> Result<bool, ApiError> {
    if p.status != PaymentStatus::Pending {
        return Ok(false);
    }
    let now_s = now.as_second();
    let mut u = VersionedUpdate::new();
    u.set("status", s(PaymentStatus::Failed.as_str()));
    let mut tx = Tx::default();
    tx.guard(p.update(&state.table, u, now_s)?, MOVED_MEANWHILE);
    let mut f = p.clone();
    f.status = PaymentStatus::Failed;
    tx.push(payment_event(
        state,
        "billing.payment.failed",
        &f,
        who,
        now,
        serde_json::json!({}),
    )?);
    match tx.commit(&state.table).await {
        Ok(()) => Ok(true),
        Err(ApiError::Guarded(MOVED_MEANWHILE)) => Ok(false),
        Err(e) => Err(e),
    }
}
