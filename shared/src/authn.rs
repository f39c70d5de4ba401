//! Authentication of API callers: bearer access token verified offline, then the session
//! checked live (cached briefly) so a revoked session stops working within a minute.

use axum::extract::FromRequestParts;
use http::{header, request::Parts};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::clock::Clock;
use crate::db::{Table, get_opt_s};
use crate::error::ApiError;
use crate::ids::{SessionId, UserId};
use crate::jwt::{KeySet, TokenError};
use crate::keys;

/// Who is calling: proven by a valid token for a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub session_id: SessionId,
}

pub struct Authenticator {
    pub keys: Arc<KeySet>,
    table: Table,
    clock: Arc<dyn Clock>,
    cache_for_seconds: i64,
    /// Session id → when (epoch seconds, from the injectable clock) it was last seen live.
    live: Mutex<HashMap<SessionId, i64>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

const MAX_CACHED_SESSIONS: usize = 10_000;

impl Authenticator {
    pub fn new(
        keys: Arc<KeySet>,
        table: Table,
        clock: Arc<dyn Clock>,
        cache_for: Duration,
    ) -> Self {
        Self {
            keys,
            table,
            clock,
            cache_for_seconds: i64::try_from(cache_for.as_secs()).unwrap_or(60),
            live: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, i64>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops a session from this container's cache (called when this container revokes it).
    pub fn forget(&self, session: &SessionId) {
        self.lock().remove(session);
    }

    pub async fn authenticate(&self, parts: &Parts) -> Result<Caller, ApiError> {
        let token = bearer(parts)?;
        let now = self.clock.epoch();
        let claims = self.keys.verify(token, now).map_err(token_problem)?;
        let (Some(user_id), Some(session_id)) =
            (UserId::parse(&claims.sub), SessionId::parse(&claims.sid))
        else {
            return Err(token_problem(TokenError::Subject));
        };
        let cached = self
            .lock()
            .get(&session_id)
            .is_some_and(|at| now - *at < self.cache_for_seconds);
        if !cached {
            let item = self
                .table
                .get(keys::user_pk(&user_id), keys::session_sk(&session_id))
                .await?;
            let active = item
                .as_ref()
                .is_some_and(|i| get_opt_s(i, "status") == Some("ACTIVE"));
            if !active {
                self.forget(&session_id);
                return Err(ApiError::unauthorized(
                    "session_revoked",
                    "The session has ended. Log in again.",
                ));
            }
            let mut live = self.lock();
            if live.len() >= MAX_CACHED_SESSIONS {
                live.clear();
            }
            live.insert(session_id.clone(), now);
        }
        Ok(Caller {
            user_id,
            session_id,
        })
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing_token", "An access token is required."))?
        .to_str()
        .map_err(|_| token_problem(TokenError::Malformed))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| token_problem(TokenError::Malformed))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(token_problem(TokenError::Malformed));
    }
    Ok(token.trim())
}

/// Every token failure is the same 401 to the client; the reason goes to the log only.
fn token_problem(e: TokenError) -> ApiError {
    tracing::info!(reason = %e, "access token refused");
    match e {
        TokenError::Expired => {
            ApiError::unauthorized("token_expired", "The access token has expired.")
        }
        _ => ApiError::unauthorized("invalid_token", "The access token is not valid."),
    }
}

/// Router states that can authenticate callers.
pub trait HasAuthenticator {
    fn authenticator(&self) -> &Authenticator;
}

impl<S: HasAuthenticator + Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        state.authenticator().authenticate(parts).await
    }
}
