//! DynamoDB access helpers: the table handle, attribute conversions, condition-failure
//! detection, and pagination cursors authenticated and bound to the tenant and query.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use std::collections::HashMap;

use crate::crypto::{constant_time_eq, hmac_sha256};
use crate::error::{ApiError, Guard};

pub type Item = HashMap<String, AttributeValue>;

/// An SDK error of one DynamoDB operation.
pub type SdkErr<E> = SdkError<E, aws_smithy_runtime_api::http::Response>;

/// The single table, with the client that reaches it.
#[derive(Debug, Clone)]
pub struct Table {
    pub client: aws_sdk_dynamodb::Client,
    pub name: String,
}

impl Table {
    pub fn new(client: aws_sdk_dynamodb::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// Strongly consistent read of one item by key.
    pub async fn get(&self, pk: String, sk: impl Into<String>) -> Result<Option<Item>, ApiError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key(crate::keys::PK, s(pk))
            .key(crate::keys::SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(fault)?;
        Ok(out.item)
    }

    /// Strongly consistent reads of many items by key: one `BatchGetItem` per hundred keys,
    /// unprocessed keys retried (up to five rounds). Missing items are simply absent.
    pub async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, ApiError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(ApiError::internal)?,
            );
            let mut rounds = 0;
            while let Some(req) = request.take() {
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.name, req)
                    .send()
                    .await
                    .map_err(fault)?;
                if let Some(items) = resp.responses().and_then(|r| r.get(&self.name)) {
                    out.extend(items.iter().cloned());
                }
                rounds += 1;
                request = resp
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.name))
                    .cloned()
                    .filter(|_| rounds < 5);
            }
        }
        Ok(out)
    }
}

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

/// The key map of an item.
pub fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([
        (crate::keys::PK.to_string(), s(pk)),
        (crate::keys::SK.to_string(), s(sk)),
    ])
}

/// A put as one transaction action.
pub fn tx_put(
    p: aws_sdk_dynamodb::types::builders::PutBuilder,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
        .put(p.build().map_err(ApiError::internal)?)
        .build())
}

/// An update as one transaction action.
pub fn tx_update(
    u: aws_sdk_dynamodb::types::builders::UpdateBuilder,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
        .update(u.build().map_err(ApiError::internal)?)
        .build())
}

/// A delete as one transaction action.
pub fn tx_delete(
    d: aws_sdk_dynamodb::types::builders::DeleteBuilder,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
        .delete(d.build().map_err(ApiError::internal)?)
        .build())
}

/// A condition check as one transaction action.
pub fn tx_check(
    c: aws_sdk_dynamodb::types::builders::ConditionCheckBuilder,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
        .condition_check(c.build().map_err(ApiError::internal)?)
        .build())
}

/// A stored item lacks an attribute or has the wrong type: data corruption, a 500.
#[derive(Debug, thiserror::Error)]
#[error("item attribute {0} is missing or has the wrong type")]
pub struct AttributeError(pub &'static str);

impl From<AttributeError> for ApiError {
    fn from(e: AttributeError) -> Self {
        ApiError::internal(e)
    }
}

pub fn get_s<'a>(item: &'a Item, name: &'static str) -> Result<&'a str, AttributeError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or(AttributeError(name))
}

pub fn get_opt_s<'a>(item: &'a Item, name: &'static str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub fn get_n(item: &Item, name: &'static str) -> Result<i64, AttributeError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or(AttributeError(name))
}

pub fn get_opt_n(item: &Item, name: &'static str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub fn get_opt_bool(item: &Item, name: &'static str) -> Option<bool> {
    item.get(name).and_then(|v| v.as_bool().ok()).copied()
}

pub fn get_ss(item: &Item, name: &'static str) -> Vec<String> {
    item.get(name)
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default()
}

/// A failure that is ours to fix, not the caller's: a 500 with the cause logged.
fn bug<E: std::error::Error + Send + Sync + 'static>(e: SdkErr<E>) -> ApiError {
    ApiError::internal(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

/// The answer when a service the request needs is throttled, down or unreachable: nothing was
/// changed, and the same request may be sent again shortly.
pub fn unavailable() -> ApiError {
    ApiError::Unavailable {
        code: "temporarily_unavailable",
        detail:
            "A service this request needs is unavailable; nothing was changed. Try again shortly."
                .into(),
        retry_after_seconds: 2,
    }
}

/// Error codes that say the service, not the request, is at fault (or the table is not
/// there, as when a deployment is incomplete): the caller may retry.
const FAULT_CODES: &[&str] = &[
    // DynamoDB
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "ResourceNotFoundException",
    "ThrottlingError",
    // KMS
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    // SQS, EventBridge
    "RequestThrottled",
    "InternalError",
    "InternalException",
];

/// Whether a failed call of any AWS service was the service's fault (throttled, failing,
/// unreachable, too slow, or its resource missing) rather than the request's.
pub fn is_transient<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &SdkErr<E>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            se.raw().status().is_server_error()
                || se.err().code().is_some_and(|c| FAULT_CODES.contains(&c))
        }
        _ => false,
    }
}

/// A failed call as its answer: a fault of the service (throttling, an outage, a timeout, a
/// missing table, a transaction cancelled by throttling) is [`unavailable`]; anything else is
/// ours to fix, a 500 with the cause logged.
pub fn fault<E>(e: SdkErr<E>) -> ApiError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if is_transient(&e) {
        tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "service unavailable");
        unavailable()
    } else {
        bug(e)
    }
}

/// [`fault`] for a transaction, whose cancellation reasons may name throttling.
pub fn tx_fault(e: SdkErr<TransactWriteItemsError>) -> ApiError {
    let throttled = cancellation_reasons(&e).is_some_and(|r| {
        r.iter()
            .flatten()
            .any(|c| FAULT_CODES.contains(&c.as_str()))
    });
    if throttled {
        tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "transaction throttled");
        return unavailable();
    }
    fault(e)
}

/// True when a single-item write failed its condition expression.
pub fn is_condition_failed<E>(e: &SdkErr<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

/// A single-item conditional write: `true` if it was made, `false` if its condition failed.
pub fn condition_held<T, E>(res: Result<T, SdkErr<E>>) -> Result<bool, ApiError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match res {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failed(&e) => Ok(false),
        Err(e) => Err(fault(e)),
    }
}

/// For a cancelled transaction, the cancellation code of each action in order
/// (`Some("ConditionalCheckFailed")`, `None` for actions that were fine).
pub fn cancellation_reasons(e: &SdkErr<TransactWriteItemsError>) -> Option<Vec<Option<String>>> {
    match e {
        SdkError::ServiceError(se) => match se.err() {
            TransactWriteItemsError::TransactionCanceledException(tc) => Some(
                tc.cancellation_reasons()
                    .iter()
                    .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    }
}

/// Runs a transaction, retrying (up to four attempts, with jittered backoff) when it was
/// cancelled only because another transaction touched the same items at the same time.
/// DynamoDB does not retry those itself; a failed condition is returned at once.
pub async fn transact(
    client: &aws_sdk_dynamodb::Client,
    items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
) -> Result<(), SdkErr<TransactWriteItemsError>> {
    let mut attempt = 0u32;
    loop {
        let result = client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send()
            .await;
        match result {
            Ok(_) => return Ok(()),
            Err(e) => {
                let only_conflicts = cancellation_reasons(&e).is_some_and(|r| {
                    r.iter().flatten().all(|c| c == "TransactionConflict")
                        && r.iter().flatten().next().is_some()
                });
                attempt += 1;
                if !only_conflicts || attempt >= 4 {
                    return Err(e);
                }
                let jitter = u64::from(crate::crypto::random_bytes::<1>()[0]) % 20;
                tokio::time::sleep(std::time::Duration::from_millis(
                    20 * u64::from(attempt) + jitter,
                ))
                .await;
            }
        }
    }
}

/// Runs a prepared transaction, telling a failed condition at `watch` apart from faults.
pub async fn run_guarded(
    table: &Table,
    items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
    watch: &[usize],
) -> Result<Option<usize>, ApiError> {
    match transact(&table.client, items).await {
        Ok(()) => Ok(None),
        Err(e) => match cancellation_reasons(&e) {
            Some(r) => {
                if let Some(i) = watch.iter().find(|i| condition_failed_at(&r, **i)) {
                    return Ok(Some(*i));
                }
                if r.iter().flatten().any(|c| c == "TransactionConflict") {
                    return Err(ApiError::conflict(
                        "concurrent_request",
                        "Another request changed the same records; try again.",
                    ));
                }
                Err(tx_fault(e))
            }
            None => Err(tx_fault(e)),
        },
    }
}

/// The failed condition of an optimistic version: someone else changed the record since it was
/// read. One answer for every record kind.
pub const CHANGED_MEANWHILE: Guard = Guard::new(
    "version_conflict",
    "The record was changed by someone else; read it again and retry.",
);

/// The same, for an operation that reads afresh and tries again by itself (a consumer, a job).
pub const MOVED_MEANWHILE: Guard = Guard::retryable(
    "version_conflict",
    "The record was changed by someone else; read it again and retry.",
);

/// Runs `attempt` again (up to `retries` more times, with jittered backoff) while it fails on a
/// retryable guard: another writer took the number or version it read, and reading afresh
/// will do. Any other outcome is returned as it is.
pub async fn retrying<T, F, Fut>(retries: u32, mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut tries = 0u32;
    loop {
        match attempt().await {
            Err(ApiError::Guarded(g)) if g.retry && tries < retries => {
                tries += 1;
                let jitter = u64::from(crate::crypto::random_bytes::<1>()[0]) % 25;
                let base = 5 * u64::from(tries.min(10));
                tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
            }
            other => return other,
        }
    }
}

/// A transaction under construction, remembering which actions' conditions mean what.
#[derive(Default)]
pub struct Tx {
    items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
    guards: Vec<(usize, Guard)>,
}

impl Tx {
    pub fn push(&mut self, item: aws_sdk_dynamodb::types::TransactWriteItem) {
        self.items.push(item);
    }

    /// Adds an action whose failed condition answers `guard`.
    pub fn guard(&mut self, item: aws_sdk_dynamodb::types::TransactWriteItem, guard: Guard) {
        self.guards.push((self.items.len(), guard));
        self.items.push(item);
    }

    pub fn append(&mut self, other: Tx) {
        let base = self.items.len();
        self.guards
            .extend(other.guards.into_iter().map(|(i, g)| (base + i, g)));
        self.items.extend(other.items);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Commits all actions or none; a failed guarded condition becomes its guard's error.
    pub async fn commit(self, table: &Table) -> Result<(), ApiError> {
        let watch: Vec<usize> = self.guards.iter().map(|(i, _)| *i).collect();
        match run_guarded(table, self.items, &watch).await? {
            None => Ok(()),
            Some(i) => Err(self
                .guards
                .iter()
                .find(|(g, _)| *g == i)
                .map(|(_, g)| ApiError::from(*g))
                .unwrap_or_else(|| ApiError::internal("unknown guarded action"))),
        }
    }
}

/// Whether action `index` of a cancelled transaction failed its condition.
pub fn condition_failed_at(reasons: &[Option<String>], index: usize) -> bool {
    reasons
        .get(index)
        .and_then(|r| r.as_deref())
        .is_some_and(|c| c == "ConditionalCheckFailed")
}

/// An update of one item guarded by its optimistic version: set and remove attributes, and the
/// version goes up by one with `updatedAt`. Attribute names are always placeholders, so any
/// name (including reserved words like `name` or `status`) is safe.
#[derive(Debug, Default)]
pub struct VersionedUpdate {
    sets: Vec<String>,
    removes: Vec<String>,
    names: Vec<(String, String)>,
    values: Vec<(String, AttributeValue)>,
}

impl VersionedUpdate {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let i = self.names.len();
        self.names.push((format!("#u{i}"), attribute.to_string()));
        self.values.push((format!(":u{i}"), value));
        self.sets.push(format!("#u{i} = :u{i}"));
        self
    }

    pub fn remove(&mut self, attribute: &str) -> &mut Self {
        let i = self.names.len();
        self.names.push((format!("#u{i}"), attribute.to_string()));
        self.removes.push(format!("#u{i}"));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.removes.is_empty()
    }

    fn expression(&self) -> String {
        let mut sets = self.sets.clone();
        sets.push("#version = #version + :one".into());
        sets.push("#updatedAt = :now".into());
        let mut expr = format!("SET {}", sets.join(", "));
        if !self.removes.is_empty() {
            expr.push_str(&format!(" REMOVE {}", self.removes.join(", ")));
        }
        expr
    }

    /// The transaction action for item (`pk`, `sk`) if its version is still `expected`.
    pub fn build(
        self,
        table: &Table,
        pk: String,
        sk: impl Into<String>,
        expected: i64,
        now: i64,
    ) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
        let mut u = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&table.name)
            .key(crate::keys::PK, s(pk))
            .key(crate::keys::SK, s(sk))
            .update_expression(self.expression())
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#updatedAt", "updatedAt")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expected", n(expected));
        for (k, v) in self.names {
            u = u.expression_attribute_names(k, v);
        }
        for (k, v) in self.values {
            u = u.expression_attribute_values(k, v);
        }
        let update = u.build().map_err(ApiError::internal)?;
        Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
            .update(update)
            .build())
    }
}

/// A sort-key part that orders later instants (epoch seconds) first.
pub fn newest_first(t: i64) -> String {
    format!("{:020}", i64::MAX.saturating_sub(t))
}

/// One partition of an index, read a page at a time in sort-key order, optionally narrowed by
/// attributes that must equal given values.
#[derive(Debug, Clone)]
pub struct IndexQuery<'a> {
    /// `gsi1`, `gsi2`, `gsi3`.
    pub index: &'a str,
    /// The index's partition attribute (`gsi1pk`, ...) and the partition.
    pub pk_attr: &'a str,
    pub pk: String,
    /// `(attribute, value)` pairs an item must match to be returned.
    pub equal: Vec<(&'a str, AttributeValue)>,
}

/// One page of `q`: at most `limit` items read (filters narrow the page, they never widen
/// the read, so a page may hold fewer and still have more after it), and the key to continue
/// after when the partition holds more.
pub async fn index_page(
    table: &Table,
    q: IndexQuery<'_>,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<Item>, Option<Item>), ApiError> {
    let mut query = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(q.index)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", q.pk_attr)
        .expression_attribute_values(":pk", s(q.pk))
        .limit(limit)
        .set_exclusive_start_key(start);
    let mut filters = Vec::new();
    for (i, (attr, value)) in q.equal.into_iter().enumerate() {
        filters.push(format!("#f{i} = :f{i}"));
        query = query
            .expression_attribute_names(format!("#f{i}"), attr)
            .expression_attribute_values(format!(":f{i}"), value);
    }
    if !filters.is_empty() {
        query = query.filter_expression(filters.join(" AND "));
    }
    let out = query.send().await.map_err(fault)?;
    let last = out.last_evaluated_key.filter(|k| !k.is_empty());
    Ok((out.items.unwrap_or_default(), last))
}

/// A page size from a `limit` query parameter: 1 to 100, 50 when absent.
pub fn page_limit(limit: Option<u32>) -> Result<i32, ApiError> {
    match limit.unwrap_or(50) {
        l @ 1..=100 => Ok(l as i32),
        _ => Err(ApiError::invalid_field(
            "limit",
            "out_of_range",
            "Use 1 to 100.",
        )),
    }
}

/// Cuts one page from `items`, already in display order, where `key` gives each item a unique
/// string that ascends in that order. The cursor names the last key returned, sealed for
/// `tenant` and `query`, so a page starts right after it even when items were added or removed
/// meanwhile. Returns the page and the cursor of the next one, if any.
pub fn sorted_page<T>(
    cursors: &CursorCodec,
    tenant: &str,
    query: &str,
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    limit: i32,
    cursor: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let after = match cursor {
        Some(c) => {
            let item = cursors.open(tenant, query, c)?;
            match item.get("k") {
                Some(AttributeValue::S(k)) => Some(k.clone()),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_cursor",
                        "The pagination cursor is not valid here.",
                    ));
                }
            }
        }
        None => None,
    };
    let limit = usize::try_from(limit).unwrap_or(1).max(1);
    let mut rest = items
        .into_iter()
        .filter(|i| after.as_ref().is_none_or(|a| key(i) > *a))
        .peekable();
    let page: Vec<T> = rest.by_ref().take(limit).collect();
    let next = match (rest.peek(), page.last()) {
        (Some(_), Some(last)) => {
            let mut k = Item::new();
            k.insert("k".into(), AttributeValue::S(key(last)));
            Some(cursors.seal(tenant, query, &k))
        }
        _ => None,
    };
    Ok((page, next))
}

/// Seals and opens pagination cursors. A cursor is the last evaluated key plus an HMAC over
/// tenant, query and key, so a cursor cannot be forged, edited, or replayed in another
/// clinic or another query.
#[derive(Clone)]
pub struct CursorCodec {
    key: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec")
    }
}

impl CursorCodec {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: zeroize::Zeroizing::new(key.to_vec()),
        }
    }

    fn tag(&self, tenant: &str, query: &str, payload: &[u8]) -> [u8; 32] {
        hmac_sha256(
            &self.key,
            &[
                tenant.as_bytes(),
                b"\x1f",
                query.as_bytes(),
                b"\x1f",
                payload,
            ],
        )
    }

    pub fn seal(&self, tenant: &str, query: &str, last_key: &Item) -> String {
        let mut flat: Vec<(String, String, String)> = last_key
            .iter()
            .filter_map(|(k, v)| match v {
                AttributeValue::S(x) => Some((k.clone(), "S".to_string(), x.clone())),
                AttributeValue::N(x) => Some((k.clone(), "N".to_string(), x.clone())),
                _ => None,
            })
            .collect();
        flat.sort();
        let payload = serde_json::to_vec(&flat).unwrap_or_default();
        let tag = self.tag(tenant, query, &payload);
        format!("{}.{}", B64.encode(&payload), B64.encode(tag))
    }

    pub fn open(&self, tenant: &str, query: &str, cursor: &str) -> Result<Item, ApiError> {
        let bad =
            || ApiError::bad_request("invalid_cursor", "The pagination cursor is not valid here.");
        let (p, t) = cursor.split_once('.').ok_or_else(bad)?;
        let payload = B64.decode(p).map_err(|_| bad())?;
        let tag = B64.decode(t).map_err(|_| bad())?;
        let expected = self.tag(tenant, query, &payload);
        if !constant_time_eq(&tag, &expected) {
            return Err(bad());
        }
        let flat: Vec<(String, String, String)> =
            serde_json::from_slice(&payload).map_err(|_| bad())?;
        Ok(flat
            .into_iter()
            .map(|(k, kind, v)| {
                let av = if kind == "N" {
                    AttributeValue::N(v)
                } else {
                    AttributeValue::S(v)
                };
                (k, av)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
