//! Claims: the 5-minute cells a doctor's bookings hold, one item per doctor and UTC date.

use super::*;

/// The cells of a booking, as (UTC date, cell names).
pub type Cells = BTreeMap<Date, BTreeSet<String>>;

pub fn cells(start: Timestamp, minutes: i64) -> Cells {
    claim_buckets(start, minutes)
        .into_iter()
        .map(|(d, c)| (d, c.into_iter().collect()))
        .collect()
}

fn claims_key(clinic: &ClinicId, doctor: &UserId, date: Date) -> (String, String) {
    (
        keys::claims_pk(clinic, doctor, &date.to_string()),
        keys::CLAIMS_SK.to_string(),
    )
}

fn claims_ttl(date: Date) -> i64 {
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_second())
        .unwrap_or(0)
        + CLAIMS_TTL_DAYS * 24 * 60 * 60
}

/// Moves a doctor's claims for `appointment` from `old` cells to `new` cells: cells in both are
/// kept, new cells must be free, old cells are released. One update per UTC date touched, so
/// even a 480-minute booking moved across midnight stays within a handful of actions.
/// Releasing needs no per-cell condition: the same transaction updates the appointment under its
/// version, and an appointment holds exactly its cells.
pub fn move_claims(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
    appointment: &AppointmentId,
    old: &Cells,
    new: &Cells,
) -> Result<Vec<TransactWriteItem>, ApiError> {
    let dates: BTreeSet<Date> = old.keys().chain(new.keys()).copied().collect();
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    for date in dates {
        let before = old.get(&date).unwrap_or(&empty);
        let after = new.get(&date).unwrap_or(&empty);
        let take: Vec<&String> = after.difference(before).collect();
        let free: Vec<&String> = before.difference(after).collect();
        if take.is_empty() && free.is_empty() {
            continue;
        }
        let (pk, sk) = claims_key(clinic, doctor, date);
        let mut u = Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(pk))
            .key(keys::SK, s(sk));
        let mut sets = Vec::new();
        let mut conditions = Vec::new();
        for (i, cell) in take.iter().enumerate() {
            u = u.expression_attribute_names(format!("#t{i}"), cell.as_str());
            sets.push(format!("#t{i} = :a"));
            conditions.push(format!("attribute_not_exists(#t{i})"));
        }
        let mut expr = String::new();
        if !take.is_empty() {
            sets.push("#ttl = :ttl".into());
            u = u
                .expression_attribute_names("#ttl", keys::TTL)
                .expression_attribute_values(":a", s(appointment.as_str()))
                .expression_attribute_values(":ttl", n(claims_ttl(date)));
            expr.push_str(&format!("SET {}", sets.join(", ")));
        }
        if !free.is_empty() {
            let removes: Vec<String> = (0..free.len()).map(|i| format!("#f{i}")).collect();
            for (i, cell) in free.iter().enumerate() {
                u = u.expression_attribute_names(format!("#f{i}"), cell.as_str());
            }
            if !expr.is_empty() {
                expr.push(' ');
            }
            expr.push_str(&format!("REMOVE {}", removes.join(", ")));
        }
        u = u.update_expression(expr);
        if !conditions.is_empty() {
            u = u.condition_expression(conditions.join(" AND "));
        }
        out.push(tx_update(u)?);
    }
    Ok(out)
}

/// Conditions that every cell of `cells` is still claimed by `appointment` (confirming checks
/// the appointment still holds its time).
pub fn claims_held(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
    appointment: &AppointmentId,
    cells: &Cells,
) -> Result<Vec<TransactWriteItem>, ApiError> {
    let mut out = Vec::new();
    for (date, names) in cells {
        let (pk, sk) = claims_key(clinic, doctor, *date);
        let mut c = ConditionCheck::builder()
            .table_name(&table.name)
            .key(keys::PK, s(pk))
            .key(keys::SK, s(sk))
            .expression_attribute_values(":a", s(appointment.as_str()));
        let mut conditions = Vec::new();
        for (i, cell) in names.iter().enumerate() {
            c = c.expression_attribute_names(format!("#c{i}"), cell.as_str());
            conditions.push(format!("#c{i} = :a"));
        }
        let check = c
            .condition_expression(conditions.join(" AND "))
            .build()
            .map_err(ApiError::internal)?;
        out.push(TransactWriteItem::builder().condition_check(check).build());
    }
    Ok(out)
}

/// The busy periods of a doctor on the given UTC dates: every claimed cell.
pub async fn busy_cells(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
    dates: &[Date],
) -> Result<Vec<(Timestamp, Timestamp)>, ApiError> {
    let mut busy = Vec::new();
    for date in dates {
        let (pk, sk) = claims_key(clinic, doctor, *date);
        let Some(item) = table.get(pk, sk).await? else {
            continue;
        };
        for name in item.keys() {
            if let Some(t) = crate::rules::cell_instant(*date, name) {
                busy.push((
                    t,
                    t + jiff::SignedDuration::from_mins(crate::rules::GRID_MINUTES),
                ));
            }
        }
    }
    Ok(busy)
}
