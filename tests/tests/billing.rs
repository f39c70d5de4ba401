//! Billing over HTTP against the emulator: the subscription booking flow end to end (pay,
//! book covered, book uncovered with an invoice, cancel and get the unit back once), quota
//! and invoice-number races, a webhook delivered five times, plan rules and access.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox::{Api, Reply, call, person};
use http::{Method, StatusCode};
use local_stack::{DEMO_PASSWORD, DEMO_USERS, Stack, demo_user_id};
use serde_json::{Value, json};
use shared::{
    clock::{Clock, ManualClock},
    ids::{ClinicId, UserId},
    policy::Role,
    provision::{LOCAL_WEBHOOK_SECRET, provision, test_clients, unique_prefix},
};
use std::{collections::HashMap, sync::Arc, time::Duration};

/// Monday 30 November 2026, 07:00 in Berlin.
const START: &str = "2026-11-30T06:00:00Z";

struct World {
    api: Api,
    clock: Arc<ManualClock>,
    clinic: ClinicId,
    tokens: HashMap<Role, String>,
}

impl World {
    fn stack(&self) -> &Stack {
        self.api.stack.as_ref().unwrap()
    }
    fn token(&self, role: Role) -> &str {
        &self.tokens[&role]
    }
    /// Moves the clock on and signs everyone in again (access tokens last 15 minutes).
    async fn advance_days(&mut self, days: i64) {
        self.clock
            .advance(jiff::SignedDuration::from_hours(24 * days));
        for (role, email, ..) in DEMO_USERS {
            let token = self.api.token(email, DEMO_PASSWORD).await;
            self.tokens.insert(*role, token);
        }
    }
    async fn sweep(&self) -> billing::sweep::SweepReport {
        let stack = self.stack();
        billing::sweep::sweep_clinic(&stack.billing, &self.clinic, self.clock.now())
            .await
            .unwrap()
    }
    fn id(&self, role: Role) -> UserId {
        let i = DEMO_USERS.iter().position(|(r, ..)| *r == role).unwrap();
        demo_user_id(i + 1)
    }
    fn path(&self, rest: &str) -> String {
        format!("/v1/clinics/{}/{rest}", self.clinic)
    }
    async fn call(&self, method: Method, rest: &str, body: Option<Value>, role: Role) -> Reply {
        call(&self.api, method, &self.path(rest), body, self.token(role)).await
    }
    async fn plan(&self, body: Value) -> Value {
        let r = self
            .call(Method::POST, "plans", Some(body), Role::FinanceBilling)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }
    /// The patient subscribes to `plan`; a paid plan's first invoice is paid at the desk.
    async fn active_subscription(&self, plan: &Value) -> Value {
        let r = self
            .call(
                Method::POST,
                "subscriptions",
                Some(json!({"planId": plan["id"]})),
                Role::Patient,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let sub = r.body;
        if sub["status"] == "INCOMPLETE" {
            let pay = self
                .call(
                    Method::POST,
                    "payments",
                    Some(json!({"invoiceId": sub["latestInvoiceId"], "method": "CASH"})),
                    Role::Receptionist,
                )
                .await;
            assert_eq!(pay.status, StatusCode::CREATED, "{}", pay.body);
            assert_eq!(pay.body["status"], "COMPLETED");
        }
        let r = self
            .call(
                Method::GET,
                &format!("subscriptions/{}", sub["id"].as_str().unwrap()),
                None,
                Role::Patient,
            )
            .await;
        assert_eq!(r.body["status"], "ACTIVE", "{}", r.body);
        r.body
    }
    async fn coverage(&self, sub: &Value, kind: &str) -> Value {
        let r = self
            .call(
                Method::GET,
                &format!(
                    "subscriptions/{}/coverage?appointmentType={kind}",
                    sub["id"].as_str().unwrap()
                ),
                None,
                Role::Patient,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }
    async fn book(&self, sub: &Value, kind: &str, starts_at: &str) -> Reply {
        let mut body = json!({"doctorId": self.id(Role::Doctor), "kind": kind,
                              "startsAt": starts_at, "durationMinutes": 30,
                              "subscriptionId": sub["id"]});
        if kind == "IN_PERSON" {
            body["locationId"] = json!(local_stack::DEMO_LOCATION_ID);
        }
        self.call(Method::POST, "appointments", Some(body), Role::Patient)
            .await
    }
    /// Handles what billing's queue holds until `want` events were handled (or 10 s passed).
    async fn drain_billing_events(&self, want: usize) -> usize {
        let stack = self.stack();
        let mut handled = 0;
        for _ in 0..50 {
            handled += local_stack::drain_billing_events(stack).await.unwrap();
            if handled >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        handled
    }
}

async fn world(label: &str) -> World {
    let clients = test_clients().await;
    let resources = provision(&clients, &unique_prefix(label)).await.unwrap();
    let clock = Arc::new(ManualClock::new(START.parse().unwrap()));
    let stack = Stack::with_clock(clients, resources, clock.clone())
        .await
        .unwrap();
    let clinic = stack.seed_demo().await.unwrap();
    let _relay = stack.spawn_relay(Duration::from_millis(200));
    let api = Api::serve(stack).await;
    let mut tokens = HashMap::new();
    for (role, email, ..) in DEMO_USERS {
        tokens.insert(*role, api.token(email, DEMO_PASSWORD).await);
    }
    World {
        api,
        clock,
        clinic,
        tokens,
    }
}

fn monthly(included: Value) -> Value {
    json!({"name": "Family care", "price": 4900, "interval": "MONTH",
           "appointmentsIncluded": included, "coveredTypes": ["IN_PERSON", "VIDEO_CALL"],
           "visitPrices": {"IN_PERSON": 6000, "VIDEO_CALL": 3500, "HOME_VISIT": 9000}})
}

#[tokio::test]
async fn a_subscriber_books_covered_and_uncovered_visits_and_gets_a_cancelled_unit_back_once() {
    let w = world("bil").await;
    let plan = w.plan(monthly(json!(2))).await;
    assert_eq!(plan["currency"], "EUR", "the clinic's currency by default");
    assert_eq!(plan["appointmentsIncluded"], 2);

    // Subscribing starts INCOMPLETE with the first period's invoice; nothing is covered yet.
    let r = w
        .call(
            Method::POST,
            "subscriptions",
            Some(json!({"planId": plan["id"]})),
            Role::Patient,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let sub = r.body.clone();
    assert_eq!(sub["status"], "INCOMPLETE");
    assert_eq!(sub["currentPeriodStart"], START);
    assert_eq!(sub["currentPeriodEnd"], "2026-12-30T06:00:00Z");
    let c = w.coverage(&sub, "IN_PERSON").await;
    assert_eq!(c["covered"], false);
    assert_eq!(c["reason"], "subscription_not_live");
    assert_eq!(c["amountDue"], 6000);
    let again = w
        .call(
            Method::POST,
            "subscriptions",
            Some(json!({"planId": plan["id"]})),
            Role::Patient,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.body["code"], "already_subscribed");

    // The first invoice: numbered, open, for the plan's price.
    let inv_path = format!("invoices/{}", sub["latestInvoiceId"].as_str().unwrap());
    let inv = w.call(Method::GET, &inv_path, None, Role::Patient).await;
    assert_eq!(inv.status, StatusCode::OK, "{}", inv.body);
    assert_eq!(inv.body["number"], "INV-2026-000001");
    assert_eq!(inv.body["status"], "OPEN");
    assert_eq!(inv.body["total"], 4900);
    assert_eq!(
        inv.body["dueAt"], "2026-12-07T06:00:00Z",
        "due a week after issue"
    );
    // A patient cannot record cash themselves; reception takes it at the desk.
    let own_cash = w
        .call(
            Method::POST,
            "payments",
            Some(json!({"invoiceId": inv.body["id"], "method": "CASH"})),
            Role::Patient,
        )
        .await;
    assert_eq!(own_cash.status, StatusCode::UNPROCESSABLE_ENTITY);
    let pay = w
        .call(
            Method::POST,
            "payments",
            Some(json!({"invoiceId": inv.body["id"], "method": "CASH", "amount": 4900})),
            Role::Receptionist,
        )
        .await;
    assert_eq!(pay.status, StatusCode::CREATED, "{}", pay.body);
    assert_eq!(pay.body["status"], "COMPLETED");
    let inv = w.call(Method::GET, &inv_path, None, Role::Patient).await;
    assert_eq!(inv.body["status"], "PAID");
    assert_eq!(inv.body["amountDue"], 0);
    let twice = w
        .call(
            Method::POST,
            "payments",
            Some(json!({"invoiceId": inv.body["id"], "method": "CASH"})),
            Role::Receptionist,
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.body["code"], "invoice_not_payable");

    // Paid: ACTIVE, two visits covered.
    let c = w.coverage(&sub, "IN_PERSON").await;
    assert_eq!(c["covered"], true, "{c}");
    assert_eq!(c["remaining"], 2);
    assert_eq!(c["amountDue"], 0);
    let first = w.book(&sub, "IN_PERSON", "2026-11-30T09:00:00Z").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["billing"]["covered"], true);
    assert_eq!(first.body["status"], "PENDING");
    assert_eq!(w.coverage(&sub, "VIDEO_CALL").await["remaining"], 1);

    // A home visit is not covered: booked PENDING with a pay-per-visit invoice.
    let home = w.book(&sub, "HOME_VISIT", "2026-11-30T10:00:00Z").await;
    assert_eq!(home.status, StatusCode::CREATED, "{}", home.body);
    let billing = &home.body["billing"];
    assert_eq!(billing["covered"], false);
    assert_eq!(billing["reason"], "type_not_covered");
    assert_eq!(billing["amountDue"], 9000);
    assert_eq!(billing["invoiceNumber"], "INV-2026-000002");
    let visit_inv = w
        .call(
            Method::GET,
            &format!("invoices/{}", billing["invoiceId"].as_str().unwrap()),
            None,
            Role::Patient,
        )
        .await;
    assert_eq!(visit_inv.body["appointmentId"], home.body["id"]);
    assert_eq!(visit_inv.body["total"], 9000);
    // Paying the visit's invoice confirms the visit (through the appointments queue).
    let paid = w
        .call(
            Method::POST,
            "payments",
            Some(json!({"invoiceId": billing["invoiceId"], "method": "CASH"})),
            Role::Receptionist,
        )
        .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    let home_path = format!("appointments/{}", home.body["id"].as_str().unwrap());
    let mut status = Value::Null;
    for _ in 0..50 {
        local_stack::drain_appointments_events(w.stack())
            .await
            .unwrap();
        status = w
            .call(Method::GET, &home_path, None, Role::Patient)
            .await
            .body["status"]
            .clone();
        if status == "CONFIRMED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, "CONFIRMED", "paying confirms the visit");
    assert_eq!(w.coverage(&sub, "IN_PERSON").await["remaining"], 1);

    // The second covered visit uses the quota up; the third is paid per visit.
    let second = w.book(&sub, "VIDEO_CALL", "2026-11-30T12:00:00Z").await;
    assert_eq!(second.body["billing"]["covered"], true, "{}", second.body);
    let third = w.book(&sub, "IN_PERSON", "2026-11-30T13:00:00Z").await;
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.body);
    assert_eq!(third.body["billing"]["reason"], "quota_used_up");
    assert_eq!(third.body["billing"]["amountDue"], 6000);
    assert_eq!(w.coverage(&sub, "IN_PERSON").await["remaining"], 0);

    // Cancelling a covered visit gives its unit back through billing's queue.
    let cancel = w
        .call(
            Method::POST,
            &format!("appointments/{}/cancel", first.body["id"].as_str().unwrap()),
            Some(json!({"reason": "travelling"})),
            Role::Patient,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.body);
    assert!(w.drain_billing_events(1).await >= 1);
    assert_eq!(w.coverage(&sub, "IN_PERSON").await["remaining"], 1);

    // The same cancellation delivered five more times gives nothing more back.
    let events = w
        .api
        .bus_events(&[
            "appointment.cancelled",
            "billing.quota.restored",
            "billing.appointment.booked",
        ])
        .await;
    let cancelled = events
        .iter()
        .find(|e| e["detail-type"] == "appointment.cancelled")
        .expect("appointment.cancelled on the bus")
        .clone();
    let stack = w.stack();
    for _ in 0..5 {
        stack
            .clients
            .sqs
            .send_message()
            .queue_url(&stack.resources.billing_events_url)
            .message_body(cancelled.to_string())
            .send()
            .await
            .unwrap();
    }
    assert_eq!(w.drain_billing_events(5).await, 5);
    assert_eq!(w.coverage(&sub, "IN_PERSON").await["remaining"], 1);
    assert!(
        events
            .iter()
            .any(|e| e["detail-type"] == "billing.quota.restored"
                && e["detail"]["data"]["restored"] == true)
    );
    assert!(
        events
            .iter()
            .any(|e| e["detail-type"] == "billing.appointment.booked"),
        "covered bookings are announced"
    );
    // Cancelling an uncovered visit gives nothing back.
    let cancel = w
        .call(
            Method::POST,
            &format!("appointments/{}/cancel", third.body["id"].as_str().unwrap()),
            Some(json!({"reason": "changed plans"})),
            Role::Patient,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK);
    w.drain_billing_events(1).await;
    assert_eq!(w.coverage(&sub, "IN_PERSON").await["remaining"], 1);
}

#[tokio::test]
async fn with_quota_n_only_n_of_n_plus_ten_concurrent_bookings_are_covered() {
    const N: usize = 4;
    let w = world("bilq").await;
    let plan = w.plan(monthly(json!(N))).await;
    let sub = w.active_subscription(&plan).await;
    // N + 10 bookings at distinct times (after the doctor's lunch), all at once.
    let replies = futures_join(
        (0..N + 10)
            .map(|i| {
                let at = jiff::Timestamp::from_second(
                    "2026-12-01T12:00:00Z"
                        .parse::<jiff::Timestamp>()
                        .unwrap()
                        .as_second()
                        + 1800 * i as i64,
                )
                .unwrap()
                .to_string();
                let (w, sub) = (&w, &sub);
                async move { w.book(sub, "IN_PERSON", &at).await }
            })
            .collect(),
    )
    .await;
    let covered = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED && r.body["billing"]["covered"] == true)
        .count();
    assert_eq!(covered, N, "exactly the quota is covered");
    for r in &replies {
        let ok = (r.status == StatusCode::CREATED && r.body["billing"].is_object())
            || (r.status == StatusCode::CONFLICT && r.body["code"] == "quota_exhausted");
        assert!(ok, "{} {}", r.status, r.body);
    }
    let s = w
        .call(
            Method::GET,
            &format!("subscriptions/{}", sub["id"].as_str().unwrap()),
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(s.body["quota"]["used"], N);
    assert_eq!(s.body["quota"]["remaining"], 0);
}

/// Runs futures concurrently on this task and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::with_capacity(futs.len());
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

#[tokio::test]
async fn a_hundred_concurrent_invoices_get_a_hundred_consecutive_numbers() {
    let w = world("bilinv").await;
    let patient = w.id(Role::Patient);
    let replies = futures_join(
        (0..100)
            .map(|i| {
                let (w, patient) = (&w, &patient);
                async move {
                    w.call(
                        Method::POST,
                        "invoices",
                        Some(json!({"patientId": patient,
                                    "lines": [{"description": "Consultation", "quantity": 1, "unitAmount": 1000 + i}],
                                    "tax": 190, "discount": 100})),
                        Role::FinanceBilling,
                    )
                    .await
                }
            })
            .collect(),
    )
    .await;
    let mut numbers: Vec<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            r.body["number"].as_str().unwrap().to_string()
        })
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=100).map(|i| format!("INV-2026-{i:06}")).collect();
    assert_eq!(numbers, expected, "distinct and consecutive");
    assert_eq!(replies[0].body["total"], 1000 + 190 - 100);
    // The patient sees their own invoices; another patient sees none of them.
    let own = w.call(Method::GET, "invoices", None, Role::Patient).await;
    assert_eq!(own.body["items"].as_array().unwrap().len(), 100);
    let (_, other) = person(w.stack(), Some(&w.clinic), Role::Patient, None, true).await;
    let other = w.api.token(&other, DEMO_PASSWORD).await;
    let theirs = call(&w.api, Method::GET, &w.path("invoices"), None, &other).await;
    assert_eq!(theirs.body["items"].as_array().unwrap().len(), 0);
    let one = replies[0].body["id"].as_str().unwrap();
    let peek = call(
        &w.api,
        Method::GET,
        &w.path(&format!("invoices/{one}")),
        None,
        &other,
    )
    .await;
    assert_eq!(peek.status, StatusCode::NOT_FOUND);
    // Void: once, and a void invoice cannot be paid.
    let v = w
        .call(
            Method::POST,
            &format!("invoices/{one}/void"),
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    assert_eq!(v.body["status"], "VOID");
    let again = w
        .call(
            Method::POST,
            &format!("invoices/{one}/void"),
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(again.body["code"], "invoice_not_voidable");
    let pay = w
        .call(
            Method::POST,
            "payments",
            Some(json!({"invoiceId": one, "method": "CASH"})),
            Role::Receptionist,
        )
        .await;
    assert_eq!(pay.body["code"], "invoice_not_payable");
    // Reception may create invoices but not void them.
    let r = w
        .call(
            Method::POST,
            &format!("invoices/{}/void", replies[1].body["id"].as_str().unwrap()),
            None,
            Role::Receptionist,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

fn signed(body: &Value, at: i64) -> (Vec<u8>, String) {
    let bytes = body.to_string().into_bytes();
    let sig = billing::payments::sign(LOCAL_WEBHOOK_SECRET.as_bytes(), at, &bytes);
    (bytes, sig)
}

#[tokio::test]
async fn a_payment_webhook_delivered_five_times_completes_the_payment_once() {
    let w = world("bilwh").await;
    let plan = w.plan(monthly(json!(null))).await;
    let r = w
        .call(
            Method::POST,
            "subscriptions",
            Some(json!({"planId": plan["id"]})),
            Role::Patient,
        )
        .await;
    let sub = r.body;
    let pay = w
        .call(
            Method::POST,
            "payments",
            Some(json!({"invoiceId": sub["latestInvoiceId"], "method": "CARD"})),
            Role::Patient,
        )
        .await;
    assert_eq!(pay.status, StatusCode::CREATED, "{}", pay.body);
    assert_eq!(pay.body["status"], "PENDING");
    let reference = pay.body["providerReference"].as_str().unwrap().to_string();
    let now: jiff::Timestamp = START.parse().unwrap();
    let event = json!({"type": "payment.succeeded", "reference": reference,
                       "amount": 4900, "currency": "EUR"});
    let hook = "/v1/webhooks/payments/gateway";

    // Forged, stale, tampered and unsigned deliveries are refused.
    let (bytes, _) = signed(&event, now.as_second());
    let forged = billing::payments::sign(b"not-the-secret-at-all", now.as_second(), &bytes);
    let stale = signed(&event, now.as_second() - 301).1;
    let (_, good) = signed(&event, now.as_second());
    let tampered = json!({"type": "payment.succeeded", "reference": reference,
                          "amount": 1, "currency": "EUR"})
    .to_string()
    .into_bytes();
    for (body, sig) in [
        (bytes.clone(), forged.as_str()),
        (bytes.clone(), stale.as_str()),
        (tampered, good.as_str()),
        (bytes.clone(), "garbage"),
    ] {
        let r = w
            .api
            .send(
                Method::POST,
                hook,
                Some(body),
                &[("x-signature", sig), ("content-type", "application/json")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    let r = w
        .api
        .send(
            Method::POST,
            "/v1/webhooks/payments/other",
            Some(bytes.clone()),
            &[
                ("x-signature", good.as_str()),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The genuine delivery, five times at once: applied exactly once.
    let replies = futures_join(
        (0..5)
            .map(|_| {
                let (w, bytes, good) = (&w, bytes.clone(), good.clone());
                async move {
                    w.api
                        .send(
                            Method::POST,
                            hook,
                            Some(bytes),
                            &[
                                ("x-signature", good.as_str()),
                                ("content-type", "application/json"),
                            ],
                        )
                        .await
                }
            })
            .collect(),
    )
    .await;
    let applied = replies
        .iter()
        .filter(|r| {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body["applied"] == true
        })
        .count();
    assert_eq!(applied, 1);
    let p = w
        .call(
            Method::GET,
            &format!("payments/{}", pay.body["id"].as_str().unwrap()),
            None,
            Role::Patient,
        )
        .await;
    assert_eq!(p.body["status"], "COMPLETED");
    let s = w
        .call(
            Method::GET,
            &format!("subscriptions/{}", sub["id"].as_str().unwrap()),
            None,
            Role::Patient,
        )
        .await;
    assert_eq!(s.body["status"], "ACTIVE");
    assert_eq!(s.body["quota"]["remaining"], Value::Null, "unlimited");
    let events = w.api.bus_events(&["billing.payment.completed"]).await;
    let completed = events
        .iter()
        .filter(|e| e["detail-type"] == "billing.payment.completed")
        .count();
    assert_eq!(completed, 1);
}

#[tokio::test]
async fn plans_validate_and_cannot_be_deleted_while_subscribed() {
    let w = world("bilpl").await;
    // Only admins and finance manage plans; everyone in the clinic reads them.
    let r = w
        .call(
            Method::POST,
            "plans",
            Some(monthly(json!(2))),
            Role::Receptionist,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let bad = w
        .call(
            Method::POST,
            "plans",
            Some(
                json!({"name": "", "price": -1, "interval": "FORTNIGHT", "intervalCount": 0,
                        "trialDays": 400, "appointmentsIncluded": -2,
                        "coveredTypes": ["SURGERY"], "visitPrices": {"IN_PERSON": 1},
                        "currency": "euro"}),
            ),
            Role::ClinicAdmin,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "name",
        "price",
        "interval",
        "intervalCount",
        "trialDays",
        "appointmentsIncluded",
        "coveredTypes",
        "visitPrices",
        "currency",
    ] {
        assert!(fields.contains(&f), "{f} missing in {fields:?}");
    }
    let mut trial = monthly(json!(1));
    trial["trialDays"] = json!(14);
    let plan = w.plan(trial).await;
    let listed = w.call(Method::GET, "plans", None, Role::Patient).await;
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "the seeded plan and this one");
    assert!(
        ids.contains(&local_stack::DEMO_PLAN_ID) && ids.contains(&plan["id"].as_str().unwrap())
    );

    // A trial starts TRIALING, covered at once, for 14 local days.
    let r = w
        .call(
            Method::POST,
            "subscriptions",
            Some(json!({"planId": plan["id"], "patientId": w.id(Role::Patient)})),
            Role::Receptionist,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let sub = r.body;
    assert_eq!(sub["status"], "TRIALING");
    assert_eq!(sub["trialEnd"], "2026-12-14T06:00:00Z");
    assert_eq!(w.coverage(&sub, "VIDEO_CALL").await["covered"], true);

    let plan_path = format!("plans/{}", plan["id"].as_str().unwrap());
    let d = w
        .call(Method::DELETE, &plan_path, None, Role::ClinicAdmin)
        .await;
    assert_eq!(d.status, StatusCode::CONFLICT);
    assert_eq!(d.body["code"], "plan_in_use");
    // Deactivated: nobody new can subscribe.
    let off = w
        .call(
            Method::PATCH,
            &plan_path,
            Some(json!({"active": false, "version": plan["version"]})),
            Role::ClinicAdmin,
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    let (p2, _) = person(w.stack(), Some(&w.clinic), Role::Patient, None, false).await;
    let r = w
        .call(
            Method::POST,
            "subscriptions",
            Some(json!({"planId": plan["id"], "patientId": p2})),
            Role::Receptionist,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Cancel at period end keeps it live; cancelling now frees the plan for deletion.
    let sub_path = format!("subscriptions/{}", sub["id"].as_str().unwrap());
    let c = w
        .call(
            Method::POST,
            &format!("{sub_path}/cancel"),
            None,
            Role::Patient,
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.body["cancelAtPeriodEnd"], true);
    assert_eq!(c.body["status"], "TRIALING");
    let renew = w
        .call(
            Method::POST,
            &format!("{sub_path}/renew"),
            None,
            Role::Receptionist,
        )
        .await;
    assert_eq!(renew.status, StatusCode::OK, "{}", renew.body);
    assert_eq!(renew.body["cancelAtPeriodEnd"], false);
    let not_due = w
        .call(
            Method::POST,
            &format!("{sub_path}/renew"),
            None,
            Role::Receptionist,
        )
        .await;
    assert_eq!(not_due.body["code"], "not_due");
    let now = w
        .call(
            Method::POST,
            &format!("{sub_path}/cancel"),
            Some(json!({"atPeriodEnd": false})),
            Role::Patient,
        )
        .await;
    assert_eq!(now.body["status"], "CANCELLED");
    let c = w.coverage(&sub, "VIDEO_CALL").await;
    assert_eq!(c["covered"], false);
    assert_eq!(c["reason"], "subscription_not_live");
    let again = w
        .call(
            Method::POST,
            &format!("{sub_path}/cancel"),
            None,
            Role::Patient,
        )
        .await;
    assert_eq!(again.body["code"], "illegal_transition");
    let d = w
        .call(Method::DELETE, &plan_path, None, Role::ClinicAdmin)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.body);

    // Other clinics' members and unknown ids: 404 alike; doctors have no subscription access.
    let (_, outsider) = person(
        w.stack(),
        Some(&ClinicId::parse(local_stack::SECOND_CLINIC_ID).unwrap()),
        Role::ClinicAdmin,
        None,
        true,
    )
    .await;
    let outsider = w.api.token(&outsider, DEMO_PASSWORD).await;
    let r = call(&w.api, Method::GET, &w.path(&sub_path), None, &outsider).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = w
        .call(Method::GET, "subscriptions", None, Role::Doctor)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w.call(Method::GET, &sub_path, None, Role::Doctor).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_billing_job_renews_marks_overdue_and_ends_and_refunds_and_analytics_add_up() {
    let mut w = world("bilsw").await;
    let plan = w.plan(monthly(json!(2))).await;
    let sub = w.active_subscription(&plan).await;
    let sub_path = format!("subscriptions/{}", sub["id"].as_str().unwrap());
    let first_invoice = sub["latestInvoiceId"].clone();
    let booked = w.book(&sub, "IN_PERSON", "2026-11-30T09:00:00Z").await;
    assert_eq!(booked.body["billing"]["covered"], true, "{}", booked.body);
    assert_eq!(w.sweep().await.renewed, 0, "nothing is due yet");

    // Past the period end: a new period, quota reset, its invoice issued.
    w.advance_days(31).await;
    let r = w.sweep().await;
    assert_eq!((r.renewed, r.failed), (1, 0), "{r:?}");
    let s = w
        .call(Method::GET, &sub_path, None, Role::Patient)
        .await
        .body;
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(s["currentPeriodStart"], "2026-12-30T06:00:00Z");
    assert_eq!(s["currentPeriodEnd"], "2027-01-30T06:00:00Z");
    assert_eq!(s["quota"]["used"], 0);
    assert_ne!(s["latestInvoiceId"], first_invoice);
    assert_eq!(w.sweep().await.renewed, 0, "a second run changes nothing");

    // Unpaid past its due date: the invoice is OVERDUE and the subscription PAST_DUE.
    w.advance_days(8).await;
    let r = w.sweep().await;
    assert_eq!((r.overdue, r.past_due), (1, 1), "{r:?}");
    let s = w
        .call(Method::GET, &sub_path, None, Role::Patient)
        .await
        .body;
    assert_eq!(s["status"], "PAST_DUE");
    assert_eq!(
        w.coverage(&s, "IN_PERSON").await["reason"],
        "subscription_not_live"
    );
    let pay = w
        .call(
            Method::POST,
            "payments",
            Some(json!({"invoiceId": s["latestInvoiceId"], "method": "CASH"})),
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(pay.status, StatusCode::CREATED, "{}", pay.body);
    let s = w
        .call(Method::GET, &sub_path, None, Role::Patient)
        .await
        .body;
    assert_eq!(
        s["status"], "ACTIVE",
        "paying the overdue invoice reactivates"
    );

    // Refunds: partial, never more than paid, full marks REFUNDED; reception cannot refund.
    let pay_path = format!("payments/{}/refund", pay.body["id"].as_str().unwrap());
    let r = w
        .call(
            Method::POST,
            &pay_path,
            Some(json!({"amount": 900})),
            Role::Receptionist,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w
        .call(
            Method::POST,
            &pay_path,
            Some(json!({"amount": 900})),
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["refundOf"], pay.body["id"]);
    let r = w
        .call(
            Method::POST,
            &pay_path,
            Some(json!({"amount": 4001})),
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(r.body["errors"][0]["code"], "exceeds_paid", "{}", r.body);
    let r = w
        .call(Method::POST, &pay_path, None, Role::FinanceBilling)
        .await;
    assert_eq!(r.body["amount"], 4000);
    let p = w
        .call(
            Method::GET,
            &format!("payments/{}", pay.body["id"].as_str().unwrap()),
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(p.body["status"], "REFUNDED");
    assert_eq!(p.body["refunded"], 4900);
    let r = w
        .call(Method::POST, &pay_path, None, Role::FinanceBilling)
        .await;
    assert_eq!(r.body["code"], "not_refundable");

    // Analytics: two payments of 4900 collected, 4900 refunded, by month and method.
    let a = w
        .call(
            Method::GET,
            "billing/analytics?from=2026-11-01&to=2027-01-31",
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let rev = &a.body["revenue"];
    assert_eq!(rev["collected"], 9800);
    assert_eq!(rev["refunded"], 4900);
    assert_eq!(rev["net"], 4900);
    assert_eq!(rev["byMethod"]["CASH"], 4900);
    assert_eq!(rev["byPeriod"]["2026-11"], 4900);
    assert_eq!(rev["byPlan"][0]["planId"], plan["id"]);
    assert_eq!(a.body["subscriptions"]["active"], 1);
    assert_eq!(a.body["quota"]["included"], 2);
    for role in [Role::Receptionist, Role::Doctor, Role::Patient, Role::Nurse] {
        let r = w.call(Method::GET, "billing/analytics", None, role).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?}");
    }
    let r = w
        .call(
            Method::GET,
            "billing/analytics?from=2027-02-01&to=2027-01-01",
            None,
            Role::ClinicAdmin,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Cancel at period end: the job ends it when the period is over.
    let c = w
        .call(
            Method::POST,
            &format!("{sub_path}/cancel"),
            None,
            Role::Patient,
        )
        .await;
    assert_eq!(c.body["cancelAtPeriodEnd"], true, "{}", c.body);
    w.advance_days(25).await;
    let r = w.sweep().await;
    assert_eq!(r.ended, 1, "{r:?}");
    let s = w
        .call(Method::GET, &sub_path, None, Role::Patient)
        .await
        .body;
    assert_eq!(s["status"], "CANCELLED");
}
