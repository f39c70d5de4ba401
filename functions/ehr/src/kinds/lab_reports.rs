//! Lab reports: a test (LOINC), its specimen, and its results, each a value in a UCUM unit or
//! a text, with its reference range and interpretation.

use serde::{Deserialize, Serialize};
use shared::{
    clinical::{Check, CodeSystem, Coding, Kind, Validate, parse_body, ucum_ok},
    policy::Limit,
};

pub static KIND: Kind = Kind {
    slug: "lab-reports",
    event: "lab_report",
    facet: Some(Limit::LabReportsOnly),
    fields: &[
        "name",
        "test",
        "status",
        "specimen",
        "collectedAt",
        "results",
        "conclusion",
    ],
    codes: &[
        ("test", &[CodeSystem::Loinc]),
        ("results[].code", &[CodeSystem::Loinc]),
    ],
    parse: parse_body::<LabReport>,
};

const STATUSES: &[&str] = &["registered", "preliminary", "final", "amended", "corrected"];
const INTERPRETATIONS: &[&str] = &[
    "normal",
    "low",
    "high",
    "critical-low",
    "critical-high",
    "abnormal",
];

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LabReport {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    test: Option<Coding>,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    specimen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collected_at: Option<String>,
    results: Vec<LabResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conclusion: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LabResult {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_high: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interpretation: Option<String>,
}

impl Validate for LabReport {
    fn validate(&self, check: &mut Check) {
        check.text("name", &self.name, 1, 200);
        if let Some(c) = &self.test {
            c.check(check, "test");
        }
        check.one_of("status", &self.status, STATUSES);
        check.opt_text("specimen", &self.specimen, 200);
        check.opt_past_instant("collectedAt", &self.collected_at);
        check.count("results", &self.results, 1, 100);
        check.opt_text("conclusion", &self.conclusion, 4000);
        for (i, r) in self.results.iter().enumerate() {
            let f = |n: &str| format!("results[{i}].{n}");
            check.text(&f("name"), &r.name, 1, 200);
            if let Some(c) = &r.code {
                c.check(check, &f("code"));
            }
            match (r.value, &r.value_text) {
                (None, None) | (Some(_), Some(_)) => check.push(
                    f("value"),
                    "value_or_text",
                    "Give a value or a valueText, not both.",
                ),
                (Some(v), None) => {
                    check.range(&f("value"), v, -1e9, 1e9, "");
                    match &r.unit {
                        Some(u) if !ucum_ok(u) => {
                            check.push(f("unit"), "invalid_unit", "Use a UCUM unit, e.g. mg/dL.")
                        }
                        Some(_) => {}
                        None => check.push(f("unit"), "required", "A value needs its UCUM unit."),
                    }
                }
                (None, Some(t)) => check.text(&f("valueText"), t, 1, 1000),
            }
            if let (Some(lo), Some(hi)) = (r.reference_low, r.reference_high) {
                if lo > hi {
                    check.push(
                        f("referenceLow"),
                        "invalid_range",
                        "The low end is above the high end.",
                    );
                }
            }
            check.opt_one_of(&f("interpretation"), &r.interpretation, INTERPRETATIONS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_need_a_value_with_its_unit_or_a_text() {
        assert!(
            KIND.read_body(json!({
                "name": "Complete blood count",
                "test": {"system": "loinc", "code": "58410-2"},
                "status": "final",
                "results": [
                    {"name": "Hemoglobin", "code": {"system": "loinc", "code": "718-7"},
                     "value": 13.5, "unit": "g/dL", "referenceLow": 12, "referenceHigh": 16,
                     "interpretation": "normal"},
                    {"name": "Smear", "valueText": "No abnormal cells"}
                ]
            }))
            .is_ok()
        );
        let Err(shared::ApiError::Validation(errs)) = KIND.read_body(json!({
            "name": "Panel",
            "status": "final",
            "results": [
                {"name": "A", "value": 1},
                {"name": "B", "value": 1, "valueText": "x", "unit": "mg dL"},
                {"name": "C", "value": 2, "unit": "mg/dL", "referenceLow": 5, "referenceHigh": 1},
                {"name": "D", "code": {"system": "loinc", "code": "718-8"}, "valueText": "x"}
            ]
        })) else {
            panic!("accepted")
        };
        let codes: Vec<_> = errs
            .iter()
            .map(|e| format!("{}:{}", e.field, e.code))
            .collect();
        assert_eq!(
            codes,
            [
                "results[0].unit:required",
                "results[1].value:value_or_text",
                "results[2].referenceLow:invalid_range",
                "results[3].code.code:invalid_code"
            ]
        );
    }
}
