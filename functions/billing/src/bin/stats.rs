//! Lambda entry point of `billing-stats`: the table's stream (payments and subscriptions only)
//! kept as the analytics counters, reporting the first failed change so Lambda retries from it.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_stream(billing::state_from_env(), billing::stats::Counters).await
}
