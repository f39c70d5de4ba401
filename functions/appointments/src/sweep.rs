//! The scheduled sweep: appointments whose start has passed become EXPIRED (never confirmed) or
//! NO_SHOW (confirmed, never checked in), and patients' unconfirmed bookings whose hold ran out
//! become EXPIRED. It runs on an EventBridge schedule on AWS and on a
//! timer in the local stack, fanned out one clinic per message (`shared::jobs`).

use jiff::{Timestamp, tz::TimeZone};
use serde::Serialize;
use shared::{ApiError, ids::ClinicId};

use crate::{
    AppState, Who,
    common::clinic_zone,
    lifecycle::{self, Input},
    rules::{self, Status},
    store::{self, AppointmentRecord},
};

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

/// The job's name on its work queue.
pub const JOB: &str = "appointments.sweep";

/// Sweeps one clinic: its PENDING and CONFIRMED appointments that have started, read from
/// their status partitions (an appointment leaves them when the sweep changes its status, so
/// the work list never holds the clinic's history). One that fails stays where it is and is
/// tried again on the next run.
pub async fn sweep_clinic(state: &AppState, clinic: &ClinicId) -> Result<SweepReport, ApiError> {
    let now = state.clock.now();
    let mut report = SweepReport {
        clinics: 1,
        ..SweepReport::default()
    };
    let tz = clinic_zone(state, clinic).await?;
    for status in [Status::Pending, Status::Confirmed] {
        let mut start = None;
        loop {
            let (page, next) =
                store::started_in_status(&state.table, clinic, status, now, start).await?;
            for a in page {
                sweep_one(state, &a, now, &tz, &mut report).await;
            }
            match next {
                Some(k) => start = Some(k),
                None => break,
            }
        }
    }
    // Patients' unconfirmed bookings whose hold ran out before their start.
    let mut start = None;
    loop {
        let (ids, next) = store::holds_over(&state.table, clinic, now, start).await?;
        for id in ids {
            match store::get_appointment(&state.table, clinic, &id).await? {
                Some(a) => sweep_one(state, &a, now, &tz, &mut report).await,
                None => report.skipped += 1,
            }
        }
        match next {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    tracing::info!(clinic_id = %clinic, expired = report.expired, no_shows = report.no_shows, skipped = report.skipped, failed = report.failed, "swept");
    Ok(report)
}

async fn sweep_one(
    state: &AppState,
    a: &AppointmentRecord,
    now: Timestamp,
    tz: &TimeZone,
    report: &mut SweepReport,
) {
    let Some(action) = rules::sweep(a.status, a.starts_at, a.held_until, now) else {
        return;
    };
    match lifecycle::apply(state, &Who::system(), a, action, Input::None, tz).await {
        Ok((b, _)) if b.status == Status::Expired => report.expired += 1,
        Ok(_) => report.no_shows += 1,
        Err(ApiError::Conflict { .. } | ApiError::IllegalTransition { .. }) => {
            report.skipped += 1;
        }
        Err(e) => {
            tracing::error!(appointment_id = %a.id, error = %e, "sweep could not update an appointment");
            report.failed += 1;
        }
    }
}
