//! The worker: one SQS batch of notification jobs at a time, its messages side by side. For each
//! job and channel it claims
//! the delivery record, resolves the address (decrypted here, at send time: the job carries ids
//! only), renders the template, sends, and settles the record with its event. A failed send is
//! retried with growing, jittered delays (`ChangeMessageVisibility`), and after the third
//! attempt the queue's redrive moves the message to the dead-letter queue.

use crate::{AppState, catalogue, channels, channels::Sent, limits, rules, store, wording};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use shared::{
    ApiError,
    contracts::NotificationJob,
    ids::LinkId,
    outbox::{Actor, EventEnvelope, Subject},
};

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Settled (sent, skipped, or already handled by an earlier delivery): delete the message.
    Done,
    /// Try again after this many seconds.
    Retry(i32),
    /// Held by the recipient's quiet hours or a sending limit for this many seconds more: put
    /// back (with the job as it goes back, when it reserved a sending slot), not retried.
    Defer(i64, Option<Box<NotificationJob>>),
}

/// Handles one batch and reports the messages to retry.
/// The batch's messages are handled concurrently (at most ten: SQS's batch), each on its own.
pub async fn handle_batch(state: &AppState, event: SqsEvent) -> SqsBatchResponse {
    let outcomes = shared::app::join_all(
        event
            .records
            .iter()
            .map(|m| async move {
                let mut outcome = handle_message(state, m).await;
                if let Outcome::Defer(seconds, job) = outcome {
                    outcome = put_back(state, m, seconds, job.as_deref()).await;
                }
                if let Outcome::Retry(delay) = outcome {
                    postpone(state, m, delay).await;
                    return Some(m.message_id.clone().unwrap_or_default());
                }
                None
            })
            .collect(),
    )
    .await;
    let mut response = SqsBatchResponse::default();
    for id in outcomes.into_iter().flatten() {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// How many times SQS has delivered the message (1 on the first receive).
fn receive_count(m: &SqsMessage) -> i64 {
    m.attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

pub async fn handle_message(state: &AppState, m: &SqsMessage) -> Outcome {
    if m.event_source_arn
        .as_deref()
        .is_some_and(|arn| state.ext().is_feedback(arn))
    {
        return match crate::feedback::handle(state, m.body.as_deref().unwrap_or_default()).await {
            Ok(()) => Outcome::Done,
            Err(e) => {
                tracing::error!(error = %e, "provider feedback not recorded");
                Outcome::Retry(rules::retry_delay(
                    receive_count(m),
                    state.ext().retry_base_seconds,
                ))
            }
        };
    }
    let Some(job) = m
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str::<NotificationJob>(b).ok())
    else {
        // Retried like any failure, so it reaches the dead-letter queue for a person to see.
        tracing::error!(
            message_id = m.message_id.as_deref().unwrap_or_default(),
            "unreadable notification job"
        );
        return Outcome::Retry(0);
    };
    // The job continues the work that queued it: its logs and events carry the same ids.
    let delivered = shared::correlation::continuing(
        job.correlation_id.clone(),
        job.trace_id.clone(),
        deliver(state, &job, receive_count(m) == 1),
    );
    match delivered.await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(job_id = %job.job_id, error = %e, "notification job failed");
            Outcome::Retry(rules::retry_delay(
                receive_count(m),
                state.ext().retry_base_seconds,
            ))
        }
    }
}

/// Queues the job again, delayed (at most 15 minutes at a time, which SQS allows), so quiet
/// hours and sending limits use no receives: the original is then deleted. A failure to queue
/// retries it.
async fn put_back(
    state: &AppState,
    m: &SqsMessage,
    seconds: i64,
    job: Option<&NotificationJob>,
) -> Outcome {
    let body = match job {
        Some(j) => serde_json::to_string(j).ok(),
        None => m.body.clone(),
    };
    let (Some(body), Some(url)) = (
        body,
        m.event_source_arn
            .as_deref()
            .and_then(|arn| state.ext().queue_url(arn)),
    ) else {
        return Outcome::Retry(0);
    };
    let delay = seconds.clamp(0, state.ext().defer_step_seconds);
    match state
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(body)
        .delay_seconds(i32::try_from(delay).unwrap_or(900))
        .send()
        .await
    {
        Ok(_) => Outcome::Done,
        Err(e) => {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "deferred job not queued again");
            Outcome::Retry(0)
        }
    }
}

/// Makes the message visible again after `delay` seconds (best effort: without it, the queue's
/// visibility timeout applies).
async fn postpone(state: &AppState, m: &SqsMessage, delay: i32) {
    let (Some(handle), Some(url)) = (
        m.receipt_handle.as_deref(),
        m.event_source_arn
            .as_deref()
            .and_then(|arn| state.ext().queue_url(arn)),
    ) else {
        return;
    };
    if let Err(e) = state
        .sqs
        .change_message_visibility()
        .queue_url(url)
        .receipt_handle(handle)
        .visibility_timeout(delay)
        .send()
        .await
    {
        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "visibility not changed");
    }
}

fn event(kind: &str, job: &NotificationJob, outcome: &str, now: i64) -> EventEnvelope {
    EventEnvelope::new(
        kind,
        None,
        Actor::default(),
        Subject {
            kind: "notification".into(),
            id: job.job_id.clone(),
        },
        serde_json::json!({
            "jobId": job.job_id,
            "userId": job.user_id,
            "template": job.template,
            "channel": job.channel,
            "outcome": outcome,
        }),
        jiff::Timestamp::from_second(now).unwrap_or_else(|_| jiff::Timestamp::now()),
    )
}

/// Whole seconds (SQS delays) covering `ms`.
fn seconds_until(ms: i64) -> i64 {
    (ms + 999) / 1000
}

/// The sending limits a job's channel is under: the recipient's, and the clinic's for email
/// and SMS (the channels that cost the clinic). The inbox is not limited.
fn buckets(state: &AppState, job: &NotificationJob) -> Vec<limits::Bucket> {
    let l = state.ext().limits;
    let channel = job.channel.as_str();
    if channel == catalogue::IN_APP {
        return Vec::new();
    }
    let mut out = vec![limits::Bucket {
        pk: shared::keys::user_pk(&job.user_id),
        channel: channel.to_string(),
        rate: limits::Rate {
            per_minute: l.recipient_per_minute,
            burst: l.recipient_per_minute / 2,
        },
    }];
    if let Some(clinic) = job
        .clinic_id
        .as_ref()
        .filter(|_| channel == catalogue::EMAIL || channel == catalogue::SMS)
    {
        out.push(limits::Bucket {
            pk: shared::keys::clinic_pk(clinic),
            channel: channel.to_string(),
            rate: limits::Rate {
                per_minute: l.clinic_per_minute,
                burst: l.clinic_per_minute / 10,
            },
        });
    }
    out
}

/// Delivers one job on its channel, exactly once per (job, channel). The sending limits apply
/// to a message's first receive only: a retry of a failed send already took its token.
pub async fn deliver(
    state: &AppState,
    job: &NotificationJob,
    first_receive: bool,
) -> Result<Outcome, ApiError> {
    let now = state.clock.epoch();
    let template = catalogue::template(&job.template);
    // The recipient's choices, for all but account messages.
    let category = template.map_or(shared::preferences::ACCOUNT, |t| t.category.as_str());
    let critical = template.is_some_and(|t| t.priority == catalogue::Priority::Critical);
    let prefs = if category == shared::preferences::ACCOUNT {
        shared::preferences::Preferences::default()
    } else {
        shared::preferences::load(&state.table, &job.user_id).await?
    };
    let wanted = template.is_some_and(|t| t.channels.contains(&job.channel.as_str()))
        && prefs.allows(category, &job.channel);
    let pair = store::Pair {
        job: &job.job_id,
        channel: &job.channel,
        user: job.user_id.as_str(),
        template: &job.template,
        clinic: job.clinic_id.as_ref(),
    };

    if !critical && wanted {
        if let Some(until) = prefs.quiet_until(category, now) {
            tracing::info!(job_id = %job.job_id, until, "held by quiet hours");
            store::defer(&state.table, pair, (until, "quiet_hours"), now).await?;
            return Ok(Outcome::Defer(until - now, None));
        }
        // A job that will be skipped takes no token; a critical one never waits for one; a
        // job that reserved its slot goes at it.
        let now_ms = state.clock.now().as_millisecond();
        match job.slot_ms {
            Some(slot) if slot > now_ms + limits::EARLY_MS => {
                return Ok(Outcome::Defer(seconds_until(slot - now_ms), None));
            }
            Some(slot) if now_ms <= slot + limits::LATE_MS => {}
            // First received, or back too late for its slot (which it gives up).
            slot if first_receive || slot.is_some() => {
                match limits::take(&state.table, &buckets(state, job), now_ms).await? {
                    Ok(0) => {}
                    Ok(wait_ms) => {
                        tracing::info!(job_id = %job.job_id, wait_ms, "held for its slot by a sending limit");
                        let mut held = job.clone();
                        held.slot_ms = Some(now_ms + wait_ms);
                        let until = now + seconds_until(wait_ms);
                        store::defer(&state.table, pair, (until, "sending_limit"), now).await?;
                        return Ok(Outcome::Defer(seconds_until(wait_ms), Some(Box::new(held))));
                    }
                    Err(wait_ms) => {
                        tracing::warn!(job_id = %job.job_id, wait_ms, "sending limit booked far ahead");
                        return Ok(Outcome::Defer(seconds_until(wait_ms), None));
                    }
                }
            }
            // A retry of a failed send already took its token.
            _ => {}
        }
    }
    let attempt = match store::claim(&state.table, pair, now).await? {
        Ok(attempt) => attempt,
        Err(Some(d)) if d.status == store::SENDING => {
            // Another delivery of the same job holds the lease: look again after it.
            return Ok(Outcome::Retry(
                i32::try_from(store::LEASE_SECONDS).unwrap_or(60),
            ));
        }
        Err(_) => {
            tracing::info!(job_id = %job.job_id, "job already handled; redelivery ignored");
            return Ok(Outcome::Done);
        }
    };
    let Some(template) = template else {
        return skip(state, job, pair, "unknown_template", now).await;
    };
    if !template.channels.contains(&job.channel.as_str()) {
        return skip(state, job, pair, "channel_not_offered", now).await;
    }
    if !prefs.allows(category, &job.channel) {
        return skip(state, job, pair, "opted_out", now).await;
    }
    if crate::reminders::still_due(state, job).await? == Some(false) {
        return skip(state, job, pair, "stale_reminder", now).await;
    }
    // The address (decrypted only now) and the link's URL, read together.
    let link = job.params.get("linkId").and_then(|l| LinkId::parse(l));
    let (contact, url, worded) = tokio::try_join!(
        contact(state, job),
        async {
            match &link {
                Some(l) => state.ext().links.url(l, now).await,
                None => Ok(None),
            }
        },
        clinic_wording(state, job, template),
    )?;
    let mut vars = job.params.clone();
    match (link, url) {
        (Some(_), Some(url)) => {
            vars.insert("url".into(), url.into_inner());
        }
        (Some(_), None) => return skip(state, job, pair, "link_spent_or_expired", now).await,
        (None, _) => {}
    }
    let wording = worded
        .as_ref()
        .map_or(template.wording(), wording::Saved::wording);
    let message = catalogue::render_worded(template, wording, &vars)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let app_link = ["appointmentUrl", "billingUrl", "alertUrl"]
        .iter()
        .find_map(|k| vars.get(*k))
        .map(String::as_str);
    let sent = match (job.channel.as_str(), contact) {
        (catalogue::EMAIL, Some(to)) => channels::email(state, &to, &message).await,
        (catalogue::SMS, Some(phone)) => channels::sms(state, &phone, &message).await,
        (catalogue::EMAIL, None) => Ok(Sent::Nowhere("no_recipient")),
        (catalogue::SMS, None) => Ok(Sent::Nowhere("no_phone")),
        (catalogue::PUSH, _) => channels::push(state, job, &message, app_link).await?,
        _ => channels::in_app(state, job, template, &message, app_link).await?,
    };
    match sent {
        Ok(Sent::Delivered(message_id)) => {
            let sent = event("notification.sent", job, "sent", now);
            store::settle(
                &state.table,
                pair,
                &store::Settled::Sent {
                    message_id: &message_id,
                },
                Some(&sent),
                now,
            )
            .await?;
            tracing::info!(job_id = %job.job_id, template = job.template, channel = job.channel, attempt, "notification sent");
            shared::metrics::count(shared::metrics::Metric::NotificationsSent);
            Ok(Outcome::Done)
        }
        Ok(Sent::Nowhere(reason)) => skip(state, job, pair, reason, now).await,
        Err(code) => {
            let last = attempt >= rules::MAX_ATTEMPTS;
            let (outcome, failed) = if last {
                (
                    store::Settled::Failed { error: &code },
                    Some(event("notification.failed", job, &code, now)),
                )
            } else {
                (store::Settled::Retrying { error: &code }, None)
            };
            store::settle(&state.table, pair, &outcome, failed.as_ref(), now).await?;
            if last {
                shared::metrics::count(shared::metrics::Metric::NotificationsFailed);
            }
            tracing::warn!(job_id = %job.job_id, channel = job.channel, attempt, error = %code, last, "notification not sent");
            Ok(Outcome::Retry(rules::retry_delay(
                attempt,
                state.ext().retry_base_seconds,
            )))
        }
    }
}

async fn skip(
    state: &AppState,
    job: &NotificationJob,
    pair: store::Pair<'_>,
    reason: &str,
    now: i64,
) -> Result<Outcome, ApiError> {
    tracing::info!(job_id = %job.job_id, channel = job.channel, reason, "notification skipped");
    store::settle(
        &state.table,
        pair,
        &store::Settled::Skipped { reason },
        None,
        now,
    )
    .await?;
    Ok(Outcome::Done)
}

/// The clinic's own wording of the template in the clinic's locale, if it has one.
async fn clinic_wording(
    state: &AppState,
    job: &NotificationJob,
    template: &catalogue::Template,
) -> Result<Option<wording::Saved>, ApiError> {
    let Some(clinic) = job
        .clinic_id
        .as_ref()
        .filter(|_| template.clinic_may_word())
    else {
        return Ok(None);
    };
    let Some(record) = state.clinics.get(clinic).await? else {
        return Ok(None);
    };
    wording::find(&state.table, clinic, template, &record.locale).await
}

/// The address the job's channel needs (the email address or the phone number), decrypted only
/// now; push and the inbox need none.
async fn contact(state: &AppState, job: &NotificationJob) -> Result<Option<String>, ApiError> {
    let field = match job.channel.as_str() {
        catalogue::EMAIL => "email",
        catalogue::SMS => "phone",
        _ => return Ok(None),
    };
    Ok(state
        .identities
        .profile(&job.user_id)
        .await?
        .and_then(|p| p.get(field).map(|e| e.expose().clone())))
}
