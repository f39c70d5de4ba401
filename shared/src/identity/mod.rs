//! Identities: creating a person (email lookup, encrypted profile, optional membership or
//! platform role, phone index), reading their profile back, memberships and set-password
//! links. Used by registration (auth), profiles (users) and members (clinics).

pub mod store;

use crate::{
    ApiError,
    clock::rfc3339,
    contracts::NotificationJob,
    crypto::{BlindIndex, Envelope, FieldContext, PLATFORM_TENANT, Phi, random_token, token_hash},
    db::{Table, get_opt_s},
    ids::UserId,
    keys,
    outbox::EventEnvelope,
    policy::Role,
    types::{Email, PhoneE164},
};
use aws_sdk_dynamodb::types::TransactWriteItem;
use std::sync::Arc;

pub use store::{CreateUserError, NewMembership, NewUser, Together};

/// A password-reset link is valid this long.
pub const RESET_TOKEN_SECONDS: i64 = 15 * 60;
/// An invitation's set-password link is valid this long.
pub const INVITATION_SECONDS: i64 = 7 * 24 * 60 * 60;

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
    /// `None`: invited, chooses a password through a set-password link.
    pub password_hash: Option<String>,
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
}

impl Profile {
    pub fn get(&self, name: &str) -> Option<&Phi<String>> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Why a set-password link is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordLink {
    /// Forgotten password: valid 15 minutes.
    Reset,
    /// A new member added by staff chooses a first password: valid 7 days.
    Invitation,
}

impl PasswordLink {
    fn kind(self) -> &'static str {
        match self {
            PasswordLink::Reset => "password_reset",
            PasswordLink::Invitation => "invitation",
        }
    }

    fn valid_seconds(self) -> i64 {
        match self {
            PasswordLink::Reset => RESET_TOKEN_SECONDS,
            PasswordLink::Invitation => INVITATION_SECONDS,
        }
    }
}

#[derive(Clone)]
pub struct Identities {
    pub table: Table,
    pub envelope: Arc<Envelope>,
    pub blind: BlindIndex,
}

/// The platform's settings plus where set-password links go: what the functions that send
/// them (auth, clinics) read from the environment.
#[derive(Debug, Clone)]
pub struct LinksConfig {
    pub platform: crate::config::PlatformConfig,
    /// `NOTIFICATIONS_QUEUE_URL`: where reset and invitation jobs go.
    pub notifications_queue_url: String,
    /// `APP_URL`: the web app that shows the set-password page.
    pub app_url: String,
}

impl LinksConfig {
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            platform: crate::config::PlatformConfig::from_env()?,
            notifications_queue_url: crate::config::required("NOTIFICATIONS_QUEUE_URL")?,
            app_url: crate::config::optional("APP_URL", "http://127.0.0.1:3000"),
        })
    }
}

/// The state of a function that sends set-password links (auth, clinics).
impl crate::app::AppState<PasswordLinks> {
    /// Opens the platform secrets (one KMS call) and wires the links.
    pub async fn with_links(
        clients: &crate::aws::Clients,
        cfg: LinksConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Self, crate::app::BoxError> {
        let platform = crate::platform::Platform::new(clients, &cfg.platform, clock).await?;
        let links = PasswordLinks::new(
            platform.table.clone(),
            clients.sqs.clone(),
            cfg.notifications_queue_url,
            &cfg.app_url,
        );
        Ok(Self::new(platform, links))
    }

    /// [`Self::with_links`] from the environment.
    pub async fn from_env() -> Result<Self, crate::app::BoxError> {
        let cfg = LinksConfig::from_env()?;
        let clients = crate::aws::Clients::from_env().await;
        Self::with_links(&clients, cfg, Arc::new(crate::clock::SystemClock)).await
    }
}

/// A set-password link whose token is (or is about to be) stored, ready to send. Its URL holds
/// the token: never logged.
pub struct PreparedLink {
    user: UserId,
    link: PasswordLink,
    url: String,
    expires: i64,
}

impl std::fmt::Debug for PreparedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedLink")
            .field("user", &self.user)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Sends set-password links (reset, invitation) through the notifications queue.
#[derive(Clone)]
pub struct PasswordLinks {
    pub table: Table,
    pub sqs: aws_sdk_sqs::Client,
    /// Where set-password links go (the high-priority notifications queue).
    pub notifications_queue_url: String,
    /// The web app that shows the set-password page.
    pub app_url: String,
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
        };
        match store::create_user(&self.table, &new, event, now, together).await {
            Ok(()) => Ok(true),
            Err(CreateUserError::EmailTaken) => Ok(false),
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
            .map_err(crate::db::internal)?;
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
        })
    }
}

impl PasswordLinks {
    /// Links for the web app at `app_url`, sent through the queue at `queue_url`.
    pub fn new(table: Table, sqs: aws_sdk_sqs::Client, queue_url: String, app_url: &str) -> Self {
        Self {
            table,
            sqs,
            notifications_queue_url: queue_url,
            app_url: app_url.trim_end_matches('/').to_string(),
        }
    }

    /// Creates a single-use set-password token and hands the link to the notification queue.
    /// The job carries the user id, never the address: the worker resolves it.
    pub async fn send_password_link(
        &self,
        user: &UserId,
        link: PasswordLink,
        now: i64,
    ) -> Result<(), ApiError> {
        let (token, prepared) = self.prepare(user, link, now);
        store::create_reset_token(&self.table, &token_hash(&token), user, prepared.expires).await?;
        self.send(&prepared, now).await
    }

    /// A link's token write, for a transaction that commits it with other writes (an invited
    /// member's identity), and the link to [`send`](Self::send) once that transaction is in.
    pub fn prepare_in_transaction(
        &self,
        user: &UserId,
        link: PasswordLink,
        now: i64,
    ) -> Result<(TransactWriteItem, PreparedLink), ApiError> {
        let (token, prepared) = self.prepare(user, link, now);
        let put = store::reset_token_put(&self.table, &token_hash(&token), user, prepared.expires)?;
        Ok((put, prepared))
    }

    fn prepare(&self, user: &UserId, link: PasswordLink, now: i64) -> (String, PreparedLink) {
        let token = random_token();
        let expires = now + link.valid_seconds();
        let url = format!("{}/reset-password?token={token}", self.app_url);
        let prepared = PreparedLink {
            user: user.clone(),
            link,
            url,
            expires,
        };
        (token, prepared)
    }

    /// Hands a prepared link (whose token is stored) to the notification queue.
    pub async fn send(&self, p: &PreparedLink, now: i64) -> Result<(), ApiError> {
        let job = NotificationJob {
            job_id: uuid::Uuid::new_v4().to_string(),
            kind: p.link.kind().to_string(),
            channel: "email".into(),
            user_id: p.user.clone(),
            template: p.link.kind().replace('_', "-"),
            params: [
                ("resetUrl".to_string(), p.url.clone()),
                ("expiresAt".to_string(), rfc3339(p.expires)),
            ]
            .into(),
            correlation_id: crate::http::current_correlation_id(),
            created_at: rfc3339(now),
        };
        let body = serde_json::to_string(&job).map_err(ApiError::internal)?;
        self.sqs
            .send_message()
            .queue_url(&self.notifications_queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                ApiError::internal(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
            })?;
        Ok(())
    }
}
