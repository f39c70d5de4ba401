//! Radiology reports: the study (LOINC), its modality (DICOM codes), the body site, when it
//! was performed, the findings and the impression.

use serde::{Deserialize, Serialize};
use shared::clinical::{Check, CodeSystem, Coding, Kind, Validate, parse_body};

pub static KIND: Kind = Kind {
    slug: "radiology-reports",
    event: "radiology_report",
    facet: None,
    fields: &[
        "study",
        "modality",
        "bodySite",
        "performedAt",
        "findings",
        "impression",
        "status",
    ],
    codes: &[("study", &[CodeSystem::Loinc])],
    parse: parse_body::<RadiologyReport>,
};

/// DICOM modality codes.
const MODALITIES: &[&str] = &[
    "CR", "DX", "CT", "MR", "US", "NM", "PT", "MG", "XA", "RF", "OT",
];
const STATUSES: &[&str] = &["preliminary", "final", "amended", "corrected"];

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RadiologyReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    study: Option<Coding>,
    modality: String,
    body_site: String,
    performed_at: String,
    findings: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    impression: Option<String>,
    status: String,
}

impl Validate for RadiologyReport {
    fn validate(&self, check: &mut Check) {
        if let Some(c) = &self.study {
            c.check(check, "study");
        }
        check.one_of("modality", &self.modality, MODALITIES);
        check.text("bodySite", &self.body_site, 1, 200);
        check.past_instant("performedAt", &self.performed_at);
        check.text("findings", &self.findings, 1, 8000);
        check.opt_text("impression", &self.impression, 4000);
        check.one_of("status", &self.status, STATUSES);
    }
}
