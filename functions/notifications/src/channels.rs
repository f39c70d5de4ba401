//! One send on one channel: email through SES, SMS and push through SNS, and the in-app inbox.
//! Each answers what happened: sent (with the provider's message id), nothing to send to (a
//! reason), or a provider error code for the retry (never a message text, which may quote an
//! address or a phone number).

use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message as SesMessage};
use aws_sdk_sns::{error::ProvideErrorMetadata, types::MessageAttributeValue};
use shared::{ApiError, contracts::NotificationJob};

use crate::{
    AppState,
    catalogue::{Message, Template},
    devices, inbox,
};

/// What a send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Delivered to the provider (or the inbox), with the message's id there.
    Delivered(String),
    /// Nothing to send to: no address, no phone, no device.
    Nowhere(&'static str),
}

/// A send's outcome: `Err` is a provider error code, tried again later.
pub type Outcome = Result<Sent, String>;

fn code<E: ProvideErrorMetadata>(e: &E, fallback: &str) -> String {
    e.code().unwrap_or(fallback).to_string()
}

/// Sends a text email to `to`.
pub async fn email(state: &AppState, to: &str, message: &Message) -> Outcome {
    let content = |data: &str| {
        Content::builder()
            .data(data)
            .charset("UTF-8")
            .build()
            .map_err(|_| "invalid_content".to_string())
    };
    let mail = SesMessage::builder()
        .subject(content(&message.subject)?)
        .body(Body::builder().text(content(&message.text)?).build())
        .build();
    let mailer = state.ext();
    mailer
        .ses
        .send_email()
        .from_email_address(&mailer.sender)
        .destination(Destination::builder().to_addresses(to).build())
        .content(EmailContent::builder().simple(mail).build())
        .set_configuration_set_name(mailer.configuration_set.clone())
        .send()
        .await
        .map(|o| Sent::Delivered(o.message_id.unwrap_or_default()))
        .map_err(|e| code(&e, "send_failed"))
}

/// Sends the message's one line by SMS to `phone` (E.164), as a transactional message.
pub async fn sms(state: &AppState, phone: &str, message: &Message) -> Outcome {
    let transactional = MessageAttributeValue::builder()
        .data_type("String")
        .string_value("Transactional")
        .build()
        .map_err(|_| "invalid_attribute".to_string())?;
    state
        .ext()
        .sns
        .publish()
        .phone_number(phone)
        .message(&message.short)
        .message_attributes("AWS.SNS.SMS.SMSType", transactional)
        .send()
        .await
        .map(|o| Sent::Delivered(o.message_id.unwrap_or_default()))
        .map_err(|e| code(&e, "publish_failed"))
}

/// The push payload: the title and line per platform, and the link the app opens.
pub fn push_payload(message: &Message, link: Option<&str>) -> String {
    let fcm = serde_json::json!({
        "notification": { "title": message.subject, "body": message.short },
        "data": { "link": link },
    });
    let apns = serde_json::json!({
        "aps": { "alert": { "title": message.subject, "body": message.short } },
        "link": link,
    });
    serde_json::json!({
        "default": message.short,
        "GCM": fcm.to_string(),
        "APNS": apns.to_string(),
    })
    .to_string()
}

/// Pushes to every device of the user. A device whose endpoint SNS disabled (the app was
/// removed, the token expired) or no longer knows is forgotten; it is sent if any device took it.
pub async fn push(
    state: &AppState,
    job: &NotificationJob,
    message: &Message,
    link: Option<&str>,
) -> Result<Outcome, ApiError> {
    let endpoints = devices::endpoints(&state.table, &job.user_id).await?;
    if endpoints.is_empty() {
        return Ok(Ok(Sent::Nowhere("no_device")));
    }
    let payload = push_payload(message, link);
    let mut first = None;
    let mut failure = None;
    for e in &endpoints {
        let out = state
            .ext()
            .sns
            .publish()
            .target_arn(&e.arn)
            .message_structure("json")
            .message(&payload)
            .send()
            .await;
        match out {
            Ok(o) => {
                first.get_or_insert(o.message_id.unwrap_or_default());
            }
            Err(err) => {
                let c = code(&err, "publish_failed");
                if c == "EndpointDisabled" || c == "NotFound" {
                    tracing::info!(job_id = %job.job_id, device_id = %e.device_id, "push endpoint gone: device forgotten");
                    devices::forget(state, &job.user_id, &e.device_id).await?;
                } else {
                    failure = Some(c);
                }
            }
        }
    }
    Ok(match (first, failure) {
        (Some(id), _) => Ok(Sent::Delivered(id)),
        (None, Some(c)) => Err(c),
        (None, None) => Ok(Sent::Nowhere("devices_disabled")),
    })
}

/// Writes the message into the user's inbox.
pub async fn in_app(
    state: &AppState,
    job: &NotificationJob,
    template: &Template,
    message: &Message,
    link: Option<&str>,
) -> Result<Outcome, ApiError> {
    let id = inbox::put(
        &state.table,
        &state.envelope,
        job,
        template,
        message,
        link,
        state.clock.epoch(),
    )
    .await?;
    Ok(Ok(Sent::Delivered(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_carries_the_title_the_line_and_the_link_for_each_platform() {
        let m = Message {
            subject: "Title".into(),
            short: "Line".into(),
            text: "Long text".into(),
        };
        let p: serde_json::Value =
            serde_json::from_str(&push_payload(&m, Some("https://app/x"))).unwrap_or_default();
        assert_eq!(p["default"], "Line");
        let fcm: serde_json::Value =
            serde_json::from_str(p["GCM"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(fcm["notification"]["title"], "Title");
        assert_eq!(fcm["data"]["link"], "https://app/x");
        let apns: serde_json::Value =
            serde_json::from_str(p["APNS"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(apns["aps"]["alert"]["body"], "Line");
        assert!(!p.to_string().contains("Long text"));
    }
}
