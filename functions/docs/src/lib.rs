//! The `docs` function: the OpenAPI document of the whole API, served at `/v1/openapi.json`.
//! The document is assembled from the frame (`openapi.json` beside this crate: the title, the
//! tags, the security scheme, the shared components, this route) and every context's part
//! (`<context>::openapi()`); see `shared::openapi`. It needs no AWS service.

use std::sync::OnceLock;

use axum::{
    Router,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use shared::ApiError;

/// Every route this function serves: (method, path).
pub const ROUTES: &[(&str, &str)] = &[("GET", "/v1/openapi.json")];

/// Every route of every function, as (method, path): what the document describes and
/// `template.yaml` deploys.
pub fn every_route() -> Vec<(&'static str, &'static str)> {
    [
        ROUTES,
        auth::ROUTES,
        users::ROUTES,
        clinics::ROUTES,
        appointments::ROUTES,
        billing::ROUTES,
        notifications::ROUTES,
        ehr::ROUTES,
    ]
    .concat()
}

/// The platform's and every context's part of the document.
pub fn parts() -> Vec<Value> {
    vec![
        shared::openapi::platform(),
        auth::openapi(),
        users::openapi(),
        clinics::openapi(),
        appointments::openapi(),
        billing::openapi(),
        notifications::openapi(),
        ehr::openapi(),
    ]
}

/// The whole document.
pub fn document() -> Result<Value, String> {
    shared::openapi::assemble(
        shared::openapi::part(include_str!("../openapi.json")),
        parts(),
    )
}

/// The document as served: assembled and written once per process. The tests assemble it,
/// so a build whose parts conflict is not deployed; should one be, the route answers
/// `500 internal_error` (logged with the reason) rather than a partial document.
fn served() -> Result<&'static str, &'static str> {
    static DOC: OnceLock<Result<String, String>> = OnceLock::new();
    DOC.get_or_init(|| document().map(|doc| doc.to_string()))
        .as_ref()
        .map(String::as_str)
        .map_err(String::as_str)
}

pub fn router() -> Router {
    shared::http::platform(routes())
}

/// The bare routes, for a gateway that merges several functions under one set of layers.
pub fn routes() -> Router {
    Router::new().route("/v1/openapi.json", get(openapi))
}

async fn openapi() -> Result<Response, ApiError> {
    let doc = served().map_err(|e| ApiError::internal(format!("the OpenAPI document: {e}")))?;
    let mut resp = (StatusCode::OK, doc).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[test]
    fn the_document_describes_exactly_the_routes_served() {
        let doc = document().expect("the document assembles");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut served: Vec<(String, String)> = every_route()
            .into_iter()
            .map(|(m, p)| (m.to_lowercase(), p.to_string()))
            .collect();
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in ["get", "put", "post", "patch", "delete"] {
                if item.get(method).is_some() {
                    documented.push((method.to_string(), path.clone()));
                }
            }
        }
        served.sort();
        documented.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn every_reference_names_a_component_of_the_document() {
        let doc = document().expect("the document assembles");
        let text = doc.to_string();
        let mut missing = Vec::new();
        for reference in text.split("\"$ref\":\"#/components/").skip(1) {
            let target = reference.split('"').next().unwrap_or_default();
            let mut node = &doc["components"];
            for step in target.split('/') {
                node = &node[step];
            }
            if node.is_null() {
                missing.push(target.to_string());
            }
        }
        assert!(missing.is_empty(), "unresolved: {missing:?}");
    }

    #[tokio::test]
    async fn the_document_is_served_as_json() {
        let resp = router()
            .oneshot(
                http::Request::get("/v1/openapi.json")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let doc: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            doc["paths"]["/v1/openapi.json"]["get"]["operationId"],
            "getOpenApiDocument"
        );
    }
}
