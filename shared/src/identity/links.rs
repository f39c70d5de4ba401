//! Account mail: single-use links sent to a person's address (password reset, membership
//! invitation, email verification) and the account notices that cannot be switched off (a new
//! membership or role).
//!
//! A link's token is `<linkId>.<secret>`. The table keeps the secret's hash (to check and
//! consume it in one conditional write) and the secret sealed under the platform's envelope key
//! (bound to the link), so the notification job carries only the link's id: the worker that
//! sends the mail opens the link with [`AccountMail::url`]. No token travels in a queue message
//! or a log.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use std::{collections::BTreeMap, sync::Arc};

use crate::{
    ApiError,
    clock::rfc3339,
    contracts::NotificationJob,
    crypto::{
        Envelope, FieldContext, PLATFORM_TENANT, Phi, constant_time_eq, random_token, token_hash,
    },
    db::{self, Table, get_opt_n, get_opt_s, n, s, tx_put},
    ids::{ClinicId, LinkId, UserId},
    keys,
};

/// Why a link is sent, and so how long it lives, where it leads and which template says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A forgotten password: valid 15 minutes.
    PasswordReset,
    /// A membership waiting for its owner's consent (and, for an account whose address was
    /// never proven, a new password): valid 7 days.
    Membership,
    /// Proof that the address belongs to whoever registered it: valid 24 hours.
    EmailVerification,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::PasswordReset => "password_reset",
            LinkKind::Membership => "membership_invitation",
            LinkKind::EmailVerification => "email_verification",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            LinkKind::PasswordReset,
            LinkKind::Membership,
            LinkKind::EmailVerification,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn valid_seconds(self) -> i64 {
        match self {
            LinkKind::PasswordReset => 15 * 60,
            LinkKind::Membership => 7 * 24 * 60 * 60,
            LinkKind::EmailVerification => 24 * 60 * 60,
        }
    }

    /// The web app's page that takes the token.
    fn page(self) -> &'static str {
        match self {
            LinkKind::PasswordReset => "reset-password",
            LinkKind::Membership => "accept-membership",
            LinkKind::EmailVerification => "verify-email",
        }
    }

    fn template(self) -> String {
        self.as_str().replace('_', "-")
    }
}

/// The platform's settings plus where account mail goes: what the functions that send it
/// (auth, clinics) read from the environment.
#[derive(Debug, Clone)]
pub struct LinksConfig {
    pub platform: crate::config::PlatformConfig,
    /// `NOTIFICATIONS_QUEUE_URL`: where account mail jobs go.
    pub notifications_queue_url: String,
    /// `APP_URL`: the web app whose pages take the links.
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

/// The state of a function that sends account mail (auth, clinics).
impl crate::app::AppState<AccountMail> {
    /// Opens the platform secrets (one KMS call) and wires the mail.
    pub async fn with_links(
        clients: &crate::aws::Clients,
        cfg: LinksConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Self, crate::app::BoxError> {
        let platform = crate::platform::Platform::new(clients, &cfg.platform, clock).await?;
        let mail = AccountMail::new(
            platform.table.clone(),
            platform.envelope.clone(),
            clients.sqs.clone(),
            cfg.notifications_queue_url,
            &cfg.app_url,
        );
        Ok(Self::new(platform, mail))
    }

    /// [`Self::with_links`] from the environment.
    pub async fn from_env() -> Result<Self, crate::app::BoxError> {
        let cfg = LinksConfig::from_env()?;
        let clients = crate::aws::Clients::from_env().await;
        Self::with_links(&clients, cfg, Arc::new(crate::clock::SystemClock)).await
    }
}

/// An account mail job for `user`, in the current request's correlation id and trace.
fn job(
    user: &UserId,
    kind: &str,
    template: &str,
    params: BTreeMap<String, String>,
    now: i64,
) -> NotificationJob {
    NotificationJob {
        job_id: uuid::Uuid::new_v4().to_string(),
        kind: kind.to_string(),
        channel: "email".into(),
        clinic_id: None,
        user_id: user.clone(),
        template: template.to_string(),
        params,
        correlation_id: crate::http::current_correlation_id(),
        trace_id: crate::correlation::current_trace_id(),
        created_at: rfc3339(now),
        slot_ms: None,
    }
}

/// The outbox write of `job`'s `notification.requested` event.
fn requested_write(
    table: &Table,
    job: &NotificationJob,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    job.requested(jiff::Timestamp::from_second(now).unwrap_or_default())?
        .outbox_write(&table.name, now)
}

/// A link whose item is (or is about to be) stored, ready to [`send`](AccountMail::send), with
/// the job that mails it (its `notification.requested` event commits with the link).
#[derive(Debug, Clone)]
pub struct PreparedLink {
    pub id: LinkId,
    job: NotificationJob,
}

/// A live link, opened from the token its owner presented.
#[derive(Debug, Clone)]
pub struct Link {
    pub id: LinkId,
    pub kind: LinkKind,
    pub user: UserId,
    pub clinic: Option<ClinicId>,
    pub expires_at: i64,
    secret_hash: String,
}

impl Link {
    /// The write that spends the link: it must still exist, be unexpired and hold the same
    /// secret, so two requests with one token cannot both succeed.
    pub fn consume(&self, table: &Table, now: i64) -> Result<TransactWriteItem, ApiError> {
        db::tx_delete(
            Delete::builder()
                .table_name(&table.name)
                .key(keys::PK, s(keys::link_pk(&self.id)))
                .key(keys::SK, s(keys::LINK_SK))
                .condition_expression("secretHash = :h AND expiresAt > :now")
                .expression_attribute_values(":h", s(&self.secret_hash))
                .expression_attribute_values(":now", n(now)),
        )
    }
}

/// Sends account mail through the notifications queue.
#[derive(Clone)]
pub struct AccountMail {
    pub table: Table,
    envelope: Arc<Envelope>,
    pub sqs: aws_sdk_sqs::Client,
    /// Where account mail goes (the high-priority notifications queue).
    pub notifications_queue_url: String,
    /// The web app whose pages take the links.
    pub app_url: String,
}

fn secret_field(link: &LinkId) -> FieldContext<'_> {
    FieldContext {
        tenant: PLATFORM_TENANT,
        entity: "LINK",
        record: link.as_str(),
        field: "secret",
    }
}

/// Splits a presented token into the link id and its secret, if it has the right shape.
fn parse_token(token: &str) -> Option<(LinkId, &str)> {
    let (id, secret) = token.split_once('.')?;
    let id = LinkId::parse(id)?;
    (secret.len() == 43).then_some((id, secret))
}

impl AccountMail {
    pub fn new(
        table: Table,
        envelope: Arc<Envelope>,
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        app_url: &str,
    ) -> Self {
        Self {
            table,
            envelope,
            sqs,
            notifications_queue_url: queue_url,
            app_url: app_url.trim_end_matches('/').to_string(),
        }
    }

    /// A new link's put, for a transaction that commits it with other writes, and the link to
    /// [`send`](Self::send) once that transaction is in. Sealing the secret uses the cached
    /// platform data key (no KMS call in a warm container).
    pub async fn prepare(
        &self,
        user: &UserId,
        kind: LinkKind,
        clinic: Option<&ClinicId>,
        now: i64,
    ) -> Result<(Vec<TransactWriteItem>, PreparedLink), ApiError> {
        let id = LinkId::generate();
        let secret = random_token();
        let sealed = self
            .envelope
            .encrypt(&secret_field(&id), secret.as_bytes())
            .await?;
        let expires = now + kind.valid_seconds();
        let mut put = Put::builder()
            .table_name(&self.table.name)
            .item(keys::PK, s(keys::link_pk(&id)))
            .item(keys::SK, s(keys::LINK_SK))
            .item(keys::ENTITY, s("LINK"))
            .item("kind", s(kind.as_str()))
            .item("userId", s(user.as_str()))
            .item("secretHash", s(token_hash(&secret)))
            .item("sealedSecret", s(sealed))
            .item("createdAt", n(now))
            .item("expiresAt", n(expires))
            .item(keys::TTL, n(expires + 60 * 60))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(c) = clinic {
            put = put.item("clinicId", s(c.as_str()));
        }
        // The job names the link, never its token, and the user, never their address.
        let mut params = BTreeMap::from([
            ("linkId".to_string(), id.to_string()),
            ("expiresAt".to_string(), rfc3339(expires)),
        ]);
        if let Some(c) = clinic {
            params.insert("clinicId".into(), c.to_string());
        }
        let job = job(user, kind.as_str(), &kind.template(), params, now);
        let requested = requested_write(&self.table, &job, now)?;
        Ok((vec![tx_put(put)?, requested], PreparedLink { id, job }))
    }

    /// Stores a new link on its own and sends it.
    pub async fn issue(
        &self,
        user: &UserId,
        kind: LinkKind,
        clinic: Option<&ClinicId>,
        now: i64,
    ) -> Result<(), ApiError> {
        let (writes, prepared) = self.prepare(user, kind, clinic, now).await?;
        db::transact(&self.table.client, writes)
            .await
            .map_err(db::fault)?;
        self.send(&prepared, now).await;
        Ok(())
    }

    /// Hands a stored link's job to the notification queue. Its event is committed with the
    /// link, so a queue that does not take it now only delays the mail: the notifications
    /// consumer queues it from the event.
    pub async fn send(&self, p: &PreparedLink, now: i64) {
        if let Err(e) = p
            .job
            .send_recorded(&self.table, &self.sqs, &self.notifications_queue_url, now)
            .await
        {
            tracing::warn!(job_id = %p.job.job_id, error = %e, "job not queued now; the notifications consumer will queue it from its event");
        }
    }

    /// An account notice (a membership gained, a role changed): always sent, whatever the
    /// user's preferences, with ids only.
    pub async fn notify(
        &self,
        user: &UserId,
        template: &str,
        params: BTreeMap<String, String>,
        now: i64,
    ) -> Result<(), ApiError> {
        let job = job(user, template, template, params, now);
        // First in the outbox, then on the queue: if the queue does not take it now, the
        // notifications consumer queues it from the event. (The change the notice tells of
        // is committed already; this is a write of its own.)
        let durable = match requested_write(&self.table, &job, now) {
            Ok(write) => db::transact(&self.table.client, vec![write])
                .await
                .map_err(db::fault),
            Err(e) => Err(e),
        };
        let sent = job
            .send_recorded(&self.table, &self.sqs, &self.notifications_queue_url, now)
            .await;
        match (durable, sent) {
            (_, Ok(())) => Ok(()),
            (Ok(()), Err(e)) => {
                tracing::warn!(job_id = %job.job_id, error = %e, "job not queued now; the notifications consumer will queue it from its event");
                Ok(())
            }
            (Err(_), Err(e)) => Err(e),
        }
    }

    /// The live link of `kind` a presented token opens, or `None` (unknown, spent, expired,
    /// another kind, or a wrong secret: all look the same).
    pub async fn open(
        &self,
        token: &Phi<String>,
        kind: LinkKind,
        now: i64,
    ) -> Result<Option<Link>, ApiError> {
        let Some((id, secret)) = parse_token(token.expose()) else {
            return Ok(None);
        };
        let Some(item) = self.table.get(keys::link_pk(&id), keys::LINK_SK).await? else {
            return Ok(None);
        };
        let hash = token_hash(secret);
        let stored = get_opt_s(&item, "secretHash").unwrap_or_default();
        let expires_at = get_opt_n(&item, "expiresAt").unwrap_or(0);
        let Some(user) = get_opt_s(&item, "userId").and_then(UserId::parse) else {
            return Ok(None);
        };
        let live = constant_time_eq(hash.as_bytes(), stored.as_bytes())
            && expires_at > now
            && get_opt_s(&item, "kind").and_then(LinkKind::parse) == Some(kind);
        Ok(live.then(|| Link {
            id,
            kind,
            user,
            clinic: get_opt_s(&item, "clinicId").and_then(ClinicId::parse),
            expires_at,
            secret_hash: hash,
        }))
    }

    /// The URL a link's mail carries, for the worker that sends it: `None` once the link is
    /// spent or expired. The URL holds the token: never log it.
    pub async fn url(&self, link: &LinkId, now: i64) -> Result<Option<Phi<String>>, ApiError> {
        let Some(item) = self.table.get(keys::link_pk(link), keys::LINK_SK).await? else {
            return Ok(None);
        };
        let (Some(kind), Some(sealed)) = (
            get_opt_s(&item, "kind").and_then(LinkKind::parse),
            get_opt_s(&item, "sealedSecret"),
        ) else {
            return Ok(None);
        };
        if get_opt_n(&item, "expiresAt").unwrap_or(0) <= now {
            return Ok(None);
        }
        let secret = self
            .envelope
            .decrypt_str(&secret_field(link), sealed)
            .await?;
        Ok(Some(Phi::new(format!(
            "{}/{}?token={link}.{}",
            self.app_url,
            kind.page(),
            secret.expose()
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_one_shape() {
        let id = LinkId::generate();
        let secret = random_token();
        let token = format!("{id}.{secret}");
        assert_eq!(parse_token(&token).map(|(i, _)| i), Some(id.clone()));
        assert!(parse_token(&secret).is_none());
        assert!(parse_token(&format!("{id}.short")).is_none());
        assert!(parse_token(&format!("not-an-id.{secret}")).is_none());
        assert!(parse_token(&format!("{id}.{secret}x")).is_none());
    }

    #[test]
    fn every_kind_round_trips_and_has_a_page() {
        for k in [
            LinkKind::PasswordReset,
            LinkKind::Membership,
            LinkKind::EmailVerification,
        ] {
            assert_eq!(LinkKind::parse(k.as_str()), Some(k));
            assert!(!k.page().is_empty() && k.valid_seconds() > 0);
        }
    }
}
