//! The payment-provider port and its two adapters.
//!
//! Payments do not know how money moves. They ask the provider that accepts the method to
//! start a payment, and a provider either settles it at once (the cash desk) or leaves it
//! PENDING under a reference. In the second case the provider later reports the outcome through
//! its signed webhook at `POST /v1/webhooks/payments/{provider}`.
//!
//! Adding a provider means one more [`PaymentProvider`] in [`Providers::new`]: the routes,
//! the reference index and the completion transaction stay as they are.

use std::{future::Future, pin::Pin, sync::Arc};

use http::HeaderMap;
use jiff::Timestamp;
use serde::Deserialize;
use shared::{ApiError, http::parse_json, ids::PaymentId};

use crate::rules::Method;

/// Webhooks signed more than this many seconds before or after now are refused (replay window).
pub const WEBHOOK_TOLERANCE_SECONDS: i64 = 300;

/// What a provider needs to start a payment.
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    pub payment: &'a PaymentId,
    pub method: Method,
    pub amount: i64,
    pub currency: &'a str,
}

/// How a started payment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The money was taken: the payment completes now.
    Settled,
    /// The provider will report the outcome for this reference through its webhook.
    Pending { reference: String },
}

/// What a provider's verified notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub succeeded: bool,
    pub reference: String,
    pub amount: i64,
    pub currency: String,
}

pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// The port: one implementation per way of taking money.
pub trait PaymentProvider: Send + Sync {
    /// The name in webhook paths and on payment records.
    fn name(&self) -> &'static str;
    /// Whether payments by `method` go through this provider.
    fn accepts(&self, method: Method) -> bool;
    /// Starts a payment. An adapter for a hosted provider calls its API here.
    fn start<'a>(&'a self, charge: Charge<'a>) -> Pending<'a, Started>;
    /// Verifies a webhook delivery over its raw body and reads it. Providers that take no
    /// webhooks answer 404, as for an unknown provider.
    fn notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Notification, ApiError>;
}

/// Payments recorded by staff at the clinic's desk: settled when recorded, no webhooks.
pub struct CashDesk;

impl PaymentProvider for CashDesk {
    fn name(&self) -> &'static str {
        "cash-desk"
    }
    fn accepts(&self, method: Method) -> bool {
        !method.via_provider()
    }
    fn start<'a>(&'a self, _: Charge<'a>) -> Pending<'a, Started> {
        Box::pin(async { Ok(Started::Settled) })
    }
    fn notification(
        &self,
        _: &HeaderMap,
        _: &[u8],
        _: Timestamp,
    ) -> Result<Notification, ApiError> {
        Err(ApiError::NotFound)
    }
}

/// A card-like gateway that reports outcomes through an HMAC-signed webhook:
/// `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
pub struct SignedWebhookGateway {
    secret: zeroize::Zeroizing<Vec<u8>>,
}

impl SignedWebhookGateway {
    pub const NAME: &'static str = "gateway";

    /// A gateway verifying webhooks with `secret` (at least 16 characters).
    pub fn new(secret: &str) -> Result<Self, ApiError> {
        if secret.len() < 16 {
            return Err(ApiError::internal(
                "the payment webhook secret must have at least 16 characters",
            ));
        }
        Ok(Self {
            secret: zeroize::Zeroizing::new(secret.as_bytes().to_vec()),
        })
    }
}

/// The gateway's notification body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GatewayEvent {
    /// `payment.succeeded` or `payment.failed`.
    #[serde(rename = "type")]
    kind: String,
    /// The reference the payment was started with.
    reference: String,
    amount: i64,
    currency: String,
}

impl PaymentProvider for SignedWebhookGateway {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn accepts(&self, method: Method) -> bool {
        method.via_provider()
    }
    fn start<'a>(&'a self, charge: Charge<'a>) -> Pending<'a, Started> {
        // The client completes checkout with the gateway under this reference; the gateway
        // quotes it back in its webhook.
        Box::pin(async move {
            Ok(Started::Pending {
                reference: format!("gw_{}", charge.payment),
            })
        })
    }
    fn notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Notification, ApiError> {
        verify_signature(
            &self.secret,
            headers.get("x-signature").and_then(|v| v.to_str().ok()),
            body,
            now,
        )?;
        let e: GatewayEvent = parse_json(body)?;
        let succeeded = match e.kind.as_str() {
            "payment.succeeded" => true,
            "payment.failed" => false,
            _ => {
                return Err(ApiError::unprocessable(
                    "unknown_event",
                    "Unknown webhook event type.",
                ));
            }
        };
        Ok(Notification {
            succeeded,
            reference: e.reference,
            amount: e.amount,
            currency: e.currency,
        })
    }
}

/// The providers this deployment takes payments through.
#[derive(Clone)]
pub struct Providers(Vec<Arc<dyn PaymentProvider>>);

impl Providers {
    /// The cash desk and the signed-webhook gateway verifying with `webhook_secret`.
    pub fn new(webhook_secret: &str) -> Result<Self, ApiError> {
        Ok(Self(vec![
            Arc::new(CashDesk),
            Arc::new(SignedWebhookGateway::new(webhook_secret)?),
        ]))
    }

    /// The provider that takes `method`.
    pub fn for_method(&self, method: Method) -> Option<&dyn PaymentProvider> {
        self.0.iter().find(|p| p.accepts(method)).map(AsRef::as_ref)
    }

    /// The provider called `name`.
    pub fn named(&self, name: &str) -> Option<&dyn PaymentProvider> {
        self.0.iter().find(|p| p.name() == name).map(AsRef::as_ref)
    }
}

/// Verifies `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` with `secret`,
/// within the replay window around `now`.
pub fn verify_signature(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: Timestamp,
) -> Result<(), ApiError> {
    let refused =
        || ApiError::unauthorized("invalid_signature", "The webhook signature is not valid.");
    let header = header.ok_or_else(refused)?;
    let mut t = None;
    let mut sig = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sig = Some(v.to_string()),
            _ => {}
        }
    }
    let (t, sig) = t.zip(sig).ok_or_else(refused)?;
    if (now.as_second() - t).abs() > WEBHOOK_TOLERANCE_SECONDS {
        return Err(ApiError::unauthorized(
            "stale_signature",
            "The webhook timestamp is outside the replay window.",
        ));
    }
    let expected = hex(&shared::crypto::hmac_sha256(
        secret,
        &[t.to_string().as_bytes(), b".", body],
    ));
    if shared::crypto::constant_time_eq(expected.as_bytes(), sig.as_bytes()) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Signs `body` at `t` the way the gateway does (for tests and the local walk-through).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mac = shared::crypto::hmac_sha256(secret, &[t.to_string().as_bytes(), b".", body]);
    format!("t={t},v1={}", hex(&mac))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_fresh_and_exact() {
        let secret = b"whsec-test";
        let now: Timestamp = "2026-11-24T10:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let body = br#"{"type":"payment.succeeded"}"#;
        let h = sign(secret, now.as_second(), body);
        assert!(verify_signature(secret, Some(&h), body, now).is_ok());
        // Another body, another key, no header, garbage, and outside the window all fail.
        assert!(verify_signature(secret, Some(&h), br#"{"type":"payment.failed"}"#, now).is_err());
        assert!(verify_signature(b"other", Some(&h), body, now).is_err());
        assert!(verify_signature(secret, None, body, now).is_err());
        assert!(verify_signature(secret, Some("t=1,v1=zz"), body, now).is_err());
        let old = sign(
            secret,
            now.as_second() - WEBHOOK_TOLERANCE_SECONDS - 1,
            body,
        );
        assert!(verify_signature(secret, Some(&old), body, now).is_err());
        let at_edge = sign(secret, now.as_second() - WEBHOOK_TOLERANCE_SECONDS, body);
        assert!(verify_signature(secret, Some(&at_edge), body, now).is_ok());
    }

    #[test]
    fn every_method_has_exactly_one_provider_and_the_desk_takes_no_webhooks() {
        let providers = Providers::new("a-secret-of-16-chars").unwrap_or_else(|_| unreachable!());
        for m in Method::ALL {
            let takers = providers.0.iter().filter(|p| p.accepts(m)).count();
            assert_eq!(takers, 1, "{m:?}");
        }
        assert_eq!(
            providers.for_method(Method::Cash).map(|p| p.name()),
            Some("cash-desk")
        );
        assert_eq!(
            providers.for_method(Method::Upi).map(|p| p.name()),
            Some(SignedWebhookGateway::NAME)
        );
        let desk = providers
            .named("cash-desk")
            .unwrap_or_else(|| unreachable!());
        let r = desk.notification(&HeaderMap::new(), b"{}", Timestamp::UNIX_EPOCH);
        assert!(matches!(r, Err(ApiError::NotFound)));
        assert!(SignedWebhookGateway::new("short").is_err());
    }

    #[test]
    fn the_gateway_reads_only_signed_known_events() {
        let secret = "a-secret-of-16-chars";
        let gw = SignedWebhookGateway::new(secret).unwrap_or_else(|_| unreachable!());
        let now = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let deliver = |body: &[u8]| {
            let mut h = HeaderMap::new();
            let sig = sign(secret.as_bytes(), now.as_second(), body);
            h.insert(
                "x-signature",
                sig.parse().unwrap_or_else(|_| unreachable!()),
            );
            gw.notification(&h, body, now)
        };
        let ok =
            deliver(br#"{"type":"payment.failed","reference":"gw_1","amount":5,"currency":"EUR"}"#);
        assert_eq!(
            ok.ok(),
            Some(Notification {
                succeeded: false,
                reference: "gw_1".into(),
                amount: 5,
                currency: "EUR".into()
            })
        );
        let unknown = deliver(
            br#"{"type":"payment.disputed","reference":"gw_1","amount":5,"currency":"EUR"}"#,
        );
        assert_eq!(unknown.err().map(|e| e.code()), Some("unknown_event"));
        let unsigned = gw.notification(&HeaderMap::new(), b"{}", now);
        assert_eq!(unsigned.err().map(|e| e.code()), Some("invalid_signature"));
    }
}
