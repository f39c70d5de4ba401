//! Lambda entry point of the billing job (periods, trials, cancellations at period end,
//! overdue invoices), invoked by an EventBridge schedule.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_job(
        billing::state_from_env(),
        |state: billing::AppState| async move { billing::sweep::run(&state).await },
    )
    .await
}
