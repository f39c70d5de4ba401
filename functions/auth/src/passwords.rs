//! Passwords: change (other sessions end), forgotten (a single-use reset link) and reset.

use shared::identity::{LinkKind, field};
use shared::{
    ApiError, FieldError,
    crypto::Phi,
    http::SourceAddress,
    ids::{SessionId, UserId},
    types::Email,
};

use crate::rules::{self};
use crate::service::{Auth, hash_password};
use crate::store;

impl Auth<'_> {
    /// Changes the password and ends every other session.
    pub async fn change_password(
        &self,
        user: &UserId,
        current: &SessionId,
        old: &Phi<String>,
        new: &Phi<String>,
        source: &SourceAddress,
    ) -> Result<(), ApiError> {
        let now = self.clock.epoch();
        let record = store::get_user(&self.table, user)
            .await?
            .ok_or(ApiError::NotFound)?;
        let email = self.check_new_password(&record, new, "newPassword").await?;
        // A guess of the current password counts like a login's, under the same backoff.
        let guess = self.throttles.guess(email.expose(), &source.0, now).await?;
        if !self.verify_password(old, &record.password_hash).await? {
            return Err(ApiError::Validation(vec![FieldError::new(
                "currentPassword",
                "wrong_password",
                "The current password is wrong.",
            )]));
        }
        self.throttles.forgive(&guess).await?;
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
        let update = store::password_update(&self.table, user, &hash, record.version, false, now)?;
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

    /// 422 on `field_name` unless `new` passes the password policy for this account (which
    /// refuses the account's own address, decrypted here).
    pub(crate) async fn check_new_password(
        &self,
        record: &store::UserRecord,
        new: &Phi<String>,
        field_name: &'static str,
    ) -> Result<Phi<String>, ApiError> {
        let email = self
            .envelope
            .decrypt_str(
                &field(&record.user, "email"),
                shared::db::get_s(&record.item, "email")?,
            )
            .await?;
        rules::check_password(new.expose(), Some(email.expose())).map_err(|p| {
            ApiError::Validation(vec![FieldError::new(field_name, p.code(), p.message())])
        })?;
        Ok(email)
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
            .issue(&user, LinkKind::PasswordReset, None, self.clock.epoch())
            .await?;
        tracing::info!(log_type = "security", user_id = %user, "password reset requested");
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
        let now = self.clock.epoch();
        let link = self
            .ext()
            .open(token, LinkKind::PasswordReset, now)
            .await?
            .ok_or_else(invalid)?;
        let user = link.user.clone();
        let record = store::get_user(&self.table, &user)
            .await?
            .ok_or_else(invalid)?;
        self.check_new_password(&record, new, "newPassword").await?;
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
            link.consume(&self.table, now)?,
            // The link went to the address: whoever uses it owns it.
            store::password_update(&self.table, &user, &hash, record.version, true, now)?,
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
        tracing::info!(log_type = "security", user_id = %user, "password reset completed");
        Ok(())
    }
}
