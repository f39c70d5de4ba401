//! What SES tells after a send: bounces and complaints, published by the configuration set's
//! event destination to an SNS topic whose subscription delivers them (raw) to the feedback
//! queue. Each marks the delivery record of its message `BOUNCED` or `COMPLAINED`, with the
//! `notification.bounced` / `notification.complained` event. Deliveries, opens and the like
//! are not recorded. A message this worker cannot read is retried, then dead-lettered.

use serde_json::Value;
use shared::{
    ApiError,
    outbox::{Actor, EventEnvelope, Subject},
};

use crate::{AppState, store};

/// An SES event as the queue carries it: raw, or inside an SNS envelope. Its kind (`Bounce`,
/// `Complaint`, others), the message id and the bounce type or complaint feedback type.
pub fn parse(body: &str) -> Option<(String, String, String)> {
    let mut v: Value = serde_json::from_str(body).ok()?;
    if v.get("Type").and_then(Value::as_str) == Some("Notification") {
        v = serde_json::from_str(v.get("Message")?.as_str()?).ok()?;
    }
    // Event publishing says `eventType`; the older notifications `notificationType`.
    let kind = v
        .get("eventType")
        .or_else(|| v.get("notificationType"))?
        .as_str()?
        .to_string();
    let message_id = v.get("mail")?.get("messageId")?.as_str()?.to_string();
    let detail = match kind.as_str() {
        "Bounce" => v["bounce"]["bounceType"].as_str().unwrap_or("Undetermined"),
        "Complaint" => v["complaint"]["complaintFeedbackType"]
            .as_str()
            .unwrap_or("unspecified"),
        _ => "",
    }
    .to_string();
    Some((kind, message_id, detail))
}

/// Handles one feedback message: `Err` only when it cannot be read or recorded (retried).
pub async fn handle(state: &AppState, body: &str) -> Result<(), ApiError> {
    let (kind, message_id, detail) =
        parse(body).ok_or_else(|| ApiError::internal("unreadable SES feedback"))?;
    let (feedback, event_type) = match kind.as_str() {
        "Bounce" => (
            store::Feedback::Bounced { kind: &detail },
            "notification.bounced",
        ),
        "Complaint" => (
            store::Feedback::Complained { kind: &detail },
            "notification.complained",
        ),
        _ => return Ok(()),
    };
    let now = state.clock.epoch();
    let found = store::record_feedback(
        &state.table,
        &message_id,
        &feedback,
        |job, channel| {
            EventEnvelope::new(
                event_type,
                None,
                Actor::default(),
                Subject {
                    kind: "notification".into(),
                    id: job.to_string(),
                },
                serde_json::json!({ "jobId": job, "channel": channel, "outcome": detail }),
                jiff::Timestamp::from_second(now).unwrap_or_else(|_| jiff::Timestamp::now()),
            )
        },
        now,
    )
    .await?;
    if found {
        tracing::info!(message_id, kind, detail, "provider feedback recorded");
    } else {
        tracing::warn!(
            message_id,
            kind,
            "feedback for a message that is not ours: ignored"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounces_and_complaints_are_read_raw_or_in_their_sns_envelope() {
        let bounce = r#"{"eventType":"Bounce","mail":{"messageId":"m-1"},"bounce":{"bounceType":"Permanent"}}"#;
        assert_eq!(
            parse(bounce),
            Some(("Bounce".into(), "m-1".into(), "Permanent".into()))
        );
        let wrapped = serde_json::json!({"Type": "Notification", "Message": bounce}).to_string();
        assert_eq!(parse(&wrapped), parse(bounce));
        let complaint =
            r#"{"notificationType":"Complaint","mail":{"messageId":"m-2"},"complaint":{}}"#;
        assert_eq!(
            parse(complaint),
            Some(("Complaint".into(), "m-2".into(), "unspecified".into()))
        );
        assert_eq!(parse("{}"), None);
        assert_eq!(parse("not json"), None);
    }
}
