//! Doctors' availability, and the container's short-lived cache of it.

use super::*;

#[derive(Debug, Clone)]
pub struct ScheduleRecord {
    pub availability: Availability,
    pub version: i64,
    pub updated_at: i64,
}

pub async fn get_schedule(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
) -> Result<Option<ScheduleRecord>, ApiError> {
    let Some(item) = table
        .get(keys::clinic_pk(clinic), keys::schedule_sk(doctor))
        .await?
    else {
        return Ok(None);
    };
    let availability =
        serde_json::from_str(get_s(&item, "availability")?).map_err(ApiError::internal)?;
    Ok(Some(ScheduleRecord {
        availability,
        version: get_n(&item, "version")?,
        updated_at: get_opt_n(&item, "updatedAt").unwrap_or(0),
    }))
}

/// How long a container trusts a doctor's availability it read (the seed's L1 cache).
pub const SCHEDULE_CACHE_SECONDS: i64 = 30;

/// Doctors' availability as this container last read it, for booking and free slots: a
/// schedule changed elsewhere shows here within [`SCHEDULE_CACHE_SECONDS`]. Slot claims, not
/// the schedule, are what make double booking impossible, so a stale schedule cannot break
/// that invariant. Changing a schedule (and showing it to its editors) reads it fresh.
pub struct Schedules(shared::cache::TtlCache<(ClinicId, UserId), Option<ScheduleRecord>>);

impl Default for Schedules {
    fn default() -> Self {
        Self(shared::cache::TtlCache::new(SCHEDULE_CACHE_SECONDS, 10_000))
    }
}

impl Schedules {
    /// The doctor's schedule, from the cache when read recently.
    pub async fn get(
        &self,
        table: &Table,
        clinic: &ClinicId,
        doctor: &UserId,
        now: i64,
    ) -> Result<Option<ScheduleRecord>, ApiError> {
        let key = (clinic.clone(), doctor.clone());
        if let Some(s) = self.0.get(&key, now) {
            return Ok(s);
        }
        let s = get_schedule(table, clinic, doctor).await?;
        self.0.put(key, s.clone(), now);
        Ok(s)
    }

    /// Drops what this container read of the doctor's schedule (it just changed it).
    pub fn forget(&self, clinic: &ClinicId, doctor: &UserId) {
        self.0.forget(&(clinic.clone(), doctor.clone()));
    }
}

/// Replaces a doctor's availability if it is still at `expected` (0: none yet).
pub fn put_schedule(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
    availability: &Availability,
    expected: i64,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    let json = serde_json::to_string(availability).map_err(ApiError::internal)?;
    let mut p = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(keys::clinic_pk(clinic)))
        .item(keys::SK, s(keys::schedule_sk(doctor)))
        .item(keys::ENTITY, s("SCHEDULE"))
        .item("doctorId", s(doctor.as_str()))
        .item("availability", s(json))
        .item("version", n(expected + 1))
        .item("updatedAt", n(now));
    p = if expected == 0 {
        p.condition_expression("attribute_not_exists(pk)")
    } else {
        p.condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected))
    };
    tx_put(p)
}
