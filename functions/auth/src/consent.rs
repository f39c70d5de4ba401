//! Consent and proof of address: verifying an email through its link, and accepting a
//! membership that staff created (through the link sent to the address, or in the app once the
//! address is proven).
//!
//! Accepting through the link is also how an address's owner takes back an account someone
//! else registered with it: when the account's address was never proven (or it has no password
//! yet), the accepter chooses the password and every session of the account ends.

use serde::Serialize;
use shared::{
    ApiError, FieldError,
    crypto::Phi,
    identity::{
        LinkKind,
        store::{ACTIVE, NO_PASSWORD, PENDING, accept_membership, membership},
    },
    ids::{ClinicId, SessionId, UserId},
    policy::Role,
};
use std::collections::BTreeMap;

use crate::service::{Auth, hash_password};
use crate::store;

/// A membership now in force.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub clinic_id: String,
    pub role: Role,
    pub status: &'static str,
    /// The accepter chose the account's password (and every earlier session ended).
    pub password_set: bool,
}

fn invalid_invitation() -> ApiError {
    ApiError::bad_request(
        "invalid_invitation",
        "The invitation link is invalid, has expired or was used already.",
    )
}

impl Auth<'_> {
    /// Proves the address: consumes the verification link and marks the account verified.
    pub async fn verify_email(&self, token: &Phi<String>) -> Result<(), ApiError> {
        let invalid = || {
            ApiError::bad_request(
                "invalid_verification_token",
                "The verification link is invalid, has expired or was used already.",
            )
        };
        let now = self.clock.epoch();
        let link = self
            .ext()
            .open(token, LinkKind::EmailVerification, now)
            .await?
            .ok_or_else(invalid)?;
        let event = self.event(
            "auth.email_verified",
            None,
            &link.user,
            ("user", link.user.as_str()),
            serde_json::json!({ "userId": link.user }),
        );
        let items = vec![
            link.consume(&self.table, now)?,
            store::email_verified_update(&self.table, &link.user, now)?,
            event.outbox_write(&self.table.name, now)?,
        ];
        match store::run_guarded(&self.table, items, &[0, 1]).await? {
            None => {
                tracing::info!(user_id = %link.user, "email verified");
                Ok(())
            }
            Some(_) => Err(invalid()),
        }
    }

    /// Sends a new verification link to a signed-in user whose address is not proven yet.
    pub async fn resend_verification(&self, user: &UserId) -> Result<(), ApiError> {
        let record = store::get_user(&self.table, user)
            .await?
            .ok_or(ApiError::NotFound)?;
        if record.email_verified {
            return Err(ApiError::conflict(
                "already_verified",
                "This account's email address is verified already.",
            ));
        }
        self.ext()
            .issue(user, LinkKind::EmailVerification, None, self.clock.epoch())
            .await
    }

    /// Accepts the membership a link was sent for. `password` is required exactly when the
    /// account's address was never proven or it has no password: then it becomes the account's
    /// password, the address counts as proven, and every earlier session ends.
    pub async fn accept_by_link(
        &self,
        token: &Phi<String>,
        password: Option<&Phi<String>>,
    ) -> Result<Accepted, ApiError> {
        let now = self.clock.epoch();
        let link = self
            .ext()
            .open(token, LinkKind::Membership, now)
            .await?
            .ok_or_else(invalid_invitation)?;
        let clinic = link.clinic.clone().ok_or_else(invalid_invitation)?;
        let user = link.user.clone();
        let (record, member) = tokio::try_join!(
            store::get_user(&self.table, &user),
            membership(&self.table, &clinic, &user)
        )?;
        let record = record.ok_or_else(invalid_invitation)?;
        let Some((role, PENDING)) = member.as_ref().map(|(r, s)| (*r, s.as_str())) else {
            return Err(invalid_invitation());
        };
        let takes_password = !record.email_verified || record.password_hash == NO_PASSWORD;
        let hash = match (takes_password, password) {
            (true, None) => {
                return Err(ApiError::Validation(vec![FieldError::new(
                    "password",
                    "required",
                    "Choose a password for this account.",
                )]));
            }
            (false, Some(_)) => {
                return Err(ApiError::Validation(vec![FieldError::new(
                    "password",
                    "not_needed",
                    "This account has a password already; accept without one.",
                )]));
            }
            (true, Some(p)) => {
                self.check_new_password(&record, p, "password").await?;
                Some(hash_password(p).await?)
            }
            (false, None) => None,
        };
        let mut items = vec![
            link.consume(&self.table, now)?,
            accept_membership(&self.table, &clinic, &user, now)?,
        ];
        let mut ended: Vec<SessionId> = Vec::new();
        if let Some(hash) = &hash {
            items.push(store::password_update(
                &self.table,
                &user,
                hash,
                record.version,
                true,
                now,
            )?);
            ended = store::live_sessions(&self.table, &user, now)
                .await?
                .into_iter()
                .map(|s| s.session)
                .collect();
            for s in &ended {
                items.push(store::revoke_action(
                    &self.table,
                    &user,
                    s,
                    "address_owner_set_password",
                    now,
                )?);
            }
        }
        items.push(
            self.joined(&clinic, &user, role, ended.len())
                .outbox_write(&self.table.name, now)?,
        );
        match store::run_guarded(&self.table, items, &[0, 1, 2]).await? {
            None => {}
            Some(2) if hash.is_some() => {
                return Err(ApiError::conflict(
                    "concurrent_update",
                    "The account changed meanwhile; try again.",
                ));
            }
            Some(_) => return Err(invalid_invitation()),
        }
        for s in &ended {
            self.authn.forget(s);
        }
        self.told_of_membership(&clinic, &user, role, now).await;
        tracing::info!(user_id = %user, clinic_id = %clinic, password_set = hash.is_some(), "membership accepted");
        Ok(Accepted {
            clinic_id: clinic.to_string(),
            role,
            status: ACTIVE,
            password_set: hash.is_some(),
        })
    }

    /// Accepts a pending membership in the app. Only an account whose address is proven may:
    /// otherwise whoever registered the address first could take a role meant for its owner.
    pub async fn accept_signed_in(
        &self,
        user: &UserId,
        email_verified: bool,
        clinic: &ClinicId,
    ) -> Result<Accepted, ApiError> {
        if !email_verified {
            return Err(ApiError::forbidden(
                "email_unverified",
                "Verify your email address first (or accept through the link sent to it).",
            ));
        }
        let now = self.clock.epoch();
        let Some((role, PENDING)) = membership(&self.table, clinic, user)
            .await?
            .as_ref()
            .map(|(r, s)| (*r, s.as_str()))
        else {
            return Err(ApiError::NotFound);
        };
        let items = vec![
            accept_membership(&self.table, clinic, user, now)?,
            self.joined(clinic, user, role, 0)
                .outbox_write(&self.table.name, now)?,
        ];
        if store::run_guarded(&self.table, items, &[0])
            .await?
            .is_some()
        {
            return Err(ApiError::NotFound);
        }
        self.told_of_membership(clinic, user, role, now).await;
        tracing::info!(user_id = %user, clinic_id = %clinic, "membership accepted");
        Ok(Accepted {
            clinic_id: clinic.to_string(),
            role,
            status: ACTIVE,
            password_set: false,
        })
    }

    fn joined(
        &self,
        clinic: &ClinicId,
        user: &UserId,
        role: Role,
        sessions_ended: usize,
    ) -> shared::outbox::EventEnvelope {
        self.event(
            "clinic.member_joined",
            Some(clinic),
            user,
            ("member", user.as_str()),
            serde_json::json!({ "clinicId": clinic, "userId": user, "role": role, "sessionsRevoked": sessions_ended }),
        )
    }

    /// The account notice of a membership gained. It is committed already, so a failure to
    /// queue the notice is logged, not answered.
    async fn told_of_membership(&self, clinic: &ClinicId, user: &UserId, role: Role, now: i64) {
        let params = BTreeMap::from([
            ("clinicId".to_string(), clinic.to_string()),
            ("role".to_string(), role.as_str().to_string()),
        ]);
        if let Err(e) = self
            .ext()
            .notify(user, "membership-granted", params, now)
            .await
        {
            tracing::error!(user_id = %user, error = %e, "membership notice not queued");
        }
    }
}
