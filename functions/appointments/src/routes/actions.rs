//! Action routes: `POST .../appointments/{id}/{action}` moves an appointment through its
//! lifecycle (confirm, check-in, start, complete, cancel, reschedule, no-show).

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::post,
};
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{OptionalJson, present},
};

use crate::{
    AppState,
    access::{load_visible, may_act, sees_phi},
    actions,
    rules::Transition,
    views::view,
};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/clinics/{clinicId}/appointments/{appointmentId}/{action}",
        post(act),
    )
}

async fn act(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id, action)): Path<(String, String, String)>,
    OptionalJson(raw): OptionalJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let action = Transition::parse_action(&action).ok_or(ApiError::NotFound)?;
    let (a, f) = load_visible(&state, &access, &id).await?;
    if !may_act(&access, &f, action) {
        return Err(ApiError::Forbidden);
    }
    let (b, follow_up) = actions::perform(&state, &access, &a, action, &raw).await?;
    let phi = sees_phi(&access, &b);
    let mut v = serde_json::to_value(view(&state, &b, phi).await?).map_err(ApiError::internal)?;
    if let (Some(fu), Some(obj)) = (&follow_up, v.as_object_mut()) {
        obj.insert(
            "followUp".into(),
            serde_json::to_value(view(&state, fu, phi).await?).map_err(ApiError::internal)?,
        );
    }
    // What was shown of the appointments' free text is recorded before it leaves.
    let texts: Vec<String> = [Some(&b), follow_up.as_ref()]
        .into_iter()
        .flatten()
        .filter(|x| phi && !x.sealed.is_empty())
        .map(|x| x.id.to_string())
        .collect();
    if !texts.is_empty() {
        state
            .audit
            .record(&shared::audit::AuditEntry::by(
                &access,
                &b.patient,
                shared::audit::AuditAction::Read,
                "appointment",
                texts,
            ))
            .await?;
    }
    Ok(present(&v))
}
