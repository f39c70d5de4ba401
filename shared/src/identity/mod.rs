//! Identities: creating a person (email lookup, encrypted profile, optional membership or
//! platform role, phone index), reading their profile back, memberships and account mail
//! (single-use links and notices). Used by registration (auth), profiles (users) and members (clinics).

pub mod links;
pub mod store;

use crate::{
    ApiError,
    crypto::{BlindIndex, Envelope, FieldContext, PLATFORM_TENANT, Phi},
    db::{Table, get_opt_s},
    ids::UserId,
    keys,
    outbox::EventEnvelope,
    policy::Role,
    types::{Email, PhoneE164},
};
use std::sync::Arc;

pub use links::{AccountMail, Link, LinkKind, LinksConfig, PreparedLink};
pub use store::{CreateUserError, NewMembership, NewUser, Together};

/// A birth date in strict `YYYY-MM-DD` form, from 1900 up to `today`.
pub fn valid_birth_date(raw: &str, today: jiff::civil::Date) -> bool {
    let shape_ok = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shape_ok
        && raw
            .parse::<jiff::civil::Date>()
            .is_ok_and(|d| d <= today && d.year() >= 1900)
}

/// Whether a user item's address is proven (`emailVerified`; missing means not proven).
pub fn email_verified(item: &crate::db::Item) -> bool {
    crate::db::get_opt_bool(item, "emailVerified").unwrap_or(false)
}

/// Blind-index purposes.
pub const EMAIL_INDEX: &str = "email";
pub const PHONE_INDEX: &str = "phone";
/// Every PHI attribute of a profile, stored encrypted under the user's record.
pub const PHI_FIELDS: [&str; 8] = [
    "email",
    "givenName",
    "familyName",
    "phone",
    "birthDate",
    "gender",
    "address",
    "emergencyContact",
];

/// Where a profile field's ciphertext belongs.
pub fn field<'a>(user: &'a UserId, name: &'a str) -> FieldContext<'a> {
    FieldContext {
        tenant: PLATFORM_TENANT,
        entity: "USER",
        record: user.as_str(),
        field: name,
    }
}

/// A person to create.
#[derive(Debug)]
pub struct NewIdentity {
    pub user: UserId,
    pub email: Email,
    pub given_name: String,
    pub family_name: String,
    pub phone: Option<PhoneE164>,
    pub birth_date: Option<String>,
    /// `None`: invited, chooses a password through the invitation's link.
    pub password_hash: Option<String>,
    /// Whether the address is proven to be theirs (seeded demo users); a registration proves
    /// it later through a verification link, an invitation when its link is accepted.
    pub email_verified: bool,
    pub membership: Option<NewMembership>,
    pub platform_role: Option<Role>,
}

/// A decrypted profile: every field is PHI.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub user: Option<UserId>,
    pub fields: Vec<(&'static str, Phi<String>)>,
    pub version: i64,
    pub phone_index: Option<String>,
    /// The address is proven to be theirs.
    pub email_verified: bool,
}

impl Profile {
    pub fn get(&self, name: &str) -> Option<&Phi<String>> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

#[derive(Clone)]
pub struct Identities {
    pub table: Table,
    pub envelope: Arc<Envelope>,
    pub blind: BlindIndex,
}

impl Identities {
    pub fn email_index(&self, email: &Email) -> String {
        self.blind.compute(EMAIL_INDEX, email.expose())
    }

    pub fn phone_index(&self, phone: &PhoneE164) -> String {
        self.blind.compute(PHONE_INDEX, phone.expose())
    }

    /// Creates the identity and everything that goes with it in one transaction.
    pub async fn create(
        &self,
        id: NewIdentity,
        event: &EventEnvelope,
        now: i64,
    ) -> Result<(), ApiError> {
        self.create_with(id, event, now, Together::default()).await
    }

    /// Creates the identity together with other writes, all or nothing.
    pub async fn create_with(
        &self,
        id: NewIdentity,
        event: &EventEnvelope,
        now: i64,
        together: Together,
    ) -> Result<(), ApiError> {
        if self.try_create_with(id, event, now, together).await? {
            Ok(())
        } else {
            Err(ApiError::conflict(
                "email_taken",
                "An account with this email already exists.",
            ))
        }
    }

    /// [`create_with`](Self::create_with), answering `false` (and writing nothing) when the
    /// email belongs to someone already.
    pub async fn try_create_with(
        &self,
        id: NewIdentity,
        event: &EventEnvelope,
        now: i64,
        together: Together,
    ) -> Result<bool, ApiError> {
        let values = [
            ("email", Some(id.email.expose().to_string())),
            ("givenName", Some(id.given_name)),
            ("familyName", Some(id.family_name)),
            ("phone", id.phone.as_ref().map(|p| p.expose().to_string())),
            ("birthDate", id.birth_date),
        ];
        let mut sealed = Vec::new();
        for (name, value) in values {
            if let Some(v) = value {
                sealed.push((
                    name,
                    self.envelope
                        .encrypt(&field(&id.user, name), v.as_bytes())
                        .await?,
                ));
            }
        }
        let new = NewUser {
            user: id.user.clone(),
            membership: id.membership,
            platform_role: id.platform_role,
            email_index: self.email_index(&id.email),
            phone_index: id.phone.as_ref().map(|p| self.phone_index(p)),
            sealed,
            password_hash: id.password_hash,
            email_verified: id.email_verified,
        };
        let self_registration = together.self_registration;
        match store::create_user(&self.table, &new, event, now, together).await {
            Ok(()) => Ok(true),
            Err(CreateUserError::EmailTaken) => Ok(false),
            // One answer for a clinic that does not exist and one that is closed.
            Err(CreateUserError::ClinicNotFound) if self_registration => {
                Err(ApiError::invalid_field(
                    "clinicId",
                    "registration_closed",
                    "This clinic does not take registrations here; ask it to add you.",
                ))
            }
            Err(CreateUserError::ClinicNotFound) => Err(ApiError::invalid_field(
                "clinicId",
                "unknown_clinic",
                "No such clinic.",
            )),
            Err(CreateUserError::Guarded(g)) => Err(g.into()),
            Err(CreateUserError::Store(e)) => Err(e),
        }
    }

    pub async fn user_by_email(&self, email: &Email) -> Result<Option<UserId>, ApiError> {
        store::user_id_by_email(&self.table, &self.email_index(email)).await
    }

    /// Users whose profile phone is exactly `phone`.
    pub async fn users_by_phone(&self, phone: &PhoneE164) -> Result<Vec<UserId>, ApiError> {
        let out = self
            .table
            .client
            .query()
            .table_name(&self.table.name)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(
                ":p",
                crate::db::s(keys::phone_pk(&self.phone_index(phone))),
            )
            .send()
            .await
            .map_err(crate::db::fault)?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| get_opt_s(i, "userId").and_then(UserId::parse))
            .collect())
    }

    /// The decrypted profile of a user, if they exist.
    pub async fn profile(&self, user: &UserId) -> Result<Option<Profile>, ApiError> {
        let Some(item) = self
            .table
            .get(keys::user_pk(user), keys::PROFILE_SK)
            .await?
        else {
            return Ok(None);
        };
        self.decrypt_profile(user, &item).await.map(Some)
    }

    /// Several profiles with one `BatchGetItem` per hundred users (unprocessed keys retried).
    pub async fn profiles(
        &self,
        users: &[UserId],
    ) -> Result<std::collections::HashMap<UserId, Profile>, ApiError> {
        let keys = users
            .iter()
            .map(|u| crate::db::key(keys::user_pk(u), keys::PROFILE_SK))
            .collect();
        let mut out = std::collections::HashMap::new();
        for item in self.table.batch_get(keys).await? {
            if let Some(user) = get_opt_s(&item, "userId").and_then(UserId::parse) {
                let profile = self.decrypt_profile(&user, &item).await?;
                out.insert(user, profile);
            }
        }
        Ok(out)
    }

    /// Decrypts a user item already read.
    pub async fn decrypt_profile(
        &self,
        user: &UserId,
        item: &crate::db::Item,
    ) -> Result<Profile, ApiError> {
        let mut fields = Vec::new();
        for name in PHI_FIELDS {
            if let Some(ct) = get_opt_s(item, name) {
                fields.push((
                    name,
                    self.envelope.decrypt_str(&field(user, name), ct).await?,
                ));
            }
        }
        Ok(Profile {
            user: Some(user.clone()),
            fields,
            version: crate::db::get_opt_n(item, "version").unwrap_or(1),
            phone_index: get_opt_s(item, "phoneIndex").map(str::to_string),
            email_verified: email_verified(item),
        })
    }
}
