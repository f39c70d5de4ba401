//! Medications: what the patient takes or took (RxNorm), the dosage as written, the route,
//! the status, and when it started and stopped.

use serde::{Deserialize, Serialize};
use shared::{
    clinical::{Check, CodeSystem, Coding, Kind, Validate, parse_body},
    policy::Limit,
};

pub static KIND: Kind = Kind {
    slug: "medications",
    event: "medication",
    facet: Some(Limit::AllergiesAndMedications),
    fields: &[
        "name",
        "medication",
        "dosage",
        "route",
        "status",
        "startDate",
        "endDate",
        "notes",
    ],
    codes: &[("medication", &[CodeSystem::RxNorm])],
    parse: parse_body::<Medication>,
};

const ROUTES: &[&str] = &[
    "oral",
    "sublingual",
    "intravenous",
    "intramuscular",
    "subcutaneous",
    "topical",
    "inhaled",
    "nasal",
    "rectal",
    "ophthalmic",
    "other",
];
const STATUSES: &[&str] = &["active", "completed", "stopped", "on-hold"];

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Medication {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    medication: Option<Coding>,
    dosage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<String>,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

impl Validate for Medication {
    fn validate(&self, check: &mut Check) {
        check.text("name", &self.name, 1, 200);
        if let Some(c) = &self.medication {
            c.check(check, "medication");
        }
        check.text("dosage", &self.dosage, 1, 500);
        check.opt_one_of("route", &self.route, ROUTES);
        check.one_of("status", &self.status, STATUSES);
        let start = check.opt_date("startDate", &self.start_date);
        // An end date may be planned ahead, so it is not limited to the past.
        let end = self
            .end_date
            .as_deref()
            .and_then(|d| match d.parse::<jiff::civil::Date>() {
                Ok(d) => Some(d),
                Err(_) => {
                    check.push("endDate", "invalid_date", "Use a date like 2026-03-01.");
                    None
                }
            });
        if let (Some(a), Some(b)) = (start, end) {
            if b < a {
                check.push(
                    "endDate",
                    "before_start",
                    "Use a date on or after the start.",
                );
            }
        }
        check.opt_text("notes", &self.notes, 4000);
    }
}
