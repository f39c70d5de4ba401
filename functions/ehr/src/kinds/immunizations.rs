//! Immunizations: the vaccine (CVX), when it was given, the dose number, lot and site.

use serde::{Deserialize, Serialize};
use shared::clinical::{Check, CodeSystem, Coding, Kind, Validate, parse_body};

pub static KIND: Kind = Kind {
    slug: "immunizations",
    event: "immunization",
    facet: None,
    fields: &[
        "name",
        "vaccine",
        "occurredOn",
        "doseNumber",
        "lotNumber",
        "site",
        "notes",
    ],
    codes: &[("vaccine", &[CodeSystem::Cvx])],
    parse: parse_body::<Immunization>,
};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Immunization {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vaccine: Option<Coding>,
    occurred_on: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dose_number: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lot_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

impl Validate for Immunization {
    fn validate(&self, check: &mut Check) {
        check.text("name", &self.name, 1, 200);
        if let Some(c) = &self.vaccine {
            c.check(check, "vaccine");
        }
        check.date("occurredOn", &self.occurred_on);
        if let Some(d) = self.dose_number {
            check.range("doseNumber", f64::from(d), 1.0, 20.0, "");
        }
        check.opt_text("lotNumber", &self.lot_number, 50);
        check.opt_text("site", &self.site, 100);
        check.opt_text("notes", &self.notes, 4000);
    }
}
