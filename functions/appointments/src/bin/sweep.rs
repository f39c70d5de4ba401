//! Lambda entry point of the appointment sweep: an EventBridge schedule fans it out, one
//! message per clinic, and its work queue sweeps each clinic.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_clinic_job(
        appointments::AppState::from_env(),
        appointments::sweep::JOB,
        |state: appointments::AppState, clinic| async move {
            appointments::sweep::sweep_clinic(&state, &clinic).await
        },
    )
    .await
}
