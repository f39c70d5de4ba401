//! The one place that formats table keys. Nobody else writes `"CLINIC#..."`.
//!
//! Tenant items start with `CLINIC#<clinicId>` so an IAM `dynamodb:LeadingKeys` condition can
//! enforce tenancy; global identity items (users, email lookups, sessions) have their own prefixes.

use crate::ids::{
    AppointmentId, AuditId, ClinicId, EventId, InvoiceId, LinkId, LocationId, PaymentId, PlanId,
    RecordId, SessionId, SubscriptionId, UserId,
};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1PK: &str = "gsi1pk";
pub const GSI1SK: &str = "gsi1sk";
/// Second and third generic indexes (appointments by patient, and by clinic over time).
pub const GSI2: &str = "gsi2";
pub const GSI2PK: &str = "gsi2pk";
pub const GSI2SK: &str = "gsi2sk";
pub const GSI3: &str = "gsi3";
pub const GSI3PK: &str = "gsi3pk";
pub const GSI3SK: &str = "gsi3sk";
/// Lists by location (appointments of one location, over time).
pub const GSI4: &str = "gsi4";
pub const GSI4PK: &str = "gsi4pk";
pub const GSI4SK: &str = "gsi4sk";
/// Lists by status and the jobs' work lists: appointments of one status over time, and the
/// sparse partitions of subscriptions and invoices that a scheduled job will have to act on,
/// sorted by when.
pub const GSI5: &str = "gsi5";
pub const GSI5PK: &str = "gsi5pk";
pub const GSI5SK: &str = "gsi5sk";
/// TTL attribute (epoch seconds); DynamoDB deletes the item some time after it.
pub const TTL: &str = "ttl";
/// Item kind, also used by the stream filter (`OUTBOX`).
pub const ENTITY: &str = "entity";

pub const PROFILE_SK: &str = "PROFILE";
pub const CLINIC_SK: &str = "CLINIC";
pub const SESSION_PREFIX: &str = "SESSION#";
pub const MEMBER_PREFIX: &str = "MEMBER#";

pub fn user_pk(user: &UserId) -> String {
    format!("USER#{user}")
}

/// Lookup item from an email's blind index to its user; its existence enforces uniqueness.
pub fn email_pk(email_index: &str) -> String {
    format!("EMAIL#{email_index}")
}
pub const EMAIL_SK: &str = "EMAIL";

pub fn session_sk(session: &SessionId) -> String {
    format!("{SESSION_PREFIX}{session}")
}

/// A notification job's delivery on one channel (its record in the delivery log).
pub fn delivery_pk(job: &str) -> String {
    format!("DELIVERY#{job}")
}
pub fn delivery_sk(channel: &str) -> String {
    format!("CHANNEL#{channel}")
}

/// Which delivery an email provider's message id belongs to (for its bounces and complaints).
pub fn provider_message_pk(message_id: &str) -> String {
    format!("PROVIDERMSG#{message_id}")
}
pub const PROVIDER_MESSAGE_SK: &str = "DELIVERY";

/// The delivery log of a clinic (GSI2): its deliveries, newest first.
pub fn clinic_deliveries_pk(clinic: &ClinicId) -> String {
    format!("CLINIC#{clinic}#DELIVERIES")
}

/// A message in a user's in-app inbox; the id starts with its time, so the inbox reads in order.
pub fn inbox_sk(notification: &str) -> String {
    format!("{INBOX_PREFIX}{notification}")
}
pub const INBOX_PREFIX: &str = "INBOX#";

/// A user's registered device (a push token and its SNS platform endpoint).
pub fn device_sk(device: &str) -> String {
    format!("{DEVICE_PREFIX}{device}")
}
pub const DEVICE_PREFIX: &str = "DEVICE#";
/// Who a push token belongs to now (one owner at a time).
pub fn device_owner_pk(device: &str) -> String {
    format!("{DEVICE_PREFIX}{device}")
}
pub const DEVICE_OWNER_SK: &str = "OWNER";

/// A sending limit's bucket: under the clinic (`CLINIC#c`) or the user (`USER#u`) it limits.
pub fn rate_sk(channel: &str) -> String {
    format!("NOTIFY#RATE#{channel}")
}

/// The mark that an appointment's reminder (`24h`, `2h`) for the start `starts_at` was queued.
pub fn reminder_sk(appointment: &AppointmentId, which: &str, starts_at: i64) -> String {
    format!("REMINDER#{appointment}#{which}#{starts_at}")
}

/// A clinic's own wording of a template in a locale.
pub fn notification_template_sk(template: &str, locale: &str) -> String {
    format!("{NOTIFICATION_TEMPLATE_PREFIX}{template}#{locale}")
}
pub const NOTIFICATION_TEMPLATE_PREFIX: &str = "NOTIFY#TEMPLATE#";

/// A user's notification preferences.
pub const PREFERENCES_SK: &str = "NOTIFY#PREFERENCES";

/// A user's authenticator (time-based codes): pending until confirmed, then active.
pub const TOTP_SK: &str = "MFA#TOTP";

/// A login's second step, waiting for its code.
pub fn mfa_challenge_sk(challenge: &str) -> String {
    format!("MFA#CHALLENGE#{challenge}")
}

pub fn clinic_pk(clinic: &ClinicId) -> String {
    format!("CLINIC#{clinic}")
}

pub fn member_sk(user: &UserId) -> String {
    format!("{MEMBER_PREFIX}{user}")
}

/// GSI2 partition of a clinic's members with one role (sort key: the member's `sk`), so a
/// list by role reads only that role's members.
pub fn role_members_pk(clinic: &ClinicId, role: &str) -> String {
    format!("CLINIC#{clinic}#ROLE#{role}")
}

pub const LOCATION_PREFIX: &str = "LOCATION#";

pub fn location_sk(location: &LocationId) -> String {
    format!("{LOCATION_PREFIX}{location}")
}

/// GSI1 partition listing every clinic (read by super admins only; small and cold).
pub const CLINICS_GSI1PK: &str = "CLINICS";

pub fn clinic_gsi1sk(clinic: &ClinicId) -> String {
    format!("CLINIC#{clinic}")
}

/// Phone lookup: one item per (phone blind index, user); phones are not unique.
pub fn phone_pk(phone_index: &str) -> String {
    format!("PHONE#{phone_index}")
}

/// GSI1 sort key of a membership, under the user's `USER#` partition: a user's clinics.
pub fn membership_gsi1sk(clinic: &ClinicId) -> String {
    format!("MEMBERSHIP#{clinic}")
}
pub const MEMBERSHIP_GSI1_PREFIX: &str = "MEMBERSHIP#";

/// A single-use link (password reset, membership invitation, email verification).
pub fn link_pk(link: &LinkId) -> String {
    format!("LINK#{link}")
}
pub const LINK_SK: &str = "LINK";

/// Outbox item: under the clinic for tenant events, under `OUTBOX#` for platform events.
pub fn outbox_pk(clinic: Option<&ClinicId>, event: &EventId) -> String {
    match clinic {
        Some(c) => format!("CLINIC#{c}#OUTBOX#{event}"),
        None => format!("OUTBOX#{event}"),
    }
}
pub const OUTBOX_SK: &str = "EVENT";
pub const OUTBOX_ENTITY: &str = "OUTBOX";

/// A patient's count of open holds (their own unconfirmed bookings) in the clinic.
pub fn holds_sk(patient: &UserId) -> String {
    format!("HOLDS#{patient}")
}

/// A patient's unconfirmed booking holding its time until `until` (epoch seconds), under the
/// clinic: the sweep reads the ones whose time is up, oldest first.
pub fn hold_sk(until: i64, appointment: &AppointmentId) -> String {
    format!("{HOLD_PREFIX}{until:012}#{appointment}")
}
pub const HOLD_PREFIX: &str = "HOLD#";

/// A doctor's availability (weekly shifts, breaks, exceptions, slot length), under the clinic.
pub fn schedule_sk(doctor: &UserId) -> String {
    format!("SCHEDULE#{doctor}")
}

pub const APPOINTMENT_PREFIX: &str = "APPT#";

pub fn appointment_sk(appointment: &AppointmentId) -> String {
    format!("{APPOINTMENT_PREFIX}{appointment}")
}

/// GSI1 partition: one doctor's appointments, sorted by start.
pub fn doctor_appointments_pk(clinic: &ClinicId, doctor: &UserId) -> String {
    format!("CLINIC#{clinic}#DOCTOR#{doctor}#APPTS")
}

/// GSI2 partition: one patient's appointments, sorted by start.
pub fn patient_appointments_pk(clinic: &ClinicId, patient: &UserId) -> String {
    format!("CLINIC#{clinic}#PATIENT#{patient}#APPTS")
}

/// GSI3 partition: a clinic's appointments, sorted by start.
pub fn clinic_appointments_pk(clinic: &ClinicId) -> String {
    format!("CLINIC#{clinic}#APPTS")
}

/// GSI4 partition: the appointments at one of a clinic's locations, sorted by start.
pub fn location_appointments_pk(clinic: &ClinicId, location: &LocationId) -> String {
    format!("CLINIC#{clinic}#LOCATION#{location}#APPTS")
}

/// GSI5 partition: a clinic's appointments in one status, sorted by start. The sweep reads
/// the PENDING and CONFIRMED ones that have started; reminders the CONFIRMED ones ahead.
pub fn status_appointments_pk(clinic: &ClinicId, status: &str) -> String {
    format!("CLINIC#{clinic}#STATUS#{status}#APPTS")
}

/// Sort key of an appointment in its GSI partitions: start (RFC 3339, UTC, seconds) then id.
pub fn appointment_time_sk(starts_at: &str, appointment: &AppointmentId) -> String {
    format!("{starts_at}#{appointment}")
}

/// A doctor's slot claims for one UTC date: one attribute per claimed 5-minute cell.
pub fn claims_pk(clinic: &ClinicId, doctor: &UserId, utc_date: &str) -> String {
    format!("CLINIC#{clinic}#DOCTOR#{doctor}#DAY#{utc_date}")
}
pub const CLAIMS_SK: &str = "CLAIMS";

/// Care relation between a clinician and a patient: counts their non-cancelled appointments.
pub fn care_sk(clinician: &UserId, patient: &UserId) -> String {
    format!("CARE#{clinician}#{patient}")
}

/// A member on a patient's care team (kept by clinic admins), listed under the patient; the
/// member's care relation item carries the same fact as `team`.
pub fn care_team_sk(patient: &UserId, member: &UserId) -> String {
    format!("{}{member}", care_team_prefix(patient))
}
pub fn care_team_prefix(patient: &UserId) -> String {
    format!("CARETEAM#{patient}#")
}

/// A clinician's time-boxed emergency access to a patient's health record.
pub fn break_glass_sk(patient: &UserId, clinician: &UserId) -> String {
    format!("BREAKGLASS#{patient}#{clinician}")
}

/// The current version of one health record: `EHR#<patient>#<kind>#<record>`, so a patient's
/// whole record is one key range and each kind a narrower one.
pub fn ehr_sk(patient: &UserId, kind: &str, record: &RecordId) -> String {
    format!("{}{record}", ehr_kind_prefix(patient, kind))
}
pub fn ehr_patient_prefix(patient: &UserId) -> String {
    format!("EHR#{patient}#")
}
pub fn ehr_kind_prefix(patient: &UserId, kind: &str) -> String {
    format!("EHR#{patient}#{kind}#")
}
/// Every version of a health record, kept for good (`EHRV#`, apart from the current ones).
pub fn ehr_version_sk(patient: &UserId, kind: &str, record: &RecordId, version: i64) -> String {
    format!("{}{version:06}", ehr_version_prefix(patient, kind, record))
}
pub fn ehr_version_prefix(patient: &UserId, kind: &str, record: &RecordId) -> String {
    format!("EHRV#{patient}#{kind}#{record}#")
}

/// The audit table: a clinic's records in time order, and its sealed digests.
pub fn audit_pk(clinic: &ClinicId) -> String {
    format!("AUDIT#{clinic}")
}
/// `<milliseconds, 13 digits>#<audit id>`: time order, and a time range is a key range.
pub fn audit_sk(at_ms: i64, id: &AuditId) -> String {
    format!("{at_ms:013}#{id}")
}
/// A patient's audit records across clinics (their access log), on GSI1.
pub fn audit_patient_pk(patient: &UserId) -> String {
    format!("PATIENT#{patient}")
}
/// One actor's audit records in a clinic, on GSI2.
pub fn audit_actor_pk(clinic: &ClinicId, actor: &UserId) -> String {
    format!("ACTOR#{clinic}#{actor}")
}
/// One action's audit records in a clinic, on GSI3.
pub fn audit_action_pk(clinic: &ClinicId, action: &str) -> String {
    format!("ACTION#{clinic}#{action}")
}

/// A clinic's check-in queue for one local date; one item per checked-in appointment.
pub fn queue_pk(clinic: &ClinicId, local_date: &str) -> String {
    format!("CLINIC#{clinic}#QUEUE#{local_date}")
}

/// GSI5 partition: the clinic's subscriptions a billing job will move on (trialing, active or
/// past due), sorted by period end. Sparse: others have no entry.
pub fn due_subscriptions_pk(clinic: &ClinicId) -> String {
    format!("CLINIC#{clinic}#DUE#SUBSCRIPTIONS")
}

/// GSI5 partition: the clinic's open invoices, sorted by due date. Sparse: others have no entry.
pub fn due_invoices_pk(clinic: &ClinicId) -> String {
    format!("CLINIC#{clinic}#DUE#INVOICES")
}

/// Sort key in a work list: when (epoch seconds, zero-padded so text order is time order), then
/// the record's id.
pub fn due_sk(at: i64, id: &str) -> String {
    format!("{:012}#{id}", at.max(0))
}

/// Billing analytics counters of a clinic (`None`) or of one of its locations: one item per
/// local day of revenue, and one of subscription totals.
pub fn stats_pk(clinic: &ClinicId, location: Option<&LocationId>) -> String {
    match location {
        Some(l) => format!("CLINIC#{clinic}#STATS#LOCATION#{l}"),
        None => format!("CLINIC#{clinic}#STATS#ALL"),
    }
}
pub const STATS_DAY_PREFIX: &str = "DAY#";
pub const STATS_TOTALS_SK: &str = "SUBSCRIPTIONS";

/// Marks a stream change as counted, so a redelivery counts nothing twice (expires after 2 days).
pub fn stats_applied_pk(clinic: &ClinicId, change_id: &str) -> String {
    format!("CLINIC#{clinic}#STATSAPPLIED#{change_id}")
}
pub const STATS_APPLIED_SK: &str = "APPLIED";

/// A clinic's subscription plan, under the clinic.
pub fn plan_sk(plan: &PlanId) -> String {
    format!("PLAN#{plan}")
}
pub const PLAN_PREFIX: &str = "PLAN#";

/// A subscription, under the clinic.
pub fn subscription_sk(subscription: &SubscriptionId) -> String {
    format!("SUB#{subscription}")
}
pub const SUBSCRIPTION_PREFIX: &str = "SUB#";

/// Held while a patient has a live subscription to a plan: one live subscription per pair.
pub fn live_subscription_sk(patient: &UserId, plan: &PlanId) -> String {
    format!("SUBLIVE#{patient}#{plan}")
}

/// The link between a covered appointment and the subscription whose quota it used.
pub fn coverage_link_sk(appointment: &AppointmentId) -> String {
    format!("COVER#{appointment}")
}

/// An invoice, under the clinic.
pub fn invoice_sk(invoice: &InvoiceId) -> String {
    format!("INV#{invoice}")
}
pub const INVOICE_PREFIX: &str = "INV#";

/// GSI1 partition: a clinic's invoices, in list order (see the invoice's list key).
pub fn clinic_invoices_pk(clinic: &ClinicId) -> String {
    format!("CLINIC#{clinic}#INVOICES")
}

/// GSI2 partition: one patient's invoices, in list order.
pub fn patient_invoices_pk(clinic: &ClinicId, patient: &UserId) -> String {
    format!("CLINIC#{clinic}#PATIENT#{patient}#INVOICES")
}

/// GSI3 partition: the invoices of one subscription, in list order.
pub fn subscription_invoices_pk(clinic: &ClinicId, subscription: &SubscriptionId) -> String {
    format!("CLINIC#{clinic}#SUB#{subscription}#INVOICES")
}

/// GSI1 partition: a clinic's payments and refunds, newest first.
pub fn clinic_payments_pk(clinic: &ClinicId) -> String {
    format!("CLINIC#{clinic}#PAYMENTS")
}

/// GSI2 partition: one patient's payments and refunds, newest first.
pub fn patient_payments_pk(clinic: &ClinicId, patient: &UserId) -> String {
    format!("CLINIC#{clinic}#PATIENT#{patient}#PAYMENTS")
}

/// GSI3 partition: the payments and refunds of one invoice, newest first.
pub fn invoice_payments_pk(clinic: &ClinicId, invoice: &InvoiceId) -> String {
    format!("CLINIC#{clinic}#INV#{invoice}#PAYMENTS")
}

/// GSI1 partition: a clinic's subscriptions, newest first.
pub fn clinic_subscriptions_pk(clinic: &ClinicId) -> String {
    format!("CLINIC#{clinic}#SUBS")
}

/// GSI2 partition: one patient's subscriptions, newest first.
pub fn patient_subscriptions_pk(clinic: &ClinicId, patient: &UserId) -> String {
    format!("CLINIC#{clinic}#PATIENT#{patient}#SUBS")
}

/// GSI3 partition: the subscriptions of one plan, newest first.
pub fn plan_subscriptions_pk(clinic: &ClinicId, plan: &PlanId) -> String {
    format!("CLINIC#{clinic}#PLAN#{plan}#SUBS")
}

/// A clinic's invoice counter for one calendar year: the last number issued.
pub fn invoice_counter_sk(year: i16) -> String {
    format!("INVSEQ#{year}")
}

/// A payment or refund, under the clinic.
pub fn payment_sk(payment: &PaymentId) -> String {
    format!("PAY#{payment}")
}
pub const PAYMENT_PREFIX: &str = "PAY#";

/// A payment provider's reference for a payment: resolves webhooks to payments.
pub fn provider_ref_pk(provider: &str, reference: &str) -> String {
    format!("PAYREF#{provider}#{reference}")
}
pub const PROVIDER_REF_SK: &str = "PAYMENT";

/// Stored idempotent response, keyed by a hash of route and key.
pub fn idempotency_pk(scope_hash: &str) -> String {
    format!("IDEMPOTENCY#{scope_hash}")
}
pub const IDEMPOTENCY_SK: &str = "RESPONSE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_keys_lead_with_the_clinic() {
        let c = ClinicId::generate();
        let e = EventId::generate();
        assert!(clinic_pk(&c).starts_with("CLINIC#"));
        assert!(outbox_pk(Some(&c), &e).starts_with(&clinic_pk(&c)));
        assert!(outbox_pk(None, &e).starts_with("OUTBOX#"));
    }
}
