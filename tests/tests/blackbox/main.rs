//! The black-box suite: one test binary, each module a group of HTTP scenarios against the
//! local stack (started in-process per test) or a deployed `API_URL`.

mod audit_seal;
mod billing;
mod channels;
mod client;
mod ehr;
mod faults;
mod mfa;
mod notifications;
mod phi_audit;
mod poison;
mod reminders;
mod scheduling;
mod template;
mod tenancy;
mod trace;
mod wording;
