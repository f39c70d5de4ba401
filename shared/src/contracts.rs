//! Typed payloads that cross contexts: the `data` of events another context consumes, and the
//! notification job. Producer and consumer use the same struct, so a renamed field breaks the
//! build rather than a queue consumer at run time. Ids, codes and times only, never PHI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{AppointmentId, InvoiceId, LocationId, SubscriptionId, UserId};

/// The `data` of every `appointment.*` event (billing gives a unit back on
/// `appointment.cancelled`). `extra` holds what one event type adds (e.g. `previousStatus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentData {
    pub appointment_id: AppointmentId,
    pub doctor_id: UserId,
    pub patient_id: UserId,
    pub location_id: Option<LocationId>,
    /// `IN_PERSON`, `VIDEO_CALL`, `HOME_VISIT`.
    pub kind: String,
    pub status: String,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The `data` of every `billing.invoice.*` event (a paid visit invoice confirms its
/// appointment on `billing.invoice.paid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceData {
    pub invoice_id: InvoiceId,
    /// `INV-<year>-<6 digits>`; `None` for a draft.
    pub number: Option<String>,
    pub patient_id: UserId,
    pub subscription_id: Option<SubscriptionId>,
    pub appointment_id: Option<AppointmentId>,
    /// Minor units of `currency`.
    pub total: i64,
    pub currency: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A delivery record's status from its job's queueing until a worker takes it.
pub const QUEUED: &str = "QUEUED";
/// Delivery records are kept this long for the delivery log.
pub const DELIVERY_KEEP_SECONDS: i64 = 90 * 24 * 60 * 60;

/// A delivery's place in its clinic's log (GSI2): newest first, then the job and channel.
pub fn delivery_log_sk(created_at: i64, job: &str, channel: &str) -> String {
    format!("{}#{job}#{channel}", crate::db::newest_first(created_at))
}

/// The bus event of a job an API call asked for (`data` is the job). It is written to the
/// outbox before the call puts the job on its queue, so a queue that is down at that moment,
/// or a process that dies before it sends, does not lose the message: the notifications
/// consumer queues the job again from the event. The worker sends a job once, however often it
/// arrives.
pub const NOTIFICATION_REQUESTED: &str = "notification.requested";

/// A message for one person, queued for the notification worker. It names the user, never
/// an address: the worker resolves the address at send time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationJob {
    pub job_id: String,
    /// What it is about, e.g. `password_reset`, `invitation`.
    pub kind: String,
    /// `email`, `sms`, `push` or `inApp`: one job and channel is one delivery.
    pub channel: String,
    pub user_id: UserId,
    /// The clinic the message is about, if any: its sending limits and its own wording apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinic_id: Option<crate::ids::ClinicId>,
    pub template: String,
    /// The template's variables.
    pub params: BTreeMap<String, String>,
    pub correlation_id: String,
    /// The X-Ray trace of the work that queued it (also the message's `AWSTraceHeader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub created_at: String,
    /// The sending slot (epoch milliseconds) the job reserved when a sending limit held it: it
    /// goes then without taking another token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_ms: Option<i64>,
}

impl NotificationJob {
    /// The job as a [`NOTIFICATION_REQUESTED`] event: ids and template parameters only (a
    /// job names people by id, never by address).
    pub fn requested(
        &self,
        now: jiff::Timestamp,
    ) -> Result<crate::outbox::EventEnvelope, crate::ApiError> {
        Ok(crate::outbox::EventEnvelope::new(
            NOTIFICATION_REQUESTED,
            self.clinic_id.as_ref(),
            crate::outbox::Actor::default(),
            crate::outbox::Subject {
                kind: "notification".into(),
                id: self.job_id.clone(),
            },
            serde_json::to_value(self).map_err(crate::ApiError::internal)?,
            now,
        ))
    }

    /// The job's trace as the message's `AWSTraceHeader`, which X-Ray follows through SQS.
    fn trace_attribute(
        &self,
    ) -> Result<
        Option<
            std::collections::HashMap<
                aws_sdk_sqs::types::MessageSystemAttributeNameForSends,
                aws_sdk_sqs::types::MessageSystemAttributeValue,
            >,
        >,
        crate::ApiError,
    > {
        let Some(trace) = &self.trace_id else {
            return Ok(None);
        };
        let value = aws_sdk_sqs::types::MessageSystemAttributeValue::builder()
            .data_type("String")
            .string_value(trace)
            .build()
            .map_err(crate::ApiError::internal)?;
        Ok(Some(std::collections::HashMap::from([(
            aws_sdk_sqs::types::MessageSystemAttributeNameForSends::AwsTraceHeader,
            value,
        )])))
    }

    /// Puts the job on the notifications queue at `queue_url`.
    pub async fn send(
        &self,
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
    ) -> Result<(), crate::ApiError> {
        let body = serde_json::to_string(self).map_err(crate::ApiError::internal)?;
        let send = sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .set_message_system_attributes(self.trace_attribute()?);
        send.send().await.map_err(crate::db::fault)?;
        Ok(())
    }

    /// Writes the job's delivery record as `QUEUED` (for the delivery log: nothing is lost
    /// between queueing and sending). A record already there, from an earlier delivery of the
    /// same job, is kept as it is.
    pub async fn record_queued(
        &self,
        table: &crate::db::Table,
        now: i64,
    ) -> Result<(), crate::ApiError> {
        use crate::{db::s, keys};
        let mut put = table
            .client
            .put_item()
            .table_name(&table.name)
            .item(keys::PK, s(keys::delivery_pk(&self.job_id)))
            .item(keys::SK, s(keys::delivery_sk(&self.channel)))
            .item(keys::ENTITY, s("DELIVERY"))
            .item("status", s(QUEUED))
            .item("attempts", crate::db::n(0))
            .item("jobId", s(&self.job_id))
            .item("channel", s(&self.channel))
            .item("userId", s(self.user_id.as_str()))
            .item("template", s(&self.template))
            .item("createdAt", crate::db::n(now))
            .item("updatedAt", crate::db::n(now))
            .item(keys::TTL, crate::db::n(now + DELIVERY_KEEP_SECONDS))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(c) = &self.clinic_id {
            put = put
                .item("clinicId", s(c.as_str()))
                .item(keys::GSI2PK, s(keys::clinic_deliveries_pk(c)))
                .item(
                    keys::GSI2SK,
                    s(delivery_log_sk(now, &self.job_id, &self.channel)),
                );
        }
        crate::db::condition_held(put.send().await).map(|_| ())
    }

    /// Records the job as queued and queues it, side by side.
    pub async fn send_recorded(
        &self,
        table: &crate::db::Table,
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
        now: i64,
    ) -> Result<(), crate::ApiError> {
        tokio::try_join!(self.record_queued(table, now), self.send(sqs, queue_url))?;
        Ok(())
    }

    /// Puts several jobs on the queue at `queue_url`, ten to a request.
    pub async fn send_all(
        jobs: &[NotificationJob],
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
    ) -> Result<(), crate::ApiError> {
        for chunk in jobs.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    let body = serde_json::to_string(job).map_err(crate::ApiError::internal)?;
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .set_message_system_attributes(job.trace_attribute()?)
                        .build()
                        .map_err(crate::ApiError::internal)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(crate::db::fault)?;
            if !out.failed.is_empty() {
                return Err(crate::ApiError::internal(format!(
                    "{} of {} notification jobs refused",
                    out.failed.len(),
                    chunk.len()
                )));
            }
        }
        Ok(())
    }
}

/// The current status of an appointment (`None` if there is none), read from the record itself:
/// consumers of `appointment.*` events act on what is true now, not on what an event says (an
/// event may be stale, redelivered or, were the bus ever open to others, forged).
pub async fn appointment_status(
    table: &crate::db::Table,
    clinic: &crate::ids::ClinicId,
    appointment: &AppointmentId,
) -> Result<Option<String>, crate::ApiError> {
    Ok(table
        .get(
            crate::keys::clinic_pk(clinic),
            crate::keys::appointment_sk(appointment),
        )
        .await?
        .and_then(|i| crate::db::get_opt_s(&i, "status").map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_keeps_its_wire_names_and_extras() {
        // GIVEN the data of an appointment event as the bus carries it
        let wire = serde_json::json!({
            "appointmentId": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
            "doctorId": "2b4e28ba-2fa1-41d2-883f-0016d3cca427",
            "patientId": "3b4e28ba-2fa1-41d2-883f-0016d3cca427",
            "locationId": null,
            "kind": "VIDEO_CALL",
            "status": "CANCELLED",
            "startsAt": "2026-12-01T09:00:00Z",
            "endsAt": "2026-12-01T09:30:00Z",
            "previousStatus": "CONFIRMED",
        });
        // WHEN it is read and written again
        let data: AppointmentData = serde_json::from_value(wire.clone()).expect("reads");
        // THEN nothing is lost, the extras included
        assert_eq!(data.extra["previousStatus"], "CONFIRMED");
        assert_eq!(serde_json::to_value(&data).expect("writes"), wire);
        // AND an id that is not an id is refused
        let mut bad = wire;
        bad["appointmentId"] = "nope".into();
        assert!(serde_json::from_value::<AppointmentData>(bad).is_err());
    }
}
