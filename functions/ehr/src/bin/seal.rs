//! Lambda entry point of the audit sealing job: a daily EventBridge schedule fans it out, one
//! message per clinic, and its work queue seals each clinic's finished days.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_clinic_job(
        ehr::seal_state_from_env(),
        ehr::seal::JOB,
        |state: ehr::SealState, clinic| async move {
            let today = state.clock.now().to_zoned(jiff::tz::TimeZone::UTC).date();
            ehr::seal::seal_clinic(&state.audit.table, state.ext(), &clinic, today).await
        },
    )
    .await
}
