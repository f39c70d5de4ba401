//! The worker: one SQS batch of notification jobs at a time. For each job and channel it claims
//! the delivery record, resolves the address (decrypted here, at send time: the job carries ids
//! only), renders the template, sends, and settles the record with its event. A failed send is
//! retried with growing, jittered delays (`ChangeMessageVisibility`), and after the third
//! attempt the queue's redrive moves the message to the dead-letter queue.

use crate::{AppState, catalogue, rules, store};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use shared::{
    ApiError,
    contracts::NotificationJob,
    ids::{LinkId, UserId},
    outbox::{Actor, EventEnvelope, Subject},
};

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Settled (sent, skipped, or already handled by an earlier delivery): delete the message.
    Done,
    /// Try again after this many seconds.
    Retry(i32),
    /// Held by the recipient's quiet hours for this many seconds more: put back, not retried.
    Defer(i64),
}

/// Handles one batch and reports the messages to retry.
pub async fn handle_batch(state: &AppState, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let mut outcome = handle_message(state, &m).await;
        if let Outcome::Defer(seconds) = outcome {
            outcome = put_back(state, &m, seconds).await;
        }
        if let Outcome::Retry(delay) = outcome {
            postpone(state, &m, delay).await;
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
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
    match deliver(state, &job).await {
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
/// hours use no receives: the original is then deleted. A failure to queue retries it.
async fn put_back(state: &AppState, m: &SqsMessage, seconds: i64) -> Outcome {
    let (Some(body), Some(url)) = (
        m.body.as_deref(),
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

/// Delivers one job on its channel, exactly once per (job, channel).
pub async fn deliver(state: &AppState, job: &NotificationJob) -> Result<Outcome, ApiError> {
    let now = state.clock.epoch();
    let template = catalogue::template(&job.template);
    // The recipient's choices, for all but account messages.
    let category = template.map_or(shared::preferences::ACCOUNT, |t| t.category.as_str());
    let prefs = if category == shared::preferences::ACCOUNT {
        shared::preferences::Preferences::default()
    } else {
        shared::preferences::load(&state.table, &job.user_id).await?
    };
    if let Some(until) = prefs.quiet_until(category, now) {
        tracing::info!(job_id = %job.job_id, until, "held by quiet hours");
        return Ok(Outcome::Defer(until - now));
    }
    let pair = store::Pair {
        job: &job.job_id,
        channel: &job.channel,
        user: job.user_id.as_str(),
        template: &job.template,
    };
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
    if !prefs.allows(category, &job.channel) {
        return skip(state, job, pair, "opted_out", now).await;
    }
    // The address and the link's URL, read together.
    let link = job.params.get("linkId").and_then(|l| LinkId::parse(l));
    let (to, url) = tokio::try_join!(address(state, &job.user_id), async {
        match &link {
            Some(l) => state.ext().links.url(l, now).await,
            None => Ok(None),
        }
    })?;
    let Some(to) = to else {
        return skip(state, job, pair, "no_recipient", now).await;
    };
    let mut vars = job.params.clone();
    match (link, url) {
        (Some(_), Some(url)) => {
            vars.insert("url".into(), url.into_inner());
        }
        (Some(_), None) => return skip(state, job, pair, "link_spent_or_expired", now).await,
        (None, _) => {}
    }
    let message =
        catalogue::render(template, &vars).map_err(|e| ApiError::internal(e.to_string()))?;
    match send_email(state, &to, &message).await {
        Ok(message_id) => {
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
            tracing::info!(job_id = %job.job_id, template = job.template, attempt, "notification sent");
            Ok(Outcome::Done)
        }
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
            tracing::warn!(job_id = %job.job_id, attempt, error = %code, last, "notification not sent");
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
    tracing::info!(job_id = %job.job_id, reason, "notification skipped");
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

/// The user's address, decrypted only now.
async fn address(state: &AppState, user: &UserId) -> Result<Option<String>, ApiError> {
    Ok(state
        .identities
        .profile(user)
        .await?
        .and_then(|p| p.get("email").map(|e| e.expose().clone())))
}

/// Sends a text email; the error is the service's error code (no message text, which may
/// quote the address).
async fn send_email(
    state: &AppState,
    to: &str,
    message: &catalogue::Message,
) -> Result<String, String> {
    let content = |data: &str| {
        Content::builder()
            .data(data)
            .charset("UTF-8")
            .build()
            .map_err(|e| e.to_string())
    };
    let mail = Message::builder()
        .subject(content(&message.subject)?)
        .body(Body::builder().text(content(&message.text)?).build())
        .build();
    let mailer = state.ext();
    let out = mailer
        .ses
        .send_email()
        .from_email_address(&mailer.sender)
        .destination(Destination::builder().to_addresses(to).build())
        .content(EmailContent::builder().simple(mail).build())
        .set_configuration_set_name(mailer.configuration_set.clone())
        .send()
        .await;
    match out {
        Ok(o) => Ok(o.message_id.unwrap_or_default()),
        Err(e) => {
            use aws_sdk_sesv2::error::ProvideErrorMetadata;
            let code = e.code().unwrap_or("send_failed").to_string();
            Err(code)
        }
    }
}
