//! Reading what the audit trail really stored: every record one request left, found by the
//! request's own correlation id in any scope (a clinic's, or the platform's).

use http::Method;
use shared::db::Item;

use crate::{Api, Reply};

/// Every item of `table` (whose `correlationId` is `correlation`, when given), all pages.
pub async fn scan(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    correlation: Option<&str>,
) -> Vec<Item> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let mut q = dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start);
        if let Some(c) = correlation {
            q = q
                .filter_expression("correlationId = :c")
                .expression_attribute_values(":c", shared::db::s(c));
        }
        let page = q.send().await.expect("scan");
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    out
}

/// Every audit record the request with correlation id `correlation` left.
pub async fn records_of(api: &Api, correlation: &str) -> Vec<Item> {
    let stack = api.stack.as_ref().expect("in-process stack");
    scan(
        &stack.clients.dynamodb,
        &stack.resources.audit_table,
        Some(correlation),
    )
    .await
}

/// Sends one request under a fresh correlation id; answers the reply and every audit record
/// it left.
pub async fn audited(
    api: &Api,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> (Reply, Vec<Item>) {
    let correlation = uuid::Uuid::new_v4().to_string();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("x-correlation-id", correlation.as_str())];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let r = api
        .send(
            method,
            path,
            body.map(|b| b.to_string().into_bytes()),
            &headers,
        )
        .await;
    let records = records_of(api, &correlation).await;
    (r, records)
}

/// A string attribute of a record ("" when absent).
pub fn attr<'a>(i: &'a Item, k: &str) -> &'a str {
    i.get(k)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or_default()
}

/// The ids a record names.
pub fn ids_of(i: &Item) -> Vec<String> {
    i.get("resourceIds")
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}
