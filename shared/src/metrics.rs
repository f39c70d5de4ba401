//! Business metrics as CloudWatch embedded metric format (EMF) documents in the logs: one line
//! per count, which CloudWatch Logs turns into a metric of the `ClinicPlatform` namespace with
//! the function as its `Service` dimension. No API call, no extra latency; ids and counts only.

/// The namespace of every business metric.
pub const NAMESPACE: &str = "ClinicPlatform";

/// The business metrics the platform counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    BookingsCreated,
    CoveredBookings,
    PaymentsCompleted,
    NotificationsSent,
    NotificationsFailed,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::BookingsCreated => "BookingsCreated",
            Metric::CoveredBookings => "CoveredBookings",
            Metric::PaymentsCompleted => "PaymentsCompleted",
            Metric::NotificationsSent => "NotificationsSent",
            Metric::NotificationsFailed => "NotificationsFailed",
        }
    }
}

/// The EMF document of `metric` counted `n` times now.
pub fn document(metric: Metric, n: u64, at_ms: i64) -> serde_json::Value {
    let service = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_string());
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": at_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [{"Name": metric.name(), "Unit": "Count"}],
            }],
        },
        "Service": service,
        "correlationId": crate::correlation::current_correlation_id(),
    });
    doc[metric.name()] = n.into();
    doc
}

/// Counts `metric` once (a `metrics` log line, see `telemetry`).
pub fn count(metric: Metric) {
    let at = jiff::Timestamp::now().as_millisecond();
    tracing::info!(log_type = "metrics", emf = %document(metric, 1, at), "metric");
}
