//! People joining a clinic (its first admin, a new member): the checks of their name and
//! email, the identity of someone new, and the invitation whose link they accept the
//! membership with.

use serde::Deserialize;
use shared::{
    FieldError,
    crypto::Phi,
    identity::{NewIdentity, NewMembership, PreparedLink},
    ids::UserId,
    types::{Email, PhoneE164},
};

use crate::{AppState, rules::name_ok};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewPerson {
    pub(crate) email: Phi<String>,
    pub(crate) given_name: Phi<String>,
    pub(crate) family_name: Phi<String>,
}

impl NewPerson {
    /// Every problem at once, with field names under `prefix` (`admin.` inside a clinic), and
    /// the email when it parses.
    pub(crate) fn errors(&self, prefix: &str) -> (Vec<FieldError>, Option<Email>) {
        let mut errors = Vec::new();
        let email = Email::parse(self.email.expose());
        if email.is_none() {
            errors.push(FieldError::new(
                format!("{prefix}email"),
                "invalid_email",
                "Not a valid email address.",
            ));
        }
        for (name, v) in [
            ("givenName", &self.given_name),
            ("familyName", &self.family_name),
        ] {
            if !name_ok(v.expose(), 100) {
                errors.push(FieldError::new(
                    format!("{prefix}{name}"),
                    "invalid_length",
                    "Use 1 to 100 characters.",
                ));
            }
        }
        (errors, email)
    }

    /// Someone new, with no password yet: they are invited to choose one.
    pub(crate) fn identity(
        &self,
        user: UserId,
        email: Email,
        phone: Option<PhoneE164>,
        membership: NewMembership,
    ) -> NewIdentity {
        NewIdentity {
            user,
            email,
            given_name: self.given_name.expose().trim().to_string(),
            family_name: self.family_name.expose().trim().to_string(),
            phone,
            birth_date: None,
            password_hash: None,
            membership: Some(membership),
            platform_role: None,
            // Proven when they accept the invitation sent to it.
            email_verified: false,
        }
    }
}

/// Sends the invitation whose link is stored. Its job committed with the pending membership,
/// so a queue that is down only delays it (the notifications consumer queues it from its
/// event).
pub(crate) async fn send_invitation(state: &AppState, link: &PreparedLink, now: i64) {
    state.ext().send(link, now).await;
}
