//! Subscription operations: taking one out, cancelling, renewing, moving periods on, ending.
//!
//! The routes, the payment that activates a subscription, the invoice void that ends an
//! unstarted one and the scheduled job all change subscriptions through these functions, so a
//! change reads and guards the same way wherever it starts.

use jiff::{Timestamp, tz::TimeZone};
use shared::{
    ApiError,
    db::{CHANGED_MEANWHILE, Tx, VersionedUpdate, b, n, s},
    error::Guard,
    ids::{ClinicId, LocationId, PlanId, SubscriptionId, UserId},
    outbox::Who,
    platform::Platform,
};

use crate::{
    common::{
        clinic_settings, event, expect_version, id_filter, iso, known_location, known_patient,
        merged,
    },
    issuing::{self, Draft, retry_numbering},
    rules::{self, APPOINTMENT_TYPES, Decision, Line, SubStatus},
    store::{self, InvoiceRecord, PlanRecord, Record, SubscriptionList, SubscriptionRecord},
};

const UNKNOWN_PLAN: Guard = Guard::on_field(
    "planId",
    "unknown_plan",
    "No such active plan in this clinic.",
);

fn unknown_plan() -> ApiError {
    UNKNOWN_PLAN.into()
}

/// The subscription `id` names in the clinic; 404 when the id is malformed or unknown.
pub async fn find(
    state: &Platform,
    clinic: &ClinicId,
    id: &str,
) -> Result<SubscriptionRecord, ApiError> {
    let id = SubscriptionId::parse(id).ok_or(ApiError::NotFound)?;
    store::get_subscription(&state.table, clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// What a list of subscriptions is narrowed to; `None` keeps everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filter<'a> {
    pub patient: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub status: Option<SubStatus>,
}

/// One page of the clinic's subscriptions that pass `f`, newest first, cut by DynamoDB from
/// the index that fits the filter: the plan's, the patient's, or the clinic's. Reads at most
/// one page, whatever the clinic's size; the cursor is sealed to clinic and filter.
pub async fn list(
    state: &Platform,
    clinic: &ClinicId,
    f: Filter<'_>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<SubscriptionRecord>, Option<String>), ApiError> {
    let query = format!(
        "subscriptions?patient={:?}&plan={:?}&status={:?}",
        f.patient,
        f.plan,
        f.status.map(|s| s.as_str())
    );
    let (Ok(patient), Ok(plan)) = (
        id_filter(f.patient, UserId::parse),
        id_filter(f.plan, PlanId::parse),
    ) else {
        return Ok((Vec::new(), None));
    };
    let status = f.status.map(|s| s.as_str());
    let q = match (&plan, &patient) {
        (Some(x), p) => SubscriptionList::Plan(x).query(clinic, p.as_ref(), status),
        (None, Some(p)) => SubscriptionList::Patient(p).query(clinic, None, status),
        (None, None) => SubscriptionList::Clinic.query(clinic, None, status),
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

/// The invoice for one period of a subscription.
fn period_draft(x: &SubscriptionRecord, start: i64, end: i64) -> Draft {
    Draft {
        clinic: x.clinic.clone(),
        patient: x.patient.clone(),
        subscription: Some(x.id.clone()),
        appointment: None,
        location: x.location.clone(),
        currency: x.terms.currency.clone(),
        lines: vec![Line {
            description: format!(
                "{} ({} to {})",
                x.plan_name,
                &iso(start)[..10],
                &iso(end)[..10]
            ),
            quantity: 1,
            unit_amount: x.price,
        }],
        tax: 0,
        discount: 0,
    }
}

/// A `billing.subscription.*` event for the outbox: the subscription's ids, status and
/// current period, and `extra`.
pub(crate) fn subscription_event(
    state: &Platform,
    kind: &str,
    x: &SubscriptionRecord,
    who: &Who,
    now: Timestamp,
    extra: serde_json::Value,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    let data = merged(
        serde_json::json!({
            "subscriptionId": x.id,
            "patientId": x.patient,
            "planId": x.plan,
            "status": x.status.as_str(),
            "currentPeriodStart": iso(x.period_start),
            "currentPeriodEnd": iso(x.period_end),
        }),
        extra,
    );
    event(
        kind,
        &x.clinic,
        who,
        ("subscription", x.id.as_str()),
        data,
        now,
    )
    .outbox_write(&state.table.name, now.as_second())
}

/// Takes out a subscription: TRIALING when the plan has a trial, otherwise INCOMPLETE with the
/// first period's invoice until it is paid (ACTIVE at once for a free plan). One live
/// subscription per patient and plan.
pub async fn subscribe(
    state: &Platform,
    clinic: &ClinicId,
    plan_id: &str,
    patient_id: &str,
    location_id: Option<&str>,
    who: &Who,
) -> Result<SubscriptionRecord, ApiError> {
    let plan = PlanId::parse(plan_id).ok_or_else(unknown_plan)?;
    // Independent reads together: the plan (cached), the patient, the location, the zone.
    let (plan, patient, location, settings) = tokio::join!(
        crate::plans::cached(state, clinic, &plan),
        known_patient(state, clinic, patient_id),
        known_location(state, clinic, location_id),
        clinic_settings(state, clinic),
    );
    let plan = plan?.filter(|p| p.active).ok_or_else(unknown_plan)?;
    let (patient, location, (tz, _)) = (patient?, location?, settings?);
    retry_numbering(|| {
        let (plan, patient, location, tz) = (&plan, &patient, &location, &tz);
        async move {
            let now = state.clock.now();
            let x = new_subscription(plan, patient, location.clone(), tz, now)?;
            let mut tx = Tx::default();
            let x = add_subscription(state, &mut tx, x, plan, tz, who, now).await?;
            tx.commit(&state.table).await?;
            Ok(x)
        }
    })
    .await
}

fn new_subscription(
    plan: &PlanRecord,
    patient: &UserId,
    location: Option<LocationId>,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    let now_s = now.as_second();
    let start = now.to_zoned(tz.clone());
    let mut status = rules::initial_status(plan.trial_days);
    if status == SubStatus::Incomplete && plan.price == 0 {
        status = SubStatus::Active;
    }
    let bad = || ApiError::internal("period out of range");
    let (anchor, index, period_start, period_end, trial_end) = if plan.trial_days > 0 {
        let end = rules::trial_end(&start, plan.trial_days).ok_or_else(bad)?;
        (
            end.as_second(),
            -1,
            now_s,
            end.as_second(),
            Some(end.as_second()),
        )
    } else {
        let (s0, e0) = rules::period(&start, plan.cadence, 0).ok_or_else(bad)?;
        (now_s, 0, s0.as_second(), e0.as_second(), None)
    };
    Ok(SubscriptionRecord {
        id: SubscriptionId::generate(),
        clinic: plan.clinic.clone(),
        patient: patient.clone(),
        plan: plan.id.clone(),
        plan_name: plan.name.clone(),
        location,
        status,
        price: plan.price,
        cadence: plan.cadence,
        terms: plan.terms(),
        anchor,
        zone: tz.iana_name().unwrap_or("UTC").to_string(),
        period_index: index,
        period_start,
        period_end,
        trial_end,
        quota_used: 0,
        cancel_at_period_end: false,
        cancelled_at: None,
        latest_invoice: None,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
    })
}

async fn add_subscription(
    state: &Platform,
    tx: &mut Tx,
    mut x: SubscriptionRecord,
    plan: &PlanRecord,
    tz: &TimeZone,
    who: &Who,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    let mut invoice = None;
    if x.status == SubStatus::Incomplete {
        let inv = issuing::issue(
            state,
            tx,
            &period_draft(&x, x.period_start, x.period_end),
            tz,
            who,
            now,
        )
        .await?;
        x.latest_invoice = Some(inv.id.clone());
        invoice = Some(inv.id);
    }
    tx.push(x.put(&state.table)?);
    tx.guard(
        store::live_guard_put(&state.table, &x)?,
        Guard::new(
            "already_subscribed",
            "The patient already has a live subscription to this plan.",
        ),
    );
    tx.guard(
        store::plan_live_count(&state.table, &plan.clinic, &plan.id, 1)?,
        UNKNOWN_PLAN,
    );
    tx.push(subscription_event(
        state,
        "billing.subscription.created",
        &x,
        who,
        now,
        serde_json::json!({ "invoiceId": invoice }),
    )?);
    Ok(x)
}

fn illegal(x: &SubscriptionRecord, action: &'static str, to: Option<&'static str>) -> ApiError {
    ApiError::IllegalTransition {
        current: x.status.as_str(),
        action,
        requested: to,
    }
}

/// Cancels now (CANCELLED, the plan slot freed) or, by default, at the end of the current
/// period; `version` is the one the client read, if it names one.
pub async fn cancel(
    state: &Platform,
    x: &SubscriptionRecord,
    at_period_end: Option<bool>,
    version: Option<i64>,
    who: &Who,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    expect_version(x.version, version)?;
    // An unpaid first period has nothing to run out: it ends at once.
    let at_period_end = at_period_end.unwrap_or(true) && x.status != SubStatus::Incomplete;
    if x.status == SubStatus::Cancelled {
        return Err(illegal(x, "cancel", Some("CANCELLED")));
    }
    let now_s = now.as_second();
    let mut after = x.clone();
    after.version += 1;
    after.updated_at = now_s;
    let mut u = VersionedUpdate::new();
    let mut tx = Tx::default();
    if at_period_end {
        if x.cancel_at_period_end {
            return Ok(x.clone());
        }
        u.set("cancelAtPeriodEnd", b(true));
        after.cancel_at_period_end = true;
    } else {
        end_now(state, &mut tx, &mut u, x, &mut after, now_s)?;
    }
    tx.guard(x.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    tx.push(subscription_event(
        state,
        "billing.subscription.cancelled",
        &after,
        who,
        now,
        serde_json::json!({ "atPeriodEnd": at_period_end }),
    )?);
    tx.commit(&state.table).await?;
    Ok(after)
}

/// Ends `x` now: CANCELLED, its one-live-per-plan guard and its count on the plan released.
fn end_now(
    state: &Platform,
    tx: &mut Tx,
    u: &mut VersionedUpdate,
    x: &SubscriptionRecord,
    after: &mut SubscriptionRecord,
    now_s: i64,
) -> Result<(), ApiError> {
    u.set("status", s(SubStatus::Cancelled.as_str()))
        .set("cancelledAt", n(now_s));
    store::index_due(u, None);
    after.status = SubStatus::Cancelled;
    after.cancelled_at = Some(now_s);
    tx.push(store::live_guard_delete(&state.table, x)?);
    tx.push(store::plan_live_count(
        &state.table,
        &x.clinic,
        &x.plan,
        -1,
    )?);
    Ok(())
}

/// Ends `x`, an INCOMPLETE subscription whose first invoice `inv` is being voided: CANCELLED,
/// its plan slot freed, `billing.subscription.ended` with `reason`. Added to `tx`, under the
/// subscription's version.
pub(crate) fn end_unstarted(
    state: &Platform,
    tx: &mut Tx,
    x: &SubscriptionRecord,
    inv: &InvoiceRecord,
    reason: &str,
    who: &Who,
    now: Timestamp,
) -> Result<(), ApiError> {
    let now_s = now.as_second();
    let mut su = VersionedUpdate::new();
    let mut after = x.clone();
    after.version += 1;
    end_now(state, tx, &mut su, x, &mut after, now_s)?;
    tx.guard(x.update(&state.table, su, now_s)?, CHANGED_MEANWHILE);
    tx.push(subscription_event(
        state,
        "billing.subscription.ended",
        &after,
        who,
        now,
        serde_json::json!({ "reason": reason, "invoiceId": inv.id }),
    )?);
    Ok(())
}

/// Renewing undoes a pending cancel-at-period-end; on a subscription whose period has ended, it
/// moves to the current period at once (as the scheduled job would).
pub async fn renew(
    state: &Platform,
    x: &SubscriptionRecord,
    version: Option<i64>,
    who: &Who,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    expect_version(x.version, version)?;
    if x.status == SubStatus::Cancelled {
        return Err(illegal(x, "renew", None));
    }
    let now_s = now.as_second();
    if x.cancel_at_period_end {
        let mut u = VersionedUpdate::new();
        u.set("cancelAtPeriodEnd", b(false));
        let mut after = x.clone();
        after.cancel_at_period_end = false;
        after.version += 1;
        after.updated_at = now_s;
        let mut tx = Tx::default();
        tx.guard(x.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
        tx.push(subscription_event(
            state,
            "billing.subscription.renewed",
            &after,
            who,
            now,
            serde_json::json!({ "resumed": true }),
        )?);
        tx.commit(&state.table).await?;
        return Ok(after);
    }
    if now_s < x.period_end {
        return Err(ApiError::conflict(
            "not_due",
            "The current period has not ended yet; nothing to renew.",
        ));
    }
    advance(state, x, who, now).await
}

/// Moves a subscription whose period has ended on: cancel-at-period-end is applied, a trial
/// ends, or the next period starts with its quota reset and its invoice issued (the current
/// period is the one containing `now`, so a long-idle subscription does not replay old ones).
pub async fn advance(
    state: &Platform,
    x: &SubscriptionRecord,
    who: &Who,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    let now_s = now.as_second();
    let mut after = x.clone();
    after.version += 1;
    after.updated_at = now_s;
    let mut u = VersionedUpdate::new();
    let mut tx = Tx::default();
    if x.cancel_at_period_end {
        end_now(state, &mut tx, &mut u, x, &mut after, now_s)?;
        tx.guard(x.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
        tx.push(subscription_event(
            state,
            "billing.subscription.ended",
            &after,
            who,
            now,
            serde_json::json!({}),
        )?);
        tx.commit(&state.table).await?;
        return Ok(after);
    }
    let anchor = x.anchor_zoned()?;
    let mut index = x.period_index + 1;
    let bad = || ApiError::internal("period out of range");
    let (mut start, mut end) = rules::period(&anchor, x.cadence, index).ok_or_else(bad)?;
    while end <= now {
        index += 1;
        (start, end) = rules::period(&anchor, x.cadence, index).ok_or_else(bad)?;
    }
    after.period_index = index;
    after.period_start = start.as_second();
    after.period_end = end.as_second();
    after.quota_used = 0;
    u.set("periodIndex", n(index))
        .set("periodStart", n(after.period_start))
        .set("periodEnd", n(after.period_end))
        .set("quotaUsed", n(0));
    if x.status == SubStatus::Trialing {
        after.status = SubStatus::Active;
        u.set("status", s(SubStatus::Active.as_str()));
    }
    store::index_due(&mut u, after.due_key());
    let mut invoice = None;
    if x.price > 0 {
        let tz = anchor.time_zone().clone();
        let inv = issuing::issue(
            state,
            &mut tx,
            &period_draft(&after, after.period_start, after.period_end),
            &tz,
            who,
            now,
        )
        .await?;
        u.set("latestInvoiceId", s(inv.id.as_str()));
        after.latest_invoice = Some(inv.id.clone());
        invoice = Some(inv.id);
    }
    tx.guard(x.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    tx.push(subscription_event(
        state,
        "billing.subscription.renewed",
        &after,
        who,
        now,
        serde_json::json!({ "invoiceId": invoice, "trialEnded": x.status == SubStatus::Trialing }),
    )?);
    tx.commit(&state.table).await?;
    Ok(after)
}

/// An appointment type a coverage question may name (422 `invalid_type` otherwise).
pub fn appointment_type(raw: Option<String>) -> Result<String, ApiError> {
    raw.filter(|t| APPOINTMENT_TYPES.contains(&t.as_str()))
        .ok_or_else(|| {
            ApiError::invalid_field(
                "appointmentType",
                "invalid_type",
                "Use IN_PERSON, VIDEO_CALL or HOME_VISIT.",
            )
        })
}

/// What booking one appointment of `kind` on `x` at `now` would do, without doing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub covered: bool,
    /// Why not covered: `subscription_not_live`, `type_not_covered` or `quota_used_up`.
    pub reason: Option<&'static str>,
    /// Units left in the period before this booking (`None` is unlimited).
    pub remaining: Option<i64>,
    /// What the patient pays for this visit: 0 when covered.
    pub amount_due: i64,
}

pub fn quote(x: &SubscriptionRecord, kind: &str, now: Timestamp) -> Quote {
    let d = rules::decide(x.status, &x.terms, x.period(), x.quota_used, kind, now);
    let (covered, reason, amount_due) = match d {
        Decision::Covered { .. } => (true, None, 0),
        Decision::Pay { reason, amount } => (false, Some(reason.as_str()), amount),
    };
    // Outside a live period nothing is left to use, whatever the counter says.
    let live = x.status.covers() && now.as_second() < x.period_end;
    Quote {
        covered,
        reason,
        remaining: if live {
            rules::remaining(&x.terms, x.quota_used)
        } else {
            Some(0)
        },
        amount_due,
    }
}
