//! The correlation id of the work in progress: set per request by the HTTP layer (or by a
//! consumer for one message), read by errors, logs, events and queue messages. Below both
//! `error` and `http`, so neither imports the other.

/// The header a caller may send (and every response carries).
pub const CORRELATION_HEADER: &str = "x-correlation-id";

tokio::task_local! {
    static CORRELATION_ID: String;
}

/// The correlation id of the request being served, or `"none"` outside one.
pub fn current_correlation_id() -> String {
    CORRELATION_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "none".to_string())
}

/// Runs `fut` with the given correlation id in scope (for background work and tests).
pub async fn with_correlation_id<F: std::future::Future>(id: String, fut: F) -> F::Output {
    CORRELATION_ID.scope(id, fut).await
}
