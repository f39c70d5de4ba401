//! Readiness: whether what a function needs answers now (its tables, its key, its queues),
//! unlike liveness (`/v1/health`), which only says the process runs. One cheap call each, all
//! at once; a dependency that fails or does not answer within the call limits is down.

use crate::{ApiError, platform::Platform};

/// One dependency and whether it answered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
}

async fn table(p: &Platform, name: &'static str, table: &str) -> Check {
    let ok = p
        .table
        .client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok_and(|t| {
            t.table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| *s == aws_sdk_dynamodb::types::TableStatus::Active)
        });
    Check { name, ok }
}

async fn queue(p: &Platform, name: &'static str, url: &str) -> Check {
    let ok = p
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .is_ok();
    Check { name, ok }
}

/// Checks the platform's table, the audit table, the PHI key and `queues` (name, URL).
pub async fn checks(p: &Platform, queues: &[(&'static str, &str)]) -> Vec<Check> {
    let (main, audit, key) = tokio::join!(
        table(p, "table", &p.table.name),
        table(p, "auditTable", &p.audit.table.name),
        async {
            Check {
                name: "phiKey",
                ok: p.envelope.ready().await,
            }
        },
    );
    let mut out = vec![main, audit, key];
    for (name, url) in queues {
        out.push(queue(p, name, url).await);
    }
    out
}

/// The readiness answer: 200 with every check, or 503 `not_ready` naming what is down.
pub async fn ready(
    p: &Platform,
    queues: &[(&'static str, &str)],
) -> Result<serde_json::Value, ApiError> {
    let checks = checks(p, queues).await;
    let down: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    if down.is_empty() {
        let by_name: serde_json::Map<String, serde_json::Value> = checks
            .iter()
            .map(|c| (c.name.to_string(), "ok".into()))
            .collect();
        return Ok(serde_json::json!({ "status": "ready", "checks": by_name }));
    }
    tracing::warn!(down = ?down, "not ready");
    Err(ApiError::Unavailable {
        code: "not_ready",
        detail: format!("Not ready: {} did not answer.", down.join(", ")).into(),
        retry_after_seconds: 5,
    })
}
