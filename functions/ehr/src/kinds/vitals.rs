//! Vital signs: one or more measurements taken together, each of a known type, in a UCUM unit
//! that type accepts and within the range a living person can show. Each measurement carries
//! its LOINC code, filled in from its type.

use serde::{Deserialize, Serialize};
use shared::{
    clinical::{Check, Kind, Validate, parse_body},
    policy::Limit,
};

pub static KIND: Kind = Kind {
    slug: "vitals",
    event: "vitals",
    facet: Some(Limit::VitalsOnly),
    fields: &["measurements", "takenAt", "notes"],
    codes: &[],
    parse,
};

fn parse(v: serde_json::Value) -> Result<shared::clinical::Body, shared::ApiError> {
    parse_body::<Vitals>(v).map(with_codes)
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Vitals {
    measurements: Vec<Measurement>,
    taken_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Measurement {
    #[serde(rename = "type")]
    kind: String,
    value: f64,
    unit: String,
    /// Filled in from the type; a given one must match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loinc: Option<String>,
}

/// A UCUM unit a type accepts, and the lowest and highest value in it.
type UnitRange = (&'static str, f64, f64);

/// (type, LOINC, the units it accepts).
pub const TYPES: &[(&str, &str, &[UnitRange])] = &[
    ("heart-rate", "8867-4", &[("/min", 20.0, 300.0)]),
    (
        "blood-pressure-systolic",
        "8480-6",
        &[("mm[Hg]", 40.0, 300.0)],
    ),
    (
        "blood-pressure-diastolic",
        "8462-4",
        &[("mm[Hg]", 20.0, 200.0)],
    ),
    ("respiratory-rate", "9279-1", &[("/min", 4.0, 80.0)]),
    (
        "temperature",
        "8310-5",
        &[("Cel", 25.0, 45.0), ("[degF]", 77.0, 113.0)],
    ),
    ("spo2", "59408-5", &[("%", 50.0, 100.0)]),
    (
        "weight",
        "29463-7",
        &[("kg", 0.2, 500.0), ("[lb_av]", 0.5, 1100.0)],
    ),
    (
        "height",
        "8302-2",
        &[("cm", 20.0, 280.0), ("[in_i]", 8.0, 110.0)],
    ),
    ("bmi", "39156-5", &[("kg/m2", 5.0, 100.0)]),
    (
        "glucose",
        "2339-0",
        &[("mg/dL", 10.0, 1500.0), ("mmol/L", 0.5, 85.0)],
    ),
];

impl Validate for Vitals {
    fn validate(&self, check: &mut Check) {
        check.count("measurements", &self.measurements, 1, TYPES.len());
        check.past_instant("takenAt", &self.taken_at);
        check.opt_text("notes", &self.notes, 2000);
        let mut seen = Vec::new();
        for (i, m) in self.measurements.iter().enumerate() {
            let field = |f: &str| format!("measurements[{i}].{f}");
            let Some((_, loinc, units)) = TYPES.iter().find(|(t, _, _)| *t == m.kind) else {
                let names: Vec<&str> = TYPES.iter().map(|(t, _, _)| *t).collect();
                check.one_of(&field("type"), &m.kind, &names);
                continue;
            };
            if seen.contains(&m.kind.as_str()) {
                check.push(field("type"), "duplicate", "Give each type once.");
            }
            seen.push(m.kind.as_str());
            if m.loinc.as_deref().is_some_and(|l| l != *loinc) {
                check.push(
                    field("loinc"),
                    "invalid_code",
                    "Not the LOINC code of this type.",
                );
            }
            match units.iter().find(|(u, _, _)| *u == m.unit) {
                Some((u, lo, hi)) => check.range(&field("value"), m.value, *lo, *hi, u),
                None => {
                    let names: Vec<&str> = units.iter().map(|(u, _, _)| *u).collect();
                    check.one_of(&field("unit"), &m.unit, &names);
                }
            }
        }
    }
}

/// Fills in each measurement's LOINC code (after validation, so the type is known).
fn with_codes(mut body: shared::clinical::Body) -> shared::clinical::Body {
    if let Some(serde_json::Value::Array(ms)) = body.get_mut("measurements") {
        for m in ms {
            let code = m
                .get("type")
                .and_then(|t| t.as_str())
                .and_then(|t| TYPES.iter().find(|(n, _, _)| *n == t))
                .map(|(_, c, _)| *c);
            if let (Some(code), Some(obj)) = (code, m.as_object_mut()) {
                obj.insert("loinc".into(), code.into());
            }
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: serde_json::Value) -> Vec<String> {
        match KIND.read_body(v) {
            Ok(_) => vec![],
            Err(shared::ApiError::Validation(errs)) => errs
                .into_iter()
                .map(|e| format!("{}:{}", e.field, e.code))
                .collect(),
            Err(e) => vec![e.code().to_string()],
        }
    }

    #[test]
    fn a_set_of_vitals_in_range_and_unit_is_accepted_with_its_codes() {
        let body = KIND
            .read_body(json!({
                "takenAt": "2026-01-05T09:30:00Z",
                "measurements": [
                    {"type": "heart-rate", "value": 72, "unit": "/min"},
                    {"type": "blood-pressure-systolic", "value": 120, "unit": "mm[Hg]"},
                    {"type": "temperature", "value": 98.6, "unit": "[degF]"},
                    {"type": "glucose", "value": 5.4, "unit": "mmol/L"}
                ]
            }))
            .unwrap();
        assert_eq!(body["measurements"][0]["loinc"], "8867-4");
        assert_eq!(body["measurements"][3]["loinc"], "2339-0");
    }

    #[test]
    fn out_of_range_wrong_unit_unknown_type_and_future_times_are_each_named() {
        let errs = errors(json!({
            "takenAt": "2999-01-01T00:00:00Z",
            "measurements": [
                {"type": "heart-rate", "value": 400, "unit": "/min"},
                {"type": "spo2", "value": 97, "unit": "ratio"},
                {"type": "mood", "value": 3, "unit": "1"},
                {"type": "heart-rate", "value": 70, "unit": "/min", "loinc": "8480-6"}
            ]
        }));
        assert_eq!(
            errs,
            [
                "takenAt:in_future",
                "measurements[0].value:out_of_range",
                "measurements[1].unit:invalid_value",
                "measurements[2].type:invalid_value",
                "measurements[3].type:duplicate",
                "measurements[3].loinc:invalid_code",
            ]
        );
        assert_eq!(
            errors(json!({"takenAt": "2026-01-05T09:30:00Z", "measurements": []})),
            ["measurements:invalid_count"]
        );
        assert_eq!(
            errors(json!({"takenAt": "x", "measurements": [], "colour": 1})),
            ["invalid_body"]
        );
    }
}
