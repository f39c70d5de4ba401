//! Authentication operations: each validates input, applies the rules, and drives the store.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use serde::{Deserialize, Serialize};
use shared::{
    ApiError, FieldError,
    clock::rfc3339,
    crypto::{Phi, random_bytes, random_token, token_hash},
    ids::{ClinicId, SessionId, UserId},
    outbox::{Actor, EventEnvelope, Subject},
    policy::Role,
    types::{Email, PhoneE164},
};

use shared::identity::{NewIdentity, NewMembership, PasswordLink, field, store::NO_PASSWORD};

use crate::AppState;
use crate::rules::{self, RefreshCheck, RefreshToken};
use crate::store;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterRequest {
    pub clinic_id: String,
    pub email: Phi<String>,
    pub password: Phi<String>,
    pub given_name: Phi<String>,
    pub family_name: Phi<String>,
    #[serde(default)]
    pub phone: Option<Phi<String>>,
    #[serde(default)]
    pub birth_date: Option<Phi<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub email: Phi<String>,
    pub given_name: Phi<String>,
    pub family_name: Phi<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phi<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<Phi<String>>,
    pub memberships: Vec<MembershipView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipView {
    pub clinic_id: String,
    pub role: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub expires_at: String,
    pub refresh_token: String,
    pub refresh_expires_at: String,
    pub session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    pub current: bool,
}

/// An argon2id hash of a random, discarded password, with the production parameters. Login
/// verifies against it when there is no usable account, so that path costs as much as a real one.
pub const DUMMY_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Jybpk+JmxI912LfIG0p+iQ$hdonPXiAO67XpEis9OPh9sRT9I+bVcgZrI1ex0a6KzY";

/// Argon2id hash (OWASP parameters: 19 MiB, 2 passes), off the async threads.
pub async fn hash_password(password: &Phi<String>) -> Result<String, ApiError> {
    let pw = password.clone();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_bytes::<16>())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Argon2::default()
            .hash_password(pw.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
    .map_err(ApiError::internal)?
}

fn actor(user: &UserId) -> Actor {
    Actor {
        user_id: Some(user.to_string()),
        role: None,
    }
}

/// The authentication operations over the function's state.
pub struct Auth<'a>(pub &'a AppState);

impl std::ops::Deref for Auth<'_> {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        self.0
    }
}

impl Auth<'_> {
    fn event(
        &self,
        kind: &str,
        clinic: Option<&ClinicId>,
        user: &UserId,
        subject: (&str, &str),
        data: serde_json::Value,
    ) -> EventEnvelope {
        EventEnvelope::new(
            kind,
            clinic,
            actor(user),
            Subject {
                kind: subject.0.into(),
                id: subject.1.into(),
            },
            data,
            self.clock.now(),
        )
    }

    async fn verify_password(&self, password: &Phi<String>, hash: &str) -> Result<bool, ApiError> {
        let pw = password.clone();
        // An invited user has no password yet: spend the same time, then refuse.
        let (hash, real) = if hash == NO_PASSWORD {
            (DUMMY_PASSWORD_HASH.to_string(), false)
        } else {
            (hash.to_string(), true)
        };
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(real
                && Argon2::default()
                    .verify_password(pw.expose().as_bytes(), &parsed)
                    .is_ok())
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Creates an identity with a membership in `clinic` (patient self-registration, and the
    /// seed). The email must be unique across the platform.
    pub async fn register(&self, req: RegisterRequest, role: Role) -> Result<UserView, ApiError> {
        let mut errors = Vec::new();
        let clinic = ClinicId::parse(&req.clinic_id);
        if clinic.is_none() {
            errors.push(FieldError::new(
                "clinicId",
                "invalid_id",
                "Not a clinic id.",
            ));
        }
        let email = Email::parse(req.email.expose());
        if email.is_none() {
            errors.push(FieldError::new(
                "email",
                "invalid_email",
                "Not a valid email address.",
            ));
        }
        if let Err(p) =
            rules::check_password(req.password.expose(), email.as_ref().map(Email::expose))
        {
            errors.push(FieldError::new("password", p.code(), p.message()));
        }
        for (name, value) in [
            ("givenName", &req.given_name),
            ("familyName", &req.family_name),
        ] {
            let len = value.expose().trim().chars().count();
            if len == 0 || len > 100 {
                errors.push(FieldError::new(
                    name,
                    "invalid_length",
                    "Use 1 to 100 characters.",
                ));
            }
        }
        let phone = match &req.phone {
            Some(p) => match PhoneE164::parse(p.expose()) {
                Some(p) => Some(p),
                None => {
                    errors.push(FieldError::new(
                        "phone",
                        "invalid_phone",
                        "Use international E.164 form, e.g. +4930123456.",
                    ));
                    None
                }
            },
            None => None,
        };
        if let Some(b) = &req.birth_date {
            let today = self.clock.now().to_zoned(jiff::tz::TimeZone::UTC).date();
            if !rules::valid_birth_date(b.expose(), today) {
                errors.push(FieldError::new(
                    "birthDate",
                    "invalid_date",
                    "Use YYYY-MM-DD, not in the future.",
                ));
            }
        }
        let (Some(clinic), Some(email), true) = (clinic, email, errors.is_empty()) else {
            return Err(ApiError::Validation(errors));
        };

        let user = UserId::generate();
        let event = self.event(
            "auth.user_registered",
            Some(&clinic),
            &user,
            ("user", user.as_str()),
            serde_json::json!({ "userId": user, "clinicId": clinic, "role": role }),
        );
        let identity = NewIdentity {
            user: user.clone(),
            email,
            given_name: req.given_name.expose().trim().to_string(),
            family_name: req.family_name.expose().trim().to_string(),
            phone,
            birth_date: req.birth_date.as_ref().map(|b| b.expose().clone()),
            password_hash: Some(hash_password(&req.password).await?),
            membership: Some(NewMembership {
                clinic: clinic.clone(),
                role,
                location: None,
            }),
            platform_role: None,
        };
        // The answer is built from what was written: no read-back.
        let view = UserView {
            id: user.to_string(),
            email: Phi::new(identity.email.expose().to_string()),
            given_name: Phi::new(identity.given_name.clone()),
            family_name: Phi::new(identity.family_name.clone()),
            phone: identity
                .phone
                .as_ref()
                .map(|p| Phi::new(p.expose().to_string())),
            birth_date: identity.birth_date.clone().map(Phi::new),
            memberships: vec![MembershipView {
                clinic_id: clinic.to_string(),
                role: role.as_str().to_string(),
            }],
        };
        self.identities
            .create(identity, &event, self.clock.epoch())
            .await?;
        tracing::info!(user_id = %user, clinic_id = %clinic, "user registered");
        Ok(view)
    }

    /// The caller-facing view of a user from their item: profile and active memberships.
    pub async fn user_view_from(
        &self,
        user: &UserId,
        item: &shared::db::Item,
    ) -> Result<UserView, ApiError> {
        let profile = self.identities.decrypt_profile(user, item).await?;
        let memberships = shared::identity::store::memberships(&self.table, user)
            .await?
            .into_iter()
            .map(|(clinic_id, role)| MembershipView { clinic_id, role })
            .collect();
        let get = |n: &str| profile.get(n).cloned();
        Ok(UserView {
            id: user.to_string(),
            email: get("email").unwrap_or_default(),
            given_name: get("givenName").unwrap_or_default(),
            family_name: get("familyName").unwrap_or_default(),
            phone: get("phone"),
            birth_date: get("birthDate"),
            memberships,
        })
    }

    fn invalid_credentials() -> ApiError {
        ApiError::unauthorized("invalid_credentials", "The email or password is wrong.")
    }

    fn locked(remaining: i64) -> ApiError {
        ApiError::Locked {
            code: "account_locked",
            detail: "Too many failed logins. Try again later or reset your password.".into(),
            retry_after_seconds: remaining,
        }
    }

    /// Checks credentials; unknown email and wrong password answer alike (and take as long).
    pub async fn login(
        &self,
        email: &Phi<String>,
        password: &Phi<String>,
    ) -> Result<TokenPair, ApiError> {
        if password.expose().chars().count() > rules::MAX_PASSWORD_CHARS {
            return Err(Self::invalid_credentials());
        }
        let now = self.clock.epoch();
        let user = match Email::parse(email.expose()) {
            Some(e) => self.identities.user_by_email(&e).await?,
            None => None,
        };
        let record = match &user {
            Some(u) => store::get_user(&self.table, u).await?,
            None => None,
        };
        let Some(record) = record.filter(|r| r.status == "ACTIVE") else {
            let _ = self.verify_password(password, DUMMY_PASSWORD_HASH).await?;
            return Err(Self::invalid_credentials());
        };
        if let Some(remaining) = rules::lock_remaining(record.locked_until, now) {
            let _ = self.verify_password(password, DUMMY_PASSWORD_HASH).await?;
            return Err(Self::locked(remaining));
        }
        if !self
            .verify_password(password, &record.password_hash)
            .await?
        {
            let failures = store::record_failed_login(&self.table, &record.user, now).await?;
            tracing::info!(user_id = %record.user, failures, "login failed");
            if rules::failure_locks(failures) {
                let until = now + rules::LOCK_SECONDS;
                let event = self.event(
                    "auth.account_locked",
                    None,
                    &record.user,
                    ("user", record.user.as_str()),
                    serde_json::json!({ "userId": record.user, "lockedUntil": rfc3339(until), "failedLogins": failures }),
                );
                if store::lock_account(&self.table, &record.user, failures, until, &event, now)
                    .await?
                {
                    tracing::warn!(user_id = %record.user, "account locked");
                }
                return Err(Self::locked(rules::LOCK_SECONDS));
            }
            return Err(Self::invalid_credentials());
        }
        let session = SessionId::generate();
        let mut pair = self
            .start_session(&record.user, &session, record.platform_role, now)
            .await?;
        pair.user = Some(self.user_view_from(&record.user, &record.item).await?);
        self.evict_excess_sessions(&record.user, now).await?;
        Ok(pair)
    }

    async fn start_session(
        &self,
        user: &UserId,
        session: &SessionId,
        platform_role: Option<Role>,
        now: i64,
    ) -> Result<TokenPair, ApiError> {
        let refresh = RefreshToken {
            user: user.clone(),
            session: session.clone(),
            secret: random_token(),
        };
        let refresh_expires_at = rules::refresh_expiry(now, now);
        let event = self.event(
            "auth.login_succeeded",
            None,
            user,
            ("session", session.as_str()),
            serde_json::json!({ "userId": user, "sessionId": session }),
        );
        let new = store::NewSession {
            user,
            session,
            token_hash: &token_hash(&refresh.secret),
            refresh_expires_at,
            platform_role,
        };
        store::create_session(&self.table, new, &event, now).await?;
        tracing::info!(user_id = %user, session_id = %session, "session started");
        Ok(self.pair(user, session, &refresh, refresh_expires_at, now))
    }

    fn pair(
        &self,
        user: &UserId,
        session: &SessionId,
        refresh: &RefreshToken,
        refresh_expires_at: i64,
        now: i64,
    ) -> TokenPair {
        let access = self.keys.issue(user, session, now);
        TokenPair {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_at - now,
            expires_at: rfc3339(access.expires_at),
            refresh_token: refresh.format(),
            refresh_expires_at: rfc3339(refresh_expires_at),
            session_id: session.to_string(),
            user: None,
        }
    }

    /// Keeps at most ten live sessions: the oldest beyond that are revoked.
    async fn evict_excess_sessions(&self, user: &UserId, now: i64) -> Result<(), ApiError> {
        let live = store::live_sessions(&self.table, user, now).await?;
        let evict = rules::sessions_to_evict(
            live.into_iter()
                .map(|s| (s.created_at, s.session))
                .collect(),
        );
        if evict.is_empty() {
            return Ok(());
        }
        let event = self.event(
            "auth.sessions_revoked",
            None,
            user,
            ("user", user.as_str()),
            serde_json::json!({ "userId": user, "sessionIds": evict, "reason": "session_limit" }),
        );
        self.end_sessions(user, &evict, "session_limit", &event, now)
            .await?;
        Ok(())
    }

    /// Revokes sessions with their event, and forgets them in this container at once.
    async fn end_sessions(
        &self,
        user: &UserId,
        sessions: &[SessionId],
        reason: &str,
        event: &EventEnvelope,
        now: i64,
    ) -> Result<(), ApiError> {
        store::revoke_sessions(&self.table, user, sessions, reason, event, now).await?;
        for s in sessions {
            self.authn.forget(s);
        }
        Ok(())
    }

    /// Rotates a refresh token. A superseded token revokes its whole session.
    pub async fn refresh(&self, raw: &Phi<String>) -> Result<TokenPair, ApiError> {
        let invalid =
            || ApiError::unauthorized("invalid_refresh_token", "The refresh token is not valid.");
        let token = RefreshToken::parse(raw.expose()).ok_or_else(invalid)?;
        let now = self.clock.epoch();
        let session = store::get_session(&self.table, &token.user, &token.session)
            .await?
            .filter(|s| s.status == "ACTIVE")
            .ok_or_else(invalid)?;
        let presented = token_hash(&token.secret);
        match rules::classify_refresh(&presented, &session.token_hash, &session.used) {
            RefreshCheck::Current => {}
            RefreshCheck::Reused => {
                let event = self.event(
                    "auth.refresh_token_reused",
                    None,
                    &token.user,
                    ("session", token.session.as_str()),
                    serde_json::json!({ "userId": token.user, "sessionId": token.session }),
                );
                self.end_sessions(
                    &token.user,
                    std::slice::from_ref(&token.session),
                    "refresh_token_reuse",
                    &event,
                    now,
                )
                .await?;
                tracing::warn!(user_id = %token.user, session_id = %token.session, "refresh token reuse: session revoked");
                return Err(ApiError::unauthorized(
                    "refresh_token_reused",
                    "This refresh token was already used; the session has been ended.",
                ));
            }
            RefreshCheck::Unknown => return Err(invalid()),
        }
        if session.refresh_expires_at <= now {
            return Err(ApiError::unauthorized(
                "refresh_token_expired",
                "The refresh token has expired. Log in again.",
            ));
        }
        let next = RefreshToken {
            secret: random_token(),
            ..token.clone()
        };
        let expires = rules::refresh_expiry(session.created_at, now);
        let new_hash = token_hash(&next.secret);
        let marker = rules::used_hash_marker(&presented);
        let rotation = store::Rotation {
            old_hash: &presented,
            new_hash: &new_hash,
            old_marker: &marker,
            refresh_expires_at: expires,
        };
        let won =
            store::rotate_refresh(&self.table, &token.user, &token.session, rotation, now).await?;
        if !won {
            return Err(ApiError::unauthorized(
                "refresh_token_superseded",
                "This refresh token was just used by another request.",
            ));
        }
        Ok(self.pair(&token.user, &token.session, &next, expires, now))
    }

    pub async fn logout(
        &self,
        user: &UserId,
        current: &SessionId,
        all_devices: bool,
    ) -> Result<usize, ApiError> {
        let now = self.clock.epoch();
        let sessions: Vec<SessionId> = if all_devices {
            store::live_sessions(&self.table, user, now)
                .await?
                .into_iter()
                .map(|s| s.session)
                .collect()
        } else {
            vec![current.clone()]
        };
        let event = self.event(
            "auth.logged_out",
            None,
            user,
            ("session", current.as_str()),
            serde_json::json!({ "userId": user, "sessionIds": sessions, "allDevices": all_devices }),
        );
        self.end_sessions(user, &sessions, "logout", &event, now)
            .await?;
        Ok(sessions.len())
    }

    pub async fn sessions(
        &self,
        user: &UserId,
        current: &SessionId,
    ) -> Result<Vec<SessionView>, ApiError> {
        let mut live = store::live_sessions(&self.table, user, self.clock.epoch()).await?;
        live.sort_by_key(|s| std::cmp::Reverse(s.last_used_at));
        Ok(live
            .into_iter()
            .map(|s| SessionView {
                current: &s.session == current,
                session_id: s.session.to_string(),
                created_at: rfc3339(s.created_at),
                last_used_at: rfc3339(s.last_used_at),
                expires_at: rfc3339(s.refresh_expires_at),
            })
            .collect())
    }

    /// Revokes one of the caller's own sessions; anyone else's is "not found".
    pub async fn revoke_session(&self, user: &UserId, target: &SessionId) -> Result<(), ApiError> {
        let now = self.clock.epoch();
        let live = store::get_session(&self.table, user, target)
            .await?
            .is_some_and(|s| s.status == "ACTIVE" && s.refresh_expires_at > now);
        if !live {
            return Err(ApiError::NotFound);
        }
        let event = self.event(
            "auth.sessions_revoked",
            None,
            user,
            ("session", target.as_str()),
            serde_json::json!({ "userId": user, "sessionIds": [target], "reason": "revoked_by_user" }),
        );
        self.end_sessions(
            user,
            std::slice::from_ref(target),
            "revoked_by_user",
            &event,
            now,
        )
        .await
    }

    /// Changes the password and ends every other session.
    pub async fn change_password(
        &self,
        user: &UserId,
        current: &SessionId,
        old: &Phi<String>,
        new: &Phi<String>,
    ) -> Result<(), ApiError> {
        let now = self.clock.epoch();
        let record = store::get_user(&self.table, user)
            .await?
            .ok_or(ApiError::NotFound)?;
        let email = self
            .envelope
            .decrypt_str(
                &field(user, "email"),
                shared::db::get_s(&record.item, "email")?,
            )
            .await?;
        if let Err(p) = rules::check_password(new.expose(), Some(email.expose())) {
            return Err(ApiError::Validation(vec![FieldError::new(
                "newPassword",
                p.code(),
                p.message(),
            )]));
        }
        if !self.verify_password(old, &record.password_hash).await? {
            return Err(ApiError::Validation(vec![FieldError::new(
                "currentPassword",
                "wrong_password",
                "The current password is wrong.",
            )]));
        }
        let hash = hash_password(new).await?;
        let others: Vec<SessionId> = store::live_sessions(&self.table, user, now)
            .await?
            .into_iter()
            .map(|s| s.session)
            .filter(|s| s != current)
            .collect();
        let event = self.event(
            "auth.password_changed",
            None,
            user,
            ("user", user.as_str()),
            serde_json::json!({ "userId": user, "sessionsRevoked": others.len() }),
        );
        let update = store::password_update(&self.table, user, &hash, record.version, now)?;
        let mut items = vec![update];
        for s in &others {
            items.push(store::revoke_action(
                &self.table,
                user,
                s,
                "password_changed",
                now,
            )?);
        }
        items.push(event.outbox_write(&self.table.name, now)?);
        if store::run_guarded(&self.table, items, &[0])
            .await?
            .is_some()
        {
            return Err(ApiError::conflict(
                "concurrent_update",
                "The account changed meanwhile; try again.",
            ));
        }
        for s in &others {
            self.authn.forget(s);
        }
        Ok(())
    }

    /// Starts a reset: a single-use token valid 15 minutes, handed to the notification queue.
    /// Answers the same whether or not the email is known.
    pub async fn forgot_password(&self, email: &Phi<String>) -> Result<(), ApiError> {
        let Some(email) = Email::parse(email.expose()) else {
            return Ok(());
        };
        let Some(user) = self.identities.user_by_email(&email).await? else {
            return Ok(());
        };
        self.ext()
            .send_password_link(&user, PasswordLink::Reset, self.clock.epoch())
            .await?;
        tracing::info!(user_id = %user, "password reset requested");
        Ok(())
    }

    /// Completes a reset: consumes the token, sets the password, ends every session.
    pub async fn reset_password(
        &self,
        token: &Phi<String>,
        new: &Phi<String>,
    ) -> Result<(), ApiError> {
        let invalid = || {
            ApiError::bad_request(
                "invalid_reset_token",
                "The reset link is invalid or has expired.",
            )
        };
        if token.expose().len() != 43 {
            return Err(invalid());
        }
        let now = self.clock.epoch();
        let hash_of_token = token_hash(token.expose());
        let user = shared::identity::store::reset_token_user(&self.table, &hash_of_token, now)
            .await?
            .ok_or_else(invalid)?;
        let record = store::get_user(&self.table, &user)
            .await?
            .ok_or_else(invalid)?;
        let email = self
            .envelope
            .decrypt_str(
                &field(&user, "email"),
                shared::db::get_s(&record.item, "email")?,
            )
            .await?;
        if let Err(p) = rules::check_password(new.expose(), Some(email.expose())) {
            return Err(ApiError::Validation(vec![FieldError::new(
                "newPassword",
                p.code(),
                p.message(),
            )]));
        }
        let hash = hash_password(new).await?;
        let sessions: Vec<SessionId> = store::live_sessions(&self.table, &user, now)
            .await?
            .into_iter()
            .map(|s| s.session)
            .collect();
        let event = self.event(
            "auth.password_reset",
            None,
            &user,
            ("user", user.as_str()),
            serde_json::json!({ "userId": user, "sessionsRevoked": sessions.len() }),
        );
        let mut items = vec![
            shared::identity::store::consume_reset(&self.table, &hash_of_token, now)?,
            store::password_update(&self.table, &user, &hash, record.version, now)?,
        ];
        for s in &sessions {
            items.push(store::revoke_action(
                &self.table,
                &user,
                s,
                "password_reset",
                now,
            )?);
        }
        items.push(event.outbox_write(&self.table.name, now)?);
        match store::run_guarded(&self.table, items, &[0, 1]).await? {
            None => {}
            Some(0) => return Err(invalid()),
            Some(_) => {
                return Err(ApiError::conflict(
                    "concurrent_update",
                    "The account changed meanwhile; try again.",
                ));
            }
        }
        for s in &sessions {
            self.authn.forget(s);
        }
        tracing::info!(user_id = %user, "password reset completed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dummy_hash_costs_what_a_real_hash_costs() {
        // Same algorithm and parameters as the hashes we store, so timing cannot tell them apart.
        let real = hash_password(&Phi::new("some password here".to_string()))
            .await
            .unwrap();
        let params = |h: &str| h.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(params(&real), params(DUMMY_PASSWORD_HASH));
        assert!(PasswordHash::new(DUMMY_PASSWORD_HASH).is_ok());
    }
}
