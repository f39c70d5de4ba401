//! The scheduled sweep: appointments whose start has passed become EXPIRED (never confirmed) or
//! NO_SHOW (confirmed, never checked in). It runs on an EventBridge schedule on AWS and on a
//! timer in the local stack; each clinic remembers how far it has been swept, so a run reads
//! only the appointments that started since the last one (plus an hour of overlap).

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use shared::{
    ApiError,
    db::{self, get_opt_n, n, s},
    ids::ClinicId,
    keys,
};

use crate::{
    AppState, Who,
    common::clinic_zone,
    lifecycle::{self, Input},
    rules::{self, Status},
    store::{self, AppointmentRecord},
};

/// A clinic never swept before looks back this far.
const FIRST_LOOKBACK: SignedDuration = SignedDuration::from_hours(7 * 24);
/// Each run re-reads this much before the last one's end.
const OVERLAP: SignedDuration = SignedDuration::from_hours(1);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub clinics: usize,
    pub expired: usize,
    pub no_shows: usize,
    /// Appointments changed by someone else while the sweep looked at them.
    pub skipped: usize,
    /// Appointments that could not be updated; the next run tries them again.
    pub failed: usize,
}

/// Sweeps every clinic.
pub async fn run(state: &AppState) -> Result<SweepReport, ApiError> {
    let mut report = SweepReport::default();
    for clinic in shared::tenancy::clinic_ids(&state.table).await? {
        let r = sweep_clinic(state, &clinic).await?;
        report.clinics += 1;
        report.expired += r.expired;
        report.no_shows += r.no_shows;
        report.skipped += r.skipped;
        report.failed += r.failed;
    }
    Ok(report)
}

/// Sweeps one clinic and moves its watermark.
pub async fn sweep_clinic(state: &AppState, clinic: &ClinicId) -> Result<SweepReport, ApiError> {
    let now = state.clock.now();
    let mut report = SweepReport::default();
    let swept_until = state
        .table
        .get(keys::clinic_pk(clinic), keys::SWEEP_SK)
        .await?
        .and_then(|i| get_opt_n(&i, "sweptUntil"))
        .and_then(|t| Timestamp::from_second(t).ok())
        .unwrap_or(now - FIRST_LOOKBACK);
    let from = swept_until - OVERLAP;
    let tz = clinic_zone(state, clinic).await?;
    let mut earliest_failure: Option<Timestamp> = None;
    let mut start = None;
    loop {
        let page = state
            .table
            .client
            .query()
            .table_name(&state.table.name)
            .index_name(keys::GSI3)
            .key_condition_expression("gsi3pk = :p AND gsi3sk BETWEEN :lo AND :hi")
            .filter_expression("#status IN (:pending, :confirmed)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":p", s(keys::clinic_appointments_pk(clinic)))
            .expression_attribute_values(":lo", s(store::iso(from)))
            .expression_attribute_values(":hi", s(store::iso(now) + "~"))
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":confirmed", s(Status::Confirmed.as_str()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(db::internal)?;
        for item in page.items() {
            let a = AppointmentRecord::from_item(item)?;
            let Some(action) = rules::sweep(a.status, a.starts_at, now) else {
                continue;
            };
            match lifecycle::apply(state, &Who::system(), &a, action, Input::None, &tz).await {
                Ok((b, _)) if b.status == Status::Expired => report.expired += 1,
                Ok(_) => report.no_shows += 1,
                Err(ApiError::Conflict { .. } | ApiError::IllegalTransition { .. }) => {
                    report.skipped += 1;
                }
                Err(e) => {
                    tracing::error!(appointment_id = %a.id, error = %e, "sweep could not update an appointment");
                    report.failed += 1;
                    earliest_failure =
                        Some(earliest_failure.map_or(a.starts_at, |t| t.min(a.starts_at)));
                }
            }
        }
        start = page.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            break;
        }
    }
    // Failures are retried next time: the watermark stops just before the earliest of them.
    let until = earliest_failure.unwrap_or(now);
    state
        .table
        .client
        .put_item()
        .table_name(&state.table.name)
        .item(keys::PK, s(keys::clinic_pk(clinic)))
        .item(keys::SK, s(keys::SWEEP_SK))
        .item(keys::ENTITY, s("SWEEP"))
        .item("sweptUntil", n(until.as_second()))
        .send()
        .await
        .map_err(db::internal)?;
    tracing::info!(clinic_id = %clinic, expired = report.expired, no_shows = report.no_shows, skipped = report.skipped, failed = report.failed, "swept");
    Ok(report)
}
