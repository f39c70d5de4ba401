//! Clinical notes of an appointment: written only by its treating clinician, kept as an
//! append-only history (a note is never changed or removed; a correction is a new note), and
//! read only by those who treat or nurse the patient and by the patient. What the patient wrote
//! when booking (reason, symptoms, notes) stays on the appointment, apart from these.

use aws_sdk_dynamodb::types::Put;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    audit::{AuditAction, AuditEntry},
    authn::ClinicAccess,
    clock::rfc3339,
    crypto::{FieldContext, Phi},
    db::{Item, Tx, get_opt_n, get_opt_s, get_s, n, s, tx_put},
    ids::{AppointmentId, ClinicId, UserId},
    keys,
    outbox::Who,
    policy::{Facet, Role, has_facet},
};

use crate::{AppState, common::appointment_event, input::text_ok, store::AppointmentRecord};

/// Another note took this number meanwhile.
const NUMBER_TAKEN: shared::error::Guard = shared::error::Guard::new(
    "concurrent_request",
    "Another note was added meanwhile; send yours again.",
);

/// A note as its readers see it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoteView {
    id: String,
    author_id: String,
    text: Phi<String>,
    created_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    pub text: Phi<String>,
}

/// Notes are numbered 1, 2, 3 ... per appointment: the sort key keeps their order, and the
/// put's "absent" condition lets only one of two concurrent notes take a number.
fn note_sk(appointment: &AppointmentId, seq: i64) -> String {
    format!("{}{seq:06}", notes_prefix(appointment))
}

fn notes_prefix(appointment: &AppointmentId) -> String {
    format!("{}#CNOTE#", keys::appointment_sk(appointment))
}

/// The number the next note of `a` takes.
async fn next_seq(state: &AppState, a: &AppointmentRecord) -> Result<i64, ApiError> {
    let out = state
        .table
        .client
        .query()
        .table_name(&state.table.name)
        .key_condition_expression("pk = :p AND begins_with(sk, :s)")
        .expression_attribute_values(":p", s(keys::clinic_pk(&a.clinic)))
        .expression_attribute_values(":s", s(notes_prefix(&a.id)))
        .select(aws_sdk_dynamodb::types::Select::Count)
        .consistent_read(true)
        .send()
        .await
        .map_err(shared::db::fault)?;
    Ok(i64::from(out.count()) + 1)
}

fn text_field<'a>(clinic: &'a ClinicId, id: &'a str) -> FieldContext<'a> {
    FieldContext {
        tenant: clinic.as_str(),
        entity: "clinical_note",
        record: id,
        field: "text",
    }
}

/// Whether the caller is the appointment's treating clinician.
pub fn treats(access: &ClinicAccess, a: &AppointmentRecord) -> bool {
    a.doctor == access.caller.user_id && has_facet(access.role, Facet::Clinician)
}

/// Whether the caller (who may read the appointment) may read its clinical notes.
pub fn reads(access: &ClinicAccess, a: &AppointmentRecord) -> bool {
    match access.role {
        Role::Patient => a.patient == access.caller.user_id,
        role => has_facet(role, Facet::ReadsClinicalNotes),
    }
}

/// The put of a new note (never overwriting one), encrypted and bound to its clinic and id,
/// with the note's id.
pub async fn put(
    state: &AppState,
    a: &AppointmentRecord,
    author: &UserId,
    text: &Phi<String>,
    now: i64,
) -> Result<(String, aws_sdk_dynamodb::types::TransactWriteItem), ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let seq = next_seq(state, a).await?;
    let sealed = state
        .envelope
        .encrypt_str(&text_field(&a.clinic, &id), text)
        .await?;
    let put = tx_put(
        Put::builder()
            .table_name(&state.table.name)
            .item(keys::PK, s(keys::clinic_pk(&a.clinic)))
            .item(keys::SK, s(note_sk(&a.id, seq)))
            .item("seq", n(seq))
            .item(keys::ENTITY, s("CLINICAL_NOTE"))
            .item("noteId", s(&id))
            .item("appointmentId", s(a.id.as_str()))
            .item("patientId", s(a.patient.as_str()))
            .item("authorId", s(author.as_str()))
            .item("text", s(sealed))
            .item("createdAt", n(now))
            .condition_expression("attribute_not_exists(pk)"),
    )?;
    Ok((id, put))
}

/// Adds a note by the treating clinician, with its event (ids only).
pub async fn add(
    state: &AppState,
    access: &ClinicAccess,
    a: &AppointmentRecord,
    who: &Who,
    note: NewNote,
) -> Result<NoteView, ApiError> {
    if !treats(access, a) {
        return Err(ApiError::Forbidden);
    }
    if !text_ok(&note.text) {
        return Err(ApiError::invalid_field(
            "text",
            "invalid_length",
            "Use 1 to 4000 characters.",
        ));
    }
    let now: Timestamp = state.clock.now();
    let (id, put) = put(
        state,
        a,
        &access.caller.user_id,
        &note.text,
        now.as_second(),
    )
    .await?;
    let mut tx = Tx::default();
    tx.guard(put, NUMBER_TAKEN);
    tx.push(
        appointment_event(
            "appointment.clinical_note_added",
            a,
            who,
            now,
            serde_json::json!({ "noteId": id }),
        )
        .outbox_write(&state.table.name, now.as_second())?,
    );
    tx.push(
        state
            .audit
            .put(&AuditEntry::by(
                access,
                &a.patient,
                AuditAction::Create,
                "appointment.clinical-note",
                vec![id.clone()],
            ))
            .await?,
    );
    tx.commit(&state.table).await?;
    Ok(NoteView {
        id,
        author_id: access.caller.user_id.to_string(),
        text: note.text,
        created_at: rfc3339(now.as_second()),
    })
}

/// Every note of the appointment, oldest first.
pub async fn list(
    state: &AppState,
    access: &ClinicAccess,
    a: &AppointmentRecord,
) -> Result<Vec<NoteView>, ApiError> {
    if !reads(access, a) {
        return Err(ApiError::Forbidden);
    }
    let prefix = notes_prefix(&a.id);
    let mut items: Vec<Item> = Vec::new();
    let mut start = None;
    loop {
        let out = state
            .table
            .client
            .query()
            .table_name(&state.table.name)
            .key_condition_expression("pk = :p AND begins_with(sk, :s)")
            .expression_attribute_values(":p", s(keys::clinic_pk(&a.clinic)))
            .expression_attribute_values(":s", s(&prefix))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(shared::db::fault)?;
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    let mut notes = Vec::with_capacity(items.len());
    for i in &items {
        let id = get_s(i, "noteId")?.to_string();
        let text = state
            .envelope
            .decrypt_str(&text_field(&a.clinic, &id), get_s(i, "text")?)
            .await?;
        notes.push(NoteView {
            author_id: get_opt_s(i, "authorId").unwrap_or_default().to_string(),
            created_at: rfc3339(get_opt_n(i, "createdAt").unwrap_or(0)),
            id,
            text,
        });
    }
    // Nothing leaves unless the reading is recorded.
    state
        .audit
        .record(&AuditEntry::by(
            access,
            &a.patient,
            AuditAction::Read,
            "appointment.clinical-note",
            notes.iter().map(|n| n.id.clone()).collect(),
        ))
        .await?;
    Ok(notes)
}
