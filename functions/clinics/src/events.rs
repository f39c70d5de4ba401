//! This context's outbox events: what happened, to what, and who caused it in which role.

use shared::{
    authn::Caller,
    ids::ClinicId,
    outbox::{Actor, EventEnvelope, Subject},
    policy::Role,
};

use crate::AppState;

/// An event of this context, caused by `actor` acting as `role`.
pub(crate) fn event(
    state: &AppState,
    kind: &str,
    clinic: &ClinicId,
    actor: &Caller,
    role: Role,
    subject: (&str, String),
    data: serde_json::Value,
) -> EventEnvelope {
    EventEnvelope::new(
        kind,
        Some(clinic),
        Actor {
            user_id: Some(actor.user_id.to_string()),
            role: Some(role.as_str().to_string()),
        },
        Subject {
            kind: subject.0.into(),
            id: subject.1,
        },
        data,
        state.clock.now(),
    )
}
