//! One booking can be followed end to end: the trace id its HTTP call carried (as API Gateway
//! passes it on in `x-amzn-trace-id`) and its correlation id travel in the outbox event the
//! relay puts on the bus, in the notification jobs the notifications consumer queues (in the
//! job and as the message's `AWSTraceHeader`), and in the event the worker raises once it has
//! sent them.

use std::time::Duration;

use blackbox::{Api, demo_slots, person};
use http::{Method, StatusCode};
use local_stack::{DEMO_CLINIC_ID, DEMO_PASSWORD, demo_user_id};
use serde_json::{Value, json};
use shared::{ids::ClinicId, policy::Role};

#[tokio::test]
async fn one_bookings_trace_follows_it_through_the_bus_the_queue_and_the_worker() {
    let api = &Api::start().await;
    let stack = api.stack.as_ref().expect("in-process stack");
    let clinic = ClinicId::parse(DEMO_CLINIC_ID).expect("clinic");
    let (_, email) = person(stack, Some(&clinic), Role::Patient, None, true).await;
    let token = api.token(&email, DEMO_PASSWORD).await;
    let slots = demo_slots(api, &token, 2).await;
    let trace = "Root=1-6750a1b2-0123456789abcdef01234567;Sampled=1";
    let correlation = uuid::Uuid::new_v4().to_string();
    let auth = format!("Bearer {token}");
    let body = json!({"doctorId": demo_user_id(3), "kind": "VIDEO_CALL", "startsAt": slots[0]});
    let booked = api
        .send(
            Method::POST,
            &format!("/v1/clinics/{DEMO_CLINIC_ID}/appointments"),
            Some(body.to_string().into_bytes()),
            &[
                ("authorization", auth.as_str()),
                ("x-correlation-id", correlation.as_str()),
                ("x-amzn-trace-id", trace),
            ],
        )
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.body);
    let id = booked.body["id"].as_str().expect("id").to_string();
    let traced = |v: &Value| v["traceId"] == trace && v["correlationId"] == correlation.as_str();

    // The relay's event on the bus carries both
    let events = api.bus_events(&["appointment.created"]).await;
    let created = events
        .iter()
        .find(|e| {
            e["detail-type"] == "appointment.created" && e["detail"]["subject"]["id"] == id.as_str()
        })
        .expect("the booking's event on the bus");
    assert!(traced(&created["detail"]), "{created}");

    // The notifications consumer turns it into jobs that carry them too
    let n = &stack.notifications;
    let mut planned = 0;
    for _ in 0..40 {
        planned += local_stack::drain_queue(
            &stack.clients.sqs,
            &stack.resources.notifications_events_url,
            |e| async move { notifications::events::handle(n, &e).await },
        )
        .await
        .expect("drain");
        if planned > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(planned > 0, "the event reached the notifications consumer");
    let queue = &stack.resources.notifications_normal_url;
    let got = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let jobs: Vec<_> = got.messages().to_vec();
    assert!(!jobs.is_empty(), "jobs queued");
    for m in &jobs {
        let job: Value = serde_json::from_str(m.body().unwrap_or_default()).expect("job");
        assert!(traced(&job), "{job}");
        let header = m
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::AwsTraceHeader));
        assert_eq!(header.map(String::as_str), Some(trace), "AWSTraceHeader");
        // Back on the queue for the worker.
        stack
            .clients
            .sqs
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .visibility_timeout(0)
            .send()
            .await
            .expect("release");
    }

    // The worker sends them within the same trace: its events carry it
    local_stack::drain_notifications(n, queue)
        .await
        .expect("worker");
    let events = api.bus_events(&["notification.sent"]).await;
    let sent: Vec<_> = events
        .iter()
        .filter(|e| e["detail-type"] == "notification.sent")
        .collect();
    assert!(!sent.is_empty(), "the worker's events on the bus");
    assert!(sent.iter().all(|e| traced(&e["detail"])), "{sent:?}");
}
