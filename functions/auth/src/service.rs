//! Authentication operations: each validates input, applies the rules, and drives the store.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use serde::{Deserialize, Serialize};
use shared::{
    ApiError, FieldError,
    crypto::{Phi, random_bytes},
    ids::{ClinicId, UserId},
    outbox::{Actor, EventEnvelope, Subject},
    policy::Role,
    types::{Email, PhoneE164},
};

use shared::identity::{
    LinkKind, NewIdentity, NewMembership, Together,
    store::{ACTIVE, NO_PASSWORD},
};

use crate::AppState;
use crate::rules::{self};

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
    /// The address is proven to be the account owner's (through the verification link).
    pub email_verified: bool,
    pub memberships: Vec<MembershipView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipView {
    pub clinic_id: String,
    pub role: String,
    /// `ACTIVE`, or `PENDING` until its owner accepts it.
    pub status: String,
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
    pub(crate) fn event(
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

    pub(crate) async fn verify_password(
        &self,
        password: &Phi<String>,
        hash: &str,
    ) -> Result<bool, ApiError> {
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

    /// Creates an identity with a membership in `clinic` (patient self-registration, where the
    /// clinic takes it). The email must be unique across the platform; it counts as the user's
    /// only once they follow the verification link sent to it.
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
                pending: false,
            }),
            platform_role: None,
            email_verified: false,
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
            email_verified: false,
            memberships: vec![MembershipView {
                clinic_id: clinic.to_string(),
                role: role.as_str().to_string(),
                status: ACTIVE.to_string(),
            }],
        };
        // The verification link commits with the account; the clinic must take registrations.
        let now = self.clock.epoch();
        let (mut link_writes, link) = self
            .ext()
            .prepare(&user, LinkKind::EmailVerification, None, now)
            .await?;
        // The new profile's audit record commits with it.
        let audited = shared::audit::AuditEntry {
            clinic: clinic.clone(),
            role: Some(role),
            ..shared::audit::AuditEntry::own(
                &user,
                shared::audit::AuditAction::Create,
                "profile",
                vec![user.to_string()],
            )
        };
        let together = Together {
            actions: {
                link_writes.push(self.audit.put(&audited).await?);
                link_writes
            },
            self_registration: true,
            ..Together::default()
        };
        self.identities
            .create_with(identity, &event, now, together)
            .await?;
        // The link's job committed with the account: a queue that is down only delays it.
        self.ext().send(&link, now).await;
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
            .map(|(clinic_id, role, status)| MembershipView {
                clinic_id,
                role,
                status,
            })
            .collect();
        let get = |n: &str| profile.get(n).cloned();
        Ok(UserView {
            id: user.to_string(),
            email: get("email").unwrap_or_default(),
            given_name: get("givenName").unwrap_or_default(),
            family_name: get("familyName").unwrap_or_default(),
            phone: get("phone"),
            birth_date: get("birthDate"),
            email_verified: profile.email_verified,
            memberships,
        })
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
