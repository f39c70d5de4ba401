//! Delivery records: one item per (job, channel), which makes a redelivered job send once. A
//! worker claims the pair before sending (a conditional update that also counts the attempt
//! and leases the pair for a minute); the send's outcome then settles it, with its event in the
//! same transaction. A lease left by a worker that died lets the next delivery take over.

use aws_sdk_dynamodb::types::{ReturnValue, TransactWriteItem, Update};
use shared::{
    ApiError,
    db::{self, Item, Table, get_opt_n, get_opt_s, n, s},
    ids::ClinicId,
    keys,
    outbox::EventEnvelope,
};

pub const SENDING: &str = "SENDING";
pub const SENT: &str = "SENT";
pub const RETRYING: &str = "RETRYING";
pub const FAILED: &str = "FAILED";
pub const SKIPPED: &str = "SKIPPED";
/// Waiting for quiet hours to end or for a sending limit's slot.
pub const DEFERRED: &str = "DEFERRED";
/// After it was sent: the recipient's mail server refused it, or the recipient marked it spam.
pub const BOUNCED: &str = "BOUNCED";
pub const COMPLAINED: &str = "COMPLAINED";

/// How long a claim holds the pair before another delivery of the job may take over.
pub const LEASE_SECONDS: i64 = 60;
/// Delivery records are kept this long for the delivery log.
pub const KEEP_SECONDS: i64 = shared::contracts::DELIVERY_KEEP_SECONDS;
/// Queued, no worker has taken it yet.
pub const QUEUED: &str = shared::contracts::QUEUED;

/// What a delivery record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub status: String,
    pub attempts: i64,
    /// Why it was skipped, or the last error code.
    pub reason: Option<String>,
    pub created_at: i64,
    /// When it was last claimed or settled (for a sent one: when it was sent).
    pub updated_at: i64,
    /// The provider's id of the sent message.
    pub message_id: Option<String>,
}

fn from_item(item: &Item) -> Delivery {
    Delivery {
        status: get_opt_s(item, "status").unwrap_or_default().to_string(),
        attempts: get_opt_n(item, "attempts").unwrap_or(0),
        reason: get_opt_s(item, "reason")
            .or_else(|| get_opt_s(item, "lastError"))
            .map(str::to_string),
        created_at: get_opt_n(item, "createdAt").unwrap_or(0),
        updated_at: get_opt_n(item, "updatedAt").unwrap_or(0),
        message_id: get_opt_s(item, "messageId").map(str::to_string),
    }
}

/// The job's identity on its record.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    pub job: &'a str,
    pub channel: &'a str,
    pub user: &'a str,
    pub template: &'a str,
    /// The clinic whose delivery log lists it, if any.
    pub clinic: Option<&'a ClinicId>,
}

fn settling(table: &Table, pair: Pair<'_>) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::delivery_pk(pair.job)))
        .key(keys::SK, s(keys::delivery_sk(pair.channel)))
}

/// An update of the pair's record that also writes what every record carries (the job, the
/// recipient, the template, its place in the clinic's log) besides its own `set` assignments,
/// and removes the `remove` attributes.
fn recording(
    table: &Table,
    pair: Pair<'_>,
    (set, remove): (&str, &str),
    now: i64,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    let mut set = format!(
        "SET {set}, #entity = :entity, jobId = :job, channel = :channel, userId = :user, \
         template = :template, createdAt = if_not_exists(createdAt, :now), updatedAt = :now, \
         #ttl = :ttl"
    );
    // A clinic's deliveries are listed in its log (GSI2), newest first.
    if pair.clinic.is_some() {
        set.push_str(", clinicId = :clinic, #lpk = :lpk, #lsk = if_not_exists(#lsk, :lsk)");
    }
    if !remove.is_empty() {
        set.push_str(" REMOVE ");
        set.push_str(remove);
    }
    let mut update = table
        .client
        .update_item()
        .table_name(&table.name)
        .key(keys::PK, s(keys::delivery_pk(pair.job)))
        .key(keys::SK, s(keys::delivery_sk(pair.channel)))
        .update_expression(set)
        .expression_attribute_names("#st", "status")
        .expression_attribute_names("#ttl", keys::TTL)
        .expression_attribute_names("#entity", keys::ENTITY)
        .expression_attribute_values(":entity", s("DELIVERY"))
        .expression_attribute_values(":job", s(pair.job))
        .expression_attribute_values(":channel", s(pair.channel))
        .expression_attribute_values(":user", s(pair.user))
        .expression_attribute_values(":template", s(pair.template))
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":ttl", n(now + KEEP_SECONDS));
    if let Some(c) = pair.clinic {
        let lsk = shared::contracts::delivery_log_sk(now, pair.job, pair.channel);
        update = update
            .expression_attribute_names("#lpk", keys::GSI2PK)
            .expression_attribute_names("#lsk", keys::GSI2SK)
            .expression_attribute_values(":clinic", s(c.as_str()))
            .expression_attribute_values(":lpk", s(keys::clinic_deliveries_pk(c)))
            .expression_attribute_values(":lsk", s(lsk));
    }
    update
}

/// Claims the pair for one attempt: `Ok(Some(attempt number))`, or `Ok(None)` with what the
/// record says when it is settled (sent, failed, skipped) or another worker holds it.
pub async fn claim(
    table: &Table,
    pair: Pair<'_>,
    now: i64,
) -> Result<Result<i64, Option<Delivery>>, ApiError> {
    let out = recording(
        table,
        pair,
        (
            "#st = :sending, attempts = if_not_exists(attempts, :zero) + :one, \
             leaseUntil = :lease",
            "deferredUntil, reason",
        ),
        now,
    )
    .condition_expression(
        "attribute_not_exists(pk) OR #st IN (:queued, :retrying, :deferred) \
         OR (#st = :sending AND leaseUntil < :now)",
    )
    .expression_attribute_values(":queued", s(QUEUED))
    .expression_attribute_values(":sending", s(SENDING))
    .expression_attribute_values(":retrying", s(RETRYING))
    .expression_attribute_values(":deferred", s(DEFERRED))
    .expression_attribute_values(":zero", n(0))
    .expression_attribute_values(":one", n(1))
    .expression_attribute_values(":lease", n(now + LEASE_SECONDS))
    .return_values(ReturnValue::AllNew)
    .send()
    .await;
    match out {
        Ok(o) => Ok(Ok(o
            .attributes
            .as_ref()
            .and_then(|a| get_opt_n(a, "attempts"))
            .unwrap_or(1))),
        Err(e) if db::is_condition_failed(&e) => {
            let item = table
                .get(keys::delivery_pk(pair.job), keys::delivery_sk(pair.channel))
                .await?;
            Ok(Err(item.as_ref().map(from_item)))
        }
        Err(e) => Err(db::fault(e)),
    }
}

/// Records that the pair waits until `until` (`reason`: `quiet_hours`, `sending_limit`), unless
/// an attempt already began: the log then shows it deferred, not missing.
pub async fn defer(
    table: &Table,
    pair: Pair<'_>,
    (until, reason): (i64, &str),
    now: i64,
) -> Result<(), ApiError> {
    let out = recording(
        table,
        pair,
        (
            "#st = :deferred, deferredUntil = :until, reason = :reason",
            "",
        ),
        now,
    )
    .condition_expression("attribute_not_exists(pk) OR #st IN (:queued, :deferred)")
    .expression_attribute_values(":queued", s(QUEUED))
    .expression_attribute_values(":deferred", s(DEFERRED))
    .expression_attribute_values(":until", n(until))
    .expression_attribute_values(":reason", s(reason))
    .send()
    .await;
    db::condition_held(out).map(|_| ())
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled<'a> {
    Sent {
        message_id: &'a str,
    },
    /// Will be tried again (`error` is a code, never a message body or an address).
    Retrying {
        error: &'a str,
    },
    Failed {
        error: &'a str,
    },
    /// Nothing to send any more (the link was spent or expired, the account is gone).
    Skipped {
        reason: &'a str,
    },
}

/// Settles the attempt this worker claimed, with the outcome's event when there is one.
pub async fn settle(
    table: &Table,
    pair: Pair<'_>,
    outcome: &Settled<'_>,
    event: Option<&EventEnvelope>,
    now: i64,
) -> Result<(), ApiError> {
    let (status, detail_name, detail) = match outcome {
        Settled::Sent { message_id } => (SENT, "messageId", *message_id),
        Settled::Retrying { error } => (RETRYING, "lastError", *error),
        Settled::Failed { error } => (FAILED, "lastError", *error),
        Settled::Skipped { reason } => (SKIPPED, "reason", *reason),
    };
    let update = settling(table, pair)
        .update_expression(
            "SET #st = :status, #detail = :detail, updatedAt = :now REMOVE leaseUntil",
        )
        .condition_expression("#st = :sending")
        .expression_attribute_names("#st", "status")
        .expression_attribute_names("#detail", detail_name)
        .expression_attribute_values(":status", s(status))
        .expression_attribute_values(":detail", s(detail))
        .expression_attribute_values(":sending", s(SENDING))
        .expression_attribute_values(":now", n(now));
    let mut items: Vec<TransactWriteItem> = vec![db::tx_update(update)?];
    if let Some(e) = event {
        items.push(e.outbox_write(&table.name, now)?);
    }
    // A sent email's provider id leads its bounces and complaints back to this record.
    if let (Settled::Sent { message_id }, "email") = (outcome, pair.channel) {
        if !message_id.is_empty() {
            items.push(db::tx_put(
                aws_sdk_dynamodb::types::Put::builder()
                    .table_name(&table.name)
                    .item(keys::PK, s(keys::provider_message_pk(message_id)))
                    .item(keys::SK, s(keys::PROVIDER_MESSAGE_SK))
                    .item(keys::ENTITY, s("PROVIDER_MESSAGE"))
                    .item("jobId", s(pair.job))
                    .item("channel", s(pair.channel))
                    .item(keys::TTL, n(now + KEEP_SECONDS)),
            )?);
        }
    }
    db::run_guarded(table, items, &[]).await?;
    Ok(())
}

/// What the provider reported after a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback<'a> {
    /// `kind`: `Permanent`, `Transient` or `Undetermined` (SES's bounce types).
    Bounced { kind: &'a str },
    /// `kind`: the complaint's feedback type (`abuse`, ...), if the mail server said.
    Complained { kind: &'a str },
}

/// Records a bounce or complaint on the delivery of the provider's `message_id`, with its
/// event: `Ok(false)` when no delivery of ours has that id.
pub async fn record_feedback(
    table: &Table,
    message_id: &str,
    feedback: &Feedback<'_>,
    event: impl FnOnce(&str, &str) -> EventEnvelope,
    now: i64,
) -> Result<bool, ApiError> {
    let Some(link) = table
        .get(
            keys::provider_message_pk(message_id),
            keys::PROVIDER_MESSAGE_SK,
        )
        .await?
    else {
        return Ok(false);
    };
    let (Some(job), Some(channel)) = (get_opt_s(&link, "jobId"), get_opt_s(&link, "channel"))
    else {
        return Ok(false);
    };
    let (status, kind) = match feedback {
        Feedback::Bounced { kind } => (BOUNCED, *kind),
        Feedback::Complained { kind } => (COMPLAINED, *kind),
    };
    let update = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::delivery_pk(job)))
        .key(keys::SK, s(keys::delivery_sk(channel)))
        .update_expression("SET #st = :status, reason = :kind, updatedAt = :now")
        .condition_expression("attribute_exists(pk) AND #st <> :status")
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(":status", s(status))
        .expression_attribute_values(":kind", s(kind))
        .expression_attribute_values(":now", n(now));
    let e = event(job, channel);
    let items = vec![db::tx_update(update)?, e.outbox_write(&table.name, now)?];
    // Told twice (SES may): the record already says so, and nothing more happens.
    db::run_guarded(table, items, &[0]).await?;
    Ok(true)
}

/// The record of a pair, if any (for tests and the delivery log).
pub async fn get(table: &Table, job: &str, channel: &str) -> Result<Option<Delivery>, ApiError> {
    Ok(table
        .get(keys::delivery_pk(job), keys::delivery_sk(channel))
        .await?
        .as_ref()
        .map(from_item))
}

/// A delivery as the clinic's log shows it: ids, template, channel, outcome and times; never
/// an address or a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub job_id: String,
    pub channel: String,
    pub template: String,
    pub recipient_id: String,
    pub status: String,
    pub attempts: i64,
    /// Why it was skipped (`opted_out`, `no_phone`, ...) or the provider's error code.
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn log_entry(item: &Item) -> LogEntry {
    let d = from_item(item);
    let iso =
        |t: i64| jiff::Timestamp::from_second(t).map_or_else(|_| String::new(), |t| t.to_string());
    LogEntry {
        job_id: get_opt_s(item, "jobId").unwrap_or_default().to_string(),
        channel: get_opt_s(item, "channel").unwrap_or_default().to_string(),
        template: get_opt_s(item, "template").unwrap_or_default().to_string(),
        recipient_id: get_opt_s(item, "userId").unwrap_or_default().to_string(),
        status: d.status,
        attempts: d.attempts,
        reason: d.reason,
        created_at: iso(d.created_at),
        updated_at: iso(d.updated_at),
    }
}

/// What the delivery log is narrowed to (each compared as given).
#[derive(Debug, Clone, Default)]
pub struct LogFilter<'a> {
    pub template: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub status: Option<&'a str>,
    pub recipient: Option<&'a str>,
}

/// One page of a clinic's delivery log, newest first: `limit` records read (filters narrow the
/// page, never widen the read), with the cursor of the next page.
pub async fn log(
    platform: &shared::platform::Platform,
    clinic: &ClinicId,
    f: &LogFilter<'_>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<LogEntry>, Option<String>), ApiError> {
    let limit = db::page_limit(limit)?;
    let query = format!(
        "deliveries?template={:?}&channel={:?}&status={:?}&recipient={:?}",
        f.template, f.channel, f.status, f.recipient
    );
    let start = cursor
        .map(|c| platform.cursors.open(clinic.as_str(), &query, c))
        .transpose()?;
    let mut equal = Vec::new();
    for (attr, value) in [
        ("template", f.template),
        ("channel", f.channel),
        ("status", f.status),
        ("userId", f.recipient),
    ] {
        if let Some(v) = value {
            equal.push((attr, s(v)));
        }
    }
    let q = db::IndexQuery {
        index: keys::GSI2,
        pk_attr: keys::GSI2PK,
        pk: keys::clinic_deliveries_pk(clinic),
        equal,
    };
    let (items, last) = db::index_page(&platform.table, q, limit, start).await?;
    let next = last.map(|k| platform.cursors.seal(clinic.as_str(), &query, &k));
    Ok((items.iter().map(log_entry).collect(), next))
}
