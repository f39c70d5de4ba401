//! The one error type at the HTTP boundary, rendered as RFC 9457 problem+json.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use std::borrow::Cow;

use crate::correlation::current_correlation_id;

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's JSON name, e.g. `email`; a nested field is dotted, e.g. `admin.email`, and
    /// an array element indexed, e.g. `weekly.MONDAY[0].start`; for a query parameter, its
    /// name.
    #[schema(value_type = String, examples("password"))]
    pub field: Cow<'static, str>,
    /// Stable code for the problem with this field: `invalid_id`, `unknown_clinic`,
    /// `invalid_email`, `too_short`, `too_long`, `too_common`, `contains_email`,
    /// `invalid_length`, `invalid_phone`, `invalid_date`, `wrong_password`, `required`,
    /// `invalid_value`, `invalid_address`, `invalid_contact`, `invalid_time_zone`,
    /// `invalid_currency`, `invalid_locale`, `invalid_role`, `invalid_status`,
    /// `unknown_location`, `out_of_range`, `unknown_doctor`, `unknown_patient`, `invalid_kind`,
    /// `invalid_timestamp`, `conflicting`, `end_before_start`, `not_on_grid`, `in_the_past`,
    /// `outside_hours`, `invalid_time`, `invalid_weekday`, `overlapping_shifts`,
    /// `duplicate_date`, `too_many`, `empty_update`, `startsAt_or_date`, `invalid_amount`,
    /// `invalid_interval`, `invalid_type`, `incomplete`, `unknown_field`, `unknown_plan`,
    /// `unknown_subscription`, `unknown_invoice`, `invalid_method`, `desk_only`, `exceeds_due`,
    /// `amount_mismatch`, `invalid_quantity`, `exceeds_amount`, `too_large`, `exceeds_paid`,
    /// `invalid_query`.
    #[schema(value_type = String, examples("too_short"))]
    pub code: &'static str,
    /// Human-readable; never repeats the submitted value.
    #[schema(value_type = String, examples("Use at least 10 characters."))]
    pub message: Cow<'static, str>,
}

impl FieldError {
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// 401 codes that mean "the bearer token you sent was refused".
const TOKEN_ERRORS: &[&str] = &["invalid_token", "token_expired", "session_revoked"];

/// A storage condition whose failure means something to the caller: its 409 code and message,
/// and whether running the operation again (reading afresh) may succeed. Declared as constants
/// beside the operations that guard with them, and matched by value, never by code string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    pub code: &'static str,
    pub detail: &'static str,
    /// Another writer took what was read (a number, a version): read again and retry.
    pub retry: bool,
    /// The condition checks what a request field names (a plan that must exist): its failure
    /// is a 422 on that field rather than a 409.
    pub field: Option<&'static str>,
}

impl Guard {
    /// A guard whose failure is the answer.
    pub const fn new(code: &'static str, detail: &'static str) -> Self {
        Self {
            code,
            detail,
            retry: false,
            field: None,
        }
    }

    /// A guard on what request field `field` names: its failure is a 422 on that field.
    pub const fn on_field(field: &'static str, code: &'static str, detail: &'static str) -> Self {
        Self {
            code,
            detail,
            retry: false,
            field: Some(field),
        }
    }

    /// A guard whose failure [`crate::db::retrying`] runs the operation again for.
    pub const fn retryable(code: &'static str, detail: &'static str) -> Self {
        Self {
            code,
            detail,
            retry: true,
            field: None,
        }
    }
}

impl From<Guard> for ApiError {
    fn from(g: Guard) -> Self {
        match g.field {
            Some(field) => ApiError::Validation(vec![FieldError::new(field, g.code, g.detail)]),
            None => ApiError::Guarded(g),
        }
    }
}

/// Every way a request can fail. Each variant's doc says the status it becomes.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be understood (malformed JSON, bad header, bad cursor).
    #[error("bad request: {code}")]
    BadRequest {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    /// 422: the body parsed but fields are invalid; lists every field at once.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422: the request is well-formed but cannot be processed as asked.
    #[error("unprocessable: {code}")]
    Unprocessable {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    /// 401: missing, invalid or expired credentials. Carries a `WWW-Authenticate` header.
    #[error("unauthorized: {code}")]
    Unauthorized {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    /// 403: authenticated, but the policy forbids this action.
    #[error("forbidden")]
    Forbidden,
    /// 403 for a reason the caller can act on (verify the address first, say).
    #[error("refused: {code}")]
    Refused {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    /// 404: no such resource, or one the caller may not know exists (identical answers).
    #[error("not found")]
    NotFound,
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with current state (duplicate, version mismatch, race lost).
    #[error("conflict: {code}")]
    Conflict {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    /// 409: a guarded storage condition failed (a race lost, a version moved, a unit used up).
    #[error("conflict: {}", .0.code)]
    Guarded(Guard),
    /// 409: a status change the record's state machine does not allow from its current status.
    #[error("illegal transition: {action} from {current}")]
    IllegalTransition {
        current: &'static str,
        action: &'static str,
        /// The status the action leads to, where it names one.
        requested: Option<&'static str>,
    },
    /// 413: the body exceeds the size limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 429: too many requests of this kind from this caller, source or account for now.
    #[error("too many requests: {code}")]
    TooManyRequests {
        code: &'static str,
        detail: Cow<'static, str>,
        retry_after_seconds: i64,
    },
    /// 503: something this request depends on is down for now (the audit trail, say); nothing
    /// was returned or changed. Carries `Retry-After`.
    #[error("unavailable: {code}")]
    Unavailable {
        code: &'static str,
        detail: Cow<'static, str>,
        retry_after_seconds: i64,
    },
    /// 500: a fault of ours. The cause is logged with its chain, never sent to the client.
    #[error("internal error")]
    Internal(#[source] Source),
}

impl ApiError {
    pub fn internal(e: impl Into<Source>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn bad_request(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Unauthorized {
            code,
            detail: detail.into(),
        }
    }

    pub fn forbidden(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Refused {
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Conflict {
            code,
            detail: detail.into(),
        }
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Unprocessable {
            code,
            detail: detail.into(),
        }
    }

    pub fn invalid_field(field: &'static str, code: &'static str, message: &'static str) -> Self {
        ApiError::Validation(vec![FieldError::new(field, code, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) | ApiError::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::Refused { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. }
            | ApiError::Guarded(_)
            | ApiError::IllegalTransition { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Refused { code, .. }
            | ApiError::TooManyRequests { code, .. }
            | ApiError::Unavailable { code, .. } => code,
            ApiError::Guarded(g) => g.code,
            ApiError::Validation(_) => "validation_failed",
            ApiError::IllegalTransition { .. } => "illegal_transition",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn detail(&self) -> Cow<'static, str> {
        match self {
            ApiError::BadRequest { detail, .. }
            | ApiError::Unprocessable { detail, .. }
            | ApiError::Unauthorized { detail, .. }
            | ApiError::Conflict { detail, .. }
            | ApiError::Refused { detail, .. }
            | ApiError::TooManyRequests { detail, .. }
            | ApiError::Unavailable { detail, .. } => detail.clone(),
            ApiError::Guarded(g) => g.detail.into(),
            ApiError::Validation(_) => "One or more fields are invalid.".into(),
            ApiError::IllegalTransition {
                current, action, ..
            } => format!("Cannot {action} when the status is {current}.").into(),
            ApiError::Forbidden => "You are not allowed to do this.".into(),
            ApiError::NotFound => "The resource does not exist.".into(),
            ApiError::MethodNotAllowed => "This method is not allowed on this path.".into(),
            ApiError::PayloadTooLarge => "The request body is too large.".into(),
            ApiError::UnsupportedMediaType => "The request body must be application/json.".into(),
            ApiError::Internal(_) => "An unexpected error occurred.".into(),
        }
    }
}

/// An RFC 9457 problem document, sent with `Content-Type: application/problem+json` for every
/// error. Clients should switch on `code`, which is stable; `detail` is for humans and never
/// echoes submitted values.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// `/problems/` followed by `code` with underscores turned into hyphens.
    #[serde(rename = "type")]
    #[schema(
        format = "uri-reference",
        pattern = "^/problems/[a-z0-9-]+$",
        examples("/problems/validation-failed")
    )]
    pub kind: String,
    /// The HTTP reason phrase of `status`.
    #[schema(examples("Unprocessable Entity"))]
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// A human-readable explanation.
    #[schema(value_type = String)]
    pub detail: Cow<'static, str>,
    /// Stable machine-readable error code. Platform codes: `malformed_json`, `unreadable_body`,
    /// `invalid_body`, `validation_failed`, `payload_too_large`, `unsupported_media_type`,
    /// `not_found`, `method_not_allowed`, `forbidden`, `internal_error`,
    /// `invalid_idempotency_key`, `idempotency_key_reused`, `idempotency_in_progress`,
    /// `invalid_query`, `missing_token`, `invalid_token`, `token_expired`, `session_revoked`.
    /// Auth codes: `email_taken`, `concurrent_request`, `invalid_credentials`,
    /// `too_many_requests`, `invalid_refresh_token`, `refresh_token_reused`,
    /// `refresh_token_expired`, `refresh_token_superseded`, `invalid_reset_token`,
    /// `invalid_verification_token`, `already_verified`, `invalid_invitation`,
    /// `email_unverified`, `registration_closed`, `concurrent_update`. Users and clinics codes:
    /// `empty_update`, `empty_search`, `version_conflict`, `already_member`, `location_in_use`,
    /// `invalid_cursor`. Appointments codes: `illegal_transition` (with `currentStatus`,
    /// `requestedStatus` and `action`), `slot_taken`, `slot_not_held`, `reschedule_limit`,
    /// `already_started`, `not_due`, `not_today`, `not_waiting`, `queue_changed`,
    /// `no_free_slot`, `too_many_pending`, `slot_length_only`, `too_far_ahead`,
    /// `billed_terms_fixed`. Billing codes (besides `illegal_transition`, `not_due`,
    /// `version_conflict` and `concurrent_request`): `plan_in_use`, `already_subscribed`,
    /// `invoice_number_taken`, `invoice_partly_paid`, `invoice_not_payable`, `not_refundable`,
    /// `quota_exhausted` (booking under a subscription), and for the payment provider's webhook
    /// `invalid_signature`, `stale_signature`, `amount_mismatch`, `unknown_event`.
    #[schema(value_type = String, pattern = "^[a-z0-9_]+$", examples("validation_failed"))]
    pub code: &'static str,
    /// The request's correlation id (the same value as the `x-correlation-id` response header).
    pub correlation_id: String,
    /// Present only when `code` is `validation_failed`: every failing field at once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false, min_items = 1)]
    pub errors: Vec<FieldError>,
    /// Present only when `code` is `illegal_transition`: the appointment's, subscription's or
    /// invoice's status, from which the action is not allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, examples("COMPLETED"))]
    pub current_status: Option<&'static str>,
    /// Present only when `code` is `illegal_transition` and the action leads to a status
    /// (absent for `reschedule`, `renew` and the invoice actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, examples("CANCELLED"))]
    pub requested_status: Option<&'static str>,
    /// Present only when `code` is `illegal_transition`: the refused action, as in the route
    /// (appointments: `confirm`, `reschedule`, `cancel`, `check-in`, `start`, `complete`,
    /// `no-show`; subscriptions: `cancel`, `renew`; invoices: `finalize`, `void`,
    /// `mark-uncollectible`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, examples("cancel"))]
    pub action: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(source) = &self {
            let mut chain = source.to_string();
            let mut cur = source.source();
            while let Some(s) = cur {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                cur = s.source();
            }
            tracing::error!(error.chain = %chain, "internal error");
        }
        if matches!(self, ApiError::Forbidden) {
            // A refused action is a security event (the caller was authenticated).
            tracing::info!(log_type = "security", "action forbidden");
        }
        let problem = Problem {
            kind: format!("/problems/{}", self.code().replace('_', "-")),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            correlation_id: current_correlation_id(),
            errors: match self {
                ApiError::Validation(ref errs) => errs.clone(),
                _ => Vec::new(),
            },
            current_status: None,
            requested_status: None,
            action: None,
        };
        let problem = match self {
            ApiError::IllegalTransition {
                current,
                action,
                requested,
            } => Problem {
                current_status: Some(current),
                requested_status: requested,
                action: Some(action),
                ..problem
            },
            _ => problem,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::Unauthorized { code, .. } => {
                // RFC 6750: name the error only when a presented bearer token was refused.
                let challenge = if TOKEN_ERRORS.contains(code) {
                    "Bearer realm=\"clinic-api\", error=\"invalid_token\""
                } else {
                    "Bearer realm=\"clinic-api\""
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            ApiError::TooManyRequests {
                retry_after_seconds,
                ..
            }
            | ApiError::Unavailable {
                retry_after_seconds,
                ..
            } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_seconds.max(&0).to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let resp = e.into_response();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap(), ct)
    }

    #[tokio::test]
    async fn validation_errors_list_every_field() {
        let (status, body, ct) = body_of(ApiError::Validation(vec![
            FieldError::new("email", "invalid_email", "not an email"),
            FieldError::new("password", "too_short", "at least 10"),
        ]))
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ct.as_deref(), Some("application/problem+json"));
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(body["errors"].as_array().unwrap().len(), 2);
        assert_eq!(body["status"], 422);
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let (status, body, _) = body_of(ApiError::internal("db password is hunter2")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("hunter2"));
        assert_eq!(body["code"], "internal_error");
    }
}
