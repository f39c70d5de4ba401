//! The only place in this context with raw DynamoDB calls: the platform's clinic index, a
//! clinic's locations and members, and a location's own put and delete. The single-record
//! reads every context makes (a clinic, a location, a member) live in `shared::tenancy`.

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};
use shared::{
    ApiError,
    db::{self, Item, Table, get_opt_s, n, s, tx_delete, tx_put},
    ids::{ClinicId, LocationId},
    keys,
    policy::Role,
    record::Record,
    tenancy::{self, ClinicRecord, LocationRecord, MemberRecord},
};

/// The clinic, or 404.
pub(crate) async fn clinic(table: &Table, id: &ClinicId) -> Result<ClinicRecord, ApiError> {
    tenancy::get_clinic(table, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// A location of the clinic, or 404 (an id from another clinic is simply absent).
pub(crate) async fn location(
    table: &Table,
    clinic: &ClinicId,
    id: &LocationId,
) -> Result<LocationRecord, ApiError> {
    tenancy::get_location(table, clinic, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// One page of the platform's clinic index, and the key to continue after it (if any).
pub(crate) async fn clinic_page(
    table: &Table,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<ClinicId>, Option<Item>), ApiError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(keys::GSI1)
        .key_condition_expression("gsi1pk = :p")
        .expression_attribute_values(":p", s(keys::CLINICS_GSI1PK))
        .limit(limit)
        .set_exclusive_start_key(start)
        .send()
        .await
        .map_err(db::fault)?;
    let ids = out
        .items()
        .iter()
        .filter_map(|i| get_opt_s(i, "clinicId").and_then(ClinicId::parse))
        .collect();
    Ok((ids, out.last_evaluated_key.filter(|k| !k.is_empty())))
}

/// Every location of the clinic. A clinic has few locations, so all pages are read.
pub(crate) async fn locations(
    table: &Table,
    clinic: &ClinicId,
) -> Result<Vec<LocationRecord>, ApiError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = table
            .client
            .query()
            .table_name(&table.name)
            .key_condition_expression("pk = :c AND begins_with(sk, :l)")
            .expression_attribute_values(":c", s(keys::clinic_pk(clinic)))
            .expression_attribute_values(":l", s(keys::LOCATION_PREFIX))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(db::fault)?;
        for i in out.items() {
            items.push(LocationRecord::from_item(i)?);
        }
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(items),
        }
    }
}

/// A new location, if its id is not taken yet.
pub(crate) fn location_put(
    table: &Table,
    l: &LocationRecord,
) -> Result<TransactWriteItem, ApiError> {
    let mut put = l
        .new_put(table, "LOCATION")
        .item("name", s(&l.name))
        .item("memberCount", n(l.member_count));
    if let Some(a) = &l.address {
        put = put.item("address", s(a));
    }
    if let Some(p) = &l.phone {
        put = put.item("phone", s(p));
    }
    tx_put(put)
}

/// Deletes the location only while no member is assigned to it (its member count).
pub(crate) fn location_delete_if_empty(
    table: &Table,
    clinic: &ClinicId,
    id: &LocationId,
) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(clinic)))
            .key(keys::SK, s(keys::location_sk(id)))
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(memberCount) OR memberCount <= :zero)",
            )
            .expression_attribute_values(":zero", n(0)),
    )
}

/// One page of the clinic's members (of `role` only, if given), and the key to continue after
/// it (if any).
pub(crate) async fn member_page(
    table: &Table,
    clinic: &ClinicId,
    role: Option<Role>,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<MemberRecord>, Option<Item>), ApiError> {
    // By role: that role's own index partition, so other members are never read.
    let req = match role {
        Some(r) => table
            .client
            .query()
            .table_name(&table.name)
            .index_name(keys::GSI2)
            .key_condition_expression("gsi2pk = :r")
            .expression_attribute_values(":r", s(keys::role_members_pk(clinic, r.as_str()))),
        None => table
            .client
            .query()
            .table_name(&table.name)
            .key_condition_expression("pk = :c AND begins_with(sk, :m)")
            .expression_attribute_values(":c", s(keys::clinic_pk(clinic)))
            .expression_attribute_values(":m", s(keys::MEMBER_PREFIX)),
    }
    .limit(limit)
    .set_exclusive_start_key(start);
    let out = req.send().await.map_err(db::fault)?;
    let records = out
        .items()
        .iter()
        .map(MemberRecord::from_item)
        .collect::<Result<_, _>>()?;
    Ok((records, out.last_evaluated_key.filter(|k| !k.is_empty())))
}
