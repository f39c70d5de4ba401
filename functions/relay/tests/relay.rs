//! The relay against the local emulator: outbox items written in a transaction reach the bus
//! (observed through a queue subscribed to it), from the Lambda handler and from the poller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::event::dynamodb::Event;
use relay::{DeadLetters, RETRY_ATTEMPTS, Relay, StreamPoller};
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

fn dead_letters(clients: &Clients, res: &Resources) -> DeadLetters {
    DeadLetters {
        sqs: clients.sqs.clone(),
        url: res.events_relay_dlq_url.clone(),
    }
}

/// The relay, publishing to `bus`.
fn relay_to(clients: &Clients, res: &Resources, bus: &str) -> Relay {
    Relay {
        eventbridge: clients.eventbridge.clone(),
        bus: bus.to_string(),
        dead_letters: dead_letters(clients, res),
    }
}

/// A poller of the table's stream feeding `relay`, dead-lettering as the mapping does.
fn poller(clients: &Clients, res: &Resources, relay: Relay) -> StreamPoller<Relay> {
    StreamPoller::new(
        aws_sdk_dynamodbstreams::Client::new(&clients.sdk),
        clients.dynamodb.clone(),
        &res.table,
        relay,
    )
    .with_dead_letters(dead_letters(clients, res))
}

/// An event written through the outbox in its own transaction, as every function does.
async fn committed(clients: &Clients, res: &Resources) -> EventEnvelope {
    let clinic = ClinicId::generate();
    let env = EventEnvelope::new(
        "clinic.updated",
        Some(&clinic),
        Actor::default(),
        Subject {
            kind: "clinic".into(),
            id: clinic.to_string(),
        },
        serde_json::json!({ "fields": ["name"] }),
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
    env
}

/// Message bodies taken (received, then deleted) from `url`, as JSON: up to `rounds` receives
/// of a second each, until `want` have arrived.
async fn take(clients: &Clients, url: &str, want: usize, rounds: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        let msgs = clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        for m in msgs {
            clients
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
        }
        if out.len() >= want {
            break;
        }
    }
    out
}

/// What is waiting in the relay's dead-letter queue.
async fn dead_lettered(clients: &Clients, res: &Resources) -> Vec<serde_json::Value> {
    take(clients, &res.events_relay_dlq_url, 1, 1).await
}

/// Bodies of messages that arrived on the events tap queue (EventBridge's full event JSON).
async fn tapped(clients: &Clients, res: &Resources, want: usize) -> Vec<serde_json::Value> {
    take(clients, &res.events_tap_url, want, 20).await
}

#[tokio::test]
async fn lambda_handler_publishes_outbox_inserts_only() {
    // GIVEN the sample stream batch: one outbox insert, one other insert, one modify
    let (clients, res) = setup().await;
    let sample = include_str!("../../../events/relay-dynamodb-stream.json");
    let event: Event = serde_json::from_str(sample).unwrap();
    let relay = relay_to(&clients, &res, &res.bus);
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
    let (clients, res) = setup().await;
    let sample = include_str!("../../../events/relay-dynamodb-stream.json");
    let event: Event = serde_json::from_str(sample).unwrap();
    let relay = relay_to(&clients, &res, "no-such-bus");
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
    let env = committed(&clients, &res).await;
    // WHEN the poller runs
    let mut poller = poller(&clients, &res, relay_to(&clients, &res, &res.bus));
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

#[tokio::test]
async fn an_undecodable_outbox_item_is_dead_lettered_and_the_rest_of_the_batch_published() {
    // GIVEN one stream batch holding an ordinary event and an outbox item whose envelope is
    // not JSON
    let (clients, res) = setup().await;
    let env = committed(&clients, &res).await;
    let poison_pk = format!("OUTBOX#{}", uuid::Uuid::new_v4());
    let s = aws_sdk_dynamodb::types::AttributeValue::S;
    clients
        .dynamodb
        .put_item()
        .table_name(&res.table)
        .item(shared::keys::PK, s(poison_pk.clone()))
        .item(shared::keys::SK, s(shared::keys::OUTBOX_SK.into()))
        .item(shared::keys::ENTITY, s(shared::keys::OUTBOX_ENTITY.into()))
        .item("envelope", s("{not an envelope".into()))
        .send()
        .await
        .unwrap();
    // WHEN the poller runs
    let mut poller = poller(&clients, &res, relay_to(&clients, &res, &res.bus));
    let handled = poller.poll_once().await.unwrap();
    // THEN both changes are done with: the event is on the bus, the item is in the dead-letter
    // queue by its key (not its content), and neither comes back
    assert_eq!(handled, 2);
    let got = tapped(&clients, &res, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["detail"]["eventId"], env.event_id.to_string());
    let dead = dead_lettered(&clients, &res).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["condition"], "UndecodableOutboxItem");
    assert_eq!(dead[0]["pk"], poison_pk);
    assert!(!dead[0].to_string().contains("not an envelope"));
    assert_eq!(poller.poll_once().await.unwrap(), 0);
    assert!(dead_lettered(&clients, &res).await.is_empty());
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_dead_lettered_after_its_retries() {
    // GIVEN a committed event and a bus that refuses every publish
    let (clients, res) = setup().await;
    let env = committed(&clients, &res).await;
    let mut poller = poller(&clients, &res, relay_to(&clients, &res, "no-such-bus"));
    // WHEN the poller tries it, then retries it as often as the event source mapping would
    for attempt in 1..=RETRY_ATTEMPTS {
        assert_eq!(poller.poll_once().await.unwrap(), 0, "attempt {attempt}");
    }
    assert!(dead_lettered(&clients, &res).await.is_empty());
    let last = poller.poll_once().await.unwrap();
    // THEN after its last retry it is in the dead-letter queue with its attempts, and it is
    // not tried again
    assert_eq!(last, 1);
    let dead = dead_lettered(&clients, &res).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["condition"], "RetryAttemptsExhausted");
    assert_eq!(dead[0]["attempts"], RETRY_ATTEMPTS + 1);
    assert_eq!(
        dead[0]["pk"],
        shared::keys::outbox_pk(
            env.clinic().as_ref(),
            &shared::ids::EventId::parse(&env.event_id).unwrap()
        )
    );
    assert_eq!(poller.poll_once().await.unwrap(), 0);
}

#[tokio::test]
async fn an_event_committed_before_a_crash_is_published_once_when_the_relay_comes_back() {
    // GIVEN an event committed while the bus was out of reach, which the relay tried to
    // publish, failed, and then the relay process died (its retries, kept in memory, gone)
    let (clients, res) = setup().await;
    let env = committed(&clients, &res).await;
    let mut crashed = poller(&clients, &res, relay_to(&clients, &res, "no-such-bus"));
    assert_eq!(crashed.poll_once().await.unwrap(), 0);
    drop(crashed);
    // WHEN the relay comes back
    let mut back = poller(&clients, &res, relay_to(&clients, &res, &res.bus));
    let published = back.poll_once().await.unwrap();
    // THEN the event is published, once
    assert_eq!(published, 1);
    assert_eq!(back.poll_once().await.unwrap(), 0);
    let got = tapped(&clients, &res, 2).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["detail"]["eventId"], env.event_id.to_string());
    assert!(dead_lettered(&clients, &res).await.is_empty());
}

#[test]
fn the_local_poller_retries_and_dead_letters_as_the_template_mapping_does() {
    let template = include_str!("../../../template.yaml");
    let function = template
        .split("\n  EventsRelayFunction:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the relay's function in template.yaml");
    assert!(function.contains(&format!("MaximumRetryAttempts: {RETRY_ATTEMPTS}")));
    assert!(function.contains("Destination: !GetAtt EventsRelayDlq.Arn"));
    assert!(function.contains("EVENTS_RELAY_DLQ_URL: !Ref EventsRelayDlq"));
}
