//! Billing analytics: revenue by period, method and plan, subscriptions by status, quota use.
//!
//! Revenue is completed payments less refunds. What a caller may see is decided by the route
//! and handed in as `visible`, so a location head's report only counts their location.

use std::collections::{BTreeMap, HashMap};

use jiff::{Timestamp, civil::Date, tz::TimeZone};
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    ids::{ClinicId, LocationId},
    keys,
    platform::Platform,
};

use crate::{
    common::clinic_settings,
    rules::{PaymentStatus, SubStatus},
    store::{self, InvoiceRecord, PaymentRecord, SubscriptionRecord},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnalyticsQuery {
    /// First local date (inclusive); defaults to 30 days before `to`.
    from: Option<String>,
    /// Last local date (inclusive); defaults to today.
    to: Option<String>,
    /// `day`, `week` or `month` (the default).
    group_by: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanRevenue {
    /// `null` for pay-per-visit and other invoices outside subscriptions.
    plan_id: Option<String>,
    plan_name: String,
    amount: i64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revenue {
    collected: i64,
    refunded: i64,
    net: i64,
    by_period: BTreeMap<String, i64>,
    by_method: BTreeMap<&'static str, i64>,
    by_plan: Vec<PlanRevenue>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscriptions {
    live: usize,
    active: usize,
    trialing: usize,
    incomplete: usize,
    past_due: usize,
    cancelled: usize,
    /// Cancelled within the range.
    cancelled_in_range: usize,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Units included this period across live subscriptions with a limit.
    included: i64,
    used: i64,
    /// used / included, `null` when nothing is included.
    utilisation: Option<f64>,
    /// Live subscriptions without a limit (their use is counted in `usedUnlimited`).
    unlimited_subscriptions: usize,
    used_unlimited: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Analytics {
    from: String,
    to: String,
    group_by: &'static str,
    currency: String,
    revenue: Revenue,
    subscriptions: Subscriptions,
    quota: Quota,
}

fn bad_query(field: &'static str, message: &'static str) -> ApiError {
    ApiError::invalid_field(field, "invalid_query", message)
}

fn period_key(t: Timestamp, tz: &TimeZone, group: &str) -> String {
    let d = t.to_zoned(tz.clone()).date();
    match group {
        "day" => d.to_string(),
        "week" => {
            let w = d.iso_week_date();
            format!("{}-W{:02}", w.year(), w.week())
        }
        _ => format!("{:04}-{:02}", d.year(), d.month()),
    }
}

/// The clinic's billing report for the range and grouping `q` asks for, counting only the
/// payments and subscriptions whose location is `visible`.
pub async fn report(
    state: &Platform,
    clinic: &ClinicId,
    q: &AnalyticsQuery,
    visible: impl Fn(Option<&LocationId>) -> bool,
) -> Result<Analytics, ApiError> {
    let group: &'static str = match q.group_by.as_deref() {
        None | Some("month") => "month",
        Some("week") => "week",
        Some("day") => "day",
        Some(_) => return Err(bad_query("groupBy", "Use day, week or month.")),
    };
    let (tz, currency) = clinic_settings(state, clinic).await?;
    let now = state.clock.now();
    let parse = |v: &str, field| {
        v.parse::<Date>()
            .map_err(|_| bad_query(field, "Use YYYY-MM-DD."))
    };
    let to = match &q.to {
        Some(v) => parse(v, "to")?,
        None => now.to_zoned(tz.clone()).date(),
    };
    let from = match &q.from {
        Some(v) => parse(v, "from")?,
        None => to.saturating_sub(jiff::Span::new().days(30)),
    };
    if from > to || to.since(from).map(|s| s.get_days()).unwrap_or(i32::MAX) > 366 {
        return Err(bad_query(
            "from",
            "Give a range of at most 366 days, from before to.",
        ));
    }
    let start = from
        .to_zoned(tz.clone())
        .map_err(ApiError::internal)?
        .timestamp()
        .as_second();
    let end = to
        .tomorrow()
        .and_then(|d| d.to_zoned(tz.clone()))
        .map_err(ApiError::internal)?
        .timestamp()
        .as_second();
    let subs: Vec<SubscriptionRecord> =
        store::all(&state.table, clinic, keys::SUBSCRIPTION_PREFIX).await?;
    let invoices: HashMap<String, InvoiceRecord> =
        store::all::<InvoiceRecord>(&state.table, clinic, keys::INVOICE_PREFIX)
            .await?
            .into_iter()
            .map(|r| (r.id.to_string(), r))
            .collect();
    let payments: Vec<PaymentRecord> =
        store::all(&state.table, clinic, keys::PAYMENT_PREFIX).await?;
    let sub_plan: HashMap<String, (String, String)> = subs
        .iter()
        .map(|x| (x.id.to_string(), (x.plan.to_string(), x.plan_name.clone())))
        .collect();

    let mut revenue = Revenue::default();
    let mut by_plan: BTreeMap<Option<String>, PlanRevenue> = BTreeMap::new();
    for p in payments.iter().filter(|p| visible(p.location.as_ref())) {
        let Some(at) = p.completed_at.filter(|t| (start..end).contains(t)) else {
            continue;
        };
        // Refunds are their own records; a payment later refunded still counts as collected.
        let completed = matches!(p.status, PaymentStatus::Completed | PaymentStatus::Refunded);
        if !completed {
            continue;
        }
        let sign = if p.refund_of.is_some() { -1 } else { 1 };
        if sign > 0 {
            revenue.collected += p.amount;
        } else {
            revenue.refunded += p.amount;
        }
        let amount = sign * p.amount;
        let key = period_key(Timestamp::from_second(at).unwrap_or(now), &tz, group);
        *revenue.by_period.entry(key).or_default() += amount;
        *revenue.by_method.entry(p.method.as_str()).or_default() += amount;
        let plan = invoices
            .get(p.invoice.as_str())
            .and_then(|i| i.subscription.as_ref())
            .and_then(|s| sub_plan.get(s.as_str()));
        let entry = by_plan
            .entry(plan.map(|(id, _)| id.clone()))
            .or_insert_with(|| PlanRevenue {
                plan_id: plan.map(|(id, _)| id.clone()),
                plan_name: plan
                    .map(|(_, n)| n.clone())
                    .unwrap_or_else(|| "Pay per visit and other invoices".into()),
                amount: 0,
            });
        entry.amount += amount;
    }
    revenue.net = revenue.collected - revenue.refunded;
    revenue.by_plan = by_plan.into_values().collect();

    let mut s = Subscriptions::default();
    let mut quota = Quota::default();
    for x in subs.iter().filter(|x| visible(x.location.as_ref())) {
        match x.status {
            SubStatus::Active => s.active += 1,
            SubStatus::Trialing => s.trialing += 1,
            SubStatus::Incomplete => s.incomplete += 1,
            SubStatus::PastDue => s.past_due += 1,
            SubStatus::Cancelled => s.cancelled += 1,
        }
        if x.cancelled_at.is_some_and(|t| (start..end).contains(&t)) {
            s.cancelled_in_range += 1;
        }
        if x.status.is_live() {
            s.live += 1;
            match x.terms.included {
                Some(n) => {
                    quota.included += n;
                    quota.used += x.quota_used;
                }
                None => {
                    quota.unlimited_subscriptions += 1;
                    quota.used_unlimited += x.quota_used;
                }
            }
        }
    }
    quota.utilisation = (quota.included > 0).then(|| quota.used as f64 / quota.included as f64);
    Ok(Analytics {
        from: from.to_string(),
        to: to.to_string(),
        group_by: group,
        currency,
        revenue,
        subscriptions: s,
        quota,
    })
}
