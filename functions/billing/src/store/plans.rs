//! Plans: the record, the live-subscription counter and deletion only while unused.

use super::*;

shared::record!(PlanRecord, keys::plan_sk, "planId");

#[derive(Debug, Clone)]
pub struct PlanRecord {
    pub id: PlanId,
    pub clinic: ClinicId,
    pub name: String,
    pub description: Option<String>,
    pub price: i64,
    pub currency: String,
    pub cadence: Cadence,
    pub trial_days: i64,
    pub included: Option<i64>,
    pub covered_types: Vec<String>,
    pub visit_prices: BTreeMap<String, i64>,
    pub active: bool,
    pub live_subscriptions: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl PlanRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            id: PlanId::parse(get_s(i, "planId")?).ok_or_else(|| bad("planId"))?,
            clinic: ClinicId::parse(get_s(i, "clinicId")?).ok_or_else(|| bad("clinicId"))?,
            name: get_s(i, "name")?.to_string(),
            description: get_opt_s(i, "description").map(str::to_string),
            price: get_n(i, "price")?,
            currency: get_s(i, "currency")?.to_string(),
            cadence: Cadence {
                unit: Interval::parse(get_s(i, "interval")?).ok_or_else(|| bad("interval"))?,
                count: get_n(i, "intervalCount")?,
            },
            trial_days: get_n(i, "trialDays")?,
            included: get_opt_n(i, "appointmentsIncluded"),
            covered_types: json_attr(i, "coveredTypes")?,
            visit_prices: json_attr(i, "visitPrices")?,
            active: matches!(
                i.get("active"),
                Some(aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            ),
            live_subscriptions: get_opt_n(i, "liveSubscriptions").unwrap_or(0),
            version: get_n(i, "version")?,
            created_at: get_n(i, "createdAt")?,
            updated_at: get_n(i, "updatedAt")?,
        })
    }

    pub fn put(&self, table: &Table) -> Result<TransactWriteItem, ApiError> {
        let mut p = self
            .new_put(table, "PLAN")
            .item("name", s(&self.name))
            .item("price", n(self.price))
            .item("currency", s(&self.currency))
            .item("interval", s(self.cadence.unit.as_str()))
            .item("intervalCount", n(self.cadence.count))
            .item("trialDays", n(self.trial_days))
            .item("coveredTypes", s(to_json(&self.covered_types)?))
            .item("visitPrices", s(to_json(&self.visit_prices)?))
            .item("active", shared::db::b(self.active))
            .item("liveSubscriptions", n(0));
        if let Some(d) = &self.description {
            p = p.item("description", s(d));
        }
        if let Some(x) = self.included {
            p = p.item("appointmentsIncluded", n(x));
        }
        tx_put(p)
    }

    pub fn terms(&self) -> Terms {
        Terms {
            included: self.included,
            covered_types: self.covered_types.clone(),
            visit_prices: self.visit_prices.clone(),
            currency: self.currency.clone(),
        }
    }
}

pub async fn get_plan(
    table: &Table,
    clinic: &ClinicId,
    plan: &PlanId,
) -> Result<Option<PlanRecord>, ApiError> {
    get(table, clinic, keys::plan_sk(plan)).await
}

/// Counts a plan's live subscriptions up or down; taking one out requires the plan active.
pub fn plan_live_count(
    table: &Table,
    clinic: &ClinicId,
    plan: &PlanId,
    delta: i64,
) -> Result<TransactWriteItem, ApiError> {
    let mut u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::clinic_pk(clinic)))
        .key(keys::SK, s(keys::plan_sk(plan)))
        .update_expression("ADD liveSubscriptions :d")
        .expression_attribute_values(":d", n(delta));
    if delta > 0 {
        u = u
            .condition_expression("attribute_exists(pk) AND active = :t")
            .expression_attribute_values(":t", shared::db::b(true));
    }
    tx_update(u)
}

/// Deletes a plan under its version, only while no live subscription uses it.
pub fn plan_delete(table: &Table, p: &PlanRecord) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(&p.clinic)))
            .key(keys::SK, s(keys::plan_sk(&p.id)))
            .condition_expression(
                "version = :v AND (attribute_not_exists(liveSubscriptions) OR liveSubscriptions = :z)",
            )
            .expression_attribute_values(":v", n(p.version))
            .expression_attribute_values(":z", n(0)),
    )
}
