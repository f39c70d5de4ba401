//! Allergies and intolerances: the substance (SNOMED CT or RxNorm), its type, category and
//! criticality, and the reactions it caused.

use serde::{Deserialize, Serialize};
use shared::{
    clinical::{Check, CodeSystem, Coding, Kind, Validate, parse_body},
    policy::Limit,
};

pub static KIND: Kind = Kind {
    slug: "allergies",
    event: "allergy",
    facet: Some(Limit::AllergiesAndMedications),
    fields: &[
        "name",
        "substance",
        "type",
        "category",
        "criticality",
        "reactions",
        "onsetDate",
        "notes",
    ],
    codes: &[("substance", &[CodeSystem::SnomedCt, CodeSystem::RxNorm])],
    parse: parse_body::<Allergy>,
};

const TYPES: &[&str] = &["allergy", "intolerance"];
const CATEGORIES: &[&str] = &["food", "medication", "environment", "biologic"];
const CRITICALITIES: &[&str] = &["low", "high", "unable-to-assess"];
const SEVERITIES: &[&str] = &["mild", "moderate", "severe"];

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Allergy {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    substance: Option<Coding>,
    #[serde(rename = "type")]
    kind: String,
    category: String,
    criticality: String,
    #[serde(default)]
    reactions: Vec<Reaction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    onset_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Reaction {
    manifestation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<String>,
}

impl Validate for Allergy {
    fn validate(&self, check: &mut Check) {
        check.text("name", &self.name, 1, 200);
        if let Some(c) = &self.substance {
            c.check(check, "substance");
        }
        check.one_of("type", &self.kind, TYPES);
        check.one_of("category", &self.category, CATEGORIES);
        check.one_of("criticality", &self.criticality, CRITICALITIES);
        check.count("reactions", &self.reactions, 0, 20);
        for (i, r) in self.reactions.iter().enumerate() {
            check.text(
                &format!("reactions[{i}].manifestation"),
                &r.manifestation,
                1,
                200,
            );
            check.opt_one_of(&format!("reactions[{i}].severity"), &r.severity, SEVERITIES);
        }
        check.opt_date("onsetDate", &self.onset_date);
        check.opt_text("notes", &self.notes, 4000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_allergy_names_its_type_category_criticality_and_reactions() {
        assert!(
            KIND.read_body(json!({
                "name": "Penicillin",
                "substance": {"system": "snomed-ct", "code": "91936005"},
                "type": "allergy", "category": "medication", "criticality": "high",
                "reactions": [{"manifestation": "Hives", "severity": "moderate"}]
            }))
            .is_ok()
        );
        let Err(shared::ApiError::Validation(errs)) = KIND.read_body(json!({
            "name": "Peanut", "type": "allergy", "category": "nuts", "criticality": "deadly",
            "reactions": [{"manifestation": "", "severity": "extreme"}]
        })) else {
            panic!("accepted")
        };
        let fields: Vec<_> = errs.iter().map(|e| e.field.to_string()).collect();
        assert_eq!(
            fields,
            [
                "category",
                "criticality",
                "reactions[0].manifestation",
                "reactions[0].severity"
            ]
        );
    }
}
