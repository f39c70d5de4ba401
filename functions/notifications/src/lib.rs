//! The `notifications` context: delivering notification jobs. Bus events become jobs through
//! one catalogue (`events`), one job per recipient and channel; the worker (`worker`) takes
//! jobs off the four priority queues and sends them, exactly once per job and channel
//! (`store`), within the sending limits (`limits`), with the built-in templates (`catalogue`):
//! email through SES, SMS and push through SNS (`devices`), and the in-app inbox (`inbox`).
//! Account mail (verification, invitation, password reset, membership and sign-in notices)
//! always goes out, by email. The HTTP routes (`routes`) serve a person's inbox and devices.

pub mod catalogue;
pub mod channels;
pub mod devices;
pub mod events;
pub mod feedback;
pub mod inbox;
pub mod limits;
pub mod reminders;
mod routes;
pub mod rules;
pub mod store;
pub mod wording;
pub mod worker;

use axum::Router;
use shared::{app::BoxError, config, identity::AccountMail};
use std::sync::Arc;

pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/users/me/notifications"),
    ("POST", "/v1/users/me/notifications/{notificationId}/read"),
    ("POST", "/v1/users/me/devices"),
    ("DELETE", "/v1/users/me/devices"),
    ("GET", "/v1/clinics/{clinicId}/notification-templates"),
    ("PUT", "/v1/clinics/{clinicId}/notification-templates"),
    ("GET", "/v1/clinics/{clinicId}/notifications/deliveries"),
];

/// Handlers' state: the platform and the senders.
pub type AppState = shared::app::AppState<Mailer>;

pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(routes::me::router())
        .merge(routes::clinic::router())
        .with_state(state)
}

/// How the worker sends: SES and SNS, the sender identity, the push applications, the limits,
/// and how it opens links.
#[derive(Clone)]
pub struct Mailer {
    pub ses: aws_sdk_sesv2::Client,
    pub sns: aws_sdk_sns::Client,
    /// `(platform, SNS platform application ARN)`: `fcm`, `apns`.
    pub push_apps: Vec<(String, String)>,
    pub limits: limits::Limits,
    /// The verified sender address (`NOTIFICATIONS_SENDER`).
    pub sender: String,
    /// The SES configuration set whose events report bounces and complaints, if any.
    pub configuration_set: Option<String>,
    /// The queue those reports arrive on, if any.
    pub feedback_queue_url: Option<String>,
    /// Opens a link job's link into the URL its mail carries.
    pub links: AccountMail,
    /// The queues the worker consumes, critical, high, normal, low (to queue a job on its
    /// priority's queue, and to postpone a message by its source ARN).
    pub queue_urls: Vec<String>,
    /// The first retry waits this long; later ones twice as long each time.
    pub retry_base_seconds: i64,
    /// A job held by quiet hours comes back after at most this long (SQS delays a message
    /// at most 15 minutes), until the hours end.
    pub defer_step_seconds: i64,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// The queue of a priority.
    pub fn queue_for(&self, priority: catalogue::Priority) -> &str {
        self.queue_urls
            .get(priority.index())
            .or_else(|| self.queue_urls.first())
            .map_or("", String::as_str)
    }

    /// The URL of the queue an SQS event came from (its ARN ends with the queue's name).
    pub fn queue_url(&self, arn: &str) -> Option<&str> {
        let name = arn.rsplit(':').next()?;
        self.queue_urls
            .iter()
            .chain(self.feedback_queue_url.iter())
            .find(|u| u.rsplit('/').next() == Some(name))
            .map(String::as_str)
    }

    /// Whether an SQS event came from the feedback queue.
    pub fn is_feedback(&self, arn: &str) -> bool {
        let name = arn.rsplit(':').next();
        self.feedback_queue_url
            .as_deref()
            .is_some_and(|u| u.rsplit('/').next() == name)
    }
}

/// The worker's settings beyond the platform's.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub platform: config::PlatformConfig,
    pub sender: String,
    pub configuration_set: Option<String>,
    pub feedback_queue_url: Option<String>,
    pub app_url: String,
    pub queue_urls: Vec<String>,
    pub push_apps: Vec<(String, String)>,
    pub limits: limits::Limits,
    pub retry_base_seconds: i64,
    pub defer_step_seconds: i64,
}

/// `fcm=arn:...,apns=arn:...` as pairs.
pub fn parse_push_apps(value: &str) -> Vec<(String, String)> {
    value
        .split(',')
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(p, arn)| (p.trim().to_string(), arn.trim().to_string()))
        .filter(|(p, arn)| !p.is_empty() && !arn.is_empty())
        .collect()
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, config::ConfigError> {
        Ok(Self {
            platform: config::PlatformConfig::from_env()?,
            sender: config::required("NOTIFICATIONS_SENDER")?,
            configuration_set: std::env::var("SES_CONFIGURATION_SET")
                .ok()
                .filter(|s| !s.is_empty()),
            feedback_queue_url: std::env::var("NOTIFICATIONS_FEEDBACK_QUEUE_URL")
                .ok()
                .filter(|s| !s.is_empty()),
            app_url: config::optional("APP_URL", "http://127.0.0.1:3000"),
            queue_urls: config::required("NOTIFICATIONS_QUEUE_URLS")?
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            push_apps: parse_push_apps(&config::optional("PUSH_PLATFORM_APPLICATIONS", "")),
            limits: limits::Limits {
                clinic_per_minute: config::parsed("NOTIFICATIONS_CLINIC_PER_MINUTE", 100i64)?
                    .max(2),
                recipient_per_minute: config::parsed("NOTIFICATIONS_RECIPIENT_PER_MINUTE", 20i64)?
                    .max(2),
            },
            retry_base_seconds: config::parsed("NOTIFICATIONS_RETRY_SECONDS", 30i64)?,
            defer_step_seconds: 900,
        })
    }
}

/// The worker's state from its settings.
pub async fn state(
    clients: &shared::aws::Clients,
    cfg: WorkerConfig,
    clock: Arc<dyn shared::clock::Clock>,
) -> Result<AppState, BoxError> {
    let platform = shared::platform::Platform::new(clients, &cfg.platform, clock).await?;
    let ses = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&clients.sdk)
            .interceptor(clients.calls.clone())
            .build(),
    );
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&clients.sdk)
            .interceptor(clients.calls.clone())
            .build(),
    );
    let links = AccountMail::new(
        platform.table.clone(),
        platform.envelope.clone(),
        clients.sqs.clone(),
        cfg.queue_urls
            .get(catalogue::Priority::High.index())
            .cloned()
            .unwrap_or_default(),
        &cfg.app_url,
    );
    let mailer = Mailer {
        ses,
        sns,
        push_apps: cfg.push_apps,
        limits: cfg.limits,
        sender: cfg.sender,
        configuration_set: cfg.configuration_set,
        feedback_queue_url: cfg.feedback_queue_url,
        links,
        queue_urls: cfg.queue_urls,
        retry_base_seconds: cfg.retry_base_seconds,
        defer_step_seconds: cfg.defer_step_seconds.clamp(0, 900),
    };
    Ok(AppState::new(platform, mailer))
}

pub async fn state_from_env() -> Result<AppState, BoxError> {
    let cfg = WorkerConfig::from_env()?;
    let clients = shared::aws::Clients::from_env().await;
    state(&clients, cfg, Arc::new(shared::clock::SystemClock)).await
}

/// This context's part of the OpenAPI document (see `shared::openapi`).
pub fn openapi() -> serde_json::Value {
    shared::openapi::part(include_str!("../openapi.json"))
}
