//! Invoice operations: create, find, list, finalize, void and mark uncollectible.
//!
//! An invoice is created as a DRAFT or issued at once; numbering and issuing are in
//! [`crate::issuing`], which subscriptions and coverage use too.

use jiff::tz::TimeZone;
use serde::Deserialize;
use shared::{
    ApiError,
    db::{CHANGED_MEANWHILE, Tx, VersionedUpdate, n, s},
    error::FieldError,
    ids::{ClinicId, InvoiceId, SubscriptionId, UserId},
    outbox::Who,
    platform::Platform,
};

use crate::{
    common::{clinic_settings, expect_version, id_filter, known_location, known_patient},
    issuing::{
        self, Draft, due_after, invoice_event, issued_event, retry_numbering, take_number,
        totals_error,
    },
    rules::{self, InvoiceAction, InvoiceStatus, Line, SubStatus},
    store::{self, InvoiceList, InvoiceRecord, Record},
    subscriptions,
};

/// One line of a new invoice as the client describes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewLine {
    description: String,
    #[serde(default = "one")]
    quantity: i64,
    unit_amount: i64,
}

fn one() -> i64 {
    1
}

/// A new invoice as the client describes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewInvoice {
    pub patient_id: String,
    pub location_id: Option<String>,
    currency: Option<String>,
    lines: Vec<NewLine>,
    #[serde(default)]
    tax: i64,
    #[serde(default)]
    discount: i64,
    /// Keep the invoice as an unnumbered DRAFT until it is finalized.
    #[serde(default)]
    draft: bool,
}

/// Creates an invoice for a patient of the clinic: an unnumbered DRAFT when asked, otherwise
/// issued at once with the next number.
pub async fn create(
    state: &Platform,
    clinic: &ClinicId,
    body: &NewInvoice,
    who: &Who,
) -> Result<InvoiceRecord, ApiError> {
    let mut errors = Vec::new();
    for (i, l) in body.lines.iter().enumerate() {
        if l.description.trim().is_empty() || l.description.chars().count() > 200 {
            errors.push(FieldError::new(
                format!("lines[{i}].description"),
                "invalid_length",
                "Use 1 to 200 characters.",
            ));
        }
    }
    if let Some(c) = &body.currency {
        if !rules::currency_ok(c) {
            errors.push(FieldError::new(
                "currency",
                "invalid_currency",
                "Use a three-letter ISO 4217 code.",
            ));
        }
    }
    let lines: Vec<Line> = body
        .lines
        .iter()
        .map(|l| Line {
            description: l.description.trim().to_string(),
            quantity: l.quantity,
            unit_amount: l.unit_amount,
        })
        .collect();
    if let Err(p) = rules::totals(&lines, body.tax, body.discount) {
        errors.push(totals_error(p));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let patient = known_patient(state, clinic, &body.patient_id).await?;
    let location = known_location(state, clinic, body.location_id.as_deref()).await?;
    let (tz, clinic_currency) = clinic_settings(state, clinic).await?;
    let draft = Draft {
        clinic: clinic.clone(),
        patient,
        subscription: None,
        appointment: None,
        location,
        currency: body.currency.clone().unwrap_or(clinic_currency),
        lines,
        tax: body.tax,
        discount: body.discount,
    };
    if body.draft {
        let now = state.clock.now();
        let inv = issuing::record(&draft, now)?;
        let mut tx = Tx::default();
        tx.push(inv.put(&state.table)?);
        tx.push(invoice_event(
            state,
            "billing.invoice.drafted",
            &inv,
            who,
            now,
            serde_json::json!({}),
        )?);
        tx.commit(&state.table).await?;
        Ok(inv)
    } else {
        retry_numbering(|| async {
            let mut tx = Tx::default();
            let inv = issuing::issue(state, &mut tx, &draft, &tz, who, state.clock.now()).await?;
            tx.commit(&state.table).await?;
            Ok(inv)
        })
        .await
    }
}

/// The invoice `id` names in the clinic; 404 when the id is malformed or unknown.
pub async fn find(
    state: &Platform,
    clinic: &ClinicId,
    id: &str,
) -> Result<InvoiceRecord, ApiError> {
    let id = InvoiceId::parse(id).ok_or(ApiError::NotFound)?;
    store::get_invoice(&state.table, clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// What a list of invoices is narrowed to; `None` keeps everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filter<'a> {
    pub patient: Option<&'a str>,
    pub status: Option<InvoiceStatus>,
    pub subscription: Option<&'a str>,
}

/// One page of the clinic's invoices that pass `f`, in list order (drafts newest first, then
/// by number, highest first), cut by DynamoDB from the index that fits the filter: the
/// subscription's, the patient's, or the clinic's. Reads at most one page, whatever the
/// clinic's size. The cursor is sealed to the clinic and the filter.
pub async fn list(
    state: &Platform,
    clinic: &ClinicId,
    f: Filter<'_>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<InvoiceRecord>, Option<String>), ApiError> {
    let query = format!(
        "invoices?patient={:?}&status={:?}&subscription={:?}",
        f.patient,
        f.status.map(|s| s.as_str()),
        f.subscription
    );
    let (Ok(patient), Ok(subscription)) = (
        id_filter(f.patient, UserId::parse),
        id_filter(f.subscription, SubscriptionId::parse),
    ) else {
        return Ok((Vec::new(), None));
    };
    let status = f.status.map(|s| s.as_str());
    let q = match (&subscription, &patient) {
        (Some(x), p) => InvoiceList::Subscription(x).query(clinic, p.as_ref(), status),
        (None, Some(p)) => InvoiceList::Patient(p).query(clinic, None, status),
        (None, None) => InvoiceList::Clinic.query(clinic, None, status),
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

/// `finalize` numbers a DRAFT and opens it, `void` voids an unpaid invoice,
/// `mark-uncollectible` writes an unpaid issued one off; each under the version read (and
/// `version`, when the client names the one it read).
pub async fn act(
    state: &Platform,
    inv: &InvoiceRecord,
    action: InvoiceAction,
    version: Option<i64>,
    who: &Who,
) -> Result<InvoiceRecord, ApiError> {
    expect_version(inv.version, version)?;
    let to = inv
        .status
        .after(action)
        .ok_or(ApiError::IllegalTransition {
            current: inv.status.as_str(),
            action: action.as_str(),
            requested: None,
        })?;
    if to == InvoiceStatus::Void && inv.amount_paid > 0 {
        return Err(ApiError::conflict(
            "invoice_partly_paid",
            "Part of this invoice was paid; refund the payments before voiding it.",
        ));
    }
    if action == InvoiceAction::Finalize {
        let (tz, _) = clinic_settings(state, &inv.clinic).await?;
        return retry_numbering(|| finalize(state, inv, &tz, who)).await;
    }
    let now = state.clock.now();
    let now_s = now.as_second();
    let mut u = VersionedUpdate::new();
    u.set("status", s(to.as_str()));
    let mut after = inv.clone();
    after.status = to;
    after.version += 1;
    after.updated_at = now_s;
    let kind = if to == InvoiceStatus::Void {
        u.set("voidedAt", n(now_s));
        after.voided_at = Some(now_s);
        "billing.invoice.voided"
    } else {
        "billing.invoice.uncollectible"
    };
    store::index_due(&mut u, after.due_key());
    let mut tx = Tx::default();
    tx.guard(inv.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    tx.push(invoice_event(
        state,
        kind,
        inv,
        who,
        now,
        serde_json::json!({ "previousStatus": inv.status.as_str() }),
    )?);
    // Voiding the first invoice of a subscription that never started ends it too, so the
    // patient is free to take the plan out again.
    if to == InvoiceStatus::Void {
        if let Some(sub) = &inv.subscription {
            let unstarted = store::get_subscription(&state.table, &inv.clinic, sub)
                .await?
                .filter(|x| {
                    x.status == SubStatus::Incomplete && x.latest_invoice.as_ref() == Some(&inv.id)
                });
            if let Some(x) = unstarted {
                subscriptions::end_unstarted(
                    state,
                    &mut tx,
                    &x,
                    inv,
                    "first_invoice_voided",
                    who,
                    now,
                )?;
            }
        }
    }
    tx.commit(&state.table).await?;
    Ok(after)
}

/// Numbers a DRAFT and opens it, due [`rules::DUE_DAYS`] from now: the counter move and the
/// invoice update (under the version read) commit together.
async fn finalize(
    state: &Platform,
    inv: &InvoiceRecord,
    tz: &TimeZone,
    who: &Who,
) -> Result<InvoiceRecord, ApiError> {
    let now = state.clock.now();
    let now_s = now.as_second();
    let mut tx = Tx::default();
    let number = take_number(state, &mut tx, &inv.clinic, tz, now).await?;
    let mut u = VersionedUpdate::new();
    u.set("status", s(InvoiceStatus::Open.as_str()))
        .set("number", s(&number))
        .set("issuedAt", n(now_s))
        .set("dueAt", n(due_after(now)));
    let mut after = inv.clone();
    after.status = InvoiceStatus::Open;
    after.number = Some(number);
    // Numbered, it moves from the drafts to its place by number in every list.
    after.reindex(&mut u);
    after.issued_at = now_s;
    after.due_at = due_after(now);
    store::index_due(&mut u, after.due_key());
    tx.guard(inv.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    after.version += 1;
    after.updated_at = now_s;
    tx.push(issued_event(state, &after, who, now)?);
    tx.commit(&state.table).await?;
    Ok(after)
}
