//! Surgical records: the procedure (SNOMED CT), when it was performed, by whom, and how it
//! went.

use serde::{Deserialize, Serialize};
use shared::clinical::{Check, CodeSystem, Coding, Kind, Validate, parse_body};

pub static KIND: Kind = Kind {
    slug: "surgical-records",
    event: "surgical_record",
    facet: None,
    fields: &[
        "name",
        "procedure",
        "performedOn",
        "surgeon",
        "facility",
        "outcome",
        "complications",
        "notes",
    ],
    codes: &[("procedure", &[CodeSystem::SnomedCt])],
    parse: parse_body::<SurgicalRecord>,
};

const OUTCOMES: &[&str] = &[
    "successful",
    "partially-successful",
    "unsuccessful",
    "unknown",
];

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SurgicalRecord {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    procedure: Option<Coding>,
    performed_on: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    surgeon: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    facility: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    complications: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

impl Validate for SurgicalRecord {
    fn validate(&self, check: &mut Check) {
        check.text("name", &self.name, 1, 200);
        if let Some(c) = &self.procedure {
            c.check(check, "procedure");
        }
        check.date("performedOn", &self.performed_on);
        check.opt_text("surgeon", &self.surgeon, 200);
        check.opt_text("facility", &self.facility, 200);
        check.opt_one_of("outcome", &self.outcome, OUTCOMES);
        check.opt_text("complications", &self.complications, 4000);
        check.opt_text("notes", &self.notes, 4000);
    }
}
