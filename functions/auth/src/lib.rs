//! The `auth` function: registration, login (with its second step), sessions, refresh-token
//! rotation, passwords, authenticators, proof of address and consent to memberships,
//! plus the platform routes (health, readiness, JWKS). `router` serves the full public paths,
//! on Lambda and unchanged inside the local gateway.

pub mod consent;
pub mod mfa;
pub mod passwords;
mod routes;
pub mod rules;
pub mod service;
pub mod sessions;
pub mod store;
pub mod totp;

pub use service::Auth;

use axum::Router;
use shared::identity::{AccountMail, LinksConfig};

/// Every route this function serves: (method, path). Checked against the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/v1/health/ready"),
    ("GET", "/.well-known/jwks.json"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/auth/sessions"),
    ("DELETE", "/v1/auth/sessions/{sessionId}"),
    ("POST", "/v1/auth/password/change"),
    ("POST", "/v1/auth/password/forgot"),
    ("POST", "/v1/auth/password/reset"),
    ("POST", "/v1/auth/email/verify"),
    ("POST", "/v1/auth/email/verify/resend"),
    ("POST", "/v1/auth/memberships/accept"),
    ("POST", "/v1/users/me/memberships/{clinicId}/accept"),
    ("POST", "/v1/auth/mfa/totp"),
    ("DELETE", "/v1/auth/mfa/totp"),
    ("POST", "/v1/auth/mfa/totp/confirm"),
    ("POST", "/v1/auth/login/mfa"),
];

/// Handlers' state: the platform and the account mail (links and notices).
pub type AppState = shared::app::AppState<AccountMail>;

/// Settings of this function beyond the platform's: where password-reset jobs go and the web
/// app that shows the reset-password page.
pub type AuthConfig = LinksConfig;

pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

/// The bare routes, for a gateway that merges several functions under one set of layers.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(routes::platform::router())
        .merge(routes::registration::router(&state))
        .merge(routes::sessions::router())
        .merge(routes::passwords::router())
        .merge(routes::consent::router())
        .merge(routes::mfa::router())
        .with_state(state)
}

/// This context's part of the OpenAPI document (see `shared::openapi`).
pub fn openapi() -> serde_json::Value {
    shared::openapi::part(include_str!("../openapi.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_part_describes_every_auth_route() {
        // The two-way check over every function's routes lives in the docs function's tests.
        let part = openapi();
        for (method, path) in ROUTES {
            assert!(
                part["paths"][path][method.to_lowercase()].is_object(),
                "{method} {path}"
            );
        }
    }
}
