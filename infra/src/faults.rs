//! A fault-injection proxy in front of the emulator. Clients pointed at it reach the emulator
//! as before, except for the calls a test chose to fail: matched by the operation's
//! `X-Amz-Target` (for example `DynamoDB_20120810.TransactWriteItems`, `TrentService.Decrypt`,
//! `AmazonSQS.SendMessage`, `AWSEvents.PutEvents`, or a prefix such as `DynamoDB_20120810.`),
//! each answered with the error AWS would send, a delay past the client's timeouts, or a
//! connection that breaks mid-answer.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    response::Response,
};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::BoxError;

/// What a matched call gets instead of the emulator's answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An error answer of the JSON protocols: `status` and the error's `type` (for example
    /// 400 `ProvisionedThroughputExceededException`, 400 `ThrottlingException`, 500
    /// `KMSInternalException`, 500 `InternalError`).
    Error { status: u16, error_type: String },
    /// `TransactionCanceledException` whose every reason is `ThrottlingError`.
    TransactionThrottled { items: usize },
    /// The answer comes only after `Duration` (past the client's attempt timeout).
    Delay(Duration),
    /// The status line and headers arrive, then the connection breaks.
    Reset,
}

impl Fault {
    pub fn error(status: u16, error_type: &str) -> Self {
        Fault::Error {
            status,
            error_type: error_type.to_string(),
        }
    }
}

#[derive(Debug)]
struct Rule {
    target: String,
    fault: Fault,
    /// How many more calls it fails; `None` until cleared.
    remaining: Option<u32>,
}

#[derive(Default)]
struct Rules {
    rules: Vec<Rule>,
    /// Calls failed so far, by operation.
    injected: BTreeMap<String, u32>,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    rules: Arc<Mutex<Rules>>,
}

/// The running proxy: its URL, and the faults it injects.
pub struct FaultProxy {
    pub url: String,
    rules: Arc<Mutex<Rules>>,
    _server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to the emulator at `upstream` on a free loopback port.
    pub async fn start(upstream: &str) -> Result<Self, BoxError> {
        let rules = Arc::new(Mutex::new(Rules::default()));
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            rules: rules.clone(),
        };
        let app = Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fault proxy stopped");
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            rules,
            _server: server,
        })
    }

    /// Fails every call whose target starts with `target` with `fault`, `times` times (or
    /// until [`FaultProxy::clear`] when `None`).
    pub fn inject(&self, target: &str, fault: Fault, times: Option<u32>) {
        lock(&self.rules).rules.push(Rule {
            target: target.to_string(),
            fault,
            remaining: times,
        });
    }

    /// Lets every call through again.
    pub fn clear(&self) {
        lock(&self.rules).rules.clear();
    }

    /// How many calls of operations starting with `target` were failed so far.
    pub fn injected(&self, target: &str) -> u32 {
        lock(&self.rules)
            .injected
            .iter()
            .filter(|(k, _)| k.starts_with(target))
            .map(|(_, n)| n)
            .sum()
    }
}

fn lock(m: &Mutex<Rules>) -> std::sync::MutexGuard<'_, Rules> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The fault for a call to `target`, if a rule takes it (counting it down).
fn take(rules: &Mutex<Rules>, target: &str) -> Option<Fault> {
    let mut r = lock(rules);
    let i = r
        .rules
        .iter()
        .position(|rule| target.starts_with(&rule.target) && rule.remaining != Some(0))?;
    let rule = &mut r.rules[i];
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
    }
    let fault = rule.fault.clone();
    *r.injected.entry(target.to_string()).or_default() += 1;
    Some(fault)
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let fault = take(&p.rules, &target);
    match fault {
        Some(Fault::Error { status, error_type }) => {
            return error_answer(status, &error_type, serde_json::json!({}));
        }
        Some(Fault::TransactionThrottled { items }) => {
            let reasons: Vec<_> = (0..items)
                .map(|_| serde_json::json!({"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity."}))
                .collect();
            return error_answer(
                400,
                "TransactionCanceledException",
                serde_json::json!({ "CancellationReasons": reasons }),
            );
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Reset) | None => {}
    }
    let reset = matches!(fault, Some(Fault::Reset));
    match pass(&p, req).await {
        Ok(resp) if reset => {
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, Body::new(Broken))
        }
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "fault proxy could not reach the emulator");
            error_answer(502, "ProxyError", serde_json::json!({}))
        }
    }
}

/// Sends the call on to the emulator, unchanged.
async fn pass(p: &Proxy, req: Request) -> Result<Response, BoxError> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let mut out = http::Request::builder()
        .method(parts.method)
        .uri(format!("{}{path}", p.upstream));
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    let resp = p.client.request(out.body(Full::new(bytes))?).await?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// An AWS JSON-protocol error answer.
fn error_answer(status: u16, error_type: &str, extra: serde_json::Value) -> Response {
    let mut body = serde_json::json!({
        "__type": error_type,
        "message": format!("{error_type} (injected)"),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    resp.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_str(error_type).unwrap_or(HeaderValue::from_static("Error")),
    );
    resp
}

/// A body that breaks before its first byte, as a reset connection does.
struct Broken;

impl hyper::body::Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset (injected)",
        ))))
    }
}
