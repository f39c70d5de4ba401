//! The only place with raw SDK calls for health records: reads of current records, of a
//! record's versions, pages of a patient's records, and the encounter check.

use shared::{
    ApiError,
    clinical::Stored,
    db::{Item, Table, fault, get_opt_s, s},
    ids::{AppointmentId, ClinicId, RecordId, UserId},
    keys,
};

use crate::kinds::ALL;

/// The current version of one record, if it exists.
pub async fn current(
    table: &Table,
    clinic: &ClinicId,
    patient: &UserId,
    kind: &str,
    id: &RecordId,
) -> Result<Option<Stored>, ApiError> {
    table
        .get(keys::clinic_pk(clinic), keys::ehr_sk(patient, kind, id))
        .await?
        .map(|i| Stored::from_item(&i, &ALL))
        .transpose()
}

/// One page of the items under `prefix` in the clinic's partition (at most `limit` read),
/// oldest key first, and the key to continue after. `active_only` leaves out records entered
/// in error (a filter: it narrows the page, never widens the read).
pub async fn page(
    table: &Table,
    clinic: &ClinicId,
    prefix: &str,
    limit: i32,
    start: Option<Item>,
    active_only: bool,
) -> Result<(Vec<Stored>, Option<Item>), ApiError> {
    let mut q = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("pk = :p AND begins_with(sk, :s)")
        .expression_attribute_values(":p", s(keys::clinic_pk(clinic)))
        .expression_attribute_values(":s", s(prefix))
        .limit(limit)
        .consistent_read(true)
        .set_exclusive_start_key(start);
    if active_only {
        q = q
            .filter_expression("#st = :active")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":active", s("active"));
    }
    let out = q.send().await.map_err(fault)?;
    let items = out
        .items()
        .iter()
        .map(|i| Stored::from_item(i, &ALL))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, out.last_evaluated_key.filter(|k| !k.is_empty())))
}

/// Whether `appointment` is one of `patient`'s in this clinic (a record's encounter).
pub async fn is_patients_appointment(
    table: &Table,
    clinic: &ClinicId,
    patient: &UserId,
    appointment: &AppointmentId,
) -> Result<bool, ApiError> {
    Ok(table
        .get(keys::clinic_pk(clinic), keys::appointment_sk(appointment))
        .await?
        .is_some_and(|i| get_opt_s(&i, "patientId") == Some(patient.as_str())))
}
