//! Plan operations: validating, creating, changing and deleting a clinic's plans.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;
use shared::{
    ApiError,
    db::{CHANGED_MEANWHILE, Tx, VersionedUpdate, b, n, s},
    error::{FieldError, Guard},
    ids::{ClinicId, PlanId},
    keys,
    outbox::{EventEnvelope, Who},
    platform::Platform,
};

use crate::{
    common::{clinic_settings, event, expect_version},
    rules::{self, APPOINTMENT_TYPES, Cadence, Interval},
    store::{self, PlanRecord},
};

/// A new plan as the client describes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewPlan {
    name: String,
    description: Option<String>,
    price: i64,
    currency: Option<String>,
    interval: String,
    #[serde(default = "one")]
    interval_count: i64,
    #[serde(default)]
    trial_days: i64,
    /// Absent or `null`: unlimited.
    appointments_included: Option<i64>,
    covered_types: Vec<String>,
    visit_prices: BTreeMap<String, i64>,
}

fn one() -> i64 {
    1
}

/// Changes to a plan: an absent field stays as it is; `null` clears the fields that may be
/// cleared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanChanges {
    name: Option<String>,
    #[serde(default, deserialize_with = "shared::http::patch_field")]
    description: Option<Option<String>>,
    active: Option<bool>,
    price: Option<i64>,
    trial_days: Option<i64>,
    #[serde(default, deserialize_with = "shared::http::patch_field")]
    appointments_included: Option<Option<i64>>,
    covered_types: Option<Vec<String>>,
    visit_prices: Option<BTreeMap<String, i64>>,
    version: Option<i64>,
}

fn errors(v: Vec<FieldError>) -> Result<(), ApiError> {
    if v.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(v))
    }
}

fn check_name(name: &str, e: &mut Vec<FieldError>) {
    let len = name.trim().chars().count();
    if !(1..=100).contains(&len) {
        e.push(FieldError::new(
            "name",
            "invalid_length",
            "Use 1 to 100 characters.",
        ));
    }
}

fn check_description(d: Option<&str>, e: &mut Vec<FieldError>) {
    if d.is_some_and(|d| d.chars().count() > 1000) {
        e.push(FieldError::new(
            "description",
            "invalid_length",
            "Use at most 1000 characters.",
        ));
    }
}

fn check_amount(field: &'static str, v: i64, e: &mut Vec<FieldError>) {
    if !(0..=rules::MAX_AMOUNT).contains(&v) {
        e.push(FieldError::new(
            field,
            "invalid_amount",
            "Use whole minor units, 0 or more.",
        ));
    }
}

fn check_trial(v: i64, e: &mut Vec<FieldError>) {
    if !(0..=rules::MAX_TRIAL_DAYS).contains(&v) {
        e.push(FieldError::new(
            "trialDays",
            "out_of_range",
            "Use 0 to 365 days.",
        ));
    }
}

fn check_included(v: Option<i64>, e: &mut Vec<FieldError>) {
    if v.is_some_and(|x| !(0..=rules::MAX_INCLUDED).contains(&x)) {
        e.push(FieldError::new(
            "appointmentsIncluded",
            "out_of_range",
            "Use 0 to 10000, or null for unlimited.",
        ));
    }
}

fn check_covered(v: &[String], e: &mut Vec<FieldError>) {
    let mut seen = std::collections::BTreeSet::new();
    for t in v {
        if !APPOINTMENT_TYPES.contains(&t.as_str()) || !seen.insert(t) {
            e.push(FieldError::new(
                "coveredTypes",
                "invalid_type",
                "Use distinct appointment types: IN_PERSON, VIDEO_CALL, HOME_VISIT.",
            ));
            return;
        }
    }
}

fn check_prices(v: &BTreeMap<String, i64>, e: &mut Vec<FieldError>) {
    let complete =
        v.len() == APPOINTMENT_TYPES.len() && APPOINTMENT_TYPES.iter().all(|t| v.contains_key(*t));
    if !complete {
        e.push(FieldError::new(
            "visitPrices",
            "incomplete",
            "Give the pay-per-visit price of IN_PERSON, VIDEO_CALL and HOME_VISIT.",
        ));
    }
    if v.values().any(|p| !(0..=rules::MAX_AMOUNT).contains(p)) {
        e.push(FieldError::new(
            "visitPrices",
            "invalid_amount",
            "Use whole minor units, 0 or more.",
        ));
    }
}

/// Creates an active plan in the clinic's currency unless `body` names one.
pub async fn create(
    state: &Platform,
    clinic: &ClinicId,
    body: &NewPlan,
    who: &Who,
) -> Result<PlanRecord, ApiError> {
    let mut e = Vec::new();
    check_name(&body.name, &mut e);
    check_description(body.description.as_deref(), &mut e);
    check_amount("price", body.price, &mut e);
    let unit = Interval::parse(&body.interval);
    if unit.is_none() {
        e.push(FieldError::new(
            "interval",
            "invalid_interval",
            "Use DAY, WEEK, MONTH, QUARTER or YEAR.",
        ));
    }
    if !(1..=rules::MAX_INTERVAL_COUNT).contains(&body.interval_count) {
        e.push(FieldError::new(
            "intervalCount",
            "out_of_range",
            "Use 1 to 36.",
        ));
    }
    check_trial(body.trial_days, &mut e);
    check_included(body.appointments_included, &mut e);
    check_covered(&body.covered_types, &mut e);
    check_prices(&body.visit_prices, &mut e);
    if body
        .currency
        .as_deref()
        .is_some_and(|c| !rules::currency_ok(c))
    {
        e.push(FieldError::new(
            "currency",
            "invalid_currency",
            "Use a three-letter ISO 4217 code.",
        ));
    }
    errors(e)?;
    let Some(unit) = unit else {
        return Err(ApiError::internal("validated interval missing"));
    };
    let (_, clinic_currency) = clinic_settings(state, clinic).await?;
    let now = state.clock.now();
    let now_s = now.as_second();
    let plan = PlanRecord {
        id: PlanId::generate(),
        clinic: clinic.clone(),
        name: body.name.trim().to_string(),
        description: body.description.clone(),
        price: body.price,
        currency: body.currency.clone().unwrap_or(clinic_currency),
        cadence: Cadence {
            unit,
            count: body.interval_count,
        },
        trial_days: body.trial_days,
        included: body.appointments_included,
        covered_types: body.covered_types.clone(),
        visit_prices: body.visit_prices.clone(),
        active: true,
        live_subscriptions: 0,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
    };
    let mut tx = Tx::default();
    tx.push(plan.put(&state.table)?);
    tx.push(outbox(
        state,
        plan_ev("billing.plan.created", &plan, who, now),
        now,
    )?);
    tx.commit(&state.table).await?;
    Ok(plan)
}

/// The clinic's plans, only the active (or inactive) ones when `active` says so.
pub async fn list(
    state: &Platform,
    clinic: &ClinicId,
    active: Option<bool>,
) -> Result<Vec<PlanRecord>, ApiError> {
    let mut plans: Vec<PlanRecord> = store::all(&state.table, clinic, keys::PLAN_PREFIX).await?;
    plans.retain(|p| active.is_none_or(|a| p.active == a));
    Ok(plans)
}

/// How long a container trusts a plan it read, for taking out subscriptions. Deactivating a
/// plan still stops new subscriptions at once: the subscription's transaction adds to the
/// plan's live count only while the plan is active.
pub const PLAN_CACHE_SECONDS: i64 = 30;

static PLANS: std::sync::LazyLock<shared::cache::TtlCache<(ClinicId, PlanId), PlanRecord>> =
    std::sync::LazyLock::new(|| shared::cache::TtlCache::new(PLAN_CACHE_SECONDS, 10_000));

/// The plan, from this container's cache when read recently.
pub async fn cached(
    state: &Platform,
    clinic: &ClinicId,
    id: &PlanId,
) -> Result<Option<PlanRecord>, ApiError> {
    let now = state.clock.epoch();
    let key = (clinic.clone(), id.clone());
    if let Some(p) = PLANS.get(&key, now) {
        return Ok(Some(p));
    }
    let p = store::get_plan(&state.table, clinic, id).await?;
    if let Some(p) = &p {
        PLANS.put(key, p.clone(), now);
    }
    Ok(p)
}

/// Drops the cached plan (this container changed it).
fn forget(p: &PlanRecord) {
    PLANS.forget(&(p.clinic.clone(), p.id.clone()));
}

/// The plan `id` names in the clinic; 404 when the id is malformed or unknown.
pub async fn find(state: &Platform, clinic: &ClinicId, id: &str) -> Result<PlanRecord, ApiError> {
    let id = PlanId::parse(id).ok_or(ApiError::NotFound)?;
    store::get_plan(&state.table, clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Changes a plan. Terms changed here apply to subscriptions taken out afterwards; existing
/// subscriptions keep the terms they were sold.
pub async fn update(
    state: &Platform,
    p: &PlanRecord,
    body: &PlanChanges,
    who: &Who,
) -> Result<PlanRecord, ApiError> {
    let mut e = Vec::new();
    let mut u = VersionedUpdate::new();
    let mut after = p.clone();
    if let Some(v) = &body.name {
        check_name(v, &mut e);
        u.set("name", s(v.trim()));
        after.name = v.trim().to_string();
    }
    if let Some(d) = &body.description {
        check_description(d.as_deref(), &mut e);
        match d {
            Some(d) => u.set("description", s(d)),
            None => u.remove("description"),
        };
        after.description = d.clone();
    }
    if let Some(a) = body.active {
        u.set("active", b(a));
        after.active = a;
    }
    if let Some(v) = body.price {
        check_amount("price", v, &mut e);
        u.set("price", n(v));
        after.price = v;
    }
    if let Some(v) = body.trial_days {
        check_trial(v, &mut e);
        u.set("trialDays", n(v));
        after.trial_days = v;
    }
    if let Some(v) = body.appointments_included {
        check_included(v, &mut e);
        match v {
            Some(x) => u.set("appointmentsIncluded", n(x)),
            None => u.remove("appointmentsIncluded"),
        };
        after.included = v;
    }
    if let Some(v) = &body.covered_types {
        check_covered(v, &mut e);
        u.set(
            "coveredTypes",
            s(serde_json::to_string(v).map_err(ApiError::internal)?),
        );
        after.covered_types = v.clone();
    }
    if let Some(v) = &body.visit_prices {
        check_prices(v, &mut e);
        u.set(
            "visitPrices",
            s(serde_json::to_string(v).map_err(ApiError::internal)?),
        );
        after.visit_prices = v.clone();
    }
    errors(e)?;
    expect_version(p.version, body.version)?;
    if u.is_empty() {
        return Ok(p.clone());
    }
    let now = state.clock.now();
    let now_s = now.as_second();
    after.version += 1;
    after.updated_at = now_s;
    let mut tx = Tx::default();
    tx.guard(
        u.build(
            &state.table,
            keys::clinic_pk(&p.clinic),
            keys::plan_sk(&p.id),
            p.version,
            now_s,
        )?,
        CHANGED_MEANWHILE,
    );
    tx.push(outbox(
        state,
        plan_ev("billing.plan.updated", &after, who, now),
        now,
    )?);
    tx.commit(&state.table).await?;
    forget(p);
    Ok(after)
}

/// Deletes a plan nobody is subscribed to; a plan with live subscriptions answers 409 (set
/// `active: false` instead, so nobody new can subscribe).
pub async fn delete(state: &Platform, p: &PlanRecord, who: &Who) -> Result<(), ApiError> {
    if p.live_subscriptions > 0 {
        return Err(ApiError::conflict(
            "plan_in_use",
            "The plan has live subscriptions; deactivate it instead.",
        ));
    }
    let now = state.clock.now();
    let mut tx = Tx::default();
    tx.guard(
        store::plan_delete(&state.table, p)?,
        Guard::new(
            "plan_in_use",
            "The plan changed or gained subscriptions meanwhile; deactivate it instead.",
        ),
    );
    tx.push(outbox(
        state,
        plan_ev("billing.plan.deleted", p, who, now),
        now,
    )?);
    tx.commit(&state.table).await?;
    forget(p);
    Ok(())
}

fn plan_ev(kind: &str, p: &PlanRecord, who: &Who, now: Timestamp) -> EventEnvelope {
    event(
        kind,
        &p.clinic,
        who,
        ("plan", p.id.as_str()),
        serde_json::json!({
            "planId": p.id,
            "name": p.name,
            "price": p.price,
            "currency": p.currency,
            "active": p.active,
        }),
        now,
    )
}

fn outbox(
    state: &Platform,
    e: EventEnvelope,
    now: Timestamp,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    e.outbox_write(&state.table.name, now.as_second())
}
