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
use crate::ids::{ClinicId, SessionId, UserId};
use crate::jwt::{KeySet, TokenError};
use crate::keys;
use crate::policy::{Action, Actor, Resource, Role, Subject};

/// Who is calling: proven by a valid token for a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub session_id: SessionId,
    /// A platform-wide role (SUPER_ADMIN), read from the user with the session check.
    pub platform_role: Option<Role>,
    /// The account's address is proven to be its owner's (read with the session check).
    pub email_verified: bool,
    /// The session's login passed the second step (an authenticator code).
    pub mfa: bool,
}

impl Caller {
    /// A platform administrator signed in in two steps: the role counts only then.
    pub fn is_super_admin(&self) -> bool {
        self.platform_role == Some(Role::SuperAdmin) && self.mfa
    }

    /// 403 unless the caller is a platform administrator signed in in two steps
    /// (`mfa_required` for one who signed in with the password alone).
    pub fn require_super_admin(&self) -> Result<(), ApiError> {
        if self.is_super_admin() {
            Ok(())
        } else if self.platform_role == Some(Role::SuperAdmin) {
            Err(mfa_required())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// The caller's role needs a session that passed the second step.
pub fn mfa_required() -> ApiError {
    ApiError::forbidden(
        "mfa_required",
        "This role needs two-step sign-in: set up an authenticator (POST /v1/auth/mfa/totp), then log in again with a code.",
    )
}

/// A caller's membership of one clinic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub role: Role,
    pub location: Option<String>,
    /// The clinic requires two-step sign-in of its staff (every role but patient).
    pub staff_mfa_required: bool,
}

pub struct Authenticator {
    pub keys: Arc<KeySet>,
    table: Table,
    clock: Arc<dyn Clock>,
    cache_for_seconds: i64,
    /// Session id → when (epoch seconds, from the injectable clock) it was last seen live,
    /// and what its user was then (platform role) and whether it passed the second step. Only
    /// verified users are kept: an unverified one is read again on every request, so
    /// verifying takes effect at once in every container.
    live: Mutex<HashMap<SessionId, Seen>>,
    /// (clinic, user) → when an active membership was last seen, and what it was.
    members: Mutex<HashMap<(ClinicId, UserId), (i64, Membership)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

const MAX_CACHED_SESSIONS: usize = 10_000;

/// A live session as last read: when, the user's platform role, and its second step.
type Seen = (i64, Option<Role>, bool);

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
            members: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Seen>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops a session from this container's cache (called when this container revokes it).
    pub fn forget(&self, session: &SessionId) {
        self.lock().remove(session);
    }

    /// The caller of an HTTP request (its bearer token).
    pub async fn authenticate(&self, parts: &Parts) -> Result<Caller, ApiError> {
        self.authenticate_token(bearer(parts)?).await
    }

    /// The caller an access token proves, wherever it arrived (a header, a WebSocket
    /// `$connect` query): verified offline, then its session checked live (cached briefly).
    pub async fn authenticate_token(&self, token: &str) -> Result<Caller, ApiError> {
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
            .filter(|(at, _, _)| now - *at < self.cache_for_seconds)
            .map(|(_, role, mfa)| (*role, *mfa));
        let (platform_role, email_verified, mfa) = match cached {
            Some((role, mfa)) => (role, true, mfa),
            None => {
                // The session and the user, in one round trip: the platform role is the user's
                // as it is now (never a copy taken at login), so a demoted super admin loses
                // the role within the cache period, as a removed member loses a clinic.
                let session_sk = keys::session_sk(&session_id);
                let items = self
                    .table
                    .batch_get(vec![
                        crate::db::key(keys::user_pk(&user_id), session_sk.clone()),
                        crate::db::key(keys::user_pk(&user_id), keys::PROFILE_SK),
                    ])
                    .await?;
                let part = |sk: &str| items.iter().find(|i| get_opt_s(i, keys::SK) == Some(sk));
                let session =
                    part(&session_sk).filter(|i| get_opt_s(i, "status") == Some("ACTIVE"));
                let live = session.is_some();
                let mfa = session
                    .and_then(|i| crate::db::get_opt_bool(i, "mfa"))
                    .unwrap_or(false);
                let Some(user) = part(keys::PROFILE_SK).filter(|_| live) else {
                    self.forget(&session_id);
                    return Err(ApiError::unauthorized(
                        "session_revoked",
                        "The session has ended. Log in again.",
                    ));
                };
                let role = get_opt_s(user, "platformRole").and_then(Role::parse);
                let verified = crate::identity::email_verified(user);
                if verified {
                    let mut live = self.lock();
                    if live.len() >= MAX_CACHED_SESSIONS {
                        live.clear();
                    }
                    live.insert(session_id.clone(), (now, role, mfa));
                }
                (role, verified, mfa)
            }
        };
        Ok(Caller {
            user_id,
            session_id,
            platform_role,
            email_verified,
            mfa,
        })
    }

    /// The caller's active membership of `clinic`, checked against the table at most every
    /// cache period, so a removed or deactivated member loses access within a minute.
    pub async fn membership(
        &self,
        clinic: &ClinicId,
        user: &UserId,
    ) -> Result<Option<Membership>, ApiError> {
        let now = self.clock.epoch();
        let key = (clinic.clone(), user.clone());
        if let Some((_, m)) = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(at, _)| now - *at < self.cache_for_seconds)
        {
            return Ok(Some(m.clone()));
        }
        // The membership and the clinic's staff rule, in one round trip.
        let member_sk = keys::member_sk(user);
        let items = self
            .table
            .batch_get(vec![
                crate::db::key(keys::clinic_pk(clinic), member_sk.clone()),
                crate::db::key(keys::clinic_pk(clinic), keys::CLINIC_SK),
            ])
            .await?;
        let part = |sk: &str| items.iter().find(|i| get_opt_s(i, keys::SK) == Some(sk));
        let staff_mfa_required = part(keys::CLINIC_SK)
            .and_then(|c| crate::db::get_opt_bool(c, "staffMfaRequired"))
            .unwrap_or(false);
        let member = part(&member_sk)
            .filter(|i| get_opt_s(i, "status") == Some("ACTIVE"))
            .and_then(|i| {
                Some(Membership {
                    role: get_opt_s(i, "role").and_then(Role::parse)?,
                    location: get_opt_s(i, "locationId").map(str::to_string),
                    staff_mfa_required,
                })
            });
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        match &member {
            Some(m) => {
                if members.len() >= MAX_CACHED_SESSIONS {
                    members.clear();
                }
                members.insert(key, (now, m.clone()));
            }
            None => {
                members.remove(&key);
            }
        }
        Ok(member)
    }

    /// What `caller` may reach inside `clinic`: a member's role and location, or a super
    /// admin's access to a clinic that exists. `NotFound` otherwise, exactly like a clinic
    /// that does not exist. A super admin, and the staff of a clinic that requires it, act
    /// only in a session that passed the second step (`mfa_required` otherwise).
    pub async fn clinic_access(
        &self,
        caller: Caller,
        clinic: ClinicId,
    ) -> Result<ClinicAccess, ApiError> {
        if caller.platform_role == Some(Role::SuperAdmin) {
            caller.require_super_admin()?;
            // Super admins reach every clinic, but only clinics that exist.
            let exists = self
                .table
                .get(keys::clinic_pk(&clinic), keys::CLINIC_SK)
                .await?
                .is_some();
            if !exists {
                return Err(ApiError::NotFound);
            }
            return Ok(ClinicAccess {
                caller,
                clinic,
                role: Role::SuperAdmin,
                location: None,
            });
        }
        let member = self
            .membership(&clinic, &caller.user_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        if member.staff_mfa_required && member.role != Role::Patient && !caller.mfa {
            return Err(mfa_required());
        }
        Ok(ClinicAccess {
            caller,
            clinic,
            role: member.role,
            location: member.location,
        })
    }

    /// Drops a cached membership (called when this container changes it).
    pub fn forget_membership(&self, clinic: &ClinicId, user: &UserId) {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(clinic.clone(), user.clone()));
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
    tracing::info!(log_type = "security", reason = %e, "access token refused");
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

/// A caller acting inside the clinic named by the path's `clinicId`: a member of it (or a
/// super admin). Anyone else gets 404 for everything inside the clinic, exactly like a clinic
/// that does not exist.
#[derive(Debug, Clone)]
pub struct ClinicAccess {
    pub caller: Caller,
    pub clinic: ClinicId,
    pub role: Role,
    pub location: Option<String>,
}

impl ClinicAccess {
    pub fn actor(&self) -> Actor<'_> {
        Actor {
            role: self.role,
            user: self.caller.user_id.as_str(),
            location: self.location.as_deref(),
        }
    }

    pub fn allows(&self, resource: Resource, action: Action, subject: &Subject<'_>) -> bool {
        crate::policy::allowed(&self.actor(), resource, action, subject)
    }

    /// 403 unless the policy allows it.
    pub fn require(
        &self,
        resource: Resource,
        action: Action,
        subject: &Subject<'_>,
    ) -> Result<(), ApiError> {
        if self.allows(resource, action, subject) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

impl<S: HasAuthenticator + Send + Sync> FromRequestParts<S> for ClinicAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = state.authenticator().authenticate(parts).await?;
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        let clinic = params
            .iter()
            .find(|(k, _)| *k == "clinicId")
            .and_then(|(_, v)| ClinicId::parse(v))
            .ok_or(ApiError::NotFound)?;
        state.authenticator().clinic_access(caller, clinic).await
    }
}
