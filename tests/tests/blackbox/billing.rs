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
        self.advance(jiff::SignedDuration::from_hours(24 * days))
            .await;
    }
    async fn advance(&mut self, by: jiff::SignedDuration) {
        self.clock.advance(by);
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
                .pay_cash(json!(sub["latestInvoiceId"]), Role::Receptionist)
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
    /// Records a cash payment of `invoice` (everything it still owes) at the desk.
    async fn pay_cash(&self, invoice: Value, role: Role) -> Reply {
        let body = json!({"invoiceId": invoice, "method": "CASH"});
        self.call(Method::POST, "payments", Some(body), role).await
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
                              "subscriptionId": sub["id"], "patientId": self.id(Role::Patient)});
        if kind == "IN_PERSON" {
            body["locationId"] = json!(local_stack::DEMO_LOCATION_ID);
        }
        // Reception books for the patient: staff are not held to a patient's booking limits.
        self.call(Method::POST, "appointments", Some(body), Role::Receptionist)
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
    let own_cash = w.pay_cash(json!(inv.body["id"]), Role::Patient).await;
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
    let twice = w.pay_cash(json!(inv.body["id"]), Role::Receptionist).await;
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
        .pay_cash(json!(billing["invoiceId"]), Role::Receptionist)
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
    let replies = blackbox::join_all(
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
    // Every other booking is booked all the same, as a visit paid with its own invoice: a
    // booking that loses the last unit to a concurrent one is not refused.
    for r in &replies {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        if r.body["billing"]["covered"] == false {
            assert!(r.body["billing"]["invoiceId"].is_string(), "{}", r.body);
            assert!(r.body["billing"]["amountDue"].as_i64().unwrap() > 0);
        }
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

#[tokio::test]
async fn a_hundred_concurrent_invoices_get_a_hundred_consecutive_numbers() {
    let w = world("bilinv").await;
    let patient = w.id(Role::Patient);
    let replies = blackbox::join_all(
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
    assert_eq!(
        own.body["items"].as_array().unwrap().len(),
        50,
        "a page by default"
    );
    // Pages of 30 walk all hundred once, highest number first; a cursor keeps its filters.
    let mut walked = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = w
            .call(
                Method::GET,
                &format!("invoices?limit=30{cursor}"),
                None,
                Role::FinanceBilling,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for i in page.body["items"].as_array().unwrap() {
            walked.push(i["number"].as_str().unwrap().to_string());
        }
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let mut newest_first = expected.clone();
    newest_first.reverse();
    assert_eq!(walked, newest_first);
    let first = w
        .call(Method::GET, "invoices?limit=2", None, Role::FinanceBilling)
        .await;
    let c = first.body["nextCursor"].as_str().unwrap();
    let refiltered = w
        .call(
            Method::GET,
            &format!("invoices?limit=2&status=OPEN&cursor={c}"),
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(
        refiltered.body["code"], "invalid_cursor",
        "{}",
        refiltered.body
    );
    let r = w
        .call(Method::GET, "payments?limit=0", None, Role::FinanceBilling)
        .await;
    assert_eq!(r.body["errors"][0]["code"], "out_of_range", "{}", r.body);
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
    assert_eq!(again.body["code"], "illegal_transition");
    let pay = w.pay_cash(json!(one), Role::Receptionist).await;
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

    // Drafts have no number until finalized; finalizing races new invoices for numbers and
    // the numbers stay consecutive.
    let mut drafts = Vec::new();
    for _ in 0..3 {
        let d = w
            .call(
                Method::POST,
                "invoices",
                Some(json!({"patientId": patient, "draft": true,
                            "lines": [{"description": "Dressing", "unitAmount": 800}]})),
                Role::FinanceBilling,
            )
            .await;
        assert_eq!(d.status, StatusCode::CREATED, "{}", d.body);
        assert_eq!(d.body["status"], "DRAFT");
        assert!(d.body.get("number").is_none() && d.body.get("dueAt").is_none());
        drafts.push(d.body["id"].as_str().unwrap().to_string());
    }
    // The patient sees invoices once issued, not the clinic's drafts.
    let hidden = w
        .call(
            Method::GET,
            &format!("invoices/{}", drafts[0]),
            None,
            Role::Patient,
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let pay = w.pay_cash(json!(drafts[0]), Role::Receptionist).await;
    assert_eq!(pay.body["code"], "invoice_not_payable", "{}", pay.body);
    let listed = w
        .call(Method::GET, "invoices?limit=1", None, Role::FinanceBilling)
        .await;
    assert_eq!(
        listed.body["items"][0]["status"], "DRAFT",
        "drafts list first"
    );
    let finalize: Vec<String> = drafts
        .iter()
        .map(|d| format!("invoices/{d}/finalize"))
        .collect();
    let mut racers: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + '_>>> =
        Vec::new();
    for path in &finalize {
        racers.push(Box::pin(w.call(
            Method::POST,
            path,
            None,
            Role::FinanceBilling,
        )));
    }
    for _ in 0..5 {
        racers.push(Box::pin(w.call(
            Method::POST,
            "invoices",
            Some(json!({"patientId": patient,
                        "lines": [{"description": "Consultation", "unitAmount": 1000}]})),
            Role::ClinicAdmin,
        )));
    }
    let mut numbers = Vec::new();
    for r in blackbox::join_all(racers).await {
        assert!(r.status.is_success(), "{}", r.body);
        assert_eq!(r.body["status"], "OPEN");
        assert!(r.body["dueAt"].is_string());
        numbers.push(r.body["number"].as_str().unwrap().to_string());
    }
    numbers.sort();
    let expected: Vec<String> = (101..=108).map(|i| format!("INV-2026-{i:06}")).collect();
    assert_eq!(numbers, expected);
    let again = w
        .call(
            Method::POST,
            &format!("invoices/{}/finalize", drafts[0]),
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(again.body["code"], "illegal_transition", "{}", again.body);
    // Written off: UNCOLLECTIBLE, still payable (the patient may pay after all), not twice.
    let off_path = format!("invoices/{}/mark-uncollectible", drafts[1]);
    let r = w
        .call(Method::POST, &off_path, None, Role::Receptionist)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w
        .call(Method::POST, &off_path, None, Role::FinanceBilling)
        .await;
    assert_eq!(r.body["status"], "UNCOLLECTIBLE", "{}", r.body);
    let r = w
        .call(Method::POST, &off_path, None, Role::FinanceBilling)
        .await;
    assert_eq!(r.body["code"], "illegal_transition");
    let pay = w.pay_cash(json!(drafts[1]), Role::Receptionist).await;
    assert_eq!(pay.body["status"], "COMPLETED", "{}", pay.body);
    let paid = w
        .call(
            Method::GET,
            &format!("invoices/{}", drafts[1]),
            None,
            Role::Patient,
        )
        .await;
    assert_eq!(paid.body["status"], "PAID");
    // Part payments: the invoice owes less until the last part settles it.
    let part = |amount: Option<i64>| {
        let mut body = json!({"invoiceId": drafts[2], "method": "CASH"});
        if let Some(a) = amount {
            body["amount"] = json!(a);
        }
        w.call(Method::POST, "payments", Some(body), Role::Receptionist)
    };
    let r = part(Some(300)).await;
    assert_eq!(r.body["amount"], 300, "{}", r.body);
    let inv2 = format!("invoices/{}", drafts[2]);
    let i = w.call(Method::GET, &inv2, None, Role::Patient).await.body;
    assert_eq!(
        (&i["status"], &i["amountPaid"], &i["amountDue"]),
        (&json!("OPEN"), &json!(300), &json!(500))
    );
    let r = w
        .call(
            Method::POST,
            &format!("{inv2}/void"),
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(r.body["code"], "invoice_partly_paid", "{}", r.body);
    let r = part(Some(501)).await;
    assert_eq!(r.body["errors"][0]["code"], "exceeds_due", "{}", r.body);
    let r = part(Some(0)).await;
    assert_eq!(r.body["errors"][0]["code"], "invalid_amount", "{}", r.body);
    let r = part(None).await;
    assert_eq!(r.body["amount"], 500, "the rest by default");
    let i = w.call(Method::GET, &inv2, None, Role::Patient).await.body;
    assert_eq!((&i["status"], &i["amountDue"]), (&json!("PAID"), &json!(0)));
    let r = w
        .call(
            Method::POST,
            &format!("invoices/{}/refinance", drafts[2]),
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

fn signed(body: &Value, at: i64) -> (Vec<u8>, String) {
    let bytes = body.to_string().into_bytes();
    let sig = billing::providers::sign(LOCAL_WEBHOOK_SECRET.as_bytes(), at, &bytes);
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
    let forged = billing::providers::sign(b"not-the-secret-at-all", now.as_second(), &bytes);
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
    let replies = blackbox::join_all(
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
    // Another patient subscribes and never pays the first invoice.
    let (p2, _) = person(w.stack(), Some(&w.clinic), Role::Patient, None, false).await;
    let unpaid = w
        .call(
            Method::POST,
            "subscriptions",
            Some(json!({"planId": plan["id"], "patientId": p2})),
            Role::Receptionist,
        )
        .await;
    assert_eq!(unpaid.body["status"], "INCOMPLETE", "{}", unpaid.body);
    // A third one's first invoice is voided by the clinic: that subscription ends with it.
    let (p3, _) = person(w.stack(), Some(&w.clinic), Role::Patient, None, false).await;
    let voided = w
        .call(
            Method::POST,
            "subscriptions",
            Some(json!({"planId": plan["id"], "patientId": p3})),
            Role::Receptionist,
        )
        .await
        .body;
    let v = w
        .call(
            Method::POST,
            &format!(
                "invoices/{}/void",
                voided["latestInvoiceId"].as_str().unwrap()
            ),
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(v.body["status"], "VOID", "{}", v.body);
    let x = w
        .call(
            Method::GET,
            &format!("subscriptions/{}", voided["id"].as_str().unwrap()),
            None,
            Role::Receptionist,
        )
        .await;
    assert_eq!(x.body["status"], "CANCELLED", "{}", x.body);

    // The visit happens; its follow-up is booked with the same subscription and covered by
    // the period's last unit.
    let appt = |action: &str| {
        format!(
            "appointments/{}/{action}",
            booked.body["id"].as_str().unwrap()
        )
    };
    w.advance(jiff::SignedDuration::from_mins(185)).await;
    for (action, role) in [
        ("confirm", Role::Receptionist),
        ("check-in", Role::Receptionist),
        ("start", Role::Doctor),
    ] {
        let r = w.call(Method::POST, &appt(action), None, role).await;
        assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.body);
    }
    let done = w
        .call(
            Method::POST,
            &appt("complete"),
            Some(json!({"followUp": {"startsAt": "2026-12-07T09:00:00Z"}})),
            Role::Doctor,
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let follow = &done.body["followUp"];
    assert_eq!(follow["billing"]["covered"], true, "{follow}");
    assert_eq!(follow["billing"]["subscriptionId"], sub["id"]);
    let s = w
        .call(Method::GET, &sub_path, None, Role::Patient)
        .await
        .body;
    assert_eq!(s["quota"]["used"], 2);

    // Past the period end: a new period, quota reset, its invoice issued.
    w.advance_days(31).await;
    let r = w.sweep().await;
    assert_eq!((r.renewed, r.failed), (1, 0), "{r:?}");
    // The unpaid first invoice expired the subscription that never started.
    assert_eq!((r.expired, r.overdue), (1, 0), "{r:?}");
    let x = w
        .call(
            Method::GET,
            &format!("subscriptions/{}", unpaid.body["id"].as_str().unwrap()),
            None,
            Role::Receptionist,
        )
        .await;
    assert_eq!(x.body["status"], "CANCELLED", "{}", x.body);
    let inv = w
        .call(
            Method::GET,
            &format!(
                "invoices/{}",
                unpaid.body["latestInvoiceId"].as_str().unwrap()
            ),
            None,
            Role::Receptionist,
        )
        .await;
    assert_eq!(inv.body["status"], "VOID", "{}", inv.body);
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
        .pay_cash(json!(s["latestInvoiceId"]), Role::FinanceBilling)
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

    // Analytics: two payments of 4900 collected, 4900 refunded, by month and method, once the
    // stream's changes are counted.
    let mut stats = w.stack().stats_poller();
    while stats.poll_once().await.unwrap() > 0 {}
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
    // A second reader from the stream's start delivers every change again: nothing counts twice.
    let mut again = w.stack().stats_poller();
    while again.poll_once().await.unwrap() > 0 {}
    let b = w
        .call(
            Method::GET,
            "billing/analytics?from=2026-11-01&to=2027-01-31",
            None,
            Role::FinanceBilling,
        )
        .await;
    assert_eq!(b.body, a.body);
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

/// Finance does what the walk needs done, for the demo patient at the demo location.
async fn walk_post(w: &World, path: &str, body: Value) -> Value {
    let r = w
        .call(Method::POST, path, Some(body), Role::FinanceBilling)
        .await;
    assert!(r.status.is_success(), "{path}: {}", r.body);
    r.body
}

async fn walk_subscription(w: &World, plan: &Value) -> Value {
    let body = json!({"planId": plan["id"], "patientId": w.id(Role::Patient),
                      "locationId": local_stack::DEMO_LOCATION_ID});
    walk_post(w, "subscriptions", body).await
}

async fn walk_invoice(w: &World, draft: bool) -> Value {
    let body = json!({"patientId": w.id(Role::Patient), "locationId": local_stack::DEMO_LOCATION_ID,
                      "draft": draft, "lines": [{"description": "Consultation", "unitAmount": 5000}]});
    walk_post(w, "invoices", body).await
}

/// A completed cash payment of a fresh invoice.
async fn walk_cash(w: &World) -> Value {
    let inv = walk_invoice(w, false).await;
    walk_post(
        w,
        "payments",
        json!({"invoiceId": inv["id"], "method": "CASH"}),
    )
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    ListPlans,
    CreatePlan,
    GetPlan,
    UpdatePlan,
    DeletePlan,
    ListSubscriptions,
    Subscribe,
    GetSubscription,
    Cancel,
    Renew,
    Coverage,
    ListInvoices,
    CreateInvoice,
    GetInvoice,
    Finalize,
    Void,
    MarkUncollectible,
    ListPayments,
    CreatePayment,
    GetPayment,
    Refund,
    Analytics,
}

const CASES: [Case; 22] = [
    Case::ListPlans,
    Case::CreatePlan,
    Case::GetPlan,
    Case::UpdatePlan,
    Case::DeletePlan,
    Case::ListSubscriptions,
    Case::Subscribe,
    Case::GetSubscription,
    Case::Cancel,
    Case::Renew,
    Case::Coverage,
    Case::ListInvoices,
    Case::CreateInvoice,
    Case::GetInvoice,
    Case::Finalize,
    Case::Void,
    Case::MarkUncollectible,
    Case::ListPayments,
    Case::CreatePayment,
    Case::GetPayment,
    Case::Refund,
    Case::Analytics,
];

/// Every role (a fresh member of the demo clinic each, the location head at the demo location)
/// against every billing route, on records of the demo patient at the demo location. What each
/// cell should answer is derived from the policy table: unreadable records are 404, actions
/// the role may not take on a readable record 403, lists and creation without any grant 403.
#[tokio::test]
async fn every_role_on_every_billing_route_gets_what_the_table_says() {
    use shared::policy::{Action, Actor, Limit, Resource, Subject, allowed, may_ever};
    let w = world("bilroles").await;
    let stack = w.stack();
    let patient = w.id(Role::Patient);
    let location = local_stack::DEMO_LOCATION_ID;
    let subject = Subject {
        owner: Some(patient.as_str()),
        location: Some(location),
        ..Default::default()
    };
    // Records everyone's cells share: a plan, a subscription, an invoice and a payment.
    let plan = w.plan(monthly(json!(2))).await;
    let sub = walk_subscription(&w, &plan).await;
    let inv = walk_invoice(&w, false).await;
    let paid = walk_cash(&w).await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();

    let mut mismatches = Vec::new();
    let mut cells = 0;
    let mut answers = std::collections::BTreeSet::new();
    for role in Role::ALL {
        let (me, email) = match role {
            Role::SuperAdmin => person(stack, None, role, None, true).await,
            Role::ClinicLocationHead => {
                let l = shared::ids::LocationId::parse(location).unwrap();
                person(stack, Some(&w.clinic), role, Some(&l), true).await
            }
            Role::Patient => (patient.clone(), "patient@demo.clinic".to_string()),
            _ => person(stack, Some(&w.clinic), role, None, true).await,
        };
        let token = w.api.token(&email, DEMO_PASSWORD).await;
        let actor = Actor {
            role,
            user: me.as_str(),
            location: (role == Role::ClinicLocationHead).then_some(location),
        };
        let can = |resource, action| allowed(&actor, resource, action, &subject);
        let clinic_wide = |resource, action| allowed(&actor, resource, action, &Subject::default());
        let yes_no = |ok: bool, yes: StatusCode| if ok { yes } else { StatusCode::FORBIDDEN };
        // On an existing record: 404 when unreadable, else `yes` or 403.
        let on = |resource, action, yes: StatusCode| {
            if !can(resource, Action::Read) {
                StatusCode::NOT_FOUND
            } else {
                yes_no(can(resource, action), yes)
            }
        };
        for case in CASES {
            let (method, path, body, want) = match case {
                Case::ListPlans => (
                    Method::GET,
                    "plans".to_string(),
                    None,
                    yes_no(clinic_wide(Resource::Plan, Action::Read), StatusCode::OK),
                ),
                Case::CreatePlan => (
                    Method::POST,
                    "plans".to_string(),
                    Some(monthly(json!(1))),
                    yes_no(
                        clinic_wide(Resource::Plan, Action::Create),
                        StatusCode::CREATED,
                    ),
                ),
                Case::GetPlan => (
                    Method::GET,
                    format!("plans/{}", id(&plan)),
                    None,
                    yes_no(clinic_wide(Resource::Plan, Action::Read), StatusCode::OK),
                ),
                Case::UpdatePlan => (
                    Method::PATCH,
                    format!("plans/{}", id(&plan)),
                    Some(json!({"description": format!("walked by {role}")})),
                    yes_no(
                        clinic_wide(Resource::Plan, Action::Read)
                            && clinic_wide(Resource::Plan, Action::Update),
                        StatusCode::OK,
                    ),
                ),
                Case::DeletePlan => (
                    Method::DELETE,
                    format!("plans/{}", id(&w.plan(monthly(json!(1))).await)),
                    None,
                    yes_no(
                        clinic_wide(Resource::Plan, Action::Read)
                            && clinic_wide(Resource::Plan, Action::Delete),
                        StatusCode::NO_CONTENT,
                    ),
                ),
                Case::ListSubscriptions => (
                    Method::GET,
                    "subscriptions".to_string(),
                    None,
                    yes_no(
                        may_ever(role, Resource::Subscription, Action::Read),
                        StatusCode::OK,
                    ),
                ),
                Case::Subscribe => (
                    Method::POST,
                    "subscriptions".to_string(),
                    Some(json!({"planId": w.plan(monthly(json!(1))).await["id"],
                                "patientId": patient, "locationId": location})),
                    yes_no(
                        can(Resource::Subscription, Action::Create),
                        StatusCode::CREATED,
                    ),
                ),
                Case::GetSubscription => (
                    Method::GET,
                    format!("subscriptions/{}", id(&sub)),
                    None,
                    on(Resource::Subscription, Action::Read, StatusCode::OK),
                ),
                Case::Cancel => {
                    let fresh = walk_subscription(&w, &w.plan(monthly(json!(1))).await).await;
                    (
                        Method::POST,
                        format!("subscriptions/{}/cancel", id(&fresh)),
                        None,
                        on(Resource::Subscription, Action::Delete, StatusCode::OK),
                    )
                }
                // Allowed callers reach the rule: the period has not ended, nothing to renew.
                Case::Renew => (
                    Method::POST,
                    format!("subscriptions/{}/renew", id(&sub)),
                    None,
                    on(Resource::Subscription, Action::Update, StatusCode::CONFLICT),
                ),
                Case::Coverage => (
                    Method::GET,
                    format!(
                        "subscriptions/{}/coverage?appointmentType=VIDEO_CALL",
                        id(&sub)
                    ),
                    None,
                    on(Resource::Subscription, Action::Read, StatusCode::OK),
                ),
                Case::ListInvoices => (
                    Method::GET,
                    "invoices".to_string(),
                    None,
                    yes_no(
                        may_ever(role, Resource::Invoice, Action::Read),
                        StatusCode::OK,
                    ),
                ),
                Case::CreateInvoice => (
                    Method::POST,
                    "invoices".to_string(),
                    Some(json!({"patientId": patient, "locationId": location,
                                "lines": [{"description": "Walk", "unitAmount": 100}]})),
                    yes_no(can(Resource::Invoice, Action::Create), StatusCode::CREATED),
                ),
                Case::GetInvoice => (
                    Method::GET,
                    format!("invoices/{}", id(&inv)),
                    None,
                    on(Resource::Invoice, Action::Read, StatusCode::OK),
                ),
                Case::Finalize | Case::Void | Case::MarkUncollectible => {
                    let (fresh, action) = match case {
                        Case::Finalize => (walk_invoice(&w, true).await, "finalize"),
                        Case::Void => (walk_invoice(&w, false).await, "void"),
                        _ => (walk_invoice(&w, false).await, "mark-uncollectible"),
                    };
                    // A patient does not see drafts, even their own.
                    let hidden = case == Case::Finalize && role == Role::Patient;
                    (
                        Method::POST,
                        format!("invoices/{}/{action}", id(&fresh)),
                        None,
                        if hidden {
                            StatusCode::NOT_FOUND
                        } else {
                            on(Resource::Invoice, Action::Manage, StatusCode::OK)
                        },
                    )
                }
                Case::ListPayments => (
                    Method::GET,
                    "payments".to_string(),
                    None,
                    yes_no(
                        may_ever(role, Resource::Payment, Action::Read),
                        StatusCode::OK,
                    ),
                ),
                // The invoice is named in the body: unreadable answers 422 unknown_invoice.
                Case::CreatePayment => (
                    Method::POST,
                    "payments".to_string(),
                    Some(json!({"invoiceId": id(&inv), "method": "CARD"})),
                    if can(Resource::Invoice, Action::Read) {
                        yes_no(can(Resource::Payment, Action::Create), StatusCode::CREATED)
                    } else {
                        StatusCode::UNPROCESSABLE_ENTITY
                    },
                ),
                Case::GetPayment => (
                    Method::GET,
                    format!("payments/{}", id(&paid)),
                    None,
                    on(Resource::Payment, Action::Read, StatusCode::OK),
                ),
                Case::Refund => {
                    let fresh = walk_cash(&w).await;
                    (
                        Method::POST,
                        format!("payments/{}/refund", id(&fresh)),
                        Some(json!({"amount": 100})),
                        on(Resource::Payment, Action::Manage, StatusCode::CREATED),
                    )
                }
                Case::Analytics => (
                    Method::GET,
                    "billing/analytics".to_string(),
                    None,
                    yes_no(
                        allowed(
                            &actor,
                            Resource::Analytics,
                            Action::Read,
                            &Subject {
                                location: actor.location,
                                facet: Some(Limit::Billing),
                                ..Default::default()
                            },
                        ),
                        StatusCode::OK,
                    ),
                ),
            };
            let r = call(&w.api, method, &w.path(&path), body, &token).await;
            cells += 1;
            answers.insert(want.as_u16());
            if r.status != want {
                mismatches.push(format!(
                    "{role} {case:?}: want {want}, got {} {}",
                    r.status, r.body
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(cells, 14 * CASES.len());
    // A few cells spelled out, in case the table itself were wrong.
    let cell = |role: Role, method: Method, path: String| {
        let w = &w;
        async move { w.call(method, &path, None, role).await.status }
    };
    let fresh = id(&walk_invoice(&w, true).await);
    let spelled = [
        (
            Role::Receptionist,
            Method::POST,
            format!("invoices/{fresh}/finalize"),
            StatusCode::FORBIDDEN,
        ),
        (
            Role::Patient,
            Method::POST,
            format!("invoices/{}/void", id(&inv)),
            StatusCode::FORBIDDEN,
        ),
        (
            Role::Doctor,
            Method::GET,
            format!("invoices/{}", id(&inv)),
            StatusCode::NOT_FOUND,
        ),
        (
            Role::Nurse,
            Method::GET,
            "payments".to_string(),
            StatusCode::FORBIDDEN,
        ),
        (
            Role::FinanceBilling,
            Method::GET,
            "billing/analytics".to_string(),
            StatusCode::OK,
        ),
        (
            Role::Receptionist,
            Method::GET,
            "billing/analytics".to_string(),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (role, method, path, want) in spelled {
        assert_eq!(
            cell(role, method, path.clone()).await,
            want,
            "{role} {path}"
        );
    }
    // The head of another location, and another clinic's admin, find nothing of these.
    let elsewhere = shared::ids::LocationId::generate();
    let (_, head) = person(
        stack,
        Some(&w.clinic),
        Role::ClinicLocationHead,
        Some(&elsewhere),
        true,
    )
    .await;
    let second = ClinicId::parse(local_stack::SECOND_CLINIC_ID).unwrap();
    let (_, outsider) = person(stack, Some(&second), Role::ClinicAdmin, None, true).await;
    for email in [head, outsider] {
        let token = w.api.token(&email, DEMO_PASSWORD).await;
        for path in [
            format!("invoices/{}", id(&inv)),
            format!("subscriptions/{}", id(&sub)),
            format!("payments/{}", id(&paid)),
        ] {
            let r = call(&w.api, Method::GET, &w.path(&path), None, &token).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{email} {path}");
        }
    }

    // The table grants and refuses: the walk met every kind of answer.
    assert_eq!(
        answers.into_iter().collect::<Vec<_>>(),
        [200, 201, 204, 403, 404, 409, 422]
    );
}

#[tokio::test]
async fn a_covered_video_call_cannot_be_rescheduled_into_a_free_home_visit() {
    // GIVEN a patient with a covered 30-minute video call (the plan does not cover home visits)
    let w = world("bil").await;
    let plan = w.plan(monthly(json!(2))).await;
    let sub = w.active_subscription(&plan).await;
    let r = w.book(&sub, "VIDEO_CALL", "2026-11-30T09:00:00Z").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["billing"]["covered"], true);
    let path = format!("appointments/{}", r.body["id"].as_str().unwrap());
    // WHEN they reschedule it into a four-hour home visit
    let attack = w
        .call(
            Method::POST,
            &format!("{path}/reschedule"),
            Some(json!({"startsAt": "2026-11-30T12:00:00Z", "kind": "HOME_VISIT", "durationMinutes": 240})),
            Role::Patient,
        )
        .await;
    // THEN it is refused, and the appointment is still the covered video call it was
    assert_eq!(attack.status, StatusCode::CONFLICT, "{}", attack.body);
    assert_eq!(attack.body["code"], "billed_terms_fixed");
    let now = w.call(Method::GET, &path, None, Role::Patient).await;
    assert_eq!(now.body["kind"], "VIDEO_CALL");
    assert_eq!(now.body["durationMinutes"], 30);
    assert_eq!(now.body["startsAt"], "2026-11-30T09:00:00Z");
    // AND a longer video call is refused the same way (it would be priced for 30 minutes)
    let longer = w
        .call(
            Method::POST,
            &format!("{path}/reschedule"),
            Some(json!({"startsAt": "2026-11-30T12:00:00Z", "durationMinutes": 120})),
            Role::Patient,
        )
        .await;
    assert_eq!(longer.status, StatusCode::CONFLICT, "{}", longer.body);
    // AND moving it in time alone still works and stays covered, using no second unit
    let moved = w
        .call(
            Method::POST,
            &format!("{path}/reschedule"),
            Some(json!({"startsAt": "2026-11-30T12:00:00Z"})),
            Role::Patient,
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!(moved.body["kind"], "VIDEO_CALL");
    assert_eq!(moved.body["billing"]["covered"], true);
    let c = w.coverage(&sub, "VIDEO_CALL").await;
    assert_eq!(c["remaining"], 1);
}

/// A bus event as a forger would put it on the bus: well formed, claiming what suits them.
fn forged(kind: &str, clinic: &ClinicId, data: Value) -> shared::outbox::EventEnvelope {
    shared::outbox::EventEnvelope::new(
        kind,
        Some(clinic),
        shared::outbox::Actor::default(),
        shared::outbox::Subject {
            kind: "forged".into(),
            id: "1".into(),
        },
        data,
        jiff::Timestamp::now(),
    )
}

#[tokio::test]
async fn consumers_act_on_the_records_not_on_what_an_event_claims() {
    // GIVEN a covered video call (one of two units used) and an unpaid home visit
    let w = world("bil").await;
    let plan = w.plan(monthly(json!(2))).await;
    let sub = w.active_subscription(&plan).await;
    let covered = w.book(&sub, "VIDEO_CALL", "2026-11-30T09:00:00Z").await;
    assert_eq!(covered.status, StatusCode::CREATED, "{}", covered.body);
    let home = w.book(&sub, "HOME_VISIT", "2026-11-30T14:00:00Z").await;
    assert_eq!(home.status, StatusCode::CREATED, "{}", home.body);
    let invoice = home.body["billing"]["invoiceId"].clone();
    assert!(invoice.is_string(), "{}", home.body);
    let stack = w.stack();
    let now = w.clock.now();
    // WHEN events claim the video call was cancelled and the home visit's invoice was paid
    let cancelled = forged(
        "appointment.cancelled",
        &w.clinic,
        json!({"appointmentId": covered.body["id"], "doctorId": w.id(Role::Doctor),
               "patientId": w.id(Role::Patient), "locationId": null, "kind": "VIDEO_CALL",
               "status": "CANCELLED", "startsAt": "2026-11-30T09:00:00Z",
               "endsAt": "2026-11-30T09:30:00Z"}),
    );
    billing::events::handle(&stack.billing, &cancelled, now)
        .await
        .unwrap();
    let paid = forged(
        "billing.invoice.paid",
        &w.clinic,
        json!({"invoiceId": invoice, "number": null, "patientId": w.id(Role::Patient),
               "subscriptionId": null, "appointmentId": home.body["id"], "total": 9000,
               "currency": "EUR"}),
    );
    appointments::events::handle(&stack.appointments, &paid, now)
        .await
        .unwrap();
    // THEN no unit came back for the video call, which is still booked
    let c = w.coverage(&sub, "VIDEO_CALL").await;
    assert_eq!(c["remaining"], 1, "{c}");
    let path = |a: &Reply| format!("appointments/{}", a.body["id"].as_str().unwrap());
    let v = w
        .call(Method::GET, &path(&covered), None, Role::Patient)
        .await;
    assert_eq!(v.body["status"], "PENDING");
    // AND the unpaid home visit was not confirmed
    let h = w.call(Method::GET, &path(&home), None, Role::Patient).await;
    assert_eq!(h.body["status"], "PENDING", "{}", h.body);
}
