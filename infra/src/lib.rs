//! The local stack: provisions the emulated resources, builds every function's state against
//! them, merges the function routers into one gateway, runs the async side (the events relay)
//! in-process, and seeds demo data. `make dev`, the black-box tests and the benchmarks use it.

pub mod bench;
pub mod contract;
pub mod delivery;
pub mod ehr_bench;
pub mod faults;
pub mod lifecycle;
mod received;
pub mod scale;
pub mod soak;

use axum::Router;
use shared::identity::NewMembership;
use shared::{
    aws::Clients,
    clock::{Clock, SystemClock},
    config::PlatformConfig,
    crypto::Phi,
    ids::{ClinicId, LocationId, UserId},
    outbox::{Actor, EventEnvelope, Subject},
    policy::Role,
    provision::{Resources, provision, put_clinic, put_location},
    types::Email,
};
use std::{net::SocketAddr, sync::Arc, time::Duration};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use received::{sent_mail, sent_push, sent_sms};

/// The demo clinics have fixed ids so the README walk-through can name them.
pub const DEMO_CLINIC_ID: &str = "c1a1c000-0000-4000-8000-000000000001";
/// A second clinic, to try tenant isolation by hand.
pub const SECOND_CLINIC_ID: &str = "c1a1c000-0000-4000-8000-000000000002";
/// The demo clinic's one location.
pub const DEMO_LOCATION_ID: &str = "10c0a000-0000-4000-8000-000000000001";
/// Every seeded demo user shares this password (it passes the password policy).
pub const DEMO_PASSWORD: &str = "clinic-demo-passphrase";
/// The platform's super admin (a platform role, no clinic membership).
pub const DEMO_SUPER_ADMIN: &str = "super@demo.clinic";
/// The demo super admin's authenticator secret (base32): the role always signs in in two
/// steps. `make totp` prints its current code; any authenticator app takes the secret.
pub const DEMO_SUPER_ADMIN_TOTP: &str = "DEMOCLINICSUPERADMINTOTPSECRET23";

/// The current code of a base32 authenticator secret at `unix` (what the app would show).
pub fn totp_code(secret_base32: &str, unix: i64) -> Option<String> {
    auth::totp::code_at(&auth::totp::secret_from_base32(secret_base32)?, unix)
}
/// One demo user per main role of the demo clinic: (role, email, given name, family name).
/// The location head is attached to the demo location.
#[rustfmt::skip]
pub const DEMO_USERS: &[(Role, &str, &str, &str)] = &[
    (Role::ClinicAdmin, "admin@demo.clinic", "Ada", "Admin"),
    (Role::ClinicLocationHead, "head@demo.clinic", "Hal", "Head"),
    (Role::Doctor, "doctor@demo.clinic", "Dana", "Doctor"),
    (Role::Nurse, "nurse@demo.clinic", "Nia", "Nurse"),
    (Role::Receptionist, "reception@demo.clinic", "Remy", "Reception"),
    (Role::FinanceBilling, "finance@demo.clinic", "Fay", "Finance"),
    (Role::Patient, "patient@demo.clinic", "Pat", "Patient"),
];
/// Demo users have fixed ids so the walk-through can name them: the super admin is 0, the
/// demo clinic's users 1 to 7 in [`DEMO_USERS`] order, the second clinic's 8 and 9.
pub fn demo_user_id(index: usize) -> UserId {
    UserId::parse(&format!("de3a0000-0000-4000-8000-{index:012}")).unwrap_or_else(UserId::generate)
}

/// The demo clinic's subscription plan: monthly, four visits included (in person or video).
pub const DEMO_PLAN_ID: &str = "91a40000-0000-4000-8000-000000000001";

/// The second clinic's users: (role, email, given name, family name).
pub const SECOND_CLINIC_USERS: &[(Role, &str, &str, &str)] = &[
    (Role::ClinicAdmin, "admin@second.clinic", "Sid", "Second"),
    (Role::Patient, "patient@second.clinic", "Polly", "Second"),
];

/// A running set of resources and the functions' states built on them.
pub struct Stack {
    pub clients: Clients,
    pub resources: Resources,
    pub auth: auth::AppState,
    pub users: users::AppState,
    pub clinics: clinics::AppState,
    pub appointments: appointments::AppState,
    pub billing: billing::AppState,
    pub notifications: notifications::AppState,
    pub ehr: ehr::AppState,
}

impl Stack {
    /// Provisions fresh resources under `prefix` and wires the functions to them.
    pub async fn up(clients: Clients, prefix: &str) -> Result<Self, BoxError> {
        let resources = provision(&clients, prefix).await?;
        Self::with_clock(clients, resources, Arc::new(SystemClock)).await
    }

    /// Wires every function to existing resources with the given clock.
    pub async fn with_clock(
        clients: Clients,
        resources: Resources,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BoxError> {
        let cfg = auth_config(&resources);
        let auth = auth::AppState::with_links(&clients, cfg.clone(), clock.clone()).await?;
        // Every other function holds the public keys only, as on AWS.
        let platform = PlatformConfig {
            signing_secrets_ciphertext: None,
            ..cfg.platform.clone()
        };
        let users = users::AppState::open(&clients, &platform, clock.clone(), ()).await?;
        let clinics_cfg = clinics::ClinicsConfig {
            platform: platform.clone(),
            notifications_queue_url: cfg.notifications_queue_url.clone(),
            app_url: cfg.app_url.clone(),
        };
        let clinics = clinics::AppState::with_links(&clients, clinics_cfg, clock.clone()).await?;
        let appointments =
            appointments::AppState::open(&clients, &platform, clock.clone(), Default::default())
                .await?;
        let billing = billing::state(
            &clients,
            &platform,
            shared::provision::LOCAL_WEBHOOK_SECRET,
            clock.clone(),
        )
        .await?;
        let ehr = ehr::AppState::open(&clients, &platform, clock.clone(), ()).await?;
        let notifications = notifications::state(
            &clients,
            notifications_config(&resources, platform, 0),
            clock,
        )
        .await?;
        Ok(Self {
            clients,
            resources,
            auth,
            users,
            clinics,
            appointments,
            billing,
            notifications,
            ehr,
        })
    }

    /// Every function's routes behind one set of platform layers, as API Gateway would route.
    pub fn gateway(&self) -> Router {
        shared::http::platform(
            Router::new()
                .merge(auth::routes(self.auth.clone()))
                .merge(users::routes(self.users.clone()))
                .merge(clinics::routes(self.clinics.clone()))
                .merge(appointments::routes(self.appointments.clone()))
                .merge(billing::routes(self.billing.clone()))
                .merge(notifications::routes(self.notifications.clone()))
                .merge(ehr::routes(self.ehr.clone()))
                .merge(docs::routes()),
        )
    }

    /// Starts the stream-to-bus relay in the background.
    pub fn spawn_relay(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.relay_poller().run(every))
    }

    /// A reader of the table's stream that publishes outbox items to the bus, as the relay's
    /// event source mapping does on AWS (retries, then the dead-letter queue).
    pub fn relay_poller(&self) -> relay::StreamPoller<relay::Relay> {
        let dead_letters = relay::DeadLetters {
            sqs: self.clients.sqs.clone(),
            url: self.resources.events_relay_dlq_url.clone(),
        };
        relay::StreamPoller::new(
            aws_sdk_dynamodbstreams::Client::new(&self.clients.sdk),
            self.clients.dynamodb.clone(),
            &self.resources.table,
            relay::Relay {
                eventbridge: self.clients.eventbridge.clone(),
                bus: self.resources.bus.clone(),
                dead_letters: dead_letters.clone(),
            },
        )
        .with_dead_letters(dead_letters)
    }

    /// A reader of the table's stream that keeps billing's analytics counters, as the
    /// `billing-stats` event source mapping does on AWS.
    pub fn stats_poller(&self) -> relay::StreamPoller<billing::stats::Counters<billing::AppState>> {
        relay::StreamPoller::new(
            aws_sdk_dynamodbstreams::Client::new(&self.clients.sdk),
            self.clients.dynamodb.clone(),
            &self.resources.table,
            billing::stats::Counters(self.billing.clone()),
        )
    }

    /// Keeps billing's analytics counters from the stream in the background.
    pub fn spawn_stats(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.stats_poller().run(every))
    }

    /// Feeds the contexts' queues of bus events to their handlers, as the SQS event source
    /// mappings do on AWS.
    pub fn spawn_consumers(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let stack = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = drain_billing_events(&stack).await {
                    tracing::warn!(error = %e, "billing queue poll failed");
                }
                if let Err(e) = drain_appointments_events(&stack).await {
                    tracing::warn!(error = %e, "appointments queue poll failed");
                }
                if let Err(e) = drain_sweeps(&stack).await {
                    tracing::warn!(error = %e, "job work queue poll failed");
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Runs the notifications context every `every`, as its SQS event sources do on AWS: bus
    /// events to jobs, then the worker over the four job queues, critical first (with the receive counts).
    pub fn spawn_notifications(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let state = self.notifications.clone();
        let events = self.resources.notifications_events_url.clone();
        // Critical first, then high, normal and low: bulk work never holds critical back;
        // then what SES reported about sent mail.
        let mut queues = self.resources.notification_queue_urls();
        queues.push(self.resources.notifications_feedback_url.clone());
        tokio::spawn(async move {
            loop {
                let planned = drain_queue(&state.sqs, &events, |e| {
                    let state = state.clone();
                    async move { notifications::events::handle(&state, &e).await }
                })
                .await;
                if let Err(e) = planned {
                    tracing::warn!(error = %e, "notification events poll failed");
                }
                for q in &queues {
                    if let Err(e) = drain_notifications(&state, q).await {
                        tracing::warn!(error = %e, "notification queue poll failed");
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Fans the appointment sweep out every `every`, as the EventBridge schedule does on AWS;
    /// [`Stack::spawn_consumers`] then sweeps each clinic from the work queue.
    pub fn spawn_sweep(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        spawn_fan_out(
            self.appointments.clone(),
            self.resources.appointments_sweep_url.clone(),
            appointments::sweep::JOB,
            every,
        )
    }

    /// Fans the appointment reminders out every `every`, as the five-minute EventBridge
    /// schedule does on AWS; [`Stack::spawn_consumers`] then queues each clinic's reminders.
    pub fn spawn_reminders(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        spawn_fan_out(
            self.notifications.clone(),
            self.resources.notifications_reminders_url.clone(),
            notifications::reminders::JOB,
            every,
        )
    }

    /// Everything `make dev` runs beside the gateway, at its local pace: the relay, the
    /// consumers and the notification worker every half second, the scheduled jobs every
    /// minute, and the audit seal hourly (so a stack left running over midnight seals the day
    /// that ended). The tasks run until the process ends.
    pub fn spawn_background(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let often = Duration::from_millis(500);
        let minute = Duration::from_secs(60);
        vec![
            self.spawn_relay(often),
            self.spawn_consumers(often),
            self.spawn_notifications(often),
            self.spawn_stats(often),
            self.spawn_sweep(minute),
            self.spawn_billing_sweep(minute),
            self.spawn_reminders(minute),
            self.spawn_audit_seal(Duration::from_secs(3600)),
        ]
    }

    /// Fans the audit sealing job out every `every`, as the daily EventBridge schedule does
    /// on AWS; [`Stack::spawn_consumers`] then seals each clinic's finished days.
    pub fn spawn_audit_seal(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        spawn_fan_out(
            self.ehr.clone(),
            self.resources.audit_seal_url.clone(),
            ehr::seal::JOB,
            every,
        )
    }

    /// The audit signing key, for sealing and verifying the trail's digests.
    pub fn audit_signer(&self) -> ehr::seal::Signer {
        ehr::seal::Signer {
            kms: self.clients.kms.clone(),
            key_id: self.resources.audit_signing_key_id.clone(),
        }
    }

    /// Fans the billing job out every `every`, as the hourly EventBridge schedule does on AWS.
    pub fn spawn_billing_sweep(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        spawn_fan_out(
            self.billing.clone(),
            self.resources.billing_sweep_url.clone(),
            billing::sweep::JOB,
            every,
        )
    }

    /// The demo clinic (with a location and one user per main role), a second clinic for
    /// trying isolation, and the platform's super admin.
    pub async fn seed_demo(&self) -> Result<ClinicId, BoxError> {
        let now = jiff::Timestamp::now();
        let identities = &self.auth.identities;
        let password =
            Some(auth::service::hash_password(&Phi::new(DEMO_PASSWORD.to_string())).await?);
        let demo = ClinicId::parse(DEMO_CLINIC_ID).ok_or("bad demo clinic id")?;
        let second = ClinicId::parse(SECOND_CLINIC_ID).ok_or("bad second clinic id")?;
        let location = LocationId::parse(DEMO_LOCATION_ID).ok_or("bad demo location id")?;
        put_clinic(
            &self.clients,
            &self.resources.table,
            &demo,
            ("Demo Clinic", "Europe/Berlin", "EUR"),
            true,
        )
        .await?;
        put_clinic(
            &self.clients,
            &self.resources.table,
            &second,
            ("Second Clinic", "America/New_York", "USD"),
            false,
        )
        .await?;
        put_location(
            &self.clients,
            &self.resources.table,
            &demo,
            &location,
            "Main Street",
            1,
        )
        .await?;
        let people = std::iter::once((None, Role::SuperAdmin, DEMO_SUPER_ADMIN, "Sam", "Super"))
            .chain(
                DEMO_USERS
                    .iter()
                    .map(|(r, e, g, f)| (Some(&demo), *r, *e, *g, *f)),
            )
            .chain(
                SECOND_CLINIC_USERS
                    .iter()
                    .map(|(r, e, g, f)| (Some(&second), *r, *e, *g, *f)),
            );
        let mut doctor = None;
        for (index, (clinic, role, email, given, family)) in people.enumerate() {
            let user = demo_user_id(index);
            if role == Role::Doctor {
                doctor = Some(user.clone());
            }
            let membership = clinic.map(|c| NewMembership {
                clinic: c.clone(),
                role,
                location: (role == Role::ClinicLocationHead).then(|| location.clone()),
                pending: false,
            });
            let identity = shared::identity::NewIdentity {
                user: user.clone(),
                email: Email::parse(email).ok_or("bad demo email")?,
                given_name: given.into(),
                family_name: family.into(),
                phone: None,
                birth_date: None,
                password_hash: password.clone(),
                platform_role: clinic.is_none().then_some(role),
                membership,
                // Demo users are seeded with proven addresses, so the walk-through works.
                email_verified: true,
            };
            let event = EventEnvelope::new(
                "auth.user_registered",
                clinic,
                Actor::default(),
                Subject {
                    kind: "user".into(),
                    id: user.to_string(),
                },
                serde_json::json!({ "userId": user, "clinicId": clinic, "role": role }),
                now,
            );
            identities.create(identity, &event, now.as_second()).await?;
            if role == Role::SuperAdmin {
                let secret = auth::totp::secret_from_base32(DEMO_SUPER_ADMIN_TOTP)
                    .ok_or("bad demo authenticator secret")?;
                auth::Auth(&self.auth).seed_totp(&user, &secret).await?;
            }
        }
        if let Some(doctor) = doctor {
            self.seed_hours(&demo, &doctor, &location, now.as_second())
                .await?;
        }
        self.seed_plan(&demo, now.as_second()).await?;
        Ok(demo)
    }

    /// The demo plan: EUR 49.00 a month, four appointments included, in person or by video;
    /// visits outside it cost 60.00 in person, 35.00 by video, 90.00 at home.
    async fn seed_plan(&self, clinic: &ClinicId, now: i64) -> Result<(), BoxError> {
        use billing::rules::{Cadence, Interval};
        let plan = billing::store::PlanRecord {
            id: shared::ids::PlanId::parse(DEMO_PLAN_ID).ok_or("bad demo plan id")?,
            clinic: clinic.clone(),
            name: "Family care".into(),
            description: Some("Four visits a month, in person or by video.".into()),
            price: 4900,
            currency: "EUR".into(),
            cadence: Cadence {
                unit: Interval::Month,
                count: 1,
            },
            trial_days: 0,
            included: Some(4),
            covered_types: vec!["IN_PERSON".into(), "VIDEO_CALL".into()],
            visit_prices: [
                ("IN_PERSON", 6000),
                ("VIDEO_CALL", 3500),
                ("HOME_VISIT", 9000),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            active: true,
            live_subscriptions: 0,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let put = plan.put(&self.billing.table)?;
        shared::db::transact(&self.billing.table.client, vec![put])
            .await
            .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }

    /// The demo doctor works every day around the clock (00:00-23:55) at the demo location,
    /// with a lunch break, in 30-minute slots, so the walk-through works at any hour.
    async fn seed_hours(
        &self,
        clinic: &ClinicId,
        doctor: &UserId,
        location: &LocationId,
        now: i64,
    ) -> Result<(), BoxError> {
        use appointments::rules::{Availability, Interval, Shift};
        let t = |h, m| jiff::civil::Time::new(h, m, 0, 0);
        let day = Interval::new(t(0, 0)?, t(23, 55)?).ok_or("bad demo hours")?;
        let lunch = Interval::new(t(12, 0)?, t(13, 0)?).ok_or("bad demo break")?;
        let availability = Availability {
            weekly: std::array::from_fn(|_| vec![Shift::new(day, Some(location.as_str()))]),
            breaks: vec![lunch],
            exceptions: Vec::new(),
            slot_minutes: 30,
        };
        let table = &self.appointments.table;
        let put = appointments::store::put_schedule(table, clinic, doctor, &availability, 0, now)?;
        shared::db::transact(&table.client, vec![put])
            .await
            .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }
}

/// One receive from a context's queue of bus events, handling and deleting what arrived (what
/// fails stays, and comes back after its visibility timeout); returns how many were handled.
pub async fn drain_queue<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    handle: F,
) -> Result<usize, BoxError>
where
    F: Fn(EventEnvelope) -> Fut,
    Fut: std::future::Future<Output = Result<(), shared::ApiError>>,
{
    drain_messages(
        sqs,
        url,
        |body| EventEnvelope::from_bus_message(body).ok(),
        |e| {
            // As on AWS (`shared::lambda::handle_batch`): the consumer continues the event's work.
            let (correlation, trace) = (e.correlation_id.clone(), e.trace_id.clone());
            shared::correlation::continuing(correlation, trace, handle(e))
        },
    )
    .await
}

/// One receive of up to ten messages from `url`: each that `read` understands is handled, and
/// deleted when that succeeds (one that fails or cannot be read stays and comes back after its
/// visibility timeout, reaching the dead-letter queue after five receives, as on AWS).
async fn drain_messages<T, R, F, Fut, O>(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    read: R,
    handle: F,
) -> Result<usize, BoxError>
where
    R: Fn(&str) -> Option<T>,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<O, shared::ApiError>>,
{
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(5)
        .send()
        .await?;
    let mut handled = 0;
    for m in out.messages.unwrap_or_default() {
        let Some(message) = m.body().and_then(&read) else {
            tracing::error!(
                queue = url,
                "undecodable message left for the dead-letter queue"
            );
            continue;
        };
        match handle(message).await {
            Ok(_) => {
                if let Some(h) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(url)
                        .receipt_handle(h)
                        .send()
                        .await?;
                }
                handled += 1;
            }
            Err(e) => tracing::warn!(queue = url, error = %e, "message failed; it will be retried"),
        }
    }
    Ok(handled)
}

/// One receive of up to ten notification jobs from `url`, handed to the worker as an SQS event
/// (receive counts included); what it reports as failed stays for its retry (the worker has
/// set when), the rest is deleted. Returns how many messages arrived.
pub async fn drain_notifications(
    state: &notifications::AppState,
    url: &str,
) -> Result<usize, BoxError> {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    let out = state
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(30)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
        )
        .send()
        .await?;
    let messages = out.messages.unwrap_or_default();
    let name = url.rsplit('/').next().unwrap_or_default();
    let records: Vec<SqsMessage> = messages
        .iter()
        .map(|m| {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id.clone();
            r.receipt_handle = m.receipt_handle.clone();
            r.body = m.body.clone();
            r.event_source_arn = Some(format!("arn:aws:sqs:local:000000000000:{name}"));
            if let Some(attrs) = &m.attributes {
                for (k, v) in attrs {
                    r.attributes.insert(k.as_str().to_string(), v.clone());
                }
            }
            r
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
    let response = notifications::worker::handle_batch(state, event).await;
    for m in &messages {
        let failed = response
            .batch_item_failures
            .iter()
            .any(|f| Some(f.item_identifier.as_str()) == m.message_id.as_deref());
        if let (false, Some(h)) = (failed, m.receipt_handle()) {
            state
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(h)
                .send()
                .await?;
        }
    }
    Ok(messages.len())
}

/// The notification worker's settings over `res`; the first retry waits `retry_seconds`.
pub fn notifications_config(
    res: &Resources,
    platform: PlatformConfig,
    retry_seconds: i64,
) -> notifications::WorkerConfig {
    notifications::WorkerConfig {
        platform,
        sender: res.sender.clone(),
        configuration_set: Some(res.ses_configuration_set.clone()),
        feedback_queue_url: Some(res.notifications_feedback_url.clone()),
        app_url: "http://127.0.0.1:3000".into(),
        queue_urls: res.notification_queue_urls(),
        push_apps: notifications::parse_push_apps(&res.push_apps),
        limits: notifications::limits::Limits::default(),
        retry_base_seconds: retry_seconds,
        defer_step_seconds: 900,
    }
}

/// A scheduled job's fan-out every `every`: one work message per clinic.
fn spawn_fan_out<S>(
    platform: S,
    url: String,
    job: &'static str,
    every: Duration,
) -> tokio::task::JoinHandle<()>
where
    S: std::ops::Deref<Target = shared::platform::Platform> + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = shared::jobs::fan_out(&platform, &url, job).await {
                tracing::error!(job, error = %e, "job fan-out failed");
            }
        }
    })
}

/// Runs every clinic's work waiting on a job's queue with `run` (see [`drain_messages`]).
pub async fn drain_work<F, Fut, R>(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    job: &str,
    run: F,
) -> Result<usize, BoxError>
where
    F: Fn(ClinicId) -> Fut,
    Fut: std::future::Future<Output = Result<R, shared::ApiError>>,
{
    drain_messages(
        sqs,
        url,
        |body| shared::jobs::read_work(body, job),
        |w| run(w.clinic_id),
    )
    .await
}

/// Every scheduled job's work queue.
pub async fn drain_sweeps(stack: &Stack) -> Result<usize, BoxError> {
    let (appointments, billing) = (&stack.appointments, &stack.billing);
    let swept = drain_work(
        &stack.clients.sqs,
        &stack.resources.appointments_sweep_url,
        appointments::sweep::JOB,
        |clinic| async move { appointments::sweep::sweep_clinic(appointments, &clinic).await },
    )
    .await?;
    let billed = drain_work(
        &stack.clients.sqs,
        &stack.resources.billing_sweep_url,
        billing::sweep::JOB,
        |clinic| async move {
            billing::sweep::sweep_clinic(billing, &clinic, billing.clock.now()).await
        },
    )
    .await?;
    let notifications = &stack.notifications;
    let reminded = drain_work(
        &stack.clients.sqs,
        &stack.resources.notifications_reminders_url,
        notifications::reminders::JOB,
        |clinic| async move { notifications::reminders::sweep_clinic(notifications, &clinic).await },
    )
    .await?;
    let (ehr, signer) = (&stack.ehr, stack.audit_signer());
    let signer = &signer;
    let sealed = drain_work(
        &stack.clients.sqs,
        &stack.resources.audit_seal_url,
        ehr::seal::JOB,
        |clinic| async move {
            let today = ehr.clock.now().to_zoned(jiff::tz::TimeZone::UTC).date();
            ehr::seal::seal_clinic(&ehr.audit.table, signer, &clinic, today).await
        },
    )
    .await?;
    Ok(swept + billed + reminded + sealed)
}

/// Billing's queue: cancelled covered appointments give their unit back.
pub async fn drain_billing_events(stack: &Stack) -> Result<usize, BoxError> {
    let state = &stack.billing;
    drain_queue(
        &stack.clients.sqs,
        &stack.resources.billing_events_url,
        |e| async move { billing::events::handle(state, &e, state.clock.now()).await },
    )
    .await
}

/// The appointments queue: a paid visit invoice confirms its appointment.
pub async fn drain_appointments_events(stack: &Stack) -> Result<usize, BoxError> {
    let state = &stack.appointments;
    drain_queue(
        &stack.clients.sqs,
        &stack.resources.appointments_events_url,
        |e| async move { appointments::events::handle(state, &e, state.clock.now()).await },
    )
    .await
}

/// The auth function's configuration for these resources.
pub fn auth_config(res: &Resources) -> auth::AuthConfig {
    auth::AuthConfig {
        platform: PlatformConfig {
            table_name: res.table.clone(),
            audit_table_name: res.audit_table.clone(),
            kms_key_id: res.kms_key_id.clone(),
            secrets_ciphertext: res.secrets_ciphertext.clone(),
            signing_secrets_ciphertext: Some(res.signing_secrets_ciphertext.clone()),
            jwt_issuer: "https://auth.clinic.local".into(),
            jwt_audience: "clinic-api".into(),
            session_cache_seconds: 30,
        },
        notifications_queue_url: res.notifications_high_url.clone(),
        app_url: "http://127.0.0.1:3000".into(),
    }
}

/// Serves `router` on `addr` until the process ends. Returns the bound address first.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BoxError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        // The peer address reaches the handlers (throttles key on it, as on API Gateway).
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "gateway stopped");
        }
    });
    Ok((bound, handle))
}
