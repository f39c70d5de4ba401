//! A poison message does not hold up a queue: a consumer handles the rest of its batch, and the
//! message it cannot read or keeps failing on reaches the dead-letter queue after its receives
//! (the queue's redrive policy, in the emulator as on AWS).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use local_stack::Stack;
use shared::{
    ids::ClinicId,
    outbox::{Actor, EventEnvelope, Subject},
};

/// The dead-letter queue of `url`, from its redrive policy.
async fn dead_letter_queue(stack: &Stack, url: &str) -> String {
    let attrs = stack
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(
        attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
            .expect("a redrive policy"),
    )
    .unwrap();
    let name = policy["deadLetterTargetArn"]
        .as_str()
        .and_then(|arn| arn.rsplit(':').next())
        .unwrap()
        .to_string();
    stack
        .clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string()
}

/// Every message body waiting in `url` (none are deleted; they come back after a second).
async fn bodies(stack: &Stack, url: &str) -> Vec<String> {
    stack
        .clients
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.body().map(str::to_string))
        .collect()
}

/// A bus event as an EventBridge rule delivers it to a queue.
fn bus_message(event: &EventEnvelope) -> String {
    serde_json::json!({ "detail-type": event.event_type, "detail": event }).to_string()
}

fn cancellation(clinic: Option<&ClinicId>) -> EventEnvelope {
    EventEnvelope::new(
        "appointment.cancelled",
        clinic,
        Actor::default(),
        Subject {
            kind: "appointment".into(),
            id: "a-1".into(),
        },
        serde_json::json!({
            "appointmentId": uuid::Uuid::new_v4().to_string(),
            "doctorId": uuid::Uuid::new_v4().to_string(),
            "patientId": uuid::Uuid::new_v4().to_string(),
            "locationId": null,
            "kind": "VIDEO_CALL",
            "status": "CANCELLED",
            "startsAt": "2026-12-01T09:00:00Z",
            "endsAt": "2026-12-01T09:20:00Z",
        }),
        jiff::Timestamp::now(),
    )
}

#[tokio::test]
async fn poison_messages_reach_the_dead_letter_queue_while_the_rest_of_the_batch_is_handled() {
    // GIVEN billing's queue of bus events with three messages in one batch: one that is not
    // an event at all, a cancellation without a clinic (its handler refuses it every time),
    // and an ordinary cancellation of an appointment billing does not know (nothing to give
    // back: handled)
    let stack = blackbox::fresh_stack("psn").await;
    let url = stack.resources.billing_events_url.clone();
    let dlq = dead_letter_queue(&stack, &url).await;
    let refused = cancellation(None);
    let ordinary = cancellation(Some(&ClinicId::generate()));
    for body in [
        "not an event".to_string(),
        bus_message(&refused),
        bus_message(&ordinary),
    ] {
        stack
            .clients
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    // WHEN billing's consumer drains the queue until the two poison messages have used their
    // receives
    let mut handled = 0;
    let mut dead = Vec::new();
    for _ in 0..120 {
        handled += local_stack::drain_billing_events(&stack).await.unwrap();
        dead.extend(bodies(&stack, &dlq).await);
        dead.sort();
        dead.dedup();
        if dead.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // THEN the ordinary event was handled once, on the first receive; both poison messages are
    // in the dead-letter queue, and nothing is left in billing's queue
    assert_eq!(handled, 1, "only the ordinary event succeeded, once");
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.iter().any(|b| b == "not an event"));
    assert!(
        dead.iter()
            .any(|b| b.contains(&refused.event_id.to_string()))
    );
    assert!(
        !dead
            .iter()
            .any(|b| b.contains(&ordinary.event_id.to_string()))
    );
    assert!(bodies(&stack, &url).await.is_empty());
}
