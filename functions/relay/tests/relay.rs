//! The relay against the local emulator: outbox items written in a transaction reach the bus
//! (observed through a queue subscribed to it), from the Lambda handler and from the poller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::event::dynamodb::Event;
use relay::{Relay, StreamPoller};
use shared::{
    aws::Clients,
    ids::ClinicId,
    outbox::{Actor, EventEnvelope, Subject},
    provision::{Resources, provision, test_clients, unique_prefix},
};

async fn setup() -> (Clients, Resources) {
    let clients = test_clients().await;
    let res = provision(&clients, &unique_prefix("relay"))
        .await
        .expect("provision");
    (clients, res)
}

/// Bodies of messages that arrived on the events tap queue (EventBridge's full event JSON).
async fn tapped(clients: &Clients, res: &Resources, want: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for _ in 0..20 {
        let msgs = clients
            .sqs
            .receive_message()
            .queue_url(&res.events_tap_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        for m in msgs {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
        }
        if out.len() >= want {
            break;
        }
    }
    out
}

#[tokio::test]
async fn lambda_handler_publishes_outbox_inserts_only() {
    // GIVEN the sample stream batch: one outbox insert, one other insert, one modify
    let (clients, res) = setup().await;
    let sample = include_str!("../../../events/relay-dynamodb-stream.json");
    let event: Event = serde_json::from_str(sample).unwrap();
    let relay = Relay {
        eventbridge: clients.eventbridge.clone(),
        bus: res.bus.clone(),
    };
    // WHEN the handler runs
    let resp = relay.handle(event).await;
    // THEN nothing failed and exactly the outbox event is on the bus, envelope intact
    assert!(resp.batch_item_failures.is_empty());
    let got = tapped(&clients, &res, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["detail-type"], "auth.login_succeeded");
    assert_eq!(got[0]["source"], "clinic.auth");
    assert_eq!(got[0]["detail"]["correlationId"], "sample-correlation-id");
    assert_eq!(got[0]["detail"]["subject"]["type"], "session");
}

#[tokio::test]
async fn failed_publishes_are_reported_for_retry() {
    let (clients, _res) = setup().await;
    let sample = include_str!("../../../events/relay-dynamodb-stream.json");
    let event: Event = serde_json::from_str(sample).unwrap();
    let relay = Relay {
        eventbridge: clients.eventbridge.clone(),
        bus: "no-such-bus".into(),
    };
    let resp = relay.handle(event).await;
    let ids: Vec<_> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(ids, vec![Some("111".to_string())]);
}

#[tokio::test]
async fn poller_relays_events_written_in_transactions() {
    // GIVEN an event written through the outbox, as every function does
    let (clients, res) = setup().await;
    let clinic = ClinicId::generate();
    let env = EventEnvelope::new(
        "clinic.updated",
        Some(&clinic),
        Actor {
            user_id: Some("u-1".into()),
            role: Some("CLINIC_ADMIN".into()),
        },
        Subject {
            kind: "clinic".into(),
            id: clinic.to_string(),
        },
        serde_json::json!({ "fields": ["timeZone"] }),
        jiff::Timestamp::now(),
    );
    let write = env
        .outbox_write(&res.table, jiff::Timestamp::now().as_second())
        .unwrap();
    clients
        .dynamodb
        .transact_write_items()
        .transact_items(write)
        .send()
        .await
        .unwrap();
    // WHEN the poller runs
    let streams = aws_sdk_dynamodbstreams::Client::new(&clients.sdk);
    let mut poller = StreamPoller::new(
        streams,
        clients.dynamodb.clone(),
        &res.table,
        Relay {
            eventbridge: clients.eventbridge.clone(),
            bus: res.bus.clone(),
        },
    );
    let published = poller.poll_once().await.unwrap();
    // THEN the envelope arrives once, and a second poll publishes nothing new
    assert_eq!(published, 1);
    assert_eq!(poller.poll_once().await.unwrap(), 0);
    let got = tapped(&clients, &res, 1).await;
    assert_eq!(got.len(), 1);
    let detail: EventEnvelope = serde_json::from_value(got[0]["detail"].clone()).unwrap();
    assert_eq!(detail, env);
    assert_eq!(got[0]["source"], "clinic.clinic");
}
