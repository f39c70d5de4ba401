//! The in-app inbox: one item per message under its user, newest first. The title and text are
//! sealed like PHI (they name a clinic and a time), bound to the user and the message; the
//! link into the app is kept in the clear (it holds ids only).

use serde::Serialize;
use shared::{
    ApiError,
    contracts::NotificationJob,
    crypto::{Envelope, FieldContext, PLATFORM_TENANT, Phi, token_hash},
    db::{self, Item, Table, get_opt_n, get_opt_s, n, s},
    ids::UserId,
    keys,
};

use crate::catalogue::{Message, Template};

/// Messages stay in the inbox this long.
pub const KEEP_SECONDS: i64 = 180 * 24 * 60 * 60;

/// A message as its reader sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub notification_id: String,
    pub template: String,
    pub category: String,
    pub clinic_id: Option<String>,
    pub title: String,
    pub text: String,
    pub link: Option<String>,
    pub created_at: String,
    pub read_at: Option<String>,
}

/// The id of a job's message: its time first (milliseconds), so ids sort as the inbox reads,
/// then a digest of the job, so a redelivered job writes the same message.
pub fn notification_id(job: &NotificationJob) -> String {
    let ms = job
        .created_at
        .parse::<jiff::Timestamp>()
        .map_or(0, |t| t.as_millisecond());
    format!("{ms:013}-{}", &token_hash(&job.job_id)[..16])
}

/// Whether `id` has the shape of a message id (checked before any read).
pub fn valid_id(id: &str) -> bool {
    let Some((ms, digest)) = id.split_once('-') else {
        return false;
    };
    ms.len() == 13
        && ms.bytes().all(|b| b.is_ascii_digit())
        && digest.len() == 16
        && digest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn field<'a>(tenant: &'a str, record: &'a str, field: &'a str) -> FieldContext<'a> {
    FieldContext {
        tenant,
        entity: "inbox",
        record,
        field,
    }
}

fn record(user: &UserId, id: &str) -> String {
    format!("{user}/{id}")
}

/// Writes the job's message into its user's inbox (once: a second write of the same message
/// finds it there and changes nothing).
pub async fn put(
    table: &Table,
    envelope: &Envelope,
    job: &NotificationJob,
    template: &Template,
    message: &Message,
    link: Option<&str>,
    now: i64,
) -> Result<String, ApiError> {
    let id = notification_id(job);
    let clinic = job.clinic_id.as_ref().map(|c| c.to_string());
    let tenant = clinic.as_deref().unwrap_or(PLATFORM_TENANT);
    let rec = record(&job.user_id, &id);
    let (title_at, text_at) = (field(tenant, &rec, "title"), field(tenant, &rec, "text"));
    let (title, text) = (
        Phi::new(message.subject.clone()),
        Phi::new(message.text.clone()),
    );
    let (title, text) = tokio::try_join!(
        envelope.encrypt_str(&title_at, &title),
        envelope.encrypt_str(&text_at, &text),
    )?;
    let mut put = table
        .client
        .put_item()
        .table_name(&table.name)
        .item(keys::PK, s(keys::user_pk(&job.user_id)))
        .item(keys::SK, s(keys::inbox_sk(&id)))
        .item(keys::ENTITY, s("INBOX"))
        .item("notificationId", s(&id))
        .item("template", s(template.name))
        .item("category", s(template.category.as_str()))
        .item("title", s(title))
        .item("text", s(text))
        .item("createdAt", n(now))
        .item(keys::TTL, n(now + KEEP_SECONDS))
        .condition_expression("attribute_not_exists(pk)");
    if let Some(c) = &clinic {
        put = put.item("clinicId", s(c));
    }
    if let Some(l) = link {
        put = put.item("link", s(l));
    }
    match put.send().await {
        Ok(_) => Ok(id),
        Err(e) if db::is_condition_failed(&e) => Ok(id),
        Err(e) => Err(db::fault(e)),
    }
}

fn iso(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| String::new(), |t| t.to_string())
}

async fn entry(envelope: &Envelope, user: &UserId, item: &Item) -> Result<Entry, ApiError> {
    let bad = || ApiError::internal("malformed inbox item");
    let id = get_opt_s(item, "notificationId")
        .ok_or_else(bad)?
        .to_string();
    let clinic = get_opt_s(item, "clinicId").map(str::to_string);
    let tenant = clinic.as_deref().unwrap_or(PLATFORM_TENANT);
    let rec = record(user, &id);
    let (title_at, text_at) = (field(tenant, &rec, "title"), field(tenant, &rec, "text"));
    let (title, text) = tokio::try_join!(
        envelope.decrypt_str(&title_at, get_opt_s(item, "title").ok_or_else(bad)?),
        envelope.decrypt_str(&text_at, get_opt_s(item, "text").ok_or_else(bad)?),
    )?;
    Ok(Entry {
        notification_id: id,
        template: get_opt_s(item, "template").unwrap_or_default().to_string(),
        category: get_opt_s(item, "category").unwrap_or_default().to_string(),
        clinic_id: clinic,
        title: title.into_inner(),
        text: text.into_inner(),
        link: get_opt_s(item, "link").map(str::to_string),
        created_at: iso(get_opt_n(item, "createdAt").unwrap_or(0)),
        read_at: get_opt_n(item, "readAt").map(iso),
    })
}

/// One page of the user's inbox, newest first, with the cursor of the next page. With
/// `unread`, only messages not yet read (the page may then hold fewer than `limit`).
/// Recorded in the audit trail before it is returned.
pub async fn page(
    platform: &shared::platform::Platform,
    user: &UserId,
    unread: bool,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<Entry>, Option<String>), ApiError> {
    let limit = db::page_limit(limit)?;
    let query = format!("inbox?unread={unread}");
    let start = cursor
        .map(|c| platform.cursors.open(user.as_str(), &query, c))
        .transpose()?;
    let mut q = platform
        .table
        .client
        .query()
        .table_name(&platform.table.name)
        .key_condition_expression("pk = :pk AND begins_with(sk, :inbox)")
        .expression_attribute_values(":pk", s(keys::user_pk(user)))
        .expression_attribute_values(":inbox", s(keys::INBOX_PREFIX))
        .scan_index_forward(false)
        .limit(limit)
        .set_exclusive_start_key(start);
    if unread {
        q = q.filter_expression("attribute_not_exists(readAt)");
    }
    let out = q.send().await.map_err(db::fault)?;
    let mut entries = Vec::new();
    for item in out.items() {
        entries.push(entry(&platform.envelope, user, item).await?);
    }
    let next = out
        .last_evaluated_key
        .filter(|k| !k.is_empty())
        .map(|k| platform.cursors.seal(user.as_str(), &query, &k));
    // Messages speak of appointments and care: their reading is recorded (fail closed).
    let ids = entries.iter().map(|e| e.notification_id.clone()).collect();
    platform
        .audit
        .record(&shared::audit::AuditEntry::own(
            user,
            shared::audit::AuditAction::Read,
            "notification",
            ids,
        ))
        .await?;
    Ok((entries, next))
}

/// Marks one message read (the first time only); 404 if the user has no such message.
pub async fn mark_read(table: &Table, user: &UserId, id: &str, now: i64) -> Result<(), ApiError> {
    if !valid_id(id) {
        return Err(ApiError::NotFound);
    }
    let out = table
        .client
        .update_item()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::inbox_sk(id)))
        .update_expression("SET readAt = if_not_exists(readAt, :now)")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":now", n(now))
        .send()
        .await;
    match out {
        Ok(_) => Ok(()),
        Err(e) if db::is_condition_failed(&e) => Err(ApiError::NotFound),
        Err(e) => Err(db::fault(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_message_id_orders_by_time_and_is_the_same_on_redelivery() {
        let job = |created: &str, id: &str| NotificationJob {
            job_id: id.into(),
            kind: "k".into(),
            channel: "inApp".into(),
            user_id: UserId::generate(),
            clinic_id: None,
            template: "t".into(),
            params: Default::default(),
            correlation_id: "c".into(),
            trace_id: None,
            created_at: created.into(),
            slot_ms: None,
        };
        let a = notification_id(&job("2026-12-01T10:00:00Z", "a"));
        let b = notification_id(&job("2026-12-01T10:00:01Z", "a"));
        assert!(a < b);
        assert_eq!(a, notification_id(&job("2026-12-01T10:00:00Z", "a")));
        assert_ne!(a, notification_id(&job("2026-12-01T10:00:00Z", "b")));
        assert!(valid_id(&a) && valid_id(&b));
        for bad in ["", "x", "123-abc", "../../etc", &format!("{a}x")] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
