//! The correlation id and the trace of the work in progress: set per request by the HTTP
//! layer (or by a consumer for one message), read by errors, logs, events and queue messages,
//! so one booking can be followed from its HTTP call through the relay, the bus, the consumers
//! and the notification worker. Below both `error` and `http`, so neither imports the other.

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

/// The X-Ray trace header API Gateway and Lambda pass on (`Root=1-…;Parent=…;Sampled=…`).
pub const TRACE_HEADER: &str = "x-amzn-trace-id";

tokio::task_local! {
    static TRACE_ID: String;
}

/// The trace of the work in progress, when there is one.
pub fn current_trace_id() -> Option<String> {
    TRACE_ID.try_with(Clone::clone).ok()
}

/// A trace header as received, if it is well formed (at most 256 characters of letters,
/// digits, `=`, `;` and `-`); anything else is replaced by a fresh trace.
pub fn acceptable_trace_id(s: &str) -> Option<String> {
    let ok = s.starts_with("Root=")
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b';' | b'-'));
    ok.then(|| s.to_string())
}

/// A new X-Ray trace id: `Root=1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`.
pub fn new_trace_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{secs:08x}-{}", &random[..24])
}

/// Runs `fut` with a correlation id and a trace in scope: a consumer continues the work an
/// event or a job started.
pub async fn continuing<F: std::future::Future>(
    correlation_id: String,
    trace_id: Option<String>,
    fut: F,
) -> F::Output {
    match trace_id {
        Some(trace) => {
            CORRELATION_ID
                .scope(correlation_id, TRACE_ID.scope(trace, fut))
                .await
        }
        None => CORRELATION_ID.scope(correlation_id, fut).await,
    }
}
