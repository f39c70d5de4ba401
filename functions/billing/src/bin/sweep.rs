//! Lambda entry point of the billing job (periods, trials, cancellations at period end,
//! overdue invoices): an EventBridge schedule fans it out, one message per clinic, and its
//! work queue runs the job for each clinic.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_clinic_job(
        billing::state_from_env(),
        billing::sweep::JOB,
        |state: billing::AppState, clinic| async move {
            billing::sweep::sweep_clinic(&state, &clinic, state.clock.now()).await
        },
    )
    .await
}
