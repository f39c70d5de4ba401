//! What the emulator's SES and SNS received (mail, SMS, push), read from its model data, for
//! `local-stack mail` and the tests.

use std::time::Duration;

use crate::BoxError;

/// The emulator's model data (`/moto-api/data.json`). The emulator builds that document while
/// other requests create models, and then may fail; it is asked again.
async fn model_data(endpoint: &str) -> Result<serde_json::Value, BoxError> {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let uri: http::Uri =
        format!("{}/moto-api/data.json", endpoint.trim_end_matches('/')).parse()?;
    let mut last = String::new();
    for _ in 0..10 {
        let resp = client.get(uri.clone()).await?;
        let ok = resp.status().is_success();
        let body = resp.into_body().collect().await?.to_bytes();
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(data) if ok => return Ok(data),
            Ok(_) => last = "an error status".into(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the emulator's model data could not be read: {last}").into())
}

fn models(data: &serde_json::Value, service: &str, model: &str) -> Vec<serde_json::Value> {
    data[service][model].as_array().cloned().unwrap_or_default()
}

/// Every email the emulator's SES accepted (subject, body, source, destinations), oldest
/// first.
pub async fn sent_mail(endpoint: &str) -> Result<Vec<serde_json::Value>, BoxError> {
    Ok(models(&model_data(endpoint).await?, "ses", "Message"))
}

/// Every SMS the emulator's SNS accepted (`phone_number`, `message`), oldest first.
pub async fn sent_sms(endpoint: &str) -> Result<Vec<serde_json::Value>, BoxError> {
    Ok(models(&model_data(endpoint).await?, "sns", "SMS"))
}

/// Every push the emulator's SNS accepted, as `{token, endpoint, message}` (the message is the
/// JSON document with each platform's payload), oldest first per endpoint.
pub async fn sent_push(endpoint: &str) -> Result<Vec<serde_json::Value>, BoxError> {
    let data = model_data(endpoint).await?;
    let mut out = Vec::new();
    for e in models(&data, "sns", "PlatformEndpoint") {
        for message in e["messages"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            out.push(serde_json::json!({
                "token": e["token"],
                "endpoint": e["arn"],
                "message": message,
            }));
        }
    }
    Ok(out)
}
