//! `Idempotency-Key` for creating POSTs, as a middleware: the first request with a key runs
//! and its response is stored (encrypted: it may hold PHI); a retry with the same key and
//! body gets the stored response; the same key with another body is 422; a duplicate that
//! arrives while the first is still running is 409. A conditional put makes concurrent
//! duplicates produce exactly one effect.

use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::clock::Clock;
use crate::crypto::{BlindIndex, Envelope, FieldContext, PLATFORM_TENANT};
use crate::db::{Table, get_n, get_opt_s, get_s, is_condition_failed, n, s};
use crate::error::ApiError;
use crate::http::MAX_BODY_BYTES;
use crate::jwt::KeySet;
use crate::keys;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Stored responses are replayable for a day.
const RETENTION_SECONDS: i64 = 24 * 60 * 60;
/// A request that died mid-flight releases its key after this long.
const LOCK_SECONDS: i64 = 60;
const MAX_STORED_RESPONSE: usize = 256 * 1024;

#[derive(Clone)]
pub struct IdempotencyStore {
    pub table: Table,
    pub envelope: Arc<Envelope>,
    pub clock: Arc<dyn Clock>,
    /// Verifies bearer tokens so a stored response is only ever replayed to the same user.
    pub keys: Arc<KeySet>,
    /// Keys the hash of a request body: bodies hold passwords and PHI, and a plain digest of a
    /// low-entropy body could be guessed back from the stored record.
    pub hasher: BlindIndex,
}

/// The purpose the body's keyed hash is computed under (no other HMAC shares it).
const BODY_HASH: &str = "idempotency-body";

/// Who a key belongs to: the verified token's subject, or nobody for public routes. A request
/// with a token that does not verify is left to the route's own authentication (never stored).
fn owner(store: &IdempotencyStore, headers: &http::HeaderMap) -> Result<String, ()> {
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok("anonymous".to_string()),
        Some(v) => {
            let token = v.split_once(' ').map(|(_, t)| t.trim()).ok_or(())?;
            store
                .keys
                .verify(token, store.clock.epoch())
                .map(|c| format!("user:{}", c.sub))
                .map_err(|_| ())
        }
    }
}

fn valid_key(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

fn sha(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update(b"\x1f");
    }
    B64.encode(h.finalize())
}

/// A `POST` route a client may retry with the same `Idempotency-Key` without doing it twice.
pub fn idempotent_post<H, T, S>(
    store: &IdempotencyStore,
    handler: H,
) -> axum::routing::MethodRouter<S>
where
    H: axum::handler::Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    axum::routing::post(handler).layer(axum::middleware::from_fn_with_state(
        store.clone(),
        idempotent,
    ))
}

/// The middleware. Requests without the header pass straight through.
pub async fn idempotent(
    State(store): State<IdempotencyStore>,
    req: Request,
    next: Next,
) -> Response {
    match run(store, req, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(store: IdempotencyStore, req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(raw) = req.headers().get(HEADER) else {
        return Ok(next.run(req).await);
    };
    let key = valid_key(raw).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
        )
    })?;
    let Ok(owner) = owner(&store, req.headers()) else {
        return Ok(next.run(req).await);
    };
    let scope = sha(&[
        req.method().as_str().as_bytes(),
        req.uri().path().as_bytes(),
        owner.as_bytes(),
        key.as_bytes(),
    ]);
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let request_hash = store.hasher.compute_bytes(BODY_HASH, &bytes);
    let now = store.clock.epoch();
    let pk = keys::idempotency_pk(&scope);

    let claimed = store
        .table
        .client
        .put_item()
        .table_name(&store.table.name)
        .item(keys::PK, s(pk.clone()))
        .item(keys::SK, s(keys::IDEMPOTENCY_SK))
        .item(keys::ENTITY, s("IDEMPOTENCY"))
        .item("requestHash", s(request_hash.clone()))
        .item("state", s("IN_PROGRESS"))
        .item("lockExpiresAt", n(now + LOCK_SECONDS))
        .item(keys::TTL, n(now + RETENTION_SECONDS))
        // Free, expired (DynamoDB deletes expired items late), or abandoned mid-flight.
        .condition_expression(
            "attribute_not_exists(pk) OR #ttl < :now OR (#state = :running AND lockExpiresAt < :now)",
        )
        .expression_attribute_names("#state", "state")
        .expression_attribute_names("#ttl", keys::TTL)
        .expression_attribute_values(":running", s("IN_PROGRESS"))
        .expression_attribute_values(":now", n(now))
        .send()
        .await;
    if let Err(e) = claimed {
        if !is_condition_failed(&e) {
            return Err(crate::db::fault(e));
        }
        return replay(&store, &pk, &scope, &request_hash).await;
    }

    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (rparts, rbody) = resp.into_parts();
    let rbytes = to_bytes(rbody, MAX_STORED_RESPONSE)
        .await
        .map_err(ApiError::internal)?;
    let status = rparts.status;
    if status.is_server_error()
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
    {
        // Nothing happened that a retry must not repeat (and a retry with other credentials
        // must be judged afresh): release the key.
        let _ = store
            .table
            .client
            .delete_item()
            .table_name(&store.table.name)
            .set_key(Some(crate::db::key(pk, keys::IDEMPOTENCY_SK)))
            .send()
            .await;
    } else if let Err(e) = save(
        &store,
        &pk,
        &scope,
        &request_hash,
        status,
        &rparts.headers,
        &rbytes,
    )
    .await
    {
        tracing::error!(error = %e, "storing the idempotent response failed");
    }
    Ok(Response::from_parts(rparts, Body::from(rbytes)))
}

fn field(scope: &str) -> FieldContext<'_> {
    FieldContext {
        tenant: PLATFORM_TENANT,
        entity: "IDEMPOTENCY",
        record: scope,
        field: "response",
    }
}

async fn save(
    store: &IdempotencyStore,
    pk: &str,
    scope: &str,
    request_hash: &str,
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let sealed = store.envelope.encrypt(&field(scope), body).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    store
        .table
        .client
        .update_item()
        .table_name(&store.table.name)
        .set_key(Some(crate::db::key(pk.to_string(), keys::IDEMPOTENCY_SK)))
        .update_expression("SET #state = :done, responseStatus = :status, contentType = :ct, responseBody = :body REMOVE lockExpiresAt")
        .condition_expression("requestHash = :hash")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":done", s("COMPLETE"))
        .expression_attribute_values(":status", n(i64::from(status.as_u16())))
        .expression_attribute_values(":ct", s(content_type))
        .expression_attribute_values(":body", s(sealed))
        .expression_attribute_values(":hash", s(request_hash))
        .send()
        .await
        .map_err(crate::db::fault)?;
    Ok(())
}

async fn replay(
    store: &IdempotencyStore,
    pk: &str,
    scope: &str,
    request_hash: &str,
) -> Result<Response, ApiError> {
    let item = store
        .table
        .get(pk.to_string(), keys::IDEMPOTENCY_SK)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                "idempotency_in_progress",
                "A request with this Idempotency-Key is being processed; retry shortly.",
            )
        })?;
    if get_s(&item, "requestHash")? != request_hash {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request body.",
        ));
    }
    if get_opt_s(&item, "state") != Some("COMPLETE") {
        return Err(ApiError::conflict(
            "idempotency_in_progress",
            "A request with this Idempotency-Key is being processed; retry shortly.",
        ));
    }
    let status =
        StatusCode::from_u16(u16::try_from(get_n(&item, "responseStatus")?).unwrap_or(500))
            .map_err(ApiError::internal)?;
    let body = store
        .envelope
        .decrypt(&field(scope), get_s(&item, "responseBody")?)
        .await?;
    let mut resp = (status, Body::from(body.to_vec())).into_response();
    if let Ok(ct) =
        HeaderValue::from_str(get_opt_s(&item, "contentType").unwrap_or("application/json"))
    {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    Ok(resp)
}
