//! The care relation between a clinician and a patient, and patients' holds (their own
//! unconfirmed bookings).

use super::*;

/// Counts the non-cancelled appointments between a clinician and a patient: the "assigned"
/// relation of the policy table.
pub fn care_add(
    table: &Table,
    clinic: &ClinicId,
    clinician: &UserId,
    patient: &UserId,
    delta: i64,
    until: Option<i64>,
) -> Result<TransactWriteItem, ApiError> {
    let mut u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::clinic_pk(clinic)))
        .key(keys::SK, s(keys::care_sk(clinician, patient)))
        .expression_attribute_values(":d", n(delta))
        .expression_attribute_values(":c", s(clinician.as_str()))
        .expression_attribute_values(":p", s(patient.as_str()));
    u = match until {
        Some(until) => u
            .update_expression("ADD active :d SET clinicianId = :c, patientId = :p, #until = :u")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":u", n(until)),
        None => u.update_expression("ADD active :d SET clinicianId = :c, patientId = :p"),
    };
    tx_update(u)
}

/// A patient's count of open holds (their own unconfirmed bookings) moves by `delta`; taking
/// one fails once `max` are open.
pub fn holds_add(
    table: &Table,
    clinic: &ClinicId,
    patient: &UserId,
    delta: i64,
    max: Option<i64>,
) -> Result<TransactWriteItem, ApiError> {
    let mut u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::clinic_pk(clinic)))
        .key(keys::SK, s(keys::holds_sk(patient)))
        .update_expression("ADD #open :d SET patientId = :p")
        .expression_attribute_names("#open", "open")
        .expression_attribute_values(":d", n(delta))
        .expression_attribute_values(":p", s(patient.as_str()));
    if let Some(max) = max {
        u = u
            .condition_expression("attribute_not_exists(#open) OR #open < :max")
            .expression_attribute_values(":max", n(max));
    }
    tx_update(u)
}

/// The hold item of a patient's unconfirmed booking (written with it; removed when it leaves
/// PENDING).
pub fn hold_put(
    table: &Table,
    a: &AppointmentRecord,
    until: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_put(
        Put::builder()
            .table_name(&table.name)
            .item(keys::PK, s(keys::clinic_pk(&a.clinic)))
            .item(keys::SK, s(keys::hold_sk(until, &a.id)))
            .item(keys::ENTITY, s("HOLD"))
            .item("appointmentId", s(a.id.as_str()))
            .item("heldUntil", n(until)),
    )
}

pub fn hold_delete(
    table: &Table,
    a: &AppointmentRecord,
    until: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(&a.clinic)))
            .key(keys::SK, s(keys::hold_sk(until, &a.id))),
    )
}

/// The appointments whose holds ran out by `now`, oldest first, a page at a time: the sweep's
/// second work list (only holds, never the clinic's other appointments).
pub async fn holds_over(
    table: &Table,
    clinic: &ClinicId,
    now: Timestamp,
    start: Option<Item>,
) -> Result<(Vec<AppointmentId>, Option<Item>), ApiError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("pk = :p AND sk BETWEEN :from AND :to")
        .expression_attribute_values(":p", s(keys::clinic_pk(clinic)))
        .expression_attribute_values(":from", s(keys::HOLD_PREFIX))
        .expression_attribute_values(
            ":to",
            s(format!("{}{:012}~", keys::HOLD_PREFIX, now.as_second())),
        )
        .set_exclusive_start_key(start)
        .limit(100)
        .send()
        .await
        .map_err(db::fault)?;
    let ids = out
        .items()
        .iter()
        .filter_map(|i| get_opt_s(i, "appointmentId").and_then(AppointmentId::parse))
        .collect();
    Ok((ids, out.last_evaluated_key.filter(|k| !k.is_empty())))
}

/// How long after an appointment's end its care relation lasts (results, questions, a
/// follow-up), unless another appointment extends it.
pub const CARE_DAYS: i64 = 90;
