//! Family history: a relative's condition (ICD-10 or SNOMED CT), the relationship, and the age
//! it began at.

use serde::{Deserialize, Serialize};
use shared::clinical::{Check, CodeSystem, Coding, Kind, Validate, parse_body};

pub static KIND: Kind = Kind {
    slug: "family-history",
    event: "family_history",
    facet: None,
    fields: &[
        "relationship",
        "name",
        "condition",
        "onsetAge",
        "deceased",
        "notes",
    ],
    codes: &[("condition", &[CodeSystem::Icd10, CodeSystem::SnomedCt])],
    parse: parse_body::<FamilyHistory>,
};

const RELATIONSHIPS: &[&str] = &[
    "mother",
    "father",
    "sister",
    "brother",
    "daughter",
    "son",
    "grandmother",
    "grandfather",
    "aunt",
    "uncle",
    "cousin",
    "other",
];

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FamilyHistory {
    relationship: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    onset_age: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deceased: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

impl Validate for FamilyHistory {
    fn validate(&self, check: &mut Check) {
        check.one_of("relationship", &self.relationship, RELATIONSHIPS);
        check.text("name", &self.name, 1, 200);
        if let Some(c) = &self.condition {
            c.check(check, "condition");
        }
        if let Some(a) = self.onset_age {
            check.range("onsetAge", f64::from(a), 0.0, 130.0, "years");
        }
        check.opt_text("notes", &self.notes, 4000);
    }
}
