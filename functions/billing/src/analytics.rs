//! Billing analytics: revenue by period, method and plan, subscriptions by status, quota use.
//!
//! Revenue is completed payments less refunds. The route decides whose counters a caller reads:
//! the clinic's, or a location head's own location's.

use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    db::get_opt_n,
    ids::{ClinicId, LocationId},
    keys,
    platform::Platform,
};

use crate::{
    common::clinic_settings,
    rules::Method,
    stats,
    store::{self, PlanRecord},
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

fn period_key(d: Date, group: &str) -> String {
    match group {
        "day" => d.to_string(),
        "week" => {
            let w = d.iso_week_date();
            format!("{}-W{:02}", w.year(), w.week())
        }
        _ => format!("{:04}-{:02}", d.year(), d.month()),
    }
}

/// The billing report of the clinic (`location` = `None`) or of one of its locations, for the
/// range and grouping `q` asks for. It reads the counters [`stats`] keeps: the range's days and
/// the subscription totals, whatever the clinic's size.
pub async fn report(
    state: &Platform,
    clinic: &ClinicId,
    q: &AnalyticsQuery,
    location: Option<&LocationId>,
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
    let ((days, totals), plans) = tokio::try_join!(
        stats::read(&state.table, clinic, location, (from, to)),
        store::all::<PlanRecord>(&state.table, clinic, keys::PLAN_PREFIX),
    )?;
    let plan_names: HashMap<String, String> = plans
        .into_iter()
        .map(|p| (p.id.to_string(), p.name))
        .collect();
    let num = |i: &shared::db::Item, name: &'static str| get_opt_n(i, name).unwrap_or(0);

    let mut revenue = Revenue::default();
    let mut by_plan: BTreeMap<Option<String>, PlanRevenue> = BTreeMap::new();
    let mut s = Subscriptions::default();
    for (day, item) in &days {
        let Ok(date) = day.parse::<Date>() else {
            continue;
        };
        let collected = num(item, "collected");
        let refunded = num(item, "refunded");
        revenue.collected += collected;
        revenue.refunded += refunded;
        if collected != refunded {
            *revenue
                .by_period
                .entry(period_key(date, group))
                .or_default() += collected - refunded;
        }
        s.cancelled_in_range += usize::try_from(num(item, "cancelled")).unwrap_or(0);
        for (attr, v) in item {
            let Some(amount) = v.as_n().ok().and_then(|x| x.parse::<i64>().ok()) else {
                continue;
            };
            if amount == 0 {
                continue;
            }
            if let Some(m) = attr.strip_prefix("method_").and_then(Method::parse) {
                *revenue.by_method.entry(m.as_str()).or_default() += amount;
            } else if let Some(plan) = attr.strip_prefix("plan_") {
                let id = (plan != "none").then(|| plan.to_string());
                let entry = by_plan.entry(id.clone()).or_insert_with(|| PlanRevenue {
                    plan_name: match &id {
                        Some(id) => plan_names
                            .get(id)
                            .cloned()
                            .unwrap_or_else(|| "A deleted plan".into()),
                        None => "Pay per visit and other invoices".into(),
                    },
                    plan_id: id,
                    amount: 0,
                });
                entry.amount += amount;
            }
        }
    }
    revenue.net = revenue.collected - revenue.refunded;
    revenue.by_plan = by_plan.into_values().filter(|p| p.amount != 0).collect();

    let totals = totals.unwrap_or_default();
    let count = |name: &'static str| usize::try_from(num(&totals, name)).unwrap_or(0);
    s.active = count("status_ACTIVE");
    s.trialing = count("status_TRIALING");
    s.incomplete = count("status_INCOMPLETE");
    s.past_due = count("status_PAST_DUE");
    s.cancelled = count("status_CANCELLED");
    s.live = count("live");
    let mut quota = Quota {
        included: num(&totals, "included"),
        used: num(&totals, "used"),
        unlimited_subscriptions: count("unlimited"),
        used_unlimited: num(&totals, "usedUnlimited"),
        utilisation: None,
    };
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
