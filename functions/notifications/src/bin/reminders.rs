//! Lambda entry point of `notifications-reminders`: an EventBridge schedule fans it out, one
//! message per clinic, and its work queue queues each clinic's due appointment reminders.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_clinic_job(
        notifications::state_from_env(),
        notifications::reminders::JOB,
        |state: notifications::AppState, clinic| async move {
            notifications::reminders::sweep_clinic(&state, &clinic).await
        },
    )
    .await
}
