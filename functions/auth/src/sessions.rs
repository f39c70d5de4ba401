//! Sessions: login with lockout, refresh-token rotation with reuse detection, logout,
//! listing and revoking sessions.

use shared::{
    ApiError,
    clock::rfc3339,
    crypto::{Phi, random_token, token_hash},
    http::SourceAddress,
    ids::{SessionId, UserId},
    outbox::EventEnvelope,
    types::Email,
};

use crate::mfa::LoginOutcome;
use crate::rules::{self, RefreshCheck, RefreshToken};
use crate::service::{Auth, DUMMY_PASSWORD_HASH, SessionView, TokenPair};
use crate::store;

impl Auth<'_> {
    fn invalid_credentials() -> ApiError {
        ApiError::unauthorized("invalid_credentials", "The email or password is wrong.")
    }

    /// Checks credentials; unknown email and wrong password answer alike (and take as long).
    /// Each attempt is reserved before the password is checked: per source address (any
    /// account) in a fixed window, and per (address given, source) with growing delays, so
    /// parallel guesses are refused rather than checked and a stranger elsewhere cannot lock
    /// the owner out.
    /// An account with two-step sign-in gets a challenge instead of a session.
    pub async fn login(
        &self,
        email: &Phi<String>,
        password: &Phi<String>,
        source: &SourceAddress,
    ) -> Result<LoginOutcome, ApiError> {
        if password.expose().chars().count() > rules::MAX_PASSWORD_CHARS {
            return Err(Self::invalid_credentials());
        }
        let now = self.clock.epoch();
        let email = Email::parse(email.expose());
        // Keyed on the address given, so an unknown one is slowed exactly like a known one.
        let account = email
            .as_ref()
            .map_or_else(|| "malformed".to_string(), |e| e.expose().to_string());
        // The attempt is reserved while the account is looked up; both finish before the
        // password is checked.
        let reserve = async {
            self.throttles
                .take(&rules::limits::LOGIN_PER_SOURCE, &source.0, now)
                .await?;
            self.throttles.guess(&account, &source.0, now).await
        };
        let lookup = async {
            match &email {
                Some(e) => match self.identities.user_by_email(e).await? {
                    Some(u) => store::get_user(&self.table, &u).await,
                    None => Ok(None),
                },
                None => Ok(None),
            }
        };
        let (guess, record) = tokio::try_join!(reserve, lookup)?;
        let Some(record) = record.filter(|r| r.status == "ACTIVE") else {
            let _ = self.verify_password(password, DUMMY_PASSWORD_HASH).await?;
            return Err(Self::invalid_credentials());
        };
        if !self
            .verify_password(password, &record.password_hash)
            .await?
        {
            tracing::info!(log_type = "security", user_id = %record.user, "login failed");
            return Err(Self::invalid_credentials());
        }
        if record.mfa_enabled {
            let (_, challenge) = tokio::try_join!(
                self.throttles.forgive(&guess),
                self.challenge(&record.user, now)
            )?;
            return Ok(LoginOutcome::Challenge(challenge));
        }
        let session = SessionId::generate();
        let (_, pair) = tokio::try_join!(
            self.throttles.forgive(&guess),
            self.signed_in(&record, &session, false, now)
        )?;
        Ok(LoginOutcome::Session(Box::new(pair)))
    }

    /// Starts the session of a login that is complete, with the user's view, and keeps the
    /// number of live sessions bounded.
    pub(crate) async fn signed_in(
        &self,
        record: &store::UserRecord,
        session: &SessionId,
        mfa: bool,
        now: i64,
    ) -> Result<TokenPair, ApiError> {
        // The answer carries the profile: its read is recorded (fail closed) alongside.
        let read = shared::audit::AuditEntry::own(
            &record.user,
            shared::audit::AuditAction::Read,
            "profile",
            vec![record.user.to_string()],
        );
        let (mut pair, view, ()) = tokio::try_join!(
            self.start_session(&record.user, session, mfa, now),
            self.user_view_from(&record.user, &record.item),
            self.audit.record(&read)
        )?;
        pair.user = Some(view);
        // The owner hears of every sign-in (account mail, always sent), beside the eviction.
        let (evicted, ()) = tokio::join!(
            self.evict_excess_sessions(&record.user, now),
            self.notice(&record.user, "new-sign-in", now)
        );
        evicted?;
        Ok(pair)
    }

    pub(crate) async fn start_session(
        &self,
        user: &UserId,
        session: &SessionId,
        mfa: bool,
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
            mfa,
        };
        store::create_session(&self.table, new, &event, now).await?;
        tracing::info!(user_id = %user, session_id = %session, "session started");
        self.pair(user, session, &refresh, refresh_expires_at, now)
    }

    fn pair(
        &self,
        user: &UserId,
        session: &SessionId,
        refresh: &RefreshToken,
        refresh_expires_at: i64,
        now: i64,
    ) -> Result<TokenPair, ApiError> {
        let access = self
            .keys
            .issue(user, session, now)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(TokenPair {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_at - now,
            expires_at: rfc3339(access.expires_at),
            refresh_token: refresh.format(),
            refresh_expires_at: rfc3339(refresh_expires_at),
            session_id: session.to_string(),
            user: None,
        })
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
    pub(crate) async fn end_sessions(
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
                tracing::warn!(log_type = "security", user_id = %token.user, session_id = %token.session, "refresh token reuse: session revoked");
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
        self.pair(&token.user, &token.session, &next, expires, now)
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
}
