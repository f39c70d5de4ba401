//! Scheduled jobs, one clinic at a time. The schedule's invocation only fans out: it sends one
//! message per clinic to the job's work queue. Each message then runs the job for its clinic
//! on its own, so one clinic's failure or throttling is retried alone (and ends in the queue's
//! dead-letter queue after its receives) while every other clinic's work goes on.

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};

use crate::{ApiError, ids::ClinicId, platform::Platform, tenancy};

/// One clinic's share of a scheduled job: the message on the job's work queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClinicWork {
    /// The job's name; a queue carries one job, and a message for another is refused.
    pub job: String,
    pub clinic_id: ClinicId,
}

/// SQS takes at most ten messages per batch.
const BATCH: usize = 10;

/// Sends one [`ClinicWork`] per clinic to `queue_url`, a page of clinics at a time, and answers
/// how many were sent. A batch that SQS partly refuses is an error (the schedule retries; a
/// clinic queued twice is swept twice, which the jobs' versioned writes make harmless).
pub async fn fan_out(p: &Platform, queue_url: &str, job: &str) -> Result<usize, ApiError> {
    let mut sent = 0;
    let mut start = None;
    let mut first = true;
    loop {
        let (mut clinics, next) = tenancy::clinic_id_page(&p.table, start).await?;
        if std::mem::take(&mut first) && job == crate::audit::SEAL_JOB {
            // The audit trail also keeps accesses outside any clinic; they are sealed alike.
            clinics.insert(0, ClinicId::platform());
        }
        for chunk in clinics.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, clinic)| {
                    let body = serde_json::to_string(&ClinicWork {
                        job: job.to_string(),
                        clinic_id: clinic.clone(),
                    })
                    .map_err(ApiError::internal)?;
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(ApiError::internal)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = p
                .sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(ApiError::internal)?;
            if !out.failed.is_empty() {
                return Err(ApiError::internal(format!(
                    "{} of {} work messages refused",
                    out.failed.len(),
                    chunk.len()
                )));
            }
            sent += chunk.len();
        }
        match next {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    tracing::info!(job, clinics = sent, "job fanned out");
    Ok(sent)
}

/// The work message `body` if it is `job`'s.
pub fn read_work(body: &str, job: &str) -> Option<ClinicWork> {
    serde_json::from_str::<ClinicWork>(body)
        .ok()
        .filter(|w| w.job == job)
}

/// Runs `run` for the clinic of every `job` message of one batch, reporting the clinics that
/// failed (and messages that are not this job's work) so only those are retried.
pub async fn handle_work<F, Fut, R>(event: SqsEvent, job: &str, run: F) -> SqsBatchResponse
where
    F: Fn(ClinicId) -> Fut,
    Fut: Future<Output = Result<R, ApiError>>,
    R: Serialize,
{
    crate::lambda::handle_messages(
        event,
        |body| read_work(body, job),
        |w| {
            let done = run(w.clinic_id.clone());
            async move {
                match done.await {
                    Ok(report) => {
                        let report = serde_json::to_value(report).unwrap_or_default();
                        tracing::info!(job = %w.job, clinic_id = %w.clinic_id, %report, "clinic done");
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(job = %w.job, clinic_id = %w.clinic_id, error = %e, "clinic failed; it will be retried");
                        Err(())
                    }
                }
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessage;

    fn message(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    fn work(job: &str, clinic: &ClinicId) -> String {
        serde_json::to_string(&ClinicWork {
            job: job.into(),
            clinic_id: clinic.clone(),
        })
        .unwrap_or_default()
    }

    #[tokio::test]
    async fn one_clinics_failure_is_retried_alone() {
        // GIVEN a batch of three clinics' work, one message of another job and one unreadable
        let (a, b, c) = (
            ClinicId::generate(),
            ClinicId::generate(),
            ClinicId::generate(),
        );
        let mut batch = SqsEvent::default();
        batch.records = vec![
            message("a", &work("sweep", &a)),
            message("b", &work("sweep", &b)),
            message("c", &work("sweep", &c)),
            message("other", &work("billing", &a)),
            message("garbage", "{}"),
        ];
        // WHEN clinic b's run fails
        let seen = std::sync::Mutex::new(Vec::new());
        let response = handle_work(batch, "sweep", |clinic| {
            seen.lock().expect("lock").push(clinic.clone());
            let fails = clinic == b;
            async move {
                if fails {
                    Err(ApiError::internal("throttled"))
                } else {
                    Ok(1)
                }
            }
        })
        .await;
        // THEN a and c still ran after it, and only b and the two foreign messages are retried
        assert_eq!(*seen.lock().expect("lock"), [a, b.clone(), c]);
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["b", "other", "garbage"]);
    }
}
