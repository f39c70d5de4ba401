//! Medical history: conditions (problems and diagnoses), coded in ICD-10 or SNOMED CT, with
//! their clinical status and when they began and ended.

use serde::{Deserialize, Serialize};
use shared::clinical::{Check, CodeSystem, Coding, Kind, Validate, parse_body};

pub static KIND: Kind = Kind {
    slug: "medical-history",
    event: "medical_history",
    facet: None,
    fields: &[
        "name",
        "condition",
        "clinicalStatus",
        "onsetDate",
        "abatementDate",
        "notes",
    ],
    codes: &[("condition", &[CodeSystem::Icd10, CodeSystem::SnomedCt])],
    parse: parse_body::<Condition>,
};

const STATUSES: &[&str] = &[
    "active",
    "recurrence",
    "relapse",
    "inactive",
    "remission",
    "resolved",
];

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Condition {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<Coding>,
    clinical_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    onset_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    abatement_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

impl Validate for Condition {
    fn validate(&self, check: &mut Check) {
        check.text("name", &self.name, 1, 200);
        if let Some(c) = &self.condition {
            c.check(check, "condition");
        }
        check.one_of("clinicalStatus", &self.clinical_status, STATUSES);
        let onset = check.opt_date("onsetDate", &self.onset_date);
        let end = check.opt_date("abatementDate", &self.abatement_date);
        if let (Some(a), Some(b)) = (onset, end) {
            if b < a {
                check.push(
                    "abatementDate",
                    "before_onset",
                    "Use a date on or after the onset.",
                );
            }
        }
        check.opt_text("notes", &self.notes, 4000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coded_conditions_are_checked_against_their_system() {
        let ok = KIND.read_body(json!({
            "name": "Type 2 diabetes",
            "condition": {"system": "icd-10", "code": "E11.9"},
            "clinicalStatus": "active",
            "onsetDate": "2019-04-01"
        }));
        assert!(ok.is_ok(), "{ok:?}");
        let Err(shared::ApiError::Validation(errs)) = KIND.read_body(json!({
            "name": "Asthma",
            "condition": {"system": "loinc", "code": "8867-4"},
            "clinicalStatus": "cured",
            "onsetDate": "2020-01-01",
            "abatementDate": "2019-01-01"
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
                "clinicalStatus:invalid_value",
                "abatementDate:before_onset",
                "condition.system:unknown_code_system"
            ]
        );
        let Err(shared::ApiError::Validation(errs)) = KIND.read_body(json!({
            "name": "Hypertension",
            "condition": {"system": "snomed-ct", "code": "38341004"},
            "clinicalStatus": "active"
        })) else {
            panic!("accepted")
        };
        assert_eq!(errs[0].field, "condition.code");
    }
}
