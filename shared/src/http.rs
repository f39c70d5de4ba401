//! HTTP plumbing every router shares: correlation ids, the JSON body extractor with a size
//! limit and problem+json rejections, and the fallbacks for unknown paths and methods.

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, FromRequest, Request},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::error::ApiError;

/// Largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub mod strict;

pub use crate::correlation::{CORRELATION_HEADER, current_correlation_id, with_correlation_id};

/// Accepts a caller's id only if it is short and plain, so it is safe to log and echo.
fn acceptable_correlation_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_string())
}

async fn correlation(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(acceptable_correlation_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The trace of this invocation's X-Ray segment (Lambda sets it when tracing is active),
    // else the one API Gateway passed on (and the local gateway's callers send), else new.
    let trace = std::env::var("_X_AMZN_TRACE_ID")
        .ok()
        .and_then(|t| crate::correlation::acceptable_trace_id(&t))
        .or_else(|| {
            req.headers()
                .get(crate::correlation::TRACE_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::correlation::acceptable_trace_id)
        })
        .unwrap_or_else(crate::correlation::new_trace_id);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span =
        tracing::info_span!("request", correlation_id = %id, trace_id = %trace, method = %method);
    let started = std::time::Instant::now();
    let mut resp = crate::correlation::continuing(
        id.clone(),
        Some(trace),
        next.run(req).instrument(span.clone()),
    )
    .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(CORRELATION_HEADER, v);
    }
    span.in_scope(|| {
        // The path carries only ids (never PHI: PHI never appears in URLs by design).
        tracing::info!(
            status = resp.status().as_u16(),
            path = %path,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request completed"
        );
    });
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Wraps a function's router with the platform behaviour: body limit, correlation ids,
/// problem+json fallbacks. Every function applies it once, outermost.
pub fn platform<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(private_responses))
        .layer(middleware::from_fn(correlation))
}

/// Whatever answers a request that carries credentials (a bearer token, a webhook signature)
/// is that caller's, and may hold PHI or tokens: no shared or private cache may keep it.
async fn private_responses(req: Request, next: middleware::Next) -> Response {
    let authenticated = req.headers().contains_key(header::AUTHORIZATION);
    let resp = next.run(req).await;
    if authenticated { no_store(resp) } else { resp }
}

/// A JSON request body: `application/json`, at most [`MAX_BODY_BYTES`], and (with
/// `#[serde(deny_unknown_fields)]` on the target type) no unknown fields. Every rejection
/// is a 4xx problem+json that never echoes the submitted values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = is_json(&req);
        let bytes = read_body(req, state).await?;
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(Json)
    }
}

/// A raw request body (a webhook's, whose signature covers its exact bytes), at most
/// [`MAX_BODY_BYTES`]; a larger one is 413 problem+json like any other route's.
#[derive(Debug, Clone, Default)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_body(req, state).await.map(RawBody)
    }
}

/// Like [`Json`], but an empty body stands for `T::default()` (routes whose body is optional).
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = is_json(&req);
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Reads the body within the size limit.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| match rejection.status() {
            http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::bad_request("unreadable_body", "The request body could not be read."),
        })
}

/// Query parameters; unknown or malformed ones are a 400 problem, never a plain-text reply.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query).map(Query).map_err(|e| {
            // The message names the parameter, never its value.
            let msg = e.to_string();
            let detail = match msg.split('`').nth(1) {
                Some(name) if msg.starts_with("unknown field") => {
                    format!("Unknown query parameter `{name}`.")
                }
                _ => "A query parameter is malformed.".to_string(),
            };
            ApiError::bad_request("invalid_query", detail)
        })
    }
}

/// Parses a JSON body, mapping errors to problems that describe position and kind only. The
/// body is read strictly ([`strict`]): a struct only from an object.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
                "malformed_json",
                format!(
                    "The body is not valid JSON (line {}, column {}).",
                    e.line(),
                    e.column()
                ),
            ),
            Category::Data => {
                ApiError::unprocessable("invalid_body", format!("{}.", describe_data_error(&e)))
            }
        }
    })?;
    T::deserialize(strict::Strict(&value)).map_err(|e| {
        ApiError::unprocessable("invalid_body", format!("{}.", describe_data_error(&e)))
    })
}

/// Reads an already parsed JSON value as `T`, with the same value-free problems.
pub fn from_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    T::deserialize(strict::Strict(&v)).map_err(|e| {
        ApiError::unprocessable("invalid_body", format!("{}.", describe_data_error(&e)))
    })
}

/// serde's messages quote the offending value, which may be PHI; keep only the field name.
fn describe_data_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(name) = rest.split('`').next() {
            return format!("Unknown field `{name}`");
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some(name) = rest.split('`').next() {
            return format!("Missing field `{name}`");
        }
    }
    if msg.starts_with("invalid type") {
        return "A field has the wrong type".to_string();
    }
    "The body does not match the expected shape".to_string()
}

/// A JSON response with a status.
pub fn json_response<T: serde::Serialize>(status: http::StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = (status, Body::from(body)).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// 200 with a JSON body.
pub fn present<T: serde::Serialize>(value: &T) -> Response {
    json_response(http::StatusCode::OK, value)
}

/// 201 with a JSON body and, when given, the new resource's `Location`.
pub fn created<T: serde::Serialize>(value: &T, location: Option<&str>) -> Response {
    let mut resp = json_response(http::StatusCode::CREATED, value);
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

/// 200 with one page of a list: `{"items": [...], "nextCursor": ...}` (`null` on the last page).
pub fn page<T: serde::Serialize>(items: &[T], next_cursor: Option<String>) -> Response {
    present(&serde_json::json!({ "items": items, "nextCursor": next_cursor }))
}

/// A `PATCH` field's three states for serde's `deserialize_with`: absent stays as it is
/// (`None`, with `#[serde(default)]`), `null` clears (`Some(None)`), a value sets it.
pub fn patch_field<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// Marks a response as never to be stored by a cache (tokens, PHI).
pub fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Patch {
        #[serde(default, deserialize_with = "patch_field")]
        address: Option<Option<String>>,
    }

    #[test]
    fn a_patch_field_is_absent_cleared_or_set() {
        for (body, expected) in [
            ("{}", None),
            (r#"{"address":null}"#, Some(None)),
            (
                r#"{"address":"Main St 1"}"#,
                Some(Some("Main St 1".to_string())),
            ),
        ] {
            let patch: Patch = serde_json::from_str(body).unwrap();
            assert_eq!(patch.address, expected, "{body}");
        }
    }

    use super::*;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body1 {
        name: String,
        age: u32,
    }

    async fn echo(Json(b): Json<Body1>) -> String {
        b.age.to_string()
    }

    fn app() -> Router {
        platform(Router::new().route("/x", post(echo)))
    }

    async fn send(ct: &str, body: Vec<u8>) -> (u16, serde_json::Value, Response) {
        let req = Request::post("/x")
            .header(header::CONTENT_TYPE, ct)
            .header(CORRELATION_HEADER, "abc-123")
            .body(Body::from(body))
            .unwrap();
        let resp = app().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json, Response::from_parts(parts, Body::empty()))
    }

    #[tokio::test]
    async fn rejections_are_problems_never_500() {
        let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
            (
                "application/json",
                b"{not json".to_vec(),
                400,
                "malformed_json",
            ),
            (
                "application/json",
                br#"{"name":"secret-canary","age":"x"}"#.to_vec(),
                422,
                "invalid_body",
            ),
            (
                "application/json",
                br#"{"name":"a","age":1,"role":"ADMIN"}"#.to_vec(),
                422,
                "invalid_body",
            ),
            ("text/plain", b"{}".to_vec(), 415, "unsupported_media_type"),
            (
                "application/json",
                vec![b' '; 1024 * 1024],
                413,
                "payload_too_large",
            ),
        ];
        for (ct, body, status, code) in cases {
            let (got, json, resp) = send(ct, body).await;
            assert_eq!(got, status, "{code}");
            assert_eq!(json["code"], code);
            assert_eq!(json["correlationId"], "abc-123");
            assert!(!json.to_string().contains("secret-canary"));
            assert_eq!(resp.headers()[CORRELATION_HEADER], "abc-123");
        }
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_problems() {
        let resp = app()
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let resp = app()
            .oneshot(Request::get("/x").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 405);
        assert!(resp.headers().contains_key(CORRELATION_HEADER));
    }

    #[test]
    fn hostile_correlation_ids_are_replaced() {
        assert!(acceptable_correlation_id(&HeaderValue::from_static("ok-1")).is_some());
        assert!(acceptable_correlation_id(&HeaderValue::from_static("a b")).is_none());
        let long = "a".repeat(129);
        assert!(acceptable_correlation_id(&HeaderValue::from_str(&long).unwrap()).is_none());
    }
}

/// The network address a request came from, for throttles: API Gateway's `sourceIp` on Lambda
/// (set by the gateway, not by the client), the peer address in the local gateway, otherwise
/// `unknown`. Headers such as `X-Forwarded-For` are never trusted: a client could set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddress(pub String);

impl SourceAddress {
    pub fn of(parts: &http::request::Parts) -> Self {
        if let Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) =
            parts
                .extensions
                .get::<lambda_http::request::RequestContext>()
        {
            if let Some(ip) = &c.http.source_ip {
                return Self(ip.clone());
            }
        }
        if let Some(axum::extract::ConnectInfo(addr)) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        {
            return Self(addr.ip().to_string());
        }
        Self("unknown".into())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for SourceAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}
