//! The transactional outbox: a domain event is written as an item in the same transaction as
//! the state change; the events relay publishes it to EventBridge from the table's stream.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::db::{n, s};
use crate::error::ApiError;
use crate::http::current_correlation_id;
use crate::ids::{ClinicId, EventId};
use crate::keys;

/// Outbox items are kept a day: long enough for the stream (24 h retention) to deliver them.
const OUTBOX_TTL_SECONDS: i64 = 24 * 60 * 60;
/// The `source` of every event on the bus is `clinic.<context>`.
pub const SOURCE_PREFIX: &str = "clinic.";

/// Who caused the event: ids and role only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub user_id: Option<String>,
    pub role: Option<String>,
}

/// Who makes a change: a member (id and role) or the platform itself (a schedule, an event
/// consumer), whose role is `SYSTEM`.
#[derive(Debug, Clone)]
pub struct Who {
    pub user: Option<crate::ids::UserId>,
    pub role: &'static str,
}

impl Who {
    pub fn member(user: &crate::ids::UserId, role: crate::policy::Role) -> Self {
        Self {
            user: Some(user.clone()),
            role: role.as_str(),
        }
    }

    pub fn system() -> Self {
        Self {
            user: None,
            role: "SYSTEM",
        }
    }

    /// The event actor for this change.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.user.as_ref().map(ToString::to_string),
            role: Some(self.role.to_string()),
        }
    }
}

/// What the event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// The envelope every consumer receives as the EventBridge `detail`. Ids and codes only: no PHI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub occurred_at: String,
    pub clinic_id: Option<String>,
    pub actor: Actor,
    pub correlation_id: String,
    /// The X-Ray trace of the work that raised it, carried to the bus and on to consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub subject: Subject,
    pub data: serde_json::Value,
}

impl EventEnvelope {
    /// A version-1 event stamped with the current request's correlation id and trace.
    pub fn new(
        event_type: &str,
        clinic: Option<&ClinicId>,
        actor: Actor,
        subject: Subject,
        data: serde_json::Value,
        now: Timestamp,
    ) -> Self {
        Self {
            event_id: EventId::generate().to_string(),
            event_type: event_type.to_string(),
            version: 1,
            occurred_at: now.to_string(),
            clinic_id: clinic.map(ToString::to_string),
            actor,
            correlation_id: current_correlation_id(),
            trace_id: crate::correlation::current_trace_id(),
            subject,
            data,
        }
    }

    /// `clinic.auth` for `auth.login_succeeded`.
    pub fn source(&self) -> String {
        let context = self.event_type.split('.').next().unwrap_or("platform");
        format!("{SOURCE_PREFIX}{context}")
    }

    /// The transaction action that writes this event to the outbox.
    pub fn outbox_write(&self, table: &str, now_epoch: i64) -> Result<TransactWriteItem, ApiError> {
        let event_id = EventId::parse(&self.event_id)
            .ok_or_else(|| ApiError::internal("outbox event id is not a uuid"))?;
        let clinic = self.clinic_id.as_deref().and_then(ClinicId::parse);
        let json = serde_json::to_string(self).map_err(ApiError::internal)?;
        let put = Put::builder()
            .table_name(table)
            .item(keys::PK, s(keys::outbox_pk(clinic.as_ref(), &event_id)))
            .item(keys::SK, s(keys::OUTBOX_SK))
            .item(keys::ENTITY, s(keys::OUTBOX_ENTITY))
            .item("envelope", s(json))
            .item(keys::TTL, n(now_epoch + OUTBOX_TTL_SECONDS))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(ApiError::internal)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The clinic the event belongs to, if it names a valid one.
    pub fn clinic(&self) -> Option<ClinicId> {
        self.clinic_id.as_deref().and_then(ClinicId::parse)
    }

    /// The event's data as its contract type (see [`crate::contracts`]).
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// The envelope inside an SQS message that an EventBridge rule delivered (its `detail`).
    pub fn from_bus_message(body: &str) -> Result<Self, serde_json::Error> {
        let v: serde_json::Value = serde_json::from_str(body)?;
        serde_json::from_value(v.get("detail").cloned().unwrap_or_default())
    }

    /// Reads an envelope back from a stream image's `entity` and `envelope` attributes;
    /// `None` for items that are not outbox events.
    pub fn from_stream_attributes(
        entity: Option<&str>,
        envelope: Option<&str>,
    ) -> Option<Result<Self, serde_json::Error>> {
        if entity != Some(keys::OUTBOX_ENTITY) {
            return None;
        }
        envelope.map(serde_json::from_str)
    }
}

/// Publishes envelopes to the bus (at most 10 per call, as PutEvents allows). Returns the
/// indexes of envelopes that failed, so the caller can retry only those.
pub async fn publish(
    eventbridge: &aws_sdk_eventbridge::Client,
    bus: &str,
    events: &[EventEnvelope],
) -> Vec<usize> {
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    let mut failed = Vec::new();
    for (chunk_no, chunk) in events.chunks(10).enumerate() {
        let base = chunk_no * 10;
        let entries: Vec<_> = chunk
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source(e.source())
                    .detail_type(&e.event_type)
                    .detail(serde_json::to_string(e).unwrap_or_default())
                    .set_trace_header(e.trace_id.clone())
                    .build()
            })
            .collect();
        match eventbridge
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                for (i, entry) in out.entries().iter().enumerate() {
                    if entry.error_code().is_some() {
                        tracing::warn!(event_id = %chunk[i].event_id, code = ?entry.error_code(), "event not accepted by the bus");
                        failed.push(base + i);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e), "put events failed");
                failed.extend(base..base + chunk.len());
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape_is_the_documented_one() {
        let c = ClinicId::generate();
        let e = EventEnvelope::new(
            "auth.login_succeeded",
            Some(&c),
            Actor {
                user_id: Some("u".into()),
                role: Some("PATIENT".into()),
            },
            Subject {
                kind: "session".into(),
                id: "s".into(),
            },
            serde_json::json!({"sessionId": "s"}),
            Timestamp::from_second(0).unwrap(),
        );
        let v = serde_json::to_value(&e).unwrap();
        for field in [
            "eventId",
            "type",
            "version",
            "occurredAt",
            "clinicId",
            "actor",
            "correlationId",
            "subject",
            "data",
        ] {
            assert!(v.get(field).is_some(), "{field}");
        }
        assert_eq!(v["subject"]["type"], "session");
        assert_eq!(e.source(), "clinic.auth");
        let back = EventEnvelope::from_stream_attributes(
            Some("OUTBOX"),
            Some(&serde_json::to_string(&e).unwrap()),
        );
        assert_eq!(back.unwrap().unwrap(), e);
        assert!(EventEnvelope::from_stream_attributes(Some("USER"), Some("{}")).is_none());
    }
}
