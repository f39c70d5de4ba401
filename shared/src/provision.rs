//! Creates the resources `template.yaml` declares (table, key, bus, rule, queues, secrets)
//! against any endpoint: the local stack's bootstrap and every integration test use it, each
//! test under its own name prefix so tests run in parallel without seeing each other.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::aws::Clients;
use crate::keys;
use crate::secrets::PlatformSecrets;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The payment provider's webhook secret in local stacks and tests (on AWS it is a stack
/// parameter).
pub const LOCAL_WEBHOOK_SECRET: &str = "local-gateway-webhook-secret";
/// The local stack's sender address, verified in the emulator by provisioning.
pub const LOCAL_SENDER: &str = "notifications@clinic.local";
/// A notification job is tried this many times before its queue moves it to the dead-letter
/// queue (other queues allow five receives).
pub const NOTIFICATION_RECEIVES: i64 = 3;

/// The bus events billing consumes, by source and type.
pub const BILLING_EVENT_PATTERN: (&[&str], &[&str]) =
    (&["clinic.appointment"], &["appointment.cancelled"]);
/// The bus events appointments consumes, by source and type.
pub const APPOINTMENTS_EVENT_PATTERN: (&[&str], &[&str]) =
    (&["clinic.billing"], &["billing.invoice.paid"]);

/// The bus events that become notifications, by source and type.
pub const NOTIFICATIONS_EVENT_PATTERN: (&[&str], &[&str]) = (
    &[
        "clinic.appointment",
        "clinic.billing",
        "clinic.ehr",
        "clinic.notification",
    ],
    &[
        "appointment.created",
        "appointment.confirmed",
        "appointment.rescheduled",
        "appointment.cancelled",
        "appointment.no_show",
        "billing.subscription.created",
        "billing.invoice.issued",
        "billing.payment.completed",
        "billing.payment.failed",
        "billing.payment.refunded",
        "ehr.break_glass.opened",
        crate::contracts::NOTIFICATION_REQUESTED,
    ],
);

/// Every event source the bus carries (one per bounded context).
pub const EVENT_SOURCES: &[&str] = &[
    "clinic.auth",
    "clinic.clinic",
    "clinic.user",
    "clinic.appointment",
    "clinic.billing",
    "clinic.ehr",
    "clinic.notification",
];

#[derive(Debug, Clone)]
pub struct Resources {
    pub table: String,
    /// The append-only audit trail, the key its daily digests are signed with, and the
    /// sealing job's per-clinic work queue.
    pub audit_table: String,
    pub audit_signing_key_id: String,
    pub audit_seal_url: String,
    pub kms_key_id: String,
    pub bus: String,
    /// The notification job queues, one per priority.
    pub notifications_critical_url: String,
    pub notifications_high_url: String,
    pub notifications_normal_url: String,
    pub notifications_low_url: String,
    /// Their dead-letter queues.
    pub notifications_critical_dlq_url: String,
    pub notifications_high_dlq_url: String,
    pub notifications_normal_dlq_url: String,
    pub notifications_low_dlq_url: String,
    /// The SNS platform applications push goes through: `platform=arn` pairs (`fcm`, `apns`).
    pub push_apps: String,
    /// The verified sender address of notification mail.
    pub sender: String,
    /// A queue that receives every event on the bus, for inspection and tests; its messages
    /// expire after `TAP_RETENTION_SECONDS`.
    pub events_tap_url: String,
    /// The relay's dead-letter queue: outbox items it could not publish.
    pub events_relay_dlq_url: String,
    /// Billing's queue of bus events (appointment cancellations), with a dead-letter queue.
    pub billing_events_url: String,
    /// The appointments queue of bus events (paid visit invoices), with a dead-letter queue.
    pub appointments_events_url: String,
    /// The notifications queue of bus events (what happens to appointments).
    pub notifications_events_url: String,
    /// The scheduled jobs' per-clinic work queues, each with a dead-letter queue.
    pub appointments_sweep_url: String,
    pub billing_sweep_url: String,
    /// The appointment reminders' per-clinic work queue.
    pub notifications_reminders_url: String,
    /// The SES configuration set notification mail is sent with, and the queue its bounce and
    /// complaint events arrive on (the emulator publishes none: tests put them there).
    pub ses_configuration_set: String,
    pub notifications_feedback_url: String,
    pub secrets_ciphertext: String,
    /// The signing document, for the auth function only.
    pub signing_secrets_ciphertext: String,
}

impl Resources {
    /// The notification job queues, critical first (the worker's order).
    pub fn notification_queue_urls(&self) -> Vec<String> {
        vec![
            self.notifications_critical_url.clone(),
            self.notifications_high_url.clone(),
            self.notifications_normal_url.clone(),
            self.notifications_low_url.clone(),
        ]
    }

    /// The environment a function needs to run against these resources.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TABLE_NAME", self.table.clone()),
            ("AUDIT_TABLE_NAME", self.audit_table.clone()),
            ("AUDIT_SIGNING_KEY_ID", self.audit_signing_key_id.clone()),
            ("KMS_KEY_ID", self.kms_key_id.clone()),
            ("PLATFORM_SECRETS", self.secrets_ciphertext.clone()),
            ("SIGNING_SECRETS", self.signing_secrets_ciphertext.clone()),
            ("EVENT_BUS_NAME", self.bus.clone()),
            (
                "NOTIFICATIONS_QUEUE_URL",
                self.notifications_high_url.clone(),
            ),
            (
                "NOTIFICATIONS_NORMAL_QUEUE_URL",
                self.notifications_normal_url.clone(),
            ),
            ("EVENTS_TAP_QUEUE_URL", self.events_tap_url.clone()),
            ("EVENTS_RELAY_DLQ_URL", self.events_relay_dlq_url.clone()),
            ("NOTIFICATIONS_SENDER", self.sender.clone()),
            (
                "NOTIFICATIONS_QUEUE_URLS",
                self.notification_queue_urls().join(","),
            ),
            ("PUSH_PLATFORM_APPLICATIONS", self.push_apps.clone()),
            ("SES_CONFIGURATION_SET", self.ses_configuration_set.clone()),
            (
                "NOTIFICATIONS_FEEDBACK_QUEUE_URL",
                self.notifications_feedback_url.clone(),
            ),
            ("PAYMENT_WEBHOOK_SECRET", LOCAL_WEBHOOK_SECRET.to_string()),
        ]
    }
}

/// Clients for a local emulator at `endpoint` with fixed test credentials.
pub async fn local_clients(endpoint: &str) -> Clients {
    local_clients_with(endpoint, crate::aws::CallLimits::EMULATOR).await
}

/// [`local_clients`] with other limits (tests of timeouts make them short).
pub async fn local_clients_with(endpoint: &str, limits: crate::aws::CallLimits) -> Clients {
    let sdk = limits
        .loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "local",
        ))
        .load()
        .await;
    Clients::from_sdk(sdk)
}

/// Clients for the emulator named by `AWS_ENDPOINT_URL` (tests: `make test` starts it).
pub async fn test_clients() -> Clients {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: run the tests with `make test`, which starts the emulator"
        )
    });
    local_clients(&endpoint).await
}

/// A short unique prefix for one test's resources.
pub fn unique_prefix(label: &str) -> String {
    format!(
        "{label}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub async fn create_table(clients: &Clients, name: &str) -> Result<(), BoxError> {
    create_keyed_table(
        clients,
        name,
        &[
            (keys::GSI1, keys::GSI1PK, keys::GSI1SK),
            (keys::GSI2, keys::GSI2PK, keys::GSI2SK),
            (keys::GSI3, keys::GSI3PK, keys::GSI3SK),
            (keys::GSI4, keys::GSI4PK, keys::GSI4SK),
            (keys::GSI5, keys::GSI5PK, keys::GSI5SK),
        ],
        true,
    )
    .await?;
    clients
        .dynamodb
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(keys::TTL)
                .build()?,
        )
        .send()
        .await?;
    Ok(())
}

/// The audit table: no stream and no TTL (records are kept for good), indexed by patient,
/// actor and action.
pub async fn create_audit_table(clients: &Clients, name: &str) -> Result<(), BoxError> {
    create_keyed_table(
        clients,
        name,
        &[
            (keys::GSI1, keys::GSI1PK, keys::GSI1SK),
            (keys::GSI2, keys::GSI2PK, keys::GSI2SK),
            (keys::GSI3, keys::GSI3PK, keys::GSI3SK),
        ],
        false,
    )
    .await
}

async fn create_keyed_table(
    clients: &Clients,
    name: &str,
    indexes: &[(&str, &str, &str)],
    stream: bool,
) -> Result<(), BoxError> {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
    };
    let mut create = clients
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(keys::PK)?)
        .attribute_definitions(attr(keys::SK)?)
        .key_schema(key(keys::PK, KeyType::Hash)?)
        .key_schema(key(keys::SK, KeyType::Range)?);
    let mut gsis = Vec::new();
    for (index, pk, sk) in indexes {
        create = create
            .attribute_definitions(attr(pk)?)
            .attribute_definitions(attr(sk)?);
        gsis.push(
            GlobalSecondaryIndex::builder()
                .index_name(*index)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()?,
        );
    }
    if stream {
        create = create.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()?,
        );
    }
    create
        .set_global_secondary_indexes(Some(gsis))
        .send()
        .await?;
    Ok(())
}

/// How long the events tap keeps a message nobody received (SQS's minimum is 60 s).
pub const TAP_RETENTION_SECONDS: u32 = 15 * 60;

async fn create_queue(
    clients: &Clients,
    name: &str,
    dlq_arn: Option<&str>,
) -> Result<(String, String), BoxError> {
    create_queue_receiving(clients, name, dlq_arn, 5).await
}

/// A queue whose messages move to `dlq_arn` after `receives` receives.
async fn create_queue_receiving(
    clients: &Clients,
    name: &str,
    dlq_arn: Option<&str>,
    receives: i64,
) -> Result<(String, String), BoxError> {
    let mut req = clients.sqs.create_queue().queue_name(name);
    if let Some(arn) = dlq_arn {
        req = req.attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": receives})
                .to_string(),
        );
    }
    let url = req.send().await?.queue_url.ok_or("queue without url")?;
    let arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or("queue without arn")?;
    Ok((url, arn))
}

/// A context's queue of bus events: the queue `name` with its dead-letter queue, and a rule on
/// `bus` sending it the events of `pattern` (source, types). Returns the queue URL.
async fn consumer_queue(
    clients: &Clients,
    bus: &str,
    name: &str,
    pattern: (&[&str], &[&str]),
) -> Result<String, BoxError> {
    let (_, dlq) = create_queue(clients, &format!("{name}-dlq"), None).await?;
    let (url, arn) = create_queue(clients, name, Some(&dlq)).await?;
    clients
        .eventbridge
        .put_rule()
        .name(name)
        .event_bus_name(bus)
        .event_pattern(
            serde_json::json!({ "source": pattern.0, "detail-type": pattern.1 }).to_string(),
        )
        .send()
        .await?;
    clients
        .eventbridge
        .put_targets()
        .rule(name)
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()?,
        )
        .send()
        .await?;
    Ok(url)
}

/// Creates everything under `prefix` and seals fresh platform secrets with the new key.
pub async fn provision(clients: &Clients, prefix: &str) -> Result<Resources, BoxError> {
    let table = format!("{prefix}-table");
    create_table(clients, &table).await?;
    let audit_table = format!("{prefix}-audit");
    create_audit_table(clients, &audit_table).await?;

    let key = clients
        .kms
        .create_key()
        .description(format!("{prefix} PHI envelope key"))
        .send()
        .await?;
    let kms_key_id = key
        .key_metadata
        .map(|m| m.key_id)
        .ok_or("key without metadata")?;

    // The audit trail's digests are signed with an asymmetric key of their own.
    let signing = clients
        .kms
        .create_key()
        .description(format!("{prefix} audit digest signing key"))
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await?;
    let audit_signing_key_id = signing
        .key_metadata
        .map(|m| m.key_id)
        .ok_or("key without metadata")?;

    let mut queues = Vec::new();
    for priority in ["critical", "high", "normal", "low"] {
        let (dlq_url, dlq) = create_queue(
            clients,
            &format!("{prefix}-notifications-{priority}-dlq"),
            None,
        )
        .await?;
        let (url, _) = create_queue_receiving(
            clients,
            &format!("{prefix}-notifications-{priority}"),
            Some(&dlq),
            NOTIFICATION_RECEIVES,
        )
        .await?;
        queues.push((url, dlq_url));
    }
    let [critical, high, normal, low] =
        <[(String, String); 4]>::try_from(queues).map_err(|_| "four notification queues")?;
    // Push goes through one SNS platform application per platform (the emulator keeps what
    // each endpoint was sent).
    let sns = aws_sdk_sns::Client::new(&clients.sdk);
    let mut push_apps = Vec::new();
    for (platform, sns_platform) in [("fcm", "GCM"), ("apns", "APNS")] {
        let app = sns
            .create_platform_application()
            .name(format!("{prefix}-{platform}"))
            .platform(sns_platform)
            .attributes("PlatformCredential", "local-credential")
            .send()
            .await?;
        push_apps.push(format!(
            "{platform}={}",
            app.platform_application_arn.unwrap_or_default()
        ));
    }
    // The emulator, like SES, sends only from a verified identity.
    aws_sdk_sesv2::Client::new(&clients.sdk)
        .create_email_identity()
        .email_identity(LOCAL_SENDER)
        .send()
        .await?;
    let ses_configuration_set = format!("{prefix}-notifications");
    aws_sdk_sesv2::Client::new(&clients.sdk)
        .create_configuration_set()
        .configuration_set_name(&ses_configuration_set)
        .send()
        .await?;
    let (_, feedback_dlq) = create_queue(
        clients,
        &format!("{prefix}-notifications-feedback-dlq"),
        None,
    )
    .await?;
    let (notifications_feedback, _) = create_queue(
        clients,
        &format!("{prefix}-notifications-feedback"),
        Some(&feedback_dlq),
    )
    .await?;
    let (tap, tap_arn) = create_queue(clients, &format!("{prefix}-events-tap"), None).await?;
    // Nothing consumes the tap: what nobody read within its retention goes, as SQS lets
    // messages expire, so a long-running local stack does not keep every event ever published.
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&tap)
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            TAP_RETENTION_SECONDS.to_string(),
        )
        .send()
        .await?;

    let bus = format!("{prefix}-bus");
    clients
        .eventbridge
        .create_event_bus()
        .name(&bus)
        .send()
        .await?;
    let rule = format!("{prefix}-all-events");
    clients
        .eventbridge
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(serde_json::json!({ "source": EVENT_SOURCES }).to_string())
        .send()
        .await?;
    clients
        .eventbridge
        .put_targets()
        .rule(&rule)
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("events-tap")
                .arn(tap_arn)
                .build()?,
        )
        .send()
        .await?;

    let billing_events = consumer_queue(
        clients,
        &bus,
        &format!("{prefix}-billing-events"),
        BILLING_EVENT_PATTERN,
    )
    .await?;
    let appointments_events = consumer_queue(
        clients,
        &bus,
        &format!("{prefix}-appointments-events"),
        APPOINTMENTS_EVENT_PATTERN,
    )
    .await?;

    let notifications_events = consumer_queue(
        clients,
        &bus,
        &format!("{prefix}-notifications-events"),
        NOTIFICATIONS_EVENT_PATTERN,
    )
    .await?;

    let (_, sweep_dlq) =
        create_queue(clients, &format!("{prefix}-appointments-sweep-dlq"), None).await?;
    let (appointments_sweep, _) = create_queue(
        clients,
        &format!("{prefix}-appointments-sweep"),
        Some(&sweep_dlq),
    )
    .await?;
    let (_, reminders_dlq) = create_queue(
        clients,
        &format!("{prefix}-notifications-reminders-dlq"),
        None,
    )
    .await?;
    let (notifications_reminders, _) = create_queue(
        clients,
        &format!("{prefix}-notifications-reminders"),
        Some(&reminders_dlq),
    )
    .await?;
    let (_, seal_dlq) = create_queue(clients, &format!("{prefix}-audit-seal-dlq"), None).await?;
    let (audit_seal, _) =
        create_queue(clients, &format!("{prefix}-audit-seal"), Some(&seal_dlq)).await?;
    let (_, billing_dlq) =
        create_queue(clients, &format!("{prefix}-billing-sweep-dlq"), None).await?;
    let (billing_sweep, _) = create_queue(
        clients,
        &format!("{prefix}-billing-sweep"),
        Some(&billing_dlq),
    )
    .await?;

    let (relay_dlq, _) = create_queue(clients, &format!("{prefix}-events-relay-dlq"), None).await?;

    let sealed = PlatformSecrets::generate()
        .seal(&clients.kms, &kms_key_id)
        .await?;
    Ok(Resources {
        table,
        audit_table,
        audit_signing_key_id,
        audit_seal_url: audit_seal,
        kms_key_id,
        bus,
        notifications_critical_url: critical.0,
        notifications_high_url: high.0,
        notifications_normal_url: normal.0,
        notifications_low_url: low.0,
        notifications_critical_dlq_url: critical.1,
        notifications_high_dlq_url: high.1,
        notifications_normal_dlq_url: normal.1,
        notifications_low_dlq_url: low.1,
        push_apps: push_apps.join(","),
        sender: LOCAL_SENDER.to_string(),
        events_tap_url: tap,
        events_relay_dlq_url: relay_dlq,
        billing_events_url: billing_events,
        appointments_events_url: appointments_events,
        notifications_events_url: notifications_events,
        appointments_sweep_url: appointments_sweep,
        billing_sweep_url: billing_sweep,
        notifications_reminders_url: notifications_reminders,
        ses_configuration_set,
        notifications_feedback_url: notifications_feedback,
        secrets_ciphertext: sealed.shared,
        signing_secrets_ciphertext: sealed.signing,
    })
}

/// Writes a minimal clinic item (the clinics function owns the full record), open to patients'
/// self-registration or not.
pub async fn put_clinic(
    clients: &Clients,
    table: &str,
    clinic: &crate::ids::ClinicId,
    (name, time_zone, currency): (&str, &str, &str),
    self_registration: bool,
) -> Result<(), BoxError> {
    use crate::db::{n, s};
    let now = jiff::Timestamp::now().as_second();
    clients
        .dynamodb
        .put_item()
        .table_name(table)
        .item(keys::PK, s(keys::clinic_pk(clinic)))
        .item(keys::SK, s(keys::CLINIC_SK))
        .item(keys::ENTITY, s("CLINIC"))
        .item(keys::GSI1PK, s(keys::CLINICS_GSI1PK))
        .item(keys::GSI1SK, s(keys::clinic_gsi1sk(clinic)))
        .item("clinicId", s(clinic.as_str()))
        .item("locale", s("en"))
        .item("name", s(name))
        .item("timeZone", s(time_zone))
        .item("currency", s(currency))
        .item("status", s("ACTIVE"))
        .item("selfRegistration", crate::db::b(self_registration))
        .item("staffMfaRequired", crate::db::b(false))
        .item("createdAt", n(now))
        .item("version", n(1))
        .send()
        .await?;
    Ok(())
}

/// Writes a location item with its member count (for seeds that assign members directly).
pub async fn put_location(
    clients: &Clients,
    table: &str,
    clinic: &crate::ids::ClinicId,
    location: &crate::ids::LocationId,
    name: &str,
    member_count: i64,
) -> Result<(), BoxError> {
    use crate::db::{n, s};
    clients
        .dynamodb
        .put_item()
        .table_name(table)
        .item(keys::PK, s(keys::clinic_pk(clinic)))
        .item(keys::SK, s(keys::location_sk(location)))
        .item(keys::ENTITY, s("LOCATION"))
        .item("locationId", s(location.as_str()))
        .item("clinicId", s(clinic.as_str()))
        .item("name", s(name))
        .item("memberCount", n(member_count))
        .item("version", n(1))
        .item("createdAt", n(jiff::Timestamp::now().as_second()))
        .send()
        .await?;
    Ok(())
}

/// Takes every message on `queue` whose JSON body `wanted` accepts off the queue (the others
/// stay), retrying a few receives until one is found; for tests that read what a function
/// queued.
pub async fn take_queued(
    clients: &Clients,
    queue: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> Result<Vec<serde_json::Value>, BoxError> {
    let mut found = Vec::new();
    for _ in 0..5 {
        let msgs = clients
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        for m in &msgs {
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap_or("{}"))?;
            if wanted(&body) {
                clients
                    .sqs
                    .delete_message()
                    .queue_url(queue)
                    .set_receipt_handle(m.receipt_handle().map(str::to_string))
                    .send()
                    .await?;
                found.push(body);
            }
        }
        if !found.is_empty() {
            break;
        }
    }
    Ok(found)
}

/// The token of an account-mail job's link, opened as the notification worker opens it.
pub async fn link_token(
    mail: &crate::identity::AccountMail,
    job: &serde_json::Value,
    now: i64,
) -> Result<String, BoxError> {
    let id = job["params"]["linkId"]
        .as_str()
        .and_then(crate::ids::LinkId::parse)
        .ok_or("the job names no link")?;
    let url = mail
        .url(&id, now)
        .await?
        .ok_or("the link is spent or expired")?;
    Ok(url
        .expose()
        .split_once("token=")
        .ok_or("no token in the link")?
        .1
        .to_string())
}

pub use crate::app::join_all;
