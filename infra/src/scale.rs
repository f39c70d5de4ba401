//! The bench's scale table: one clinic with thousands of members, appointments, invoices and
//! payments and one with a hundred of each, written straight into the table (batch writes of
//! the records' own items), then one page of every list and one analytics read in both,
//! counting the items DynamoDB read. A read that does not grow with the clinic reads about
//! the same number of items in both.

use std::time::Instant;

use aws_sdk_dynamodb::types::{PutRequest, TransactWriteItem, WriteRequest};
use http::{Method, StatusCode};
use jiff::{SignedDuration, Timestamp};
use shared::{
    db::Item,
    identity::NewMembership,
    ids::{AppointmentId, ClinicId, InvoiceId, LocationId, PaymentId, UserId},
    policy::Role,
    provision::{put_clinic, put_location},
};

use crate::{BoxError, Stack};

/// The item a transaction's put would write.
fn item_of(w: TransactWriteItem) -> Result<Item, BoxError> {
    Ok(w.put.ok_or("not a put")?.item)
}

async fn write_all(stack: &Stack, items: Vec<Item>) -> Result<(), BoxError> {
    let table = &stack.resources.table;
    for chunk in items.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|i| {
                Ok::<_, BoxError>(
                    WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(i.clone())).build()?)
                        .build(),
                )
            })
            .collect::<Result<_, _>>()?;
        while !requests.is_empty() {
            let out = stack
                .clients
                .dynamodb
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await?;
            requests = out
                .unprocessed_items
                .and_then(|mut m| m.remove(table))
                .unwrap_or_default();
        }
    }
    Ok(())
}

/// A clinic with `n` members (one doctor in four), appointments (at its one location, in
/// three statuses), paid invoices and their completed cash payments (over the last 30 days).
async fn seed(stack: &Stack, n: usize, now: Timestamp) -> Result<(ClinicId, LocationId), BoxError> {
    let (clinic, location) = (ClinicId::generate(), LocationId::generate());
    let table_name = &stack.resources.table;
    put_clinic(
        &stack.clients,
        table_name,
        &clinic,
        ("Scale", "Europe/Berlin", "EUR"),
        true,
    )
    .await?;
    put_location(&stack.clients, table_name, &clinic, &location, "Main", 0).await?;
    let table = &stack.billing.table;
    let now_s = now.as_second();
    let mut items = Vec::with_capacity(4 * n);
    let users: Vec<UserId> = (0..n).map(|_| UserId::generate()).collect();
    let doctor = users[0].clone();
    for (i, user) in users.iter().enumerate() {
        let role = if i % 4 == 0 {
            Role::Doctor
        } else {
            Role::Patient
        };
        let m = NewMembership {
            clinic: clinic.clone(),
            role,
            location: None,
            pending: false,
        };
        items.push(item_of(shared::identity::store::member_put(
            table, user, &m, now_s,
        )?)?);
    }
    use appointments::rules::{Kind, Status};
    for i in 0..n {
        let status = [Status::Pending, Status::Confirmed, Status::Cancelled][i % 3];
        let a = appointments::store::AppointmentRecord {
            id: AppointmentId::generate(),
            clinic: clinic.clone(),
            doctor: doctor.clone(),
            patient: users[i % n].clone(),
            location: Some(location.clone()),
            kind: Kind::InPerson,
            status,
            starts_at: now + SignedDuration::from_mins(30 * (i as i64 + 1)),
            minutes: 30,
            reschedules: 0,
            version: 1,
            created_at: now_s,
            updated_at: now_s,
            created_by: None,
            follow_up_of: None,
            follow_up_id: None,
            checked_in_at: None,
            started_at: None,
            completed_at: None,
            cancelled_at: None,
            held_until: None,
            sealed: Default::default(),
            billing: None,
        };
        items.push(item_of(a.put(table)?)?);
    }
    use billing::rules::{InvoiceStatus, Method as Pay, PaymentStatus, Totals};
    for i in 0..n {
        // Spread over the last 30 days in both clinics, so both have a counter for each day.
        let paid_at = now_s - 86_400 * (i as i64 % 30) - 60 * (i as i64 / 30 % 600);
        let inv = billing::store::InvoiceRecord {
            id: InvoiceId::generate(),
            clinic: clinic.clone(),
            number: Some(format!("INV-2026-{:06}", i + 1)),
            patient: users[i % n].clone(),
            subscription: None,
            appointment: None,
            location: Some(location.clone()),
            status: InvoiceStatus::Paid,
            currency: "EUR".into(),
            lines: Vec::new(),
            totals: Totals {
                subtotal: 5000,
                tax: 0,
                discount: 0,
                total: 5000,
            },
            amount_paid: 5000,
            due_at: paid_at + 7 * 86_400,
            issued_at: paid_at,
            paid_at: Some(paid_at),
            voided_at: None,
            version: 1,
            created_at: paid_at,
            updated_at: paid_at,
        };
        let pay = billing::store::PaymentRecord {
            id: PaymentId::generate(),
            clinic: clinic.clone(),
            invoice: inv.id.clone(),
            patient: inv.patient.clone(),
            location: Some(location.clone()),
            method: Pay::Cash,
            provider: "cash-desk".into(),
            provider_ref: None,
            status: PaymentStatus::Completed,
            amount: 5000,
            refunded: 0,
            currency: "EUR".into(),
            refund_of: None,
            version: 1,
            created_at: paid_at,
            updated_at: paid_at,
            completed_at: Some(paid_at),
        };
        items.push(item_of(inv.put(table)?)?);
        items.push(item_of(pay.put(table)?)?);
    }
    write_all(stack, items).await?;
    Ok((clinic, location))
}

/// The scale table's rows: (read, items read in the large clinic, in the small one, time in
/// each). `large` is the large clinic's size.
pub async fn table(
    stack: &Stack,
    router: &axum::Router,
    token: &str,
    large: usize,
) -> Result<String, BoxError> {
    let now = Timestamp::now();
    // Analytics read the counters the stream keeps. The reader starts before the seeding, so
    // the stream keeps every seeded change for it; it counts them all afterwards.
    let mut stats = stack.stats_poller();
    stats.poll_once().await?;
    let (big, big_loc) = seed(stack, large, now).await?;
    let (small, small_loc) = seed(stack, 100, now).await?;
    let started = Instant::now();
    let mut idle = 0;
    while idle < 2 {
        idle = if stats.poll_once().await? == 0 {
            idle + 1
        } else {
            0
        };
    }
    let counted = started.elapsed();
    let counter = &stack.clients.calls;
    counter.count_items();
    // Each read's path under the clinic; `{location}` names the clinic's location.
    let reads = [
        ("members, one page", "members?limit=20"),
        (
            "members by role (doctors), one page",
            "members?role=DOCTOR&limit=20",
        ),
        ("appointments, one page", "appointments?limit=20"),
        (
            "appointments by status, one page",
            "appointments?status=CANCELLED&limit=20",
        ),
        (
            "appointments by location, one page",
            "appointments?locationId={location}&limit=20",
        ),
        ("invoices, one page", "invoices?limit=20"),
        ("payments, one page", "payments?limit=20"),
        ("billing analytics (30 days)", "billing/analytics"),
    ];
    let mut out = format!(
        "\n## Scale: items DynamoDB read per request\n\n\
        A clinic with {large} members, appointments, invoices and payments against one with 100 of \
        each (seeded straight into the table; counting the seeded payments into the analytics \
        counters took {:.1} s). Items read = the sum of `ScannedCount` over queries, items found by \
        GetItem and returned by BatchGetItem, for the whole request (the session check included); \
        pages of 20, which every list of the small clinic fills.\n\n\
        | read | items read ({large}) | items read (100) | ratio | time ({large}, ms) | time (100, ms) |\n|---|---|---|---|---|---|\n",
        counted.as_secs_f64()
    );
    for (name, path) in reads {
        let mut row = Vec::new();
        for (clinic, location) in [(&big, &big_loc), (&small, &small_loc)] {
            let before = counter.items_read();
            let t = Instant::now();
            let (status, _) = crate::bench::call(
                router,
                Method::GET,
                &format!(
                    "/v1/clinics/{clinic}/{}",
                    path.replace("{location}", location.as_str())
                ),
                None,
                Some(token),
            )
            .await?;

            if status != StatusCode::OK {
                return Err(format!("{name} answered {status}").into());
            }
            row.push((counter.items_read() - before, t.elapsed()));
        }
        let ratio = row[0].0 as f64 / row[1].0.max(1) as f64;
        out.push_str(&format!(
            "| {name} | {} | {} | {ratio:.2} | {:.1} | {:.1} |\n",
            row[0].0,
            row[1].0,
            row[0].1.as_secs_f64() * 1000.0,
            row[1].1.as_secs_f64() * 1000.0
        ));
    }
    Ok(out)
}
