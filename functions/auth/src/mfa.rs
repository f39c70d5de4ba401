//! Two-step sign-in with an authenticator app (TOTP, RFC 6238): enrolment, its confirmation
//! with single-use recovery codes, the login's second step, and turning it off. The secret is
//! sealed like every other PHI field; only hashes of recovery codes and challenges are kept.
//! Code guesses are reserved per account before a code is checked, with the growing delays of
//! password guesses (`shared::throttle`): whoever knows the password still cannot try codes
//! faster than a few an hour.

use serde::Serialize;
use shared::{
    ApiError, FieldError,
    authn::Caller,
    clock::rfc3339,
    crypto::{FieldContext, PLATFORM_TENANT, Phi, constant_time_eq, token_hash},
    http::SourceAddress,
    ids::{SessionId, UserId},
    policy::Role,
};
use std::collections::BTreeMap;

use crate::service::{Auth, TokenPair};
use crate::store::{self, mfa::Proof};
use crate::{rules, totp};

/// What a login answers: a session, or (for an account with an authenticator) a challenge to
/// answer at `POST /v1/auth/login/mfa`.
#[derive(Debug)]
pub enum LoginOutcome {
    Session(Box<TokenPair>),
    Challenge(ChallengeView),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeView {
    /// Always `true`: the password was right and a second step is needed.
    pub mfa_required: bool,
    pub challenge: String,
    pub expires_at: String,
    pub methods: [&'static str; 2],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrolmentView {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    /// The key URI an authenticator app scans (as a QR code).
    pub otpauth_uri: String,
    pub algorithm: &'static str,
    pub digits: usize,
    pub period: i64,
    /// Confirm with a code before this time, or start again.
    pub expires_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmedView {
    pub enabled: bool,
    /// Shown once: each signs in once in place of a code, for when the phone is lost.
    pub recovery_codes: Vec<String>,
}

/// A second step as presented: a code from the authenticator or one recovery code.
#[derive(Debug)]
pub enum Factor {
    Code(Phi<String>),
    RecoveryCode(Phi<String>),
}

impl Factor {
    /// Exactly one of the two fields.
    pub fn from_fields(
        code: Option<Phi<String>>,
        recovery_code: Option<Phi<String>>,
    ) -> Result<Self, ApiError> {
        match (code, recovery_code) {
            (Some(c), None) => Ok(Factor::Code(c)),
            (None, Some(r)) => Ok(Factor::RecoveryCode(r)),
            _ => Err(ApiError::Validation(vec![FieldError::new(
                "code",
                "one_factor",
                "Give either code (from the authenticator app) or recoveryCode.",
            )])),
        }
    }
}

fn secret_field(user: &UserId) -> FieldContext<'_> {
    FieldContext {
        tenant: PLATFORM_TENANT,
        entity: "USER",
        record: user.as_str(),
        field: "totpSecret",
    }
}

fn wrong_code() -> ApiError {
    ApiError::unauthorized("invalid_mfa_code", "The code is wrong or was already used.")
}

fn bad_challenge() -> ApiError {
    ApiError::unauthorized(
        "invalid_mfa_challenge",
        "The sign-in challenge is not valid or has expired. Log in again.",
    )
}

impl Auth<'_> {
    /// Reserves a code guess of `user`'s, whatever the source.
    async fn code_guess(
        &self,
        user: &UserId,
        now: i64,
    ) -> Result<shared::throttle::Guess, ApiError> {
        self.throttles
            .guess(&format!("mfa|{user}"), "any-source", now)
            .await
    }

    /// The password of a signed-in user, asked again before the second step changes.
    async fn reauthenticate(
        &self,
        record: &store::UserRecord,
        password: &Phi<String>,
        source: &SourceAddress,
        now: i64,
    ) -> Result<(), ApiError> {
        let guess = self
            .throttles
            .guess(&format!("reauth|{}", record.user), &source.0, now)
            .await?;
        if password.expose().chars().count() > rules::MAX_PASSWORD_CHARS
            || !self
                .verify_password(password, &record.password_hash)
                .await?
        {
            return Err(ApiError::invalid_field(
                "password",
                "wrong_password",
                "The password is wrong.",
            ));
        }
        self.throttles.forgive(&guess).await
    }

    async fn user(&self, user: &UserId) -> Result<store::UserRecord, ApiError> {
        store::get_user(&self.table, user)
            .await?
            .ok_or(ApiError::NotFound)
    }

    /// The step or recovery code a factor proves against the authenticator, if it does.
    async fn proof(
        &self,
        user: &UserId,
        totp_record: &store::mfa::TotpRecord,
        factor: &Factor,
        now: i64,
    ) -> Result<Option<Proof>, ApiError> {
        Ok(match factor {
            Factor::Code(code) => {
                let secret = self
                    .envelope
                    .decrypt(&secret_field(user), &totp_record.sealed_secret)
                    .await?;
                totp::matching_step(&secret, code.expose(), now, totp_record.last_step)
                    .map(Proof::Step)
            }
            Factor::RecoveryCode(code) => totp::normalize_recovery_code(code.expose())
                .map(|c| token_hash(&c))
                .filter(|h| totp_record.recovery.contains(h))
                .map(Proof::Recovery),
        })
    }

    /// Starts enrolment: a new secret for the user's authenticator app, pending until a code
    /// from it confirms it. Asks for the password again.
    pub async fn start_totp(
        &self,
        user: &UserId,
        password: &Phi<String>,
        source: &SourceAddress,
    ) -> Result<EnrolmentView, ApiError> {
        let now = self.clock.epoch();
        let record = self.user(user).await?;
        self.reauthenticate(&record, password, source, now).await?;
        if record.mfa_enabled {
            return Err(already_enabled());
        }
        let secret = totp::new_secret();
        let (sealed, profile) = tokio::try_join!(
            async { Ok::<_, ApiError>(self.envelope.encrypt(&secret_field(user), &secret).await?) },
            self.identities.decrypt_profile(user, &record.item)
        )?;
        let expires = now + totp::ENROLMENT_SECONDS;
        if !store::mfa::put_enrolment(&self.table, user, &sealed, expires, now).await? {
            return Err(already_enabled());
        }
        let account = profile
            .get("email")
            .map(|e| e.expose().clone())
            .unwrap_or_else(|| user.to_string());
        tracing::info!(user_id = %user, "authenticator enrolment started");
        Ok(EnrolmentView {
            secret: totp::secret_base32(&secret),
            otpauth_uri: totp::otpauth_uri(&secret, &account),
            algorithm: "SHA1",
            digits: totp::DIGITS,
            period: totp::PERIOD_SECONDS,
            expires_at: rfc3339(expires),
        })
    }

    /// Confirms enrolment with a code from the app: the authenticator becomes active, and the
    /// recovery codes are shown this once. The next login asks for a code.
    pub async fn confirm_totp(
        &self,
        user: &UserId,
        code: &Phi<String>,
    ) -> Result<ConfirmedView, ApiError> {
        let now = self.clock.epoch();
        let pending = store::mfa::get_totp(&self.table, user)
            .await?
            .filter(|t| t.status == store::mfa::PENDING && t.expires_at > now)
            .ok_or_else(|| {
                ApiError::conflict(
                    "no_mfa_enrolment",
                    "No enrolment is waiting; start one with POST /v1/auth/mfa/totp.",
                )
            })?;
        let guess = self.code_guess(user, now).await?;
        let Some(Proof::Step(step)) = self
            .proof(user, &pending, &Factor::Code(code.clone()), now)
            .await?
        else {
            return Err(ApiError::invalid_field(
                "code",
                "wrong_code",
                "The code is wrong; check the app's clock and type the current one.",
            ));
        };
        let codes = totp::new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .filter_map(|c| totp::normalize_recovery_code(c))
            .map(|c| token_hash(&c))
            .collect();
        let event = self.event(
            "auth.mfa_enabled",
            None,
            user,
            ("user", user.as_str()),
            serde_json::json!({ "userId": user, "method": "totp" }),
        );
        if !store::mfa::confirm(
            &self.table,
            user,
            &pending.sealed_secret,
            step,
            hashes,
            &event,
            now,
        )
        .await?
        {
            return Err(ApiError::conflict(
                "no_mfa_enrolment",
                "The enrolment lapsed or was restarted meanwhile; start again.",
            ));
        }
        self.throttles.forgive(&guess).await?;
        self.notice(user, "mfa-enabled", now).await;
        tracing::info!(log_type = "security", user_id = %user, "authenticator enabled");
        Ok(ConfirmedView {
            enabled: true,
            recovery_codes: codes,
        })
    }

    /// Turns two-step sign-in off, with the password and a code (or a recovery code). A
    /// platform administrator cannot: the role always requires it.
    pub async fn remove_totp(
        &self,
        caller: &Caller,
        password: &Phi<String>,
        factor: &Factor,
        source: &SourceAddress,
    ) -> Result<(), ApiError> {
        if caller.platform_role == Some(Role::SuperAdmin) {
            return Err(ApiError::forbidden(
                "mfa_required",
                "A platform administrator always signs in in two steps.",
            ));
        }
        let user = &caller.user_id;
        let now = self.clock.epoch();
        let record = self.user(user).await?;
        self.reauthenticate(&record, password, source, now).await?;
        let active = store::mfa::get_totp(&self.table, user)
            .await?
            .filter(|t| t.status == store::mfa::ACTIVE)
            .ok_or(ApiError::NotFound)?;
        let guess = self.code_guess(user, now).await?;
        let proof = self
            .proof(user, &active, factor, now)
            .await?
            .ok_or_else(wrong_code)?;
        let event = self.event(
            "auth.mfa_disabled",
            None,
            user,
            ("user", user.as_str()),
            serde_json::json!({ "userId": user, "method": "totp" }),
        );
        if !store::mfa::remove(&self.table, user, &proof, &event, now).await? {
            return Err(wrong_code());
        }
        self.throttles.forgive(&guess).await?;
        self.notice(user, "mfa-disabled", now).await;
        tracing::info!(log_type = "security", user_id = %user, "authenticator removed");
        Ok(())
    }

    /// A login's challenge after a right password.
    pub(crate) async fn challenge(
        &self,
        user: &UserId,
        now: i64,
    ) -> Result<ChallengeView, ApiError> {
        let c = totp::Challenge::new(user);
        let expires = now + totp::CHALLENGE_SECONDS;
        store::mfa::put_challenge(&self.table, user, &c.id, &token_hash(&c.secret), expires)
            .await?;
        Ok(ChallengeView {
            mfa_required: true,
            challenge: c.format(),
            expires_at: rfc3339(expires),
            methods: ["totp", "recoveryCode"],
        })
    }

    /// The login's second step: the challenge with a code or a recovery code. Each code and
    /// each challenge is taken once; the session that starts is marked as two-step.
    pub async fn answer_challenge(
        &self,
        raw: &Phi<String>,
        factor: &Factor,
        source: &SourceAddress,
    ) -> Result<TokenPair, ApiError> {
        let now = self.clock.epoch();
        let c = totp::Challenge::parse(raw.expose()).ok_or_else(bad_challenge)?;
        let presented = token_hash(&c.secret);
        let (_, read) = tokio::try_join!(
            self.throttles
                .take(&rules::limits::LOGIN_PER_SOURCE, &source.0, now),
            store::mfa::answering(&self.table, &c.user, &c.id)
        )?;
        let (stored, expires) = read.challenge.ok_or_else(bad_challenge)?;
        if !constant_time_eq(stored.as_bytes(), presented.as_bytes()) || expires <= now {
            return Err(bad_challenge());
        }
        let authenticator = read
            .totp
            .filter(|t| t.status == store::mfa::ACTIVE)
            .ok_or_else(bad_challenge)?;
        let record = read
            .user
            .filter(|u| u.status == "ACTIVE")
            .ok_or_else(bad_challenge)?;
        // Only a caller who knew the password holds a live challenge: only they spend the
        // account's code guesses, so a stranger cannot use them up.
        let guess = self.code_guess(&c.user, now).await?;
        let proof = self
            .proof(&c.user, &authenticator, factor, now)
            .await?
            .ok_or_else(wrong_code)?;
        if !store::mfa::answer_challenge(&self.table, &c.user, &c.id, &presented, &proof).await? {
            return Err(wrong_code());
        }
        let session = SessionId::generate();
        let (_, pair) = tokio::try_join!(
            self.throttles.forgive(&guess),
            self.signed_in(&record, &session, true, now)
        )?;
        if let Proof::Recovery(_) = proof {
            tracing::warn!(log_type = "security", user_id = %c.user, "signed in with a recovery code");
            self.notice(&c.user, "mfa-recovery-code-used", now).await;
        }
        Ok(pair)
    }

    /// An account notice (the second step, a new sign-in); what it tells of stands if the mail
    /// cannot be queued.
    pub(crate) async fn notice(&self, user: &UserId, template: &str, now: i64) {
        if let Err(e) = self
            .ext()
            .notify(user, template, BTreeMap::new(), now)
            .await
        {
            tracing::error!(user_id = %user, error = %e, template, "account notice not queued");
        }
    }

    /// Gives a seeded account an active authenticator with a known secret (the local stack's
    /// platform administrator, test accounts); real users enrol through the routes.
    pub async fn seed_totp(&self, user: &UserId, secret: &[u8]) -> Result<(), ApiError> {
        let sealed = self.envelope.encrypt(&secret_field(user), secret).await?;
        store::mfa::seed(&self.table, user, &sealed, self.clock.epoch()).await
    }
}

fn already_enabled() -> ApiError {
    ApiError::conflict(
        "mfa_already_enabled",
        "Two-step sign-in is already on; turn it off first to change the authenticator.",
    )
}
