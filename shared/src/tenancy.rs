//! Tenancy: clinic, location and member records and the reads every context makes of them.
//! A location counts its members in the same transactions that assign them, so "delete only
//! an empty location" is a condition.

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem, Update};

use crate::{
    ApiError,
    db::{Item, Table, get_n, get_opt_n, get_opt_s, get_s, n, s, tx_delete, tx_put, tx_update},
    ids::{ClinicId, LocationId, UserId},
    keys,
    policy::Role,
    record::Record,
};

#[derive(Debug, Clone)]
pub struct ClinicRecord {
    pub id: ClinicId,
    pub name: String,
    pub time_zone: String,
    pub currency: String,
    pub locale: String,
    pub status: String,
    /// Patients may register themselves into the clinic.
    pub self_registration: bool,
    /// Staff (every role but patient) act only in sessions that passed the second step.
    pub staff_mfa_required: bool,
    /// What patients may book for themselves.
    pub booking: BookingLimits,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A clinic's limits on what patients book for themselves (staff are not limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingLimits {
    /// Unconfirmed bookings a patient may hold at once.
    pub max_open_holds: i64,
    /// How far ahead a patient may book, in days.
    pub max_days_ahead: i64,
    /// How long a patient's unconfirmed booking holds its time before it expires, in minutes.
    pub hold_minutes: i64,
}

impl Default for BookingLimits {
    fn default() -> Self {
        Self {
            max_open_holds: 3,
            max_days_ahead: 90,
            hold_minutes: 24 * 60,
        }
    }
}

impl BookingLimits {
    /// The settings' names and allowed ranges, as stored and as the API shows them.
    pub const RANGES: [(&'static str, std::ops::RangeInclusive<i64>); 3] = [
        ("maxOpenHolds", 1..=20),
        ("maxDaysAhead", 1..=730),
        ("holdMinutes", 5..=14 * 24 * 60),
    ];

    fn from_item(i: &Item) -> Self {
        let d = Self::default();
        Self {
            max_open_holds: get_opt_n(i, "maxOpenHolds").unwrap_or(d.max_open_holds),
            max_days_ahead: get_opt_n(i, "maxDaysAhead").unwrap_or(d.max_days_ahead),
            hold_minutes: get_opt_n(i, "holdMinutes").unwrap_or(d.hold_minutes),
        }
    }

    pub fn values(&self) -> [(&'static str, i64); 3] {
        [
            ("maxOpenHolds", self.max_open_holds),
            ("maxDaysAhead", self.max_days_ahead),
            ("holdMinutes", self.hold_minutes),
        ]
    }
}

impl Record for ClinicRecord {
    fn parse(item: &Item) -> Result<Self, ApiError> {
        Self::from_item(item)
    }
    fn key(&self) -> (&ClinicId, String, i64) {
        (&self.id, keys::CLINIC_SK.to_string(), self.version)
    }
    fn identity(&self) -> (&'static str, &str, i64, i64) {
        (
            "clinicId",
            self.id.as_str(),
            self.created_at,
            self.updated_at,
        )
    }
}

impl ClinicRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            id: ClinicId::parse(get_s(i, "clinicId")?)
                .ok_or_else(|| ApiError::internal("bad clinic id"))?,
            name: get_s(i, "name")?.to_string(),
            time_zone: get_s(i, "timeZone")?.to_string(),
            currency: get_s(i, "currency")?.to_string(),
            locale: get_opt_s(i, "locale").unwrap_or("en").to_string(),
            status: get_opt_s(i, "status").unwrap_or("ACTIVE").to_string(),
            self_registration: crate::db::get_opt_bool(i, "selfRegistration").unwrap_or(false),
            staff_mfa_required: crate::db::get_opt_bool(i, "staffMfaRequired").unwrap_or(false),
            booking: BookingLimits::from_item(i),
            version: get_n(i, "version")?,
            created_at: get_opt_n(i, "createdAt").unwrap_or(0),
            updated_at: get_opt_n(i, "updatedAt").unwrap_or(0),
        })
    }

    pub fn put(&self, table: &Table) -> Result<TransactWriteItem, ApiError> {
        let mut put = self.new_put(table, "CLINIC");
        for (name, v) in self.booking.values() {
            put = put.item(name, crate::db::n(v));
        }
        tx_put(
            put.item(keys::GSI1PK, s(keys::CLINICS_GSI1PK))
                .item(keys::GSI1SK, s(keys::clinic_gsi1sk(&self.id)))
                .item("name", s(&self.name))
                .item("timeZone", s(&self.time_zone))
                .item("currency", s(&self.currency))
                .item("locale", s(&self.locale))
                .item("status", s(&self.status))
                .item("selfRegistration", crate::db::b(self.self_registration))
                .item("staffMfaRequired", crate::db::b(self.staff_mfa_required)),
        )
    }
}

/// How long a container trusts a clinic's settings (name, zone, currency, locale) it read.
/// A change made in another container shows within this time; every write that depends on
/// them is still checked by its own transaction.
pub const SETTINGS_CACHE_SECONDS: i64 = 30;

/// Clinic settings read through a short-lived cache: most requests of a clinic need its zone
/// or currency, and it rarely changes.
pub struct ClinicSettings {
    table: Table,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    cache: crate::cache::TtlCache<ClinicId, ClinicRecord>,
}

impl ClinicSettings {
    pub fn new(table: Table, clock: std::sync::Arc<dyn crate::clock::Clock>) -> Self {
        Self {
            table,
            clock,
            cache: crate::cache::TtlCache::new(SETTINGS_CACHE_SECONDS, 10_000),
        }
    }

    /// The clinic, from the cache when read less than [`SETTINGS_CACHE_SECONDS`] ago.
    pub async fn get(&self, clinic: &ClinicId) -> Result<Option<ClinicRecord>, ApiError> {
        let now = self.clock.epoch();
        if let Some(c) = self.cache.get(clinic, now) {
            return Ok(Some(c));
        }
        let c = get_clinic(&self.table, clinic).await?;
        if let Some(c) = &c {
            self.cache.put(clinic.clone(), c.clone(), now);
        }
        Ok(c)
    }

    /// Drops the cached settings (this container changed them).
    pub fn forget(&self, clinic: &ClinicId) {
        self.cache.forget(clinic);
    }
}

/// Several clinics with one batched read; ids that name no clinic are absent.
pub async fn get_clinics(
    table: &Table,
    clinics: &[ClinicId],
) -> Result<std::collections::HashMap<ClinicId, ClinicRecord>, ApiError> {
    let keys = clinics
        .iter()
        .map(|c| crate::db::key(keys::clinic_pk(c), keys::CLINIC_SK))
        .collect();
    table
        .batch_get(keys)
        .await?
        .iter()
        .map(|i| ClinicRecord::from_item(i).map(|c| (c.id.clone(), c)))
        .collect()
}

pub async fn get_clinic(
    table: &Table,
    clinic: &ClinicId,
) -> Result<Option<ClinicRecord>, ApiError> {
    table
        .get(keys::clinic_pk(clinic), keys::CLINIC_SK)
        .await?
        .map(|i| ClinicRecord::from_item(&i))
        .transpose()
}

#[derive(Debug, Clone)]
pub struct LocationRecord {
    pub id: LocationId,
    pub clinic: ClinicId,
    pub name: String,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub member_count: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

crate::record!(LocationRecord, keys::location_sk, "locationId");

/// The clinic of an item in a clinic's partition, from its `pk` (`CLINIC#<id>`).
fn clinic_of(i: &Item) -> Result<ClinicId, ApiError> {
    get_s(i, keys::PK)?
        .strip_prefix("CLINIC#")
        .and_then(ClinicId::parse)
        .ok_or_else(|| ApiError::internal("not a clinic item"))
}

impl LocationRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            id: LocationId::parse(get_s(i, "locationId")?)
                .ok_or_else(|| ApiError::internal("bad location id"))?,
            clinic: clinic_of(i)?,
            created_at: get_opt_n(i, "createdAt").unwrap_or(0),
            updated_at: get_opt_n(i, "updatedAt").unwrap_or(0),
            name: get_s(i, "name")?.to_string(),
            address: get_opt_s(i, "address").map(str::to_string),
            phone: get_opt_s(i, "phone").map(str::to_string),
            member_count: get_opt_n(i, "memberCount").unwrap_or(0),
            version: get_n(i, "version")?,
        })
    }
}

pub async fn get_location(
    table: &Table,
    clinic: &ClinicId,
    location: &LocationId,
) -> Result<Option<LocationRecord>, ApiError> {
    table
        .get(keys::clinic_pk(clinic), keys::location_sk(location))
        .await?
        .map(|i| LocationRecord::from_item(&i))
        .transpose()
}

/// Adds `delta` to a location's member count; the location must exist in this clinic.
pub fn count_members(
    table: &Table,
    clinic: &ClinicId,
    location: &LocationId,
    delta: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(clinic)))
            .key(keys::SK, s(keys::location_sk(location)))
            .update_expression("ADD memberCount :d")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":d", n(delta)),
    )
}

#[derive(Debug, Clone)]
pub struct MemberRecord {
    pub user: UserId,
    pub clinic: ClinicId,
    pub role: Role,
    pub status: String,
    pub location: Option<LocationId>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Record for MemberRecord {
    fn parse(item: &Item) -> Result<Self, ApiError> {
        Self::from_item(item)
    }
    fn key(&self) -> (&ClinicId, String, i64) {
        (&self.clinic, keys::member_sk(&self.user), self.version)
    }
    fn identity(&self) -> (&'static str, &str, i64, i64) {
        (
            "userId",
            self.user.as_str(),
            self.created_at,
            self.updated_at,
        )
    }
}

impl MemberRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            clinic: clinic_of(i)?,
            created_at: get_opt_n(i, "createdAt").unwrap_or(0),
            updated_at: get_opt_n(i, "updatedAt").unwrap_or(0),
            user: UserId::parse(get_s(i, "userId")?)
                .ok_or_else(|| ApiError::internal("bad user id"))?,
            role: Role::parse(get_s(i, "role")?).ok_or_else(|| ApiError::internal("bad role"))?,
            status: get_s(i, "status")?.to_string(),
            location: get_opt_s(i, "locationId").and_then(LocationId::parse),
            version: get_opt_n(i, "version").unwrap_or(1),
        })
    }
}

pub async fn get_member(
    table: &Table,
    clinic: &ClinicId,
    user: &UserId,
) -> Result<Option<MemberRecord>, ApiError> {
    table
        .get(keys::clinic_pk(clinic), keys::member_sk(user))
        .await?
        .map(|i| MemberRecord::from_item(&i))
        .transpose()
}

pub fn delete_member(
    table: &Table,
    clinic: &ClinicId,
    user: &UserId,
    version: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(clinic)))
            .key(keys::SK, s(keys::member_sk(user)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(version)),
    )
}

/// One page of every clinic's id (the super admin's partition), and the key to go on from.
pub async fn clinic_id_page(
    table: &Table,
    start: Option<crate::db::Item>,
) -> Result<(Vec<ClinicId>, Option<crate::db::Item>), ApiError> {
    let page = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(keys::GSI1)
        .key_condition_expression("gsi1pk = :p")
        .expression_attribute_values(":p", s(keys::CLINICS_GSI1PK))
        .set_exclusive_start_key(start)
        .send()
        .await
        .map_err(crate::db::fault)?;
    let ids = page
        .items()
        .iter()
        .filter_map(|i| get_s(i, "clinicId").ok().and_then(ClinicId::parse))
        .collect();
    Ok((ids, page.last_evaluated_key.filter(|k| !k.is_empty())))
}

/// Whether the member is in a care relation with the patient now (the policy's "assigned"):
/// on the patient's care team, or an appointment of theirs that counts and a relation not
/// past its end. One read.
pub async fn is_assigned(
    table: &Table,
    clinic: &ClinicId,
    member: &UserId,
    patient: &UserId,
    now: i64,
) -> Result<bool, ApiError> {
    Ok(table
        .get(keys::clinic_pk(clinic), keys::care_sk(member, patient))
        .await?
        .is_some_and(|i| care_holds(&i, now)))
}

/// Whether a care relation item (`CARE#<member>#<patient>`) puts the pair in a care relation
/// at `now`.
pub fn care_holds(i: &Item, now: i64) -> bool {
    crate::db::get_opt_bool(i, "team") == Some(true)
        || (get_opt_n(i, "active").is_some_and(|a| a > 0)
            && get_opt_n(i, "until").is_some_and(|u| u > now))
}

/// The active members of a clinic with `role` (its role partition of GSI2), at most `max`.
pub async fn members_with_role(
    table: &Table,
    clinic: &ClinicId,
    role: Role,
    max: i32,
) -> Result<Vec<UserId>, ApiError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(keys::GSI2)
        .key_condition_expression("gsi2pk = :r")
        .expression_attribute_values(":r", s(keys::role_members_pk(clinic, role.as_str())))
        .limit(max)
        .send()
        .await
        .map_err(crate::db::fault)?;
    Ok(out
        .items()
        .iter()
        .filter(|i| get_opt_s(i, "status") == Some("ACTIVE"))
        .filter_map(|i| get_opt_s(i, "userId").and_then(UserId::parse))
        .collect())
}
