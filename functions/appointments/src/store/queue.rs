//! The day's check-in queue.

use super::*;

/// One checked-in appointment in a day's queue.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    pub appointment: AppointmentId,
    pub doctor: UserId,
    pub patient: UserId,
    pub location: Option<LocationId>,
    pub rank: i64,
    /// The appointment's start: orders check-ins made at the same instant.
    pub starts_at: i64,
    pub expected_minutes: i64,
    pub checked_in_at: i64,
    pub started_at: Option<i64>,
}

impl QueueEntry {
    fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            appointment: AppointmentId::parse(get_s(i, "appointmentId")?)
                .ok_or_else(|| bad("appointmentId"))?,
            doctor: UserId::parse(get_s(i, "doctorId")?).ok_or_else(|| bad("doctorId"))?,
            patient: UserId::parse(get_s(i, "patientId")?).ok_or_else(|| bad("patientId"))?,
            location: get_opt_s(i, "locationId").and_then(LocationId::parse),
            rank: get_n(i, "rank")?,
            starts_at: get_opt_n(i, "startsAt").unwrap_or(0),
            expected_minutes: get_n(i, "expectedMinutes")?,
            checked_in_at: get_n(i, "checkedInAt")?,
            started_at: get_opt_n(i, "startedAt"),
        })
    }
}

pub fn queue_put(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
    a: &AppointmentRecord,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    let mut p = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(keys::queue_pk(clinic, &local_date.to_string())))
        .item(keys::SK, s(keys::appointment_sk(&a.id)))
        .item(keys::ENTITY, s("QUEUE_ENTRY"))
        .item("appointmentId", s(a.id.as_str()))
        .item("doctorId", s(a.doctor.as_str()))
        .item("patientId", s(a.patient.as_str()))
        // Check-in order, in milliseconds: reordering rewrites ranks.
        .item("rank", n(now * 1000))
        .item("startsAt", n(a.starts_at.as_second()))
        .item("expectedMinutes", n(a.minutes))
        .item("checkedInAt", n(now))
        .item(keys::TTL, n(now + QUEUE_TTL_SECONDS))
        .condition_expression("attribute_not_exists(pk)");
    if let Some(l) = &a.location {
        p = p.item("locationId", s(l.as_str()));
    }
    tx_put(p)
}

pub fn queue_started(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
    a: &AppointmentId,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::queue_pk(clinic, &local_date.to_string())))
            .key(keys::SK, s(keys::appointment_sk(a)))
            .update_expression("SET startedAt = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now)),
    )
}

pub fn queue_remove(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
    a: &AppointmentId,
) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::queue_pk(clinic, &local_date.to_string())))
            .key(keys::SK, s(keys::appointment_sk(a))),
    )
}

/// Sets an entry's rank if it is still `expected` (reordering under concurrent changes).
pub fn queue_rank(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
    a: &AppointmentId,
    expected: i64,
    rank: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::queue_pk(clinic, &local_date.to_string())))
            .key(keys::SK, s(keys::appointment_sk(a)))
            .update_expression("SET #rank = :r")
            .condition_expression("#rank = :e")
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_values(":r", n(rank))
            .expression_attribute_values(":e", n(expected)),
    )
}

/// A day's queue in the clinic, every doctor and location, in rank order.
pub async fn queue(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
) -> Result<Vec<QueueEntry>, ApiError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = table
            .client
            .query()
            .table_name(&table.name)
            .key_condition_expression("pk = :q")
            .expression_attribute_values(":q", s(keys::queue_pk(clinic, &local_date.to_string())))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(db::fault)?;
        for i in page.items() {
            out.push(QueueEntry::from_item(i)?);
        }
        start = page.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            break;
        }
    }
    out.sort_by(|a, b| {
        (a.rank, a.starts_at, a.appointment.as_str()).cmp(&(
            b.rank,
            b.starts_at,
            b.appointment.as_str(),
        ))
    });
    Ok(out)
}
