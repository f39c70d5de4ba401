//! Scheduling over HTTP against the emulator: a receptionist's day end to end, double-booking
//! races, reschedules and cancellations releasing time, idempotent booking, every illegal
//! transition, the sweep, every role on every appointments route, ownership, bad input and
//! daylight-saving days.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox::{Api, Reply, call, person};
use http::{Method, StatusCode};
use jiff::{SignedDuration, Timestamp};
use local_stack::{DEMO_PASSWORD, Stack};
use serde_json::{Value, json};
use shared::{
    clock::ManualClock,
    ids::{ClinicId, LocationId, UserId},
    policy::{Action, Actor, Limit, Resource, Role, Scope, Subject, allowed, authorize},
    provision::{provision, put_clinic, put_location, test_clients, unique_prefix},
};
use std::{collections::HashMap, sync::Arc};

/// Monday 30 November 2026, 07:00 in Berlin.
const START: &str = "2026-11-30T06:00:00Z";
/// A value that must never leave the encrypted fields (no events, no lists, no logs).
const CANARY: &str = "CANARY-REASON-7f3a";

struct World {
    api: Api,
    clock: Arc<ManualClock>,
    a: ClinicId,
    b: ClinicId,
    l1: LocationId,
    lb: LocationId,
    /// One member of clinic A per role (the super admin has no membership).
    people: HashMap<Role, (UserId, String)>,
    doctor2: (UserId, String),
    doctor2_email: String,
    patient2: (UserId, String),
    /// Every login, to sign in again after the clock moves past token lifetimes.
    emails: Vec<(Option<Role>, String)>,
    /// Clinic B's admin and doctor.
    admin_b: String,
    doctor_b: UserId,
}

impl World {
    /// Signs everyone in again (after the test clock moved past the tokens' 15 minutes).
    async fn relogin(&mut self) {
        self.doctor2.1 = self.api.token(&self.doctor2_email, DEMO_PASSWORD).await;
        for (role, email) in self.emails.clone() {
            let token = self.api.token(&email, DEMO_PASSWORD).await;
            match role {
                Some(r) => self.people.get_mut(&r).unwrap().1 = token,
                None if email == self.emails[self.emails.len() - 1].1 => self.admin_b = token,
                None => {}
            }
        }
    }

    fn token(&self, role: Role) -> &str {
        &self.people[&role].1
    }
    fn id(&self, role: Role) -> &UserId {
        &self.people[&role].0
    }
    fn stack(&self) -> &Stack {
        self.api.stack.as_ref().unwrap()
    }
    async fn call(&self, method: Method, path: &str, body: Option<Value>, token: &str) -> Reply {
        call(&self.api, method, path, body, token).await
    }
    fn appts(&self) -> String {
        format!("/v1/clinics/{}/appointments", self.a)
    }
    /// Reception books `patient` with the main doctor at `starts_at` for `minutes`.
    async fn book(&self, patient: &UserId, starts_at: &str, minutes: i64) -> Value {
        let r = self
            .call(
                Method::POST,
                &self.appts(),
                Some(json!({"doctorId": self.id(Role::Doctor), "patientId": patient, "kind": "IN_PERSON",
                            "locationId": self.l1, "startsAt": starts_at, "durationMinutes": minutes})),
                self.token(Role::Receptionist),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }
    async fn act(&self, id: &Value, action: &str, body: Option<Value>, token: &str) -> Reply {
        let path = format!("{}/{}/{action}", self.appts(), id.as_str().unwrap());
        self.call(Method::POST, &path, body, token).await
    }
    async fn slots(&self, date: &str) -> Vec<String> {
        let r = self
            .call(
                Method::GET,
                &format!(
                    "/v1/clinics/{}/doctors/{}/slots?date={date}",
                    self.a,
                    self.id(Role::Doctor)
                ),
                None,
                self.token(Role::Receptionist),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["startsAt"].as_str().unwrap().to_string())
            .collect()
    }
}

fn hours(location: &LocationId) -> Value {
    let day = json!([{"start": "08:00", "end": "18:00", "locationId": location}]);
    json!({
        "slotMinutes": 30,
        "weekly": {"MONDAY": day, "TUESDAY": day, "WEDNESDAY": day, "THURSDAY": day,
                   "FRIDAY": day, "SATURDAY": day, "SUNDAY": day},
        "breaks": [{"start": "12:00", "end": "13:00"}],
        "exceptions": [{"date": "2026-12-25"}],
    })
}

async fn world() -> World {
    let clients = test_clients().await;
    let resources = provision(&clients, &unique_prefix("sch")).await.unwrap();
    let clock = Arc::new(ManualClock::new(START.parse().unwrap()));
    let stack = Stack::with_clock(clients.clone(), resources, clock.clone())
        .await
        .unwrap();
    let (a, b, l1, lb) = (
        ClinicId::generate(),
        ClinicId::generate(),
        LocationId::generate(),
        LocationId::generate(),
    );
    let table = stack.resources.table.clone();
    put_clinic(
        &clients,
        &table,
        &a,
        ("Clinic A", "Europe/Berlin", "EUR"),
        true,
    )
    .await
    .unwrap();
    put_clinic(
        &clients,
        &table,
        &b,
        ("Clinic B", "America/New_York", "USD"),
        true,
    )
    .await
    .unwrap();
    put_location(&clients, &table, &a, &l1, "North", 0)
        .await
        .unwrap();
    put_location(&clients, &table, &b, &lb, "Uptown", 0)
        .await
        .unwrap();
    let mut accounts = Vec::new();
    for role in Role::ALL {
        let (clinic, location) = match role {
            Role::SuperAdmin => (None, None),
            Role::ClinicLocationHead => (Some(&a), Some(&l1)),
            _ => (Some(&a), None),
        };
        accounts.push((role, person(&stack, clinic, role, location, true).await));
    }
    let doctor2 = person(&stack, Some(&a), Role::Doctor, None, true).await;
    let patient2 = person(&stack, Some(&a), Role::Patient, None, true).await;
    let admin_b = person(&stack, Some(&b), Role::ClinicAdmin, None, true).await;
    let (doctor_b, _) = person(&stack, Some(&b), Role::Doctor, None, false).await;
    let _relay = stack.spawn_relay(std::time::Duration::from_millis(200));
    let api = Api::serve(stack).await;
    let mut people = HashMap::new();
    let mut emails = Vec::new();
    for (role, (user, email)) in accounts {
        let token = api.token(&email, DEMO_PASSWORD).await;
        people.insert(role, (user, token));
        emails.push((Some(role), email));
    }
    emails.push((None, admin_b.1.clone()));
    let doctor2_email = doctor2.1.clone();
    let doctor2 = (doctor2.0, api.token(&doctor2.1, DEMO_PASSWORD).await);
    let patient2 = (patient2.0, api.token(&patient2.1, DEMO_PASSWORD).await);
    let admin_b = api.token(&admin_b.1, DEMO_PASSWORD).await;
    let w = World {
        api,
        clock,
        a,
        b,
        l1,
        lb,
        people,
        doctor2,
        doctor2_email,
        patient2,
        admin_b,
        doctor_b,
        emails,
    };
    // The doctor sets their own hours.
    let r = w
        .call(
            Method::PUT,
            &format!(
                "/v1/clinics/{}/doctors/{}/availability",
                w.a,
                w.id(Role::Doctor)
            ),
            Some(hours(&w.l1)),
            w.token(Role::Doctor),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["version"], 1);
    w
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_receptionist_runs_a_clinic_day_end_to_end() {
    let w = world().await;
    let reception = w.token(Role::Receptionist);
    let doctor = w.token(Role::Doctor);
    let patient = w.id(Role::Patient).clone();
    // 08:00-12:00 and 13:00-18:00 Berlin in 30-minute slots
    let today = w.slots("2026-11-30").await;
    assert_eq!(today.len(), 18);
    assert_eq!(today[0], "2026-11-30T07:00:00Z");
    assert!(w.slots("2026-12-25").await.is_empty(), "holiday");
    // A patient books for themselves; the slot is no longer offered
    let r = w
        .call(
            Method::POST,
            &w.appts(),
            Some(
                json!({"doctorId": w.id(Role::Doctor), "kind": "IN_PERSON", "locationId": w.l1,
                        "startsAt": "2026-11-30T09:00:00Z", "endsAt": "2026-11-30T09:30:00Z",
                        "reason": CANARY, "symptoms": "cough"}),
            ),
            w.token(Role::Patient),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let first = r.body.clone();
    assert_eq!(first["status"], "PENDING");
    assert_eq!(first["patientId"], patient.as_str());
    assert_eq!(first["reason"], CANARY);
    assert!(
        r.headers["location"]
            .to_str()
            .unwrap()
            .ends_with(first["id"].as_str().unwrap())
    );
    let left = w.slots("2026-11-30").await;
    assert_eq!(left.len(), 17);
    assert!(!left.contains(&"2026-11-30T09:00:00Z".to_string()));
    // Reception books the second patient by video, confirms both and checks them in
    let second = w.book(&w.patient2.0, "2026-11-30T09:30:00Z", 30).await;
    for a in [&first, &second] {
        let r = w.act(&a["id"], "confirm", None, reception).await;
        assert_eq!(r.body["status"], "CONFIRMED", "{}", r.body);
    }
    for a in [&first, &second] {
        let r = w.act(&a["id"], "check-in", None, reception).await;
        assert_eq!(r.body["status"], "CHECKED_IN", "{}", r.body);
        assert!(r.body["checkedInAt"].is_string());
    }
    // The queue: in check-in order, with waits
    let queue_path = format!("/v1/clinics/{}/queue?doctorId={}", w.a, w.id(Role::Doctor));
    let q = w
        .call(Method::GET, &queue_path, None, w.token(Role::Nurse))
        .await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.body);
    let entries = q.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["appointmentId"], first["id"]);
    assert_eq!(
        (
            entries[0]["position"].as_i64(),
            entries[0]["estimatedWaitMinutes"].as_i64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(
        (
            entries[1]["position"].as_i64(),
            entries[1]["estimatedWaitMinutes"].as_i64()
        ),
        (Some(2), Some(30))
    );
    // A patient sees only their own place in it
    let own = w
        .call(
            Method::GET,
            &format!("/v1/clinics/{}/queue", w.a),
            None,
            &w.patient2.1,
        )
        .await;
    let own = own.body["entries"].as_array().unwrap().clone();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["appointmentId"], second["id"]);
    assert_eq!(own[0]["position"], 2);
    // Reception moves the second patient to the front
    let r = w
        .call(
            Method::PATCH,
            &format!("{}/{}", w.appts(), second["id"].as_str().unwrap()),
            Some(json!({"queuePosition": 1})),
            reception,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let q = w.call(Method::GET, &queue_path, None, doctor).await;
    assert_eq!(
        q.body["entries"][0]["appointmentId"], second["id"],
        "{}",
        q.body
    );
    // The doctor starts the second; the first now waits for it to finish
    assert_eq!(
        w.act(&second["id"], "start", None, doctor).await.body["status"],
        "IN_PROGRESS"
    );
    let q = w.call(Method::GET, &queue_path, None, reception).await;
    let first_entry = q.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["appointmentId"] == first["id"])
        .unwrap()
        .clone();
    assert_eq!(
        (
            first_entry["position"].as_i64(),
            first_entry["estimatedWaitMinutes"].as_i64()
        ),
        (Some(1), Some(30))
    );
    // Completing with a follow-up date books the first free slot that day, linked both ways
    let r = w
        .act(
            &second["id"],
            "complete",
            Some(json!({"notes": "rest", "followUp": {"date": "2026-12-07"}})),
            doctor,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "COMPLETED");
    // The doctor's note joins the clinical notes, apart from what the patient wrote
    let notes = w
        .call(
            Method::GET,
            &format!(
                "{}/{}/clinical-notes",
                w.appts(),
                second["id"].as_str().unwrap()
            ),
            None,
            doctor,
        )
        .await;
    assert_eq!(notes.body["items"][0]["text"], "rest", "{}", notes.body);
    let follow = r.body["followUp"].clone();
    assert_eq!(follow["startsAt"], "2026-12-07T07:00:00Z");
    assert_eq!(follow["status"], "PENDING");
    assert_eq!(follow["followUpOf"], second["id"]);
    assert_eq!(r.body["followUpId"], follow["id"]);
    assert!(
        !w.slots("2026-12-07")
            .await
            .contains(&"2026-12-07T07:00:00Z".to_string())
    );
    assert_eq!(
        w.act(&first["id"], "start", None, doctor).await.status,
        StatusCode::OK
    );
    assert_eq!(
        w.act(&first["id"], "complete", None, doctor).await.body["status"],
        "COMPLETED"
    );
    let q = w.call(Method::GET, &queue_path, None, reception).await;
    assert!(q.body["entries"].as_array().unwrap().is_empty());
    // The doctor reads the reason; finance sees times and statuses only
    let path = format!("{}/{}", w.appts(), first["id"].as_str().unwrap());
    assert_eq!(
        w.call(Method::GET, &path, None, doctor).await.body["reason"],
        CANARY
    );
    let f = w
        .call(Method::GET, &path, None, w.token(Role::FinanceBilling))
        .await;
    assert_eq!(f.status, StatusCode::OK);
    assert!(f.body.get("reason").is_none() && f.body.get("symptoms").is_none());
    // Lists filter and never carry PHI
    let list = w
        .call(
            Method::GET,
            &format!(
                "{}?status=COMPLETED&from=2026-11-30&to=2026-11-30",
                w.appts()
            ),
            None,
            reception,
        )
        .await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        list.body
    );
    assert!(!list.body.to_string().contains(CANARY));
    // Events announce every step, with ids only
    let events = w
        .api
        .bus_events(&[
            "appointment.created",
            "appointment.confirmed",
            "appointment.checked_in",
            "appointment.started",
            "appointment.completed",
        ])
        .await;
    for t in [
        "appointment.created",
        "appointment.confirmed",
        "appointment.checked_in",
        "appointment.started",
        "appointment.completed",
    ] {
        assert!(events.iter().any(|e| e["detail-type"] == t), "{t} missing");
    }
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(CANARY) && !all.contains("cough") && !all.contains("rest\""));
    // At rest the reason is ciphertext
    let item = w
        .stack()
        .clients
        .dynamodb
        .get_item()
        .table_name(&w.stack().resources.table)
        .key("pk", shared::db::s(shared::keys::clinic_pk(&w.a)))
        .key(
            "sk",
            shared::db::s(format!("APPT#{}", first["id"].as_str().unwrap())),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!format!("{item:?}").contains(CANARY));
}

#[tokio::test]
async fn fifty_concurrent_bookings_of_one_slot_make_exactly_one_appointment() {
    let w = Arc::new(world().await);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            // All of them share the 09:25 cell: same slot, or overlapping variants of it
            let start = ts("2026-12-01T08:00:00Z") + SignedDuration::from_mins(5 * (i % 6));
            let minutes = 30 - 5 * (i % 6);
            let patient = if i % 2 == 0 { w.id(Role::Patient).clone() } else { w.patient2.0.clone() };
            w.call(
                Method::POST,
                &w.appts(),
                Some(json!({"doctorId": w.id(Role::Doctor), "patientId": patient, "kind": "VIDEO_CALL",
                            "startsAt": start.to_string(), "durationMinutes": minutes})),
                w.token(Role::Receptionist),
            )
            .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert_eq!(r.body["code"], "slot_taken", "{}", r.body),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(created, 1);
    let list = w
        .call(
            Method::GET,
            &format!(
                "{}?doctorId={}&from=2026-12-01&to=2026-12-01",
                w.appts(),
                w.id(Role::Doctor)
            ),
            None,
            w.token(Role::ClinicAdmin),
        )
        .await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.body
    );
}

#[tokio::test]
async fn moving_and_cancelling_release_time_atomically() {
    let w = Arc::new(world().await);
    let reception = w.token(Role::Receptionist);
    let patient = w.id(Role::Patient).clone();
    let a = w.book(&patient, "2026-12-02T08:00:00Z", 60).await;
    // Reschedule into 10:00-10:30: the old hour is free at once, the new half hour taken
    let r = w
        .act(
            &a["id"],
            "reschedule",
            Some(json!({"startsAt": "2026-12-02T10:00:00Z", "durationMinutes": 30})),
            w.token(Role::Patient),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["reschedules"].as_i64(), r.body["startsAt"].as_str()),
        (Some(1), Some("2026-12-02T10:00:00Z"))
    );
    w.book(&w.patient2.0, "2026-12-02T08:30:00Z", 30).await;
    let clash = w
        .call(Method::POST, &w.appts(), Some(json!({"doctorId": w.id(Role::Doctor), "patientId": patient, "kind": "VIDEO_CALL", "startsAt": "2026-12-02T10:15:00Z", "durationMinutes": 5})), reception)
        .await;
    assert_eq!(
        (clash.status, clash.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("slot_taken"))
    );
    // Moving onto itself partly (10:00 -> 10:15, overlapping its own time) works
    let r = w
        .act(
            &a["id"],
            "reschedule",
            Some(json!({"startsAt": "2026-12-02T10:15:00Z"})),
            reception,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["durationMinutes"], 30);
    let slots = w.slots("2026-12-02").await;
    assert!(
        slots.contains(&"2026-12-02T09:30:00Z".to_string())
            && !slots.contains(&"2026-12-02T10:00:00Z".to_string())
    );
    // A third move is refused
    let r = w
        .act(
            &a["id"],
            "reschedule",
            Some(json!({"startsAt": "2026-12-02T14:00:00Z"})),
            reception,
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("reschedule_limit"))
    );
    // Cancelling needs a reason, and frees the time for someone else
    let r = w.act(&a["id"], "cancel", None, reception).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = w
        .act(
            &a["id"],
            "cancel",
            Some(json!({"reason": "feels better"})),
            w.token(Role::Patient),
        )
        .await;
    assert_eq!(r.body["status"], "CANCELLED", "{}", r.body);
    assert_eq!(r.body["cancellationReason"], "feels better");
    w.book(&w.patient2.0, "2026-12-02T10:15:00Z", 30).await;
    // A move and a booking racing for the same time: exactly one wins
    let b = w.book(&patient, "2026-12-03T08:00:00Z", 30).await;
    for (round, hour) in [8, 9, 10, 13, 14].into_iter().enumerate() {
        let target = format!("2026-12-04T{hour:02}:00:00Z");
        let (w1, w2, id, t1, t2) = (
            w.clone(),
            w.clone(),
            b["id"].clone(),
            target.clone(),
            target.clone(),
        );
        let mover = tokio::spawn(async move {
            w1.act(
                &id,
                "reschedule",
                Some(json!({"startsAt": t1})),
                w1.token(Role::Receptionist),
            )
            .await
        });
        let booker = tokio::spawn(async move {
            w2.call(Method::POST, &w2.appts(), Some(json!({"doctorId": w2.id(Role::Doctor), "patientId": w2.patient2.0, "kind": "VIDEO_CALL", "startsAt": t2, "durationMinutes": 30})), w2.token(Role::Receptionist)).await
        });
        let (m, k) = (mover.await.unwrap(), booker.await.unwrap());
        let wins = [m.status == StatusCode::OK, k.status == StatusCode::CREATED];
        if m.status == StatusCode::CONFLICT && m.body["code"] == "reschedule_limit" {
            assert!(wins[1]);
            continue;
        }
        assert_eq!(
            wins.iter().filter(|x| **x).count(),
            1,
            "round {round}: {} / {}",
            m.body,
            k.body
        );
    }
}

#[tokio::test]
async fn a_repeated_booking_with_the_same_key_returns_the_same_appointment() {
    let w = world().await;
    let body = json!({"doctorId": w.id(Role::Doctor), "kind": "VIDEO_CALL", "startsAt": "2026-12-01T13:00:00Z", "durationMinutes": 30});
    let auth = format!("Bearer {}", w.token(Role::Patient));
    let send = |body: Value| {
        let auth = auth.clone();
        let api = &w.api;
        let path = w.appts();
        async move {
            api.send(
                Method::POST,
                &path,
                Some(body.to_string().into_bytes()),
                &[
                    ("authorization", auth.as_str()),
                    ("idempotency-key", "book-once-1"),
                ],
            )
            .await
        }
    };
    let one = send(body.clone()).await;
    let two = send(body.clone()).await;
    assert_eq!(one.status, StatusCode::CREATED, "{}", one.body);
    assert_eq!(two.status, StatusCode::CREATED, "{}", two.body);
    assert_eq!(one.body["id"], two.body["id"]);
    let mut other = body.clone();
    other["durationMinutes"] = json!(60);
    assert_eq!(send(other).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let list = w
        .call(Method::GET, &w.appts(), None, w.token(Role::Patient))
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

/// Brings a fresh appointment into `status` (the clock is at START; appointments are today).
async fn in_status(w: &World, status: &str, start: &str) -> Value {
    let a = w.book(w.id(Role::Patient), start, 30).await;
    let r = w.token(Role::Receptionist);
    let steps: &[(&str, Option<Value>)] = match status {
        "PENDING" | "EXPIRED" => &[],
        "CONFIRMED" | "NO_SHOW" => &[("confirm", None)],
        "CHECKED_IN" => &[("confirm", None), ("check-in", None)],
        "IN_PROGRESS" => &[("confirm", None), ("check-in", None), ("start", None)],
        "COMPLETED" => &[
            ("confirm", None),
            ("check-in", None),
            ("start", None),
            ("complete", None),
        ],
        "CANCELLED" => &[("cancel", None)],
        _ => unreachable!(),
    };
    for (action, _) in steps {
        let body = (*action == "cancel").then(|| json!({"reason": "test"}));
        let resp = w.act(&a["id"], action, body, r).await;
        assert_eq!(resp.status, StatusCode::OK, "{action}: {}", resp.body);
    }
    if status == "CANCELLED" {
        let resp = w
            .act(&a["id"], "cancel", Some(json!({"reason": "test"})), r)
            .await;
        assert_eq!(resp.status, StatusCode::CONFLICT);
    }
    a
}

#[tokio::test]
async fn every_illegal_transition_is_a_409_naming_both_statuses_and_the_sweep_closes_the_day() {
    let mut w = world().await;
    let statuses = [
        "PENDING",
        "CONFIRMED",
        "CHECKED_IN",
        "IN_PROGRESS",
        "COMPLETED",
        "CANCELLED",
        "EXPIRED",
        "NO_SHOW",
    ];
    let mut made = Vec::new();
    for (i, st) in statuses.iter().enumerate() {
        let start = format!("2026-11-30T{:02}:00:00Z", 7 + i);
        let start = if i >= 4 {
            format!("2026-11-30T{:02}:00:00Z", 8 + i)
        } else {
            start
        };
        made.push((*st, in_status(&w, st, &start).await));
    }
    // The sweep, an hour after the last start: unconfirmed ones expire, confirmed ones are no-shows
    w.clock.advance(SignedDuration::from_hours(10));
    let report = appointments::sweep::sweep_clinic(&w.stack().appointments, &w.a)
        .await
        .unwrap();
    // PENDING and EXPIRED-to-be expire; CONFIRMED and NO_SHOW-to-be are no-shows
    assert_eq!(
        (report.expired, report.no_shows, report.failed),
        (2, 2, 0),
        "{report:?}"
    );
    let again = appointments::sweep::sweep_clinic(&w.stack().appointments, &w.a)
        .await
        .unwrap();
    assert_eq!((again.expired, again.no_shows), (0, 0));
    w.relogin().await;
    let legal: HashMap<&str, &[&str]> = HashMap::from([
        ("CHECKED_IN", &["cancel", "start"][..]),
        ("IN_PROGRESS", &["complete"][..]),
        ("COMPLETED", &[][..]),
        ("CANCELLED", &[][..]),
        ("EXPIRED", &[][..]),
        ("NO_SHOW", &[][..]),
    ]);
    let mut checked = 0;
    for (st, a) in &made {
        let now = w
            .call(
                Method::GET,
                &format!("{}/{}", w.appts(), a["id"].as_str().unwrap()),
                None,
                w.token(Role::Receptionist),
            )
            .await;
        let actual = match *st {
            "PENDING" => "EXPIRED",
            "CONFIRMED" => "NO_SHOW",
            other => other,
        };
        assert_eq!(now.body["status"], actual, "{st}");
        let allowed_here = legal.get(actual).copied().unwrap_or(&[]);
        for action in [
            "confirm",
            "reschedule",
            "cancel",
            "check-in",
            "start",
            "complete",
            "no-show",
        ] {
            if allowed_here.contains(&action) {
                continue;
            }
            let r = w
                .act(&a["id"], action, None, w.token(Role::ClinicAdmin))
                .await;
            assert_eq!(
                r.status,
                StatusCode::CONFLICT,
                "{actual} {action}: {}",
                r.body
            );
            assert_eq!(r.body["code"], "illegal_transition");
            assert_eq!(r.body["currentStatus"], actual);
            assert_eq!(r.body["action"], action);
            let requested = match action {
                "confirm" => Some("CONFIRMED"),
                "cancel" => Some("CANCELLED"),
                "check-in" => Some("CHECKED_IN"),
                "start" => Some("IN_PROGRESS"),
                "complete" => Some("COMPLETED"),
                "no-show" => Some("NO_SHOW"),
                _ => None,
            };
            assert_eq!(r.body["requestedStatus"].as_str(), requested);
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked}");
    // Before the start, a no-show is premature; a check-in on another day is refused
    let later = w
        .book(w.id(Role::Patient), "2026-12-09T08:00:00Z", 30)
        .await;
    w.act(&later["id"], "confirm", None, w.token(Role::Receptionist))
        .await;
    let r = w
        .act(&later["id"], "no-show", None, w.token(Role::Receptionist))
        .await;
    assert_eq!(r.body["code"], "not_due");
    let r = w
        .act(&later["id"], "check-in", None, w.token(Role::Receptionist))
        .await;
    assert_eq!(r.body["code"], "not_today");
    let r = w
        .act(&later["id"], "teleport", None, w.token(Role::Receptionist))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let events = w
        .api
        .bus_events(&["appointment.expired", "appointment.no_show"])
        .await;
    let sweep_event = events
        .iter()
        .find(|e| e["detail-type"] == "appointment.no_show")
        .expect("no_show event");
    assert_eq!(sweep_event["detail"]["actor"]["role"], "SYSTEM");
}

/// One appointments route as a case of the role walk.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    Get,
    List,
    Book,
    Confirm,
    CheckIn,
    Cancel,
    Reschedule,
    Notes,
    ReadHours,
    SetHours,
    Slots,
    Queue,
}

#[tokio::test]
async fn every_role_on_every_appointments_route_gets_what_the_table_says() {
    let w = world().await;
    let patient = w.id(Role::Patient).clone();
    let doctor = w.id(Role::Doctor).clone();
    // The walk books many short visits: here the doctor works in 5-minute slots, so a patient
    // booking for themselves (one slot at most) books what everyone else does.
    let mut short = hours(&w.l1);
    short["slotMinutes"] = json!(5);
    let r = w
        .call(
            Method::PUT,
            &format!("/v1/clinics/{}/doctors/{doctor}/availability", w.a),
            Some(short.clone()),
            w.token(Role::Doctor),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cases = [
        Case::Get,
        Case::List,
        Case::Book,
        Case::Confirm,
        Case::CheckIn,
        Case::Cancel,
        Case::Reschedule,
        Case::Notes,
        Case::ReadHours,
        Case::SetHours,
        Case::Slots,
        Case::Queue,
    ];
    let mut used: HashMap<String, i64> = HashMap::new();
    let mut next = |day: &str| {
        let slot = used.entry(day.to_string()).or_default();
        *slot += 1;
        // 5-minute bookings inside the doctor's morning hours, never overlapping
        (ts(&format!("{day}T07:00:00Z")) + SignedDuration::from_mins(5 * *slot)).to_string()
    };
    let mut mismatches = Vec::new();
    let mut cells = 0;
    for role in Role::ALL {
        let (me, token) = w.people[&role].clone();
        let actor = Actor {
            role,
            user: me.as_str(),
            location: (role == Role::ClinicLocationHead).then_some(w.l1.as_str()),
        };
        // Appointments of the main patient with the main doctor at l1: a patient member of
        // the walk owns them only if it is that patient; no walker is their doctor.
        let subject = Subject {
            owner: Some(patient.as_str()),
            location: Some(w.l1.as_str()),
            assigned: me == doctor,
            ..Default::default()
        };
        let can = |action, facet| {
            allowed(
                &actor,
                Resource::Appointment,
                action,
                &Subject { facet, ..subject },
            )
        };
        let visible = |ok: bool| {
            if !can(Action::Read, None) {
                StatusCode::NOT_FOUND
            } else if ok {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            }
        };
        let schedule = Subject {
            owner: Some(doctor.as_str()),
            member_role: Some(Role::Doctor),
            ..Default::default()
        };
        for case in cases {
            let (method, path, body, want) = match case {
                Case::Get => {
                    let a = w.book(&patient, &next("2026-12-10"), 5).await;
                    (
                        Method::GET,
                        format!("{}/{}", w.appts(), a["id"].as_str().unwrap()),
                        None,
                        visible(true),
                    )
                }
                Case::List => {
                    let ok = !authorize(role, Resource::Appointment, Action::Read).is_empty();
                    (
                        Method::GET,
                        w.appts(),
                        None,
                        if ok {
                            StatusCode::OK
                        } else {
                            StatusCode::FORBIDDEN
                        },
                    )
                }
                Case::Book => (
                    Method::POST,
                    w.appts(),
                    Some(
                        json!({"doctorId": doctor, "patientId": patient, "kind": "IN_PERSON", "locationId": w.l1, "startsAt": next("2026-12-11"), "durationMinutes": 5}),
                    ),
                    if can(Action::Create, None) {
                        StatusCode::CREATED
                    } else {
                        StatusCode::FORBIDDEN
                    },
                ),
                Case::Confirm => {
                    let a = w.book(&patient, &next("2026-12-12"), 5).await;
                    (
                        Method::POST,
                        format!("{}/{}/confirm", w.appts(), a["id"].as_str().unwrap()),
                        None,
                        visible(can(Action::Manage, None)),
                    )
                }
                Case::CheckIn => {
                    let a = w.book(&patient, &next("2026-11-30"), 5).await;
                    w.act(&a["id"], "confirm", None, w.token(Role::Receptionist))
                        .await;
                    (
                        Method::POST,
                        format!("{}/{}/check-in", w.appts(), a["id"].as_str().unwrap()),
                        None,
                        visible(can(Action::Manage, Some(Limit::CheckInOnly))),
                    )
                }
                Case::Cancel => {
                    let a = w.book(&patient, &next("2026-12-13"), 5).await;
                    (
                        Method::POST,
                        format!("{}/{}/cancel", w.appts(), a["id"].as_str().unwrap()),
                        Some(json!({"reason": "walk"})),
                        visible(can(Action::Delete, None)),
                    )
                }
                Case::Reschedule => {
                    let a = w.book(&patient, &next("2026-12-14"), 5).await;
                    let ok = can(Action::Update, None)
                        || (can(Action::Create, None) && can(Action::Delete, None));
                    (
                        Method::POST,
                        format!("{}/{}/reschedule", w.appts(), a["id"].as_str().unwrap()),
                        Some(json!({"startsAt": next("2026-12-15")})),
                        visible(ok),
                    )
                }
                Case::Notes => {
                    let a = w.book(&patient, &next("2026-12-16"), 5).await;
                    (
                        Method::PATCH,
                        format!("{}/{}", w.appts(), a["id"].as_str().unwrap()),
                        Some(json!({"notes": "walk"})),
                        visible(can(Action::Update, None)),
                    )
                }
                Case::ReadHours | Case::SetHours | Case::Slots => {
                    let action = if case == Case::SetHours {
                        Action::Update
                    } else {
                        Action::Read
                    };
                    let ok = allowed(&actor, Resource::Schedule, action, &schedule);
                    let base = format!("/v1/clinics/{}/doctors/{doctor}", w.a);
                    let (method, path, body) = match case {
                        Case::SetHours => (
                            Method::PUT,
                            format!("{base}/availability"),
                            Some(short.clone()),
                        ),
                        Case::ReadHours => (Method::GET, format!("{base}/availability"), None),
                        _ => (Method::GET, format!("{base}/slots?date=2026-12-20"), None),
                    };
                    (
                        method,
                        path,
                        body,
                        if ok {
                            StatusCode::OK
                        } else {
                            StatusCode::FORBIDDEN
                        },
                    )
                }
                Case::Queue => {
                    let ok = !authorize(role, Resource::Queue, Action::Read).is_empty();
                    (
                        Method::GET,
                        format!("/v1/clinics/{}/queue", w.a),
                        None,
                        if ok {
                            StatusCode::OK
                        } else {
                            StatusCode::FORBIDDEN
                        },
                    )
                }
            };
            let r = w.call(method.clone(), &path, body, &token).await;
            cells += 1;
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
    assert_eq!(cells, 14 * 12);
    // Narrow scopes list only their own slice
    let mine = w
        .call(Method::GET, &w.appts(), None, w.token(Role::Patient))
        .await;
    assert!(
        mine.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["patientId"] == patient.as_str())
    );
    let other = w
        .call(
            Method::GET,
            &format!("{}?patientId={}", w.appts(), patient),
            None,
            &w.patient2.1,
        )
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    let docs = w.call(Method::GET, &w.appts(), None, &w.doctor2.1).await;
    assert!(
        docs.body["items"].as_array().unwrap().is_empty(),
        "{}",
        docs.body
    );
    let _ = Scope::Own;
}

#[tokio::test]
async fn patients_and_other_clinics_cannot_reach_appointments_that_are_not_theirs() {
    let w = world().await;
    let a = w
        .book(w.id(Role::Patient), "2026-12-01T08:00:00Z", 30)
        .await;
    let id = a["id"].as_str().unwrap();
    let path = format!("{}/{id}", w.appts());
    let stranger = &w.patient2.1;
    // Another patient: read, move, cancel, edit all answer 404, as for a missing id
    let missing = w
        .call(
            Method::GET,
            &format!("{}/{}", w.appts(), UserId::generate()),
            None,
            stranger,
        )
        .await;
    let r = w.call(Method::GET, &path, None, stranger).await;
    assert_eq!(
        (r.status, &r.body["code"]),
        (StatusCode::NOT_FOUND, &missing.body["code"])
    );
    for (action, body) in [
        ("reschedule", json!({"startsAt": "2026-12-01T10:00:00Z"})),
        ("cancel", json!({"reason": "x"})),
    ] {
        let r = w.act(&a["id"], action, Some(body), stranger).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}");
    }
    assert_eq!(
        w.call(Method::PATCH, &path, Some(json!({"reason": "x"})), stranger)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The patient may book only for themselves
    let r = w
        .call(Method::POST, &w.appts(), Some(json!({"doctorId": w.id(Role::Doctor), "patientId": w.id(Role::Patient), "kind": "VIDEO_CALL", "startsAt": "2026-12-01T11:00:00Z"})), stranger)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A doctor without this patient does not see it; once they have an appointment with the
    // patient they do (the "assigned" relation)
    assert_eq!(
        w.call(Method::GET, &path, None, &w.doctor2.1).await.status,
        StatusCode::NOT_FOUND
    );
    // Another clinic's admin: 404 in A, and A's id under B's path is 404 too
    assert_eq!(
        w.call(Method::GET, &path, None, &w.admin_b).await.status,
        StatusCode::NOT_FOUND
    );
    let in_b = format!("/v1/clinics/{}/appointments/{id}", w.b);
    assert_eq!(
        w.call(Method::GET, &in_b, None, &w.admin_b).await.status,
        StatusCode::NOT_FOUND
    );
    let r = w
        .call(
            Method::GET,
            &format!(
                "/v1/clinics/{}/doctors/{}/slots?date=2026-12-01",
                w.b,
                w.id(Role::Doctor)
            ),
            None,
            &w.admin_b,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_answers_problems_not_faults() {
    let world = world().await;
    let w = &world;
    let reception = w.token(Role::Receptionist);
    let base = json!({"doctorId": w.id(Role::Doctor), "patientId": w.id(Role::Patient), "kind": "IN_PERSON",
                      "locationId": w.l1, "startsAt": "2026-12-01T08:00:00Z", "durationMinutes": 30});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases = [
        (
            with("doctorId", json!(UserId::generate())),
            "doctorId",
            "unknown_doctor",
        ),
        (
            with("doctorId", json!(w.id(Role::Nurse))),
            "doctorId",
            "unknown_doctor",
        ),
        (
            with("doctorId", json!("not-an-id")),
            "doctorId",
            "unknown_doctor",
        ),
        (
            with("patientId", json!(w.id(Role::Nurse))),
            "patientId",
            "unknown_patient",
        ),
        (
            with("locationId", json!(w.lb)),
            "locationId",
            "unknown_location",
        ),
        (with("locationId", Value::Null), "locationId", "required"),
        (
            with("endsAt", json!("2026-12-01T07:30:00Z"))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.remove("durationMinutes");
                    Value::Object(o)
                })
                .unwrap(),
            "endsAt",
            "end_before_start",
        ),
        (
            with("durationMinutes", json!(0)),
            "durationMinutes",
            "out_of_range",
        ),
        (
            with("durationMinutes", json!(10_000)),
            "durationMinutes",
            "out_of_range",
        ),
        (with("durationMinutes", json!(7)), "startsAt", "not_on_grid"),
        (
            with("startsAt", json!("2026-12-01 08:00")),
            "startsAt",
            "invalid_timestamp",
        ),
        (
            with("startsAt", json!("2026-11-29T08:00:00Z")),
            "startsAt",
            "in_the_past",
        ),
        (
            with("startsAt", json!("2026-12-01T03:00:00Z")),
            "startsAt",
            "outside_hours",
        ),
        (
            with("startsAt", json!("2026-12-25T09:00:00Z")),
            "startsAt",
            "outside_hours",
        ),
        (with("kind", json!("TELEPATHY")), "kind", "invalid_kind"),
        (with("reason", json!("")), "reason", "invalid_length"),
    ];
    for (body, field, code) in cases {
        let r = w
            .call(Method::POST, &w.appts(), Some(body.clone()), reception)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field} {code}: {}",
            r.body
        );
        assert_eq!(r.headers["content-type"], "application/problem+json");
        let errors = r.body["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["code"] == code),
            "{field} {code}: {}",
            r.body
        );
    }
    // Unknown fields and malformed JSON are refused without echoing them
    let r = w
        .call(
            Method::POST,
            &w.appts(),
            Some(with("status", json!("COMPLETED"))),
            reception,
        )
        .await;
    assert!(
        r.status.is_client_error() && !r.body.to_string().contains("COMPLETED"),
        "{}",
        r.body
    );
    let auth = format!("Bearer {reception}");
    let r = w
        .api
        .send(
            Method::POST,
            &w.appts(),
            Some(b"{\"doctorId\":".to_vec()),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let big = json!({"doctorId": w.id(Role::Doctor), "kind": "VIDEO_CALL", "startsAt": "2026-12-01T08:00:00Z", "notes": "x".repeat(70_000)});
    assert_eq!(
        w.call(Method::POST, &w.appts(), Some(big), reception)
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Slots, lists, availability
    let slots = |q: &str| {
        format!(
            "/v1/clinics/{}/doctors/{}/slots{q}",
            w.a,
            w.id(Role::Doctor)
        )
    };
    for q in [
        "",
        "?date=2026-02-30",
        "?date=tomorrow",
        "?date=2026-12-01&locationId=nope",
    ] {
        let r = w.call(Method::GET, &slots(q), None, reception).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{q}: {}",
            r.body
        );
    }
    let r = w
        .call(
            Method::GET,
            &format!(
                "/v1/clinics/{}/doctors/{}/slots?date=2026-12-01",
                w.a,
                UserId::generate()
            ),
            None,
            reception,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for q in [
        "?status=DONE",
        "?from=yesterday",
        "?from=2026-12-02&to=2026-12-01",
        "?limit=0",
        "?cursor=forged",
        "?doctorId=x",
    ] {
        let r = w
            .call(Method::GET, &format!("{}{q}", w.appts()), None, reception)
            .await;
        assert!(
            r.status == StatusCode::UNPROCESSABLE_ENTITY || r.status == StatusCode::BAD_REQUEST,
            "{q}: {} {}",
            r.status,
            r.body
        );
    }
    let put = |body: Value| {
        let path = format!(
            "/v1/clinics/{}/doctors/{}/availability",
            w.a,
            w.id(Role::Doctor)
        );
        async move {
            w.call(Method::PUT, &path, Some(body), w.token(Role::ClinicAdmin))
                .await
        }
    };
    let bad_hours = [
        (
            json!({"slotMinutes": 30, "weekly": {"MONDAY": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00", "locationId": w.l1}]}}),
            "overlapping_shifts",
        ),
        (json!({"slotMinutes": 7}), "out_of_range"),
        (
            json!({"slotMinutes": 30, "weekly": {"MONDAY": [{"start": "9am", "end": "12:00"}]}}),
            "invalid_time",
        ),
        (
            json!({"slotMinutes": 30, "weekly": {"MONDAY": [{"start": "12:00", "end": "09:00"}]}}),
            "end_before_start",
        ),
        (
            json!({"slotMinutes": 30, "weekly": {"FUNDAY": []}}),
            "invalid_weekday",
        ),
        (
            json!({"slotMinutes": 30, "weekly": {"MONDAY": [{"start": "09:00", "end": "12:00", "locationId": w.lb}]}}),
            "unknown_location",
        ),
        (
            json!({"slotMinutes": 30, "exceptions": [{"date": "2026-12-24"}, {"date": "2026-12-24"}]}),
            "duplicate_date",
        ),
    ];
    for (body, code) in bad_hours {
        let r = put(body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{code}: {}",
            r.body
        );
        assert!(
            r.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["code"] == code),
            "{code}: {}",
            r.body
        );
    }
    let stale = put(json!({"slotMinutes": 30, "version": 7})).await;
    assert_eq!(
        (stale.status, stale.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("version_conflict"))
    );
}

#[tokio::test]
async fn slots_follow_the_clinic_zone_across_daylight_saving_changes() {
    let world = world().await;
    let w = &world;
    // Clinic B (New York): a night shift 00:00-06:00 in hourly slots
    let night = json!([{"start": "00:00", "end": "06:00", "locationId": w.lb}]);
    let body = json!({"slotMinutes": 60, "weekly": {"MONDAY": night, "TUESDAY": night, "WEDNESDAY": night,
        "THURSDAY": night, "FRIDAY": night, "SATURDAY": night, "SUNDAY": night}});
    let hours_path = format!("/v1/clinics/{}/doctors/{}/availability", w.b, w.doctor_b);
    let r = w
        .call(Method::PUT, &hours_path, Some(body), &w.admin_b)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let count = |date: &'static str| {
        let path = format!(
            "/v1/clinics/{}/doctors/{}/slots?date={date}",
            w.b, w.doctor_b
        );
        async move {
            let r = w.call(Method::GET, &path, None, &w.admin_b).await;
            assert_eq!(r.body["timeZone"], "America/New_York");
            let slots = r.body["slots"].as_array().unwrap().clone();
            for s in &slots {
                let len = ts(s["endsAt"].as_str().unwrap())
                    .duration_since(ts(s["startsAt"].as_str().unwrap()));
                assert_eq!(len, SignedDuration::from_hours(1));
            }
            slots
        }
    };
    // 2027-03-14: clocks jump from 02:00 to 03:00; 2027-11-07: 02:00 happens twice
    assert_eq!(count("2027-03-13").await.len(), 6);
    assert_eq!(count("2027-03-14").await.len(), 5);
    assert_eq!(count("2027-11-07").await.len(), 7);
    let normal = count("2027-06-15").await;
    assert_eq!(normal[0]["startsAt"], "2027-06-15T04:00:00Z");
    assert_eq!(
        count("2027-01-15").await[0]["startsAt"],
        "2027-01-15T05:00:00Z"
    );
}

/// Every appointment id of one list, page by page with `limit`, and the number of pages.
async fn list_all(w: &World, query: &str, limit: u32) -> (Vec<Value>, usize) {
    let (mut items, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let mut path = format!("{}?{query}&limit={limit}", w.appts());
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = w
            .call(Method::GET, &path, None, w.token(Role::Receptionist))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        pages += 1;
        items.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (items, pages),
        }
        assert!(pages < 30, "paging does not end");
    }
}

#[tokio::test]
async fn lists_by_status_and_location_read_their_own_partition_and_follow_changes() {
    let w = world().await;
    // GIVEN six appointments at the location: two confirmed, four pending
    let mut made = Vec::new();
    // (12:00 to 13:00 in Berlin is the doctor's break)
    for h in [7, 8, 9, 10, 12, 13] {
        made.push(
            w.book(
                w.id(Role::Patient),
                &format!("2026-11-30T{h:02}:00:00Z"),
                30,
            )
            .await,
        );
    }
    let r = w.token(Role::Receptionist);
    for a in &made[..2] {
        assert_eq!(
            w.act(&a["id"], "confirm", None, r).await.status,
            StatusCode::OK
        );
    }
    // WHEN reception lists the confirmed ones, one per page
    let (confirmed, pages) = list_all(&w, "status=CONFIRMED", 1).await;
    // THEN every page holds a confirmed appointment (none read and dropped by a filter)
    assert_eq!(confirmed.len(), 2, "{confirmed:?}");
    assert!(confirmed.iter().all(|a| a["status"] == "CONFIRMED"));
    assert!(pages <= 3, "{pages} pages");
    let (pending, _) = list_all(&w, "status=PENDING", 2).await;
    assert_eq!(pending.len(), 4);
    // WHEN one confirmed appointment is cancelled and one pending one confirmed
    let cancel = w
        .act(&made[0]["id"], "cancel", Some(json!({"reason": "test"})), r)
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.body);
    assert_eq!(
        w.act(&made[2]["id"], "confirm", None, r).await.status,
        StatusCode::OK
    );
    // THEN each moves to its new status's list
    let ids = |v: &[Value]| v.iter().map(|a| a["id"].clone()).collect::<Vec<_>>();
    let (confirmed, _) = list_all(&w, "status=CONFIRMED", 5).await;
    assert_eq!(
        ids(&confirmed),
        [made[1]["id"].clone(), made[2]["id"].clone()]
    );
    let (cancelled, _) = list_all(&w, "status=CANCELLED", 5).await;
    assert_eq!(ids(&cancelled), [made[0]["id"].clone()]);
    // AND the location's list has every one of them in start order, a page at a time
    let (here, pages) = list_all(&w, &format!("locationId={}", w.l1), 4).await;
    assert_eq!(ids(&here), ids(&made));
    assert!(pages <= 3, "{pages} pages");
    // AND a status within the location narrows further
    let (here_pending, _) = list_all(&w, &format!("locationId={}&status=PENDING", w.l1), 10).await;
    assert_eq!(ids(&here_pending), ids(&made[3..]));
}

#[tokio::test]
async fn scheduled_jobs_fan_out_one_message_per_clinic_and_each_clinic_runs_alone() {
    let mut w = world().await;
    // GIVEN a pending appointment in clinic A that has started
    let a = w
        .book(w.id(Role::Patient), "2026-11-30T09:00:00Z", 30)
        .await;
    w.clock.advance(SignedDuration::from_hours(4));
    let stack = w.stack();
    // WHEN the schedule fires both jobs
    let swept = shared::jobs::fan_out(
        &stack.appointments,
        &stack.resources.appointments_sweep_url,
        appointments::sweep::JOB,
    )
    .await
    .unwrap();
    let billed = shared::jobs::fan_out(
        &stack.billing,
        &stack.resources.billing_sweep_url,
        billing::sweep::JOB,
    )
    .await
    .unwrap();
    // THEN each job queued exactly one message per clinic (A and B)
    assert_eq!((swept, billed), (2, 2));
    // AND the work queues' consumers run each clinic and leave nothing behind
    let mut done = 0;
    for _ in 0..10 {
        done += local_stack::drain_sweeps(stack).await.unwrap();
        if done == 4 {
            break;
        }
    }
    assert_eq!(done, 4);
    assert_eq!(local_stack::drain_sweeps(stack).await.unwrap(), 0);
    // AND clinic A's sweep did its work
    w.relogin().await;
    let path = format!("{}/{}", w.appts(), a["id"].as_str().unwrap());
    let now = w
        .call(Method::GET, &path, None, w.token(Role::Receptionist))
        .await;
    assert_eq!(now.body["status"], "EXPIRED", "{}", now.body);
}

#[tokio::test]
async fn an_account_books_for_itself_only_once_its_address_is_proven() {
    let w = world().await;
    // GIVEN a patient who registered themselves and has not followed the verification link
    let email = format!(
        "unproven.{}@scheduling.test",
        &UserId::generate().as_str()[..8]
    );
    let r = w
        .api
        .post(
            "/v1/auth/register",
            json!({"clinicId": w.a, "email": email, "password": "unproven passphrase",
                   "givenName": "Un", "familyName": "Proven"}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let user = UserId::parse(r.body["user"]["id"].as_str().unwrap()).unwrap();
    let token = w.api.token(&email, "unproven passphrase").await;
    let body = json!({"doctorId": w.id(Role::Doctor), "kind": "VIDEO_CALL",
                      "startsAt": "2026-11-30T10:00:00Z"});
    // WHEN they book, THEN they are refused with a reason they can act on
    let r = w
        .call(Method::POST, &w.appts(), Some(body.clone()), &token)
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_unverified")),
        "{}",
        r.body
    );
    // AND once the address is proven through its link (a new one works as well as the first)
    let again = w
        .call(Method::POST, "/v1/auth/email/verify/resend", None, &token)
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    let (link, _) = blackbox::link_for(w.stack(), &user, "email_verification").await;
    let v = w
        .api
        .post("/v1/auth/email/verify", json!({"token": link}), None)
        .await;
    assert_eq!(v.status, StatusCode::NO_CONTENT, "{}", v.body);
    let spent = w
        .api
        .post("/v1/auth/email/verify", json!({"token": link}), None)
        .await;
    assert_eq!(spent.body["code"], "invalid_verification_token");
    assert_eq!(
        w.call(Method::POST, "/v1/auth/email/verify/resend", None, &token)
            .await
            .body["code"],
        "already_verified"
    );
    // the same session books at once
    let r = w.call(Method::POST, &w.appts(), Some(body), &token).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn patients_hold_a_few_single_slots_for_a_while_and_staff_are_not_limited() {
    let w = world().await;
    let (patient, email) = person(w.stack(), Some(&w.a), Role::Patient, None, true).await;
    let token = w.api.token(&email, DEMO_PASSWORD).await;
    let doctor = w.id(Role::Doctor).clone();
    let own = |at: &str, minutes: i64| json!({"doctorId": doctor, "kind": "VIDEO_CALL", "startsAt": at, "durationMinutes": minutes});
    // GIVEN six bookings of one patient fired at once, THEN only the clinic's three holds stick
    let times: Vec<String> = (0..6)
        .map(|i| format!("2026-12-0{}T09:00:00Z", i + 1))
        .collect();
    let path = w.appts();
    let replies = blackbox::join_all(
        times
            .iter()
            .map(|at| w.call(Method::POST, &path, Some(own(at, 30)), &token))
            .collect(),
    )
    .await;
    let created: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(
        created.len(),
        3,
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (StatusCode::CONFLICT, Some("too_many_pending"))
        );
    }
    // Once reception confirms one, the patient may hold another
    let confirmed = w
        .act(
            &created[0].body["id"],
            "confirm",
            None,
            w.token(Role::Receptionist),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let r = w
        .call(
            Method::POST,
            &w.appts(),
            Some(own("2026-12-08T09:00:00Z", 30)),
            &token,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // A patient books one slot of the doctor's length, not four hours, and not half a year out;
    // reception may book the long visit for them
    let r = w
        .call(
            Method::POST,
            &w.appts(),
            Some(own("2026-12-09T13:00:00Z", 240)),
            &token,
        )
        .await;
    assert_eq!(
        r.body["errors"][0]["code"], "slot_length_only",
        "{}",
        r.body
    );
    let r = w
        .call(
            Method::POST,
            &w.appts(),
            Some(own("2027-06-01T09:00:00Z", 30)),
            &token,
        )
        .await;
    assert_eq!(r.body["errors"][0]["code"], "too_far_ahead", "{}", r.body);
    let mut long = own("2026-12-09T13:00:00Z", 240);
    long["patientId"] = json!(patient);
    let r = w
        .call(
            Method::POST,
            &w.appts(),
            Some(long),
            w.token(Role::Receptionist),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Nor can a patient stretch their own booking into a long one by moving it
    let held = &created[1].body;
    let r = w
        .act(
            &held["id"],
            "reschedule",
            Some(json!({"startsAt": "2026-12-10T09:00:00Z", "durationMinutes": 120})),
            &token,
        )
        .await;
    assert_eq!(
        r.body["errors"][0]["code"], "slot_length_only",
        "{}",
        r.body
    );
    // AND an unconfirmed hold expires when the clinic's hold time is up, freeing its slot
    let r = w
        .call(
            Method::PATCH,
            &format!("/v1/clinics/{}", w.a),
            Some(json!({"holdMinutes": 60})),
            w.token(Role::ClinicAdmin),
        )
        .await;
    assert_eq!(r.body["holdMinutes"], 60, "{}", r.body);
    w.clock.advance(SignedDuration::from_hours(25));
    let report = appointments::sweep::sweep_clinic(&w.stack().appointments, &w.a)
        .await
        .unwrap();
    assert_eq!(report.expired, 3, "{report:?}");
    let mut w = w;
    w.relogin().await;
    let token = w.api.token(&email, DEMO_PASSWORD).await;
    let gone = w
        .call(
            Method::GET,
            &format!("{}/{}", w.appts(), held["id"].as_str().unwrap()),
            None,
            w.token(Role::Receptionist),
        )
        .await;
    assert_eq!(gone.body["status"], "EXPIRED");
    // the hold no longer counts, and a booking made now holds for the new hold time only
    let r = w
        .call(
            Method::POST,
            &w.appts(),
            Some(own("2026-12-05T09:00:00Z", 30)),
            &token,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    w.clock.advance(SignedDuration::from_mins(61));
    let report = appointments::sweep::sweep_clinic(&w.stack().appointments, &w.a)
        .await
        .unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
}

#[tokio::test]
async fn a_care_relation_comes_from_real_visits_and_ends_with_them() {
    let mut w = world().await;
    let (doctor2, patient) = (w.doctor2.0.clone(), w.id(Role::Patient).clone());
    let r = w
        .call(
            Method::PUT,
            &format!("/v1/clinics/{}/doctors/{doctor2}/availability", w.a),
            Some(hours(&w.l1)),
            &w.doctor2.1,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The patient's appointment with the first doctor, which the second doctor wants to read
    let theirs = w.book(&patient, "2026-12-02T09:00:00Z", 30).await;
    let path = format!("{}/{}", w.appts(), theirs["id"].as_str().unwrap());
    async fn sees(w: &World, path: &str) -> StatusCode {
        w.call(Method::GET, path, None, &w.doctor2.1).await.status
    }
    async fn book(w: &World, at: &str, token: &str) -> Value {
        let body = json!({"doctorId": w.doctor2.0, "patientId": w.id(Role::Patient),
                          "kind": "VIDEO_CALL", "startsAt": at});
        let r = w.call(Method::POST, &w.appts(), Some(body), token).await;
        assert_eq!(r.status, StatusCode::CREATED, "{at}: {}", r.body);
        r.body
    }
    assert_eq!(sees(&w, &path).await, StatusCode::NOT_FOUND);
    // A visit reception books makes the second doctor the patient's clinician, until it
    // expires unconfirmed
    let early = book(&w, "2026-11-30T07:00:00Z", w.token(Role::Receptionist)).await;
    assert_eq!(sees(&w, &path).await, StatusCode::OK);
    w.clock.advance(SignedDuration::from_hours(2));
    let report = appointments::sweep::sweep_clinic(&w.stack().appointments, &w.a)
        .await
        .unwrap();
    assert!(report.expired >= 1, "{report:?}");
    w.relogin().await;
    let gone = w
        .call(
            Method::GET,
            &format!("{}/{}", w.appts(), early["id"].as_str().unwrap()),
            None,
            w.token(Role::Receptionist),
        )
        .await;
    assert_eq!(gone.body["status"], "EXPIRED");
    assert_eq!(
        sees(&w, &path).await,
        StatusCode::NOT_FOUND,
        "an expired visit ends it"
    );
    // WHEN the second doctor books a dummy visit of their own with the patient, THEN they are
    // still not the patient's clinician
    let token = w.doctor2.1.clone();
    book(&w, "2026-12-03T09:00:00Z", &token).await;
    assert_eq!(
        sees(&w, &path).await,
        StatusCode::NOT_FOUND,
        "a dummy booking grants nothing"
    );
    // A visit reception books counts; cancelling it ends that
    let real = book(&w, "2026-12-04T10:00:00Z", w.token(Role::Receptionist)).await;
    assert_eq!(sees(&w, &path).await, StatusCode::OK);
    let r = w
        .act(
            &real["id"],
            "cancel",
            Some(json!({"reason": "moved away"})),
            w.token(Role::Receptionist),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(sees(&w, &path).await, StatusCode::NOT_FOUND);
    // The doctor's own booking counts once the patient checks in (on the day)
    let today = book(&w, "2026-11-30T10:30:00Z", &token).await;
    assert_eq!(sees(&w, &path).await, StatusCode::NOT_FOUND);
    for action in ["confirm", "check-in"] {
        let r = w
            .act(&today["id"], action, None, w.token(Role::Receptionist))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.body);
    }
    assert_eq!(sees(&w, &path).await, StatusCode::OK);
    // AND the relation is time-bounded: 90 days after its last visit it is over
    w.clock.advance(SignedDuration::from_hours(24 * 91));
    w.relogin().await;
    assert_eq!(sees(&w, &path).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn clinical_notes_are_the_treating_clinicians_alone_and_never_change() {
    let w = world().await;
    let r = w
        .call(
            Method::POST,
            &w.appts(),
            Some(json!({"doctorId": w.id(Role::Doctor), "kind": "VIDEO_CALL",
                        "startsAt": "2026-12-01T09:00:00Z", "notes": "my knee hurts"})),
            w.token(Role::Patient),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let path = format!("{}/{id}/clinical-notes", w.appts());
    let note = |text: &str| Some(json!({ "text": text }));
    // Front desk and a clinician who does not treat the patient write nothing
    for token in [w.token(Role::Receptionist), w.token(Role::ClinicAdmin)] {
        let r = w.call(Method::POST, &path, note("front desk"), token).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    }
    let r = w
        .call(Method::POST, &path, note("not mine"), &w.doctor2.1)
        .await;
    assert!(
        [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&r.status),
        "{}",
        r.body
    );
    // The treating doctor adds notes; a correction is a new note, the first stays
    for text in ["suspected meniscus tear", "correction: ligament strain"] {
        let r = w
            .call(Method::POST, &path, note(text), w.token(Role::Doctor))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    assert_eq!(
        w.call(Method::PUT, &path, note("rewrite"), w.token(Role::Doctor))
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // The doctor, a nurse and the patient read the history; front desk does not
    for token in [
        w.token(Role::Doctor),
        w.token(Role::Nurse),
        w.token(Role::Patient),
    ] {
        let r = w.call(Method::GET, &path, None, token).await;
        let texts: Vec<&str> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            texts,
            ["suspected meniscus tear", "correction: ligament strain"]
        );
    }
    for token in [w.token(Role::Receptionist), w.token(Role::FinanceBilling)] {
        let r = w.call(Method::GET, &path, None, token).await;
        assert!(
            [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&r.status),
            "{}",
            r.body
        );
    }
    // What the patient wrote when booking is kept apart and untouched
    let a = w
        .call(
            Method::GET,
            &format!("{}/{id}", w.appts()),
            None,
            w.token(Role::Doctor),
        )
        .await;
    assert_eq!(a.body["notes"], "my knee hurts");
    // Notes are sealed like other PHI
    let raw = format!(
        "{:?}",
        w.stack()
            .clients
            .dynamodb
            .scan()
            .table_name(&w.stack().resources.table)
            .send()
            .await
            .unwrap()
            .items()
    );
    assert!(!raw.contains("meniscus"));
}
