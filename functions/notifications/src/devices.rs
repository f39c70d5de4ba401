//! Push devices: a user registers a device's push token, which becomes an SNS platform endpoint
//! of the platform's application (`fcm` or `apns`). A token belongs to one user at a time: the
//! token's lookup item names its owner, so a device that changes hands stops receiving the
//! previous owner's messages. An endpoint SNS reports disabled is removed when a push finds it.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};
use shared::{
    ApiError, FieldError,
    crypto::token_hash,
    db::{self, Table, get_opt_s, n, s},
    ids::UserId,
    keys,
};

use crate::AppState;

/// A registration or removal request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceToken {
    /// `fcm` (Android, web) or `apns` (iOS).
    pub platform: String,
    pub token: String,
}

/// A registered device, as its owner sees it (never the token itself).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub device_id: String,
    pub platform: String,
    pub created_at: String,
}

/// A device as the worker pushes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub device_id: String,
    pub platform: String,
    pub arn: String,
}

impl DeviceToken {
    /// The request's mistakes, all at once; the platform must be one the stack has.
    pub fn errors(&self, platforms: &[(String, String)]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !platforms.iter().any(|(p, _)| *p == self.platform) {
            errors.push(FieldError::new(
                "platform",
                "unknown_platform",
                "Platforms are fcm and apns.",
            ));
        }
        let t = &self.token;
        if t.is_empty() || t.len() > 4096 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(FieldError::new(
                "token",
                "invalid_token",
                "A push token is 1 to 4096 printable characters.",
            ));
        }
        errors
    }

    /// The device's id: the same token on the same platform is the same device.
    pub fn device_id(&self) -> String {
        token_hash(&format!("push|{}|{}", self.platform, self.token))[..22].to_string()
    }
}

fn owner_key(device: &str) -> (String, String) {
    (
        keys::device_owner_pk(device),
        keys::DEVICE_OWNER_SK.to_string(),
    )
}

fn iso(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| String::new(), |t| t.to_string())
}

/// Registers the token for `user` (again: the same endpoint), moving it from a previous owner.
pub async fn register(
    state: &AppState,
    user: &UserId,
    req: &DeviceToken,
) -> Result<Device, ApiError> {
    let push = &state.ext().push_apps;
    let errors = req.errors(push);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let app = push
        .iter()
        .find(|(p, _)| *p == req.platform)
        .map(|(_, arn)| arn.clone())
        .unwrap_or_default();
    let id = req.device_id();
    let now = state.clock.epoch();
    // SNS answers the same endpoint for the same token, but leaves one it disabled disabled:
    // the app registering again means the token works, so it is enabled again.
    let endpoint = state
        .ext()
        .sns
        .create_platform_endpoint()
        .platform_application_arn(app)
        .token(&req.token)
        .send()
        .await
        .map_err(|e| ApiError::internal(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?
        .endpoint_arn
        .unwrap_or_default();
    state
        .ext()
        .sns
        .set_endpoint_attributes()
        .endpoint_arn(&endpoint)
        .attributes("Enabled", "true")
        .attributes("Token", &req.token)
        .send()
        .await
        .map_err(|e| ApiError::internal(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
    let (opk, osk) = owner_key(&id);
    let previous = state
        .table
        .get(opk.clone(), osk.clone())
        .await?
        .and_then(|i| get_opt_s(&i, "userId").and_then(UserId::parse));
    let mut items = vec![
        put(
            &state.table,
            vec![
                (keys::PK, s(keys::user_pk(user))),
                (keys::SK, s(keys::device_sk(&id))),
                (keys::ENTITY, s("DEVICE")),
                ("deviceId", s(&id)),
                ("platform", s(&req.platform)),
                ("endpointArn", s(&endpoint)),
                ("createdAt", n(now)),
            ],
        )?,
        put(
            &state.table,
            vec![
                (keys::PK, s(opk)),
                (keys::SK, s(osk)),
                (keys::ENTITY, s("DEVICE_OWNER")),
                ("userId", s(user.as_str())),
            ],
        )?,
    ];
    if let Some(prev) = previous.filter(|p| p != user) {
        items.push(delete(&state.table, &prev, &id)?);
    }
    db::run_guarded(&state.table, items, &[]).await?;
    Ok(Device {
        device_id: id,
        platform: req.platform.clone(),
        created_at: iso(now),
    })
}

fn put(
    table: &Table,
    attrs: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
) -> Result<TransactWriteItem, ApiError> {
    let mut p = Put::builder().table_name(&table.name);
    for (k, v) in attrs {
        p = p.item(k, v);
    }
    Ok(TransactWriteItem::builder()
        .put(p.build().map_err(ApiError::internal)?)
        .build())
}

fn delete(table: &Table, user: &UserId, device: &str) -> Result<TransactWriteItem, ApiError> {
    Ok(TransactWriteItem::builder()
        .delete(
            Delete::builder()
                .table_name(&table.name)
                .key(keys::PK, s(keys::user_pk(user)))
                .key(keys::SK, s(keys::device_sk(device)))
                .build()
                .map_err(ApiError::internal)?,
        )
        .build())
}

/// Removes the user's device of this token (and its endpoint); removing an unknown one is not
/// an error.
pub async fn remove(state: &AppState, user: &UserId, req: &DeviceToken) -> Result<(), ApiError> {
    let errors = req.errors(&state.ext().push_apps);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let id = req.device_id();
    forget(state, user, &id).await
}

/// Forgets one device of `user`: its endpoint, its item, and its owner item if still theirs.
pub async fn forget(state: &AppState, user: &UserId, device: &str) -> Result<(), ApiError> {
    let Some(item) = state
        .table
        .get(keys::user_pk(user), keys::device_sk(device))
        .await?
    else {
        return Ok(());
    };
    if let Some(arn) = get_opt_s(&item, "endpointArn") {
        if let Err(e) = state
            .ext()
            .sns
            .delete_endpoint()
            .endpoint_arn(arn)
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_sns::error::DisplayErrorContext(e), "endpoint not deleted");
        }
    }
    let (opk, osk) = owner_key(device);
    let owner = TransactWriteItem::builder()
        .delete(
            Delete::builder()
                .table_name(&state.table.name)
                .key(keys::PK, s(opk))
                .key(keys::SK, s(osk))
                .condition_expression("attribute_not_exists(pk) OR userId = :user")
                .expression_attribute_values(":user", s(user.as_str()))
                .build()
                .map_err(ApiError::internal)?,
        )
        .build();
    let mine = delete(&state.table, user, device)?;
    // A failed condition means the token moved to someone else meanwhile: only ours goes.
    if db::run_guarded(&state.table, vec![mine.clone(), owner], &[1])
        .await?
        .is_some()
    {
        db::run_guarded(&state.table, vec![mine], &[]).await?;
    }
    Ok(())
}

/// The user's device items (up to fifty; more is not a phone collection).
async fn device_items(table: &Table, user: &UserId) -> Result<Vec<db::Item>, ApiError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("pk = :pk AND begins_with(sk, :device)")
        .expression_attribute_values(":pk", s(keys::user_pk(user)))
        .expression_attribute_values(":device", s(keys::DEVICE_PREFIX))
        .limit(50)
        .send()
        .await
        .map_err(db::fault)?;
    Ok(out.items.unwrap_or_default())
}

/// The user's devices, for the worker.
pub async fn endpoints(table: &Table, user: &UserId) -> Result<Vec<Endpoint>, ApiError> {
    Ok(device_items(table, user)
        .await?
        .iter()
        .filter_map(|i| {
            Some(Endpoint {
                device_id: get_opt_s(i, "deviceId")?.to_string(),
                platform: get_opt_s(i, "platform")?.to_string(),
                arn: get_opt_s(i, "endpointArn")?.to_string(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_checked_and_names_one_device_per_platform() {
        let platforms = vec![("fcm".to_string(), "arn:fcm".to_string())];
        let t = |p: &str, tok: &str| DeviceToken {
            platform: p.into(),
            token: tok.into(),
        };
        assert!(t("fcm", "abc:123").errors(&platforms).is_empty());
        assert_eq!(t("apns", "abc").errors(&platforms).len(), 1);
        assert_eq!(t("fcm", "").errors(&platforms).len(), 1);
        assert_eq!(t("fcm", "a b").errors(&platforms).len(), 1);
        assert_eq!(t("fcm", "x").device_id(), t("fcm", "x").device_id());
        assert_ne!(t("fcm", "x").device_id(), t("apns", "x").device_id());
    }
}
