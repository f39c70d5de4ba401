//! The OpenAPI document is assembled from parts: the frame (`info`, tags, security, the shared
//! components) and each context's part (the paths of the routes it serves and the components
//! only it names). A part comes from the context's own code (`utoipa` derives on its request
//! and response types and `#[utoipa::path]` on its handlers) or, until its context is
//! generated, from the context's `openapi.json`. Assembling checks that no two parts describe
//! the same operation and that a component two parts both define is the same in both.

use serde_json::{Map, Value};

/// The components every context's part names: the problem document and its field errors,
/// generated from the types the error responses are written from.
pub fn platform() -> Value {
    #[derive(utoipa::OpenApi)]
    #[openapi(components(schemas(crate::error::Problem, crate::error::FieldError)))]
    struct Platform;
    generated(<Platform as utoipa::OpenApi>::openapi())
}

/// A part written as JSON (a context's `openapi.json`).
pub fn part(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("an OpenAPI part is not JSON: {e}"))
}

/// A part generated from the code, as JSON.
pub fn generated(doc: utoipa::openapi::OpenApi) -> Value {
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    if let Some(doc) = value.as_object_mut() {
        // A part carries paths and components only: the frame says what the document is.
        doc.retain(|k, _| k == "paths" || k == "components");
    }
    value
}

/// `frame` with every part's paths and components merged in.
pub fn assemble(frame: Value, parts: impl IntoIterator<Item = Value>) -> Result<Value, String> {
    let mut doc = frame;
    for part in parts {
        let Value::Object(part) = part else {
            return Err("an OpenAPI part is not an object".into());
        };
        for (key, value) in part {
            match key.as_str() {
                "paths" => merge_paths(object(&mut doc, "paths")?, value)?,
                "components" => {
                    let Value::Object(sections) = value else {
                        return Err("components is not an object".into());
                    };
                    let into = object(&mut doc, "components")?;
                    for (section, entries) in sections {
                        let target = into
                            .entry(section.clone())
                            .or_insert_with(|| Value::Object(Map::new()));
                        merge_components(&section, target, entries)?;
                    }
                }
                other => return Err(format!("an OpenAPI part may not set `{other}`")),
            }
        }
    }
    Ok(doc)
}

fn object<'a>(doc: &'a mut Value, key: &str) -> Result<&'a mut Map<String, Value>, String> {
    doc.as_object_mut()
        .ok_or("the OpenAPI frame is not an object")?
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| format!("`{key}` is not an object"))
}

fn merge_paths(into: &mut Map<String, Value>, paths: Value) -> Result<(), String> {
    let Value::Object(paths) = paths else {
        return Err("paths is not an object".into());
    };
    for (path, item) in paths {
        let Value::Object(item) = item else {
            return Err(format!("path {path} is not an object"));
        };
        let Value::Object(existing) = into
            .entry(path.clone())
            .or_insert_with(|| Value::Object(Map::new()))
        else {
            return Err(format!("path {path} is not an object"));
        };
        for (field, value) in item {
            match existing.get(&field) {
                None => {
                    existing.insert(field, value);
                }
                // Path-level fields (parameters, a summary) may be repeated, identically.
                Some(same) if same == &value && !is_method(&field) => {}
                Some(_) => return Err(format!("{field} {path} is described by two parts")),
            }
        }
    }
    Ok(())
}

fn is_method(field: &str) -> bool {
    matches!(
        field,
        "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
    )
}

fn merge_components(section: &str, into: &mut Value, entries: Value) -> Result<(), String> {
    let (Some(into), Value::Object(entries)) = (into.as_object_mut(), entries) else {
        return Err(format!("components.{section} is not an object"));
    };
    for (name, value) in entries {
        match into.get(&name) {
            None => {
                into.insert(name, value);
            }
            Some(same) if same == &value => {}
            Some(_) => {
                return Err(format!(
                    "components.{section}.{name} is defined differently by two parts"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame() -> Value {
        json!({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {},
               "components": {"schemas": {"Problem": {"type": "object"}}}})
    }

    #[test]
    fn parts_add_their_paths_and_components() {
        let a = json!({"paths": {"/a": {"get": {"operationId": "a"}}},
                       "components": {"schemas": {"A": {"type": "string"}}}});
        let b = json!({"paths": {"/a": {"post": {"operationId": "b"}}, "/b": {"get": {}}},
                       "components": {"schemas": {"Problem": {"type": "object"}},
                                      "parameters": {"P": {"name": "p"}}}});
        let doc = assemble(frame(), [a, b]).unwrap();
        assert_eq!(doc["paths"]["/a"]["get"]["operationId"], "a");
        assert_eq!(doc["paths"]["/a"]["post"]["operationId"], "b");
        assert!(doc["paths"]["/b"]["get"].is_object());
        assert_eq!(doc["components"]["schemas"]["A"]["type"], "string");
        assert_eq!(doc["components"]["parameters"]["P"]["name"], "p");
        assert_eq!(doc["info"]["title"], "t");
    }

    #[test]
    fn an_operation_described_twice_or_a_component_defined_differently_is_refused() {
        let twice = [
            json!({"paths": {"/a": {"get": {}}}}),
            json!({"paths": {"/a": {"get": {}}}}),
        ];
        assert!(assemble(frame(), twice).unwrap_err().contains("get /a"));
        let differently = json!({"components": {"schemas": {"Problem": {"type": "string"}}}});
        assert!(
            assemble(frame(), [differently])
                .unwrap_err()
                .contains("components.schemas.Problem")
        );
        let frame_field = json!({"info": {}});
        assert!(assemble(frame(), [frame_field]).is_err());
    }

    #[test]
    fn a_generated_part_carries_only_paths_and_components() {
        let doc = utoipa::openapi::OpenApiBuilder::new()
            .info(utoipa::openapi::Info::new("x", "2"))
            .build();
        let part = generated(doc);
        assert!(part.get("info").is_none());
        assert!(part.get("openapi").is_none());
    }
}
