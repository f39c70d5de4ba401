//! The generic health record: one abstraction every kind of record (conditions, vitals, lab
//! reports, ...) is a declaration over. A [`Kind`] names its body (a typed, validated shape),
//! its fields (every one sealed), its coded fields and the code systems each accepts, and the
//! policy facet that narrows who may touch it. Storage, versions, sealing and events are the
//! same for every kind.
//!
//! A record is one current item (`EHR#<patient>#<kind>#<record>`) and one immutable item per
//! version (`EHRV#...#<version>`). Every field of a version is its own AES-256-GCM ciphertext
//! whose associated data names the clinic, patient, kind, record, version and field, so a
//! ciphertext moved anywhere else fails to open.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

mod codes;

pub use codes::{CodeSystem, icd10_ok, loinc_ok, snomed_ok, ucum_ok};

use crate::{
    ApiError, FieldError,
    crypto::{Envelope, FieldContext, Phi},
    db::{Item, get_opt_n, get_opt_s, get_s},
    ids::{AppointmentId, ClinicId, RecordId, UserId},
    keys,
    policy::Limit,
};

/// A record's body: its fields by name, validated and normalised by its kind.
pub type Body = Map<String, Value>;

/// One kind of health record, declared by its module.
#[derive(Debug)]
pub struct Kind {
    /// The path segment: `vitals`, `lab-reports`, ...
    pub slug: &'static str,
    /// The event name part: `ehr.<event>.created`.
    pub event: &'static str,
    /// The policy facet this kind is (vitals, lab reports, allergies and medications), if any.
    pub facet: Option<Limit>,
    /// Every field of the body; each is sealed on its own.
    pub fields: &'static [&'static str],
    /// Coded fields (`name`, or `list[].name` inside a list) and the systems each accepts.
    pub codes: &'static [(&'static str, &'static [CodeSystem])],
    /// Parses and validates a body, answering it normalised (see [`parse_body`]).
    pub parse: fn(Value) -> Result<Body, ApiError>,
}

/// A body shape with its own rules (ranges, units, dates, lengths).
pub trait Validate {
    fn validate(&self, check: &mut Check);
}

/// Reads `v` as `T` (unknown fields refused), checks it, and answers its normalised fields.
pub fn parse_body<T: DeserializeOwned + Serialize + Validate>(v: Value) -> Result<Body, ApiError> {
    let typed: T = crate::http::from_value(v)?;
    let mut check = Check::default();
    typed.validate(&mut check);
    check.finish()?;
    match serde_json::to_value(&typed).map_err(ApiError::internal)? {
        Value::Object(m) => Ok(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        _ => Err(ApiError::internal("a record body is not an object")),
    }
}

impl Kind {
    /// Parses a new body: its own rules, then the code systems its coded fields accept.
    pub fn read_body(&self, v: Value) -> Result<Body, ApiError> {
        let mut codes = Check::default();
        if let Value::Object(raw) = &v {
            for (path, systems) in self.codes {
                check_codes(&mut codes, raw, path, systems);
            }
        }
        let body = match ((self.parse)(v), codes.finish()) {
            (Err(ApiError::Validation(mut errs)), Err(ApiError::Validation(more))) => {
                errs.extend(more);
                return Err(ApiError::Validation(errs));
            }
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
            (Ok(body), Ok(())) => body,
        };
        if let Some(f) = body.keys().find(|k| !self.fields.contains(&k.as_str())) {
            return Err(ApiError::internal(format!(
                "{} declares no field {f}",
                self.slug
            )));
        }
        Ok(body)
    }

    /// A change to `current`: the patch's fields replace the body's (`null` removes one),
    /// and the result is checked as a whole.
    pub fn merge(&self, current: &Body, patch: Map<String, Value>) -> Result<Body, ApiError> {
        let mut next = current.clone();
        for (k, v) in patch {
            if v.is_null() {
                next.remove(&k);
            } else {
                next.insert(k, v);
            }
        }
        self.read_body(Value::Object(next))
    }
}

fn check_codes(check: &mut Check, body: &Body, path: &str, systems: &[CodeSystem]) {
    match path.split_once("[].") {
        Some((list, rest)) => {
            if let Some(Value::Array(items)) = body.get(list) {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Object(m) = item {
                        if let Some(c) = m.get(rest) {
                            check_coding(check, &format!("{list}[{i}].{rest}"), c, systems);
                        }
                    }
                }
            }
        }
        None => {
            if let Some(c) = body.get(path) {
                check_coding(check, path, c, systems);
            }
        }
    }
}

fn check_coding(check: &mut Check, field: &str, c: &Value, systems: &[CodeSystem]) {
    let system = c.get("system").and_then(Value::as_str).unwrap_or_default();
    let code = c.get("code").and_then(Value::as_str).unwrap_or_default();
    match CodeSystem::parse(system).filter(|s| systems.contains(s)) {
        None => check.push(
            format!("{field}.system"),
            "unknown_code_system",
            format!(
                "Use one of: {}.",
                systems
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some(s) if !s.accepts(code) => check.push(
            format!("{field}.code"),
            "invalid_code",
            format!("Not a valid {} code.", s.as_str()),
        ),
        Some(_) => {}
    }
}

/// A coded value: a system, a code in it, and optionally how it reads.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Coding {
    /// Checks the display's length; the system and code are checked by the kind's declaration.
    pub fn check(&self, check: &mut Check, field: &str) {
        if let Some(d) = &self.display {
            check.text(&format!("{field}.display"), d, 1, 300);
        }
    }
}

/// Collects every problem of a body, so one answer lists them all. Messages never repeat a
/// submitted value.
#[derive(Debug, Default)]
pub struct Check(Vec<FieldError>);

impl Check {
    pub fn push(
        &mut self,
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.0
            .push(FieldError::new(field.into(), code, message.into()));
    }

    /// Text of `min` to `max` characters (trimmed).
    pub fn text(&mut self, field: &str, v: &str, min: usize, max: usize) {
        let n = v.trim().chars().count();
        if n < min || n > max {
            self.push(
                field,
                "invalid_length",
                format!("Use {min} to {max} characters."),
            );
        }
    }

    pub fn opt_text(&mut self, field: &str, v: &Option<String>, max: usize) {
        if let Some(v) = v {
            self.text(field, v, 1, max);
        }
    }

    /// One of the allowed words.
    pub fn one_of(&mut self, field: &str, v: &str, allowed: &[&str]) {
        if !allowed.contains(&v) {
            self.push(
                field,
                "invalid_value",
                format!("Use one of: {}.", allowed.join(", ")),
            );
        }
    }

    pub fn opt_one_of(&mut self, field: &str, v: &Option<String>, allowed: &[&str]) {
        if let Some(v) = v {
            self.one_of(field, v, allowed);
        }
    }

    /// A calendar date (`2026-03-01`), not after `today` when given.
    pub fn date(&mut self, field: &str, v: &str) -> Option<jiff::civil::Date> {
        match v.parse::<jiff::civil::Date>() {
            Ok(d) if d <= jiff::Zoned::now().date().tomorrow().unwrap_or(d) => Some(d),
            Ok(_) => {
                self.push(field, "in_future", "Use a date that has passed.");
                None
            }
            Err(_) => {
                self.push(field, "invalid_date", "Use a date like 2026-03-01.");
                None
            }
        }
    }

    pub fn opt_date(&mut self, field: &str, v: &Option<String>) -> Option<jiff::civil::Date> {
        v.as_deref().and_then(|v| self.date(field, v))
    }

    /// An instant (RFC 3339) that has passed (a few minutes of clock skew allowed).
    pub fn past_instant(&mut self, field: &str, v: &str) {
        match v.parse::<jiff::Timestamp>() {
            Ok(t) if t <= jiff::Timestamp::now() + jiff::SignedDuration::from_mins(5) => {}
            Ok(_) => self.push(field, "in_future", "Use a time that has passed."),
            Err(_) => self.push(
                field,
                "invalid_instant",
                "Use an RFC 3339 time like 2026-03-01T09:30:00Z.",
            ),
        }
    }

    pub fn opt_past_instant(&mut self, field: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.past_instant(field, v);
        }
    }

    /// A number in `[lo, hi]`.
    pub fn range(&mut self, field: &str, v: f64, lo: f64, hi: f64, unit: &str) {
        if !v.is_finite() || v < lo || v > hi {
            self.push(
                field,
                "out_of_range",
                format!("Use a value from {lo} to {hi} {unit}."),
            );
        }
    }

    /// A list of `min` to `max` entries.
    pub fn count<T>(&mut self, field: &str, v: &[T], min: usize, max: usize) {
        if v.len() < min || v.len() > max {
            self.push(
                field,
                "invalid_count",
                format!("Give {min} to {max} entries."),
            );
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// Whether a record stands or was entered in error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    EnteredInError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::EnteredInError => "entered-in-error",
        }
    }
}

/// One version of a record as stored: ids, status and times plain, its fields sealed.
#[derive(Debug, Clone)]
pub struct Stored {
    pub clinic: ClinicId,
    pub patient: UserId,
    pub kind: &'static Kind,
    pub id: RecordId,
    pub version: i64,
    pub status: Status,
    pub encounter: Option<AppointmentId>,
    pub author: UserId,
    pub author_role: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Field name to ciphertext.
    pub sealed: BTreeMap<String, String>,
    /// Why it was entered in error (sealed), on that version.
    pub sealed_reason: Option<String>,
}

/// The field name a removal reason is sealed under.
const REASON_FIELD: &str = "enteredInErrorReason";

fn context_record(s: &Stored) -> String {
    format!("{}/{}/{}/v{}", s.patient, s.kind.slug, s.id, s.version)
}

fn field_context<'a>(s: &'a Stored, record: &'a str, field: &'a str) -> FieldContext<'a> {
    FieldContext {
        tenant: s.clinic.as_str(),
        entity: "ehr",
        record,
        field,
    }
}

impl Stored {
    /// Seals `body` (and a removal reason) as this version's fields.
    pub async fn seal(
        &mut self,
        envelope: &Envelope,
        body: &Body,
        reason: Option<&Phi<String>>,
    ) -> Result<(), ApiError> {
        let record = context_record(self);
        let mut sealed = BTreeMap::new();
        for (name, value) in body {
            let json = serde_json::to_vec(value).map_err(ApiError::internal)?;
            let blob = envelope
                .encrypt(&field_context(self, &record, name), &json)
                .await?;
            sealed.insert(name.clone(), blob);
        }
        self.sealed_reason = match reason {
            Some(r) => Some(
                envelope
                    .encrypt_str(&field_context(self, &record, REASON_FIELD), r)
                    .await?,
            ),
            None => None,
        };
        self.sealed = sealed;
        Ok(())
    }

    /// Opens this version's fields (and its removal reason).
    pub async fn open(
        &self,
        envelope: &Envelope,
    ) -> Result<(Phi<Body>, Option<Phi<String>>), ApiError> {
        let record = context_record(self);
        let mut body = Body::new();
        for (name, blob) in &self.sealed {
            let plain = envelope
                .decrypt(&field_context(self, &record, name), blob)
                .await?;
            let value: Value = serde_json::from_slice(&plain).map_err(ApiError::internal)?;
            body.insert(name.clone(), value);
        }
        let reason = match &self.sealed_reason {
            Some(blob) => Some(
                envelope
                    .decrypt_str(&field_context(self, &record, REASON_FIELD), blob)
                    .await?,
            ),
            None => None,
        };
        Ok((Phi::new(body), reason))
    }

    /// The attributes of this version, for its current item and its version item alike.
    pub fn attributes(&self) -> Item {
        let mut i = Item::new();
        let mut put = |k: &str, v: AttributeValue| {
            i.insert(k.to_string(), v);
        };
        put("recordId", AttributeValue::S(self.id.to_string()));
        put("clinicId", AttributeValue::S(self.clinic.to_string()));
        put("patientId", AttributeValue::S(self.patient.to_string()));
        put("kind", AttributeValue::S(self.kind.slug.to_string()));
        put("version", AttributeValue::N(self.version.to_string()));
        put(
            "status",
            AttributeValue::S(self.status.as_str().to_string()),
        );
        put("authorId", AttributeValue::S(self.author.to_string()));
        put("authorRole", AttributeValue::S(self.author_role.clone()));
        put("createdAt", AttributeValue::N(self.created_at.to_string()));
        put("updatedAt", AttributeValue::N(self.updated_at.to_string()));
        put(
            "fields",
            AttributeValue::M(
                self.sealed
                    .iter()
                    .map(|(k, v)| (k.clone(), AttributeValue::S(v.clone())))
                    .collect(),
            ),
        );
        if let Some(e) = &self.encounter {
            put("encounterId", AttributeValue::S(e.to_string()));
        }
        if let Some(r) = &self.sealed_reason {
            put("reason", AttributeValue::S(r.clone()));
        }
        i
    }

    /// Reads a current or version item; `kinds` resolves its kind.
    pub fn from_item(i: &Item, kinds: &[&'static Kind]) -> Result<Self, ApiError> {
        let bad = |what: &str| ApiError::internal(format!("health record with a bad {what}"));
        let slug = get_s(i, "kind")?;
        let kind = kinds
            .iter()
            .find(|k| k.slug == slug)
            .copied()
            .ok_or_else(|| bad("kind"))?;
        let sealed = match i.get("fields") {
            Some(AttributeValue::M(m)) => m
                .iter()
                .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone())))
                .collect(),
            _ => BTreeMap::new(),
        };
        Ok(Self {
            clinic: ClinicId::parse(get_s(i, "clinicId")?).ok_or_else(|| bad("clinic"))?,
            patient: UserId::parse(get_s(i, "patientId")?).ok_or_else(|| bad("patient"))?,
            kind,
            id: RecordId::parse(get_s(i, "recordId")?).ok_or_else(|| bad("id"))?,
            version: get_opt_n(i, "version").unwrap_or(1),
            status: match get_opt_s(i, "status") {
                Some("entered-in-error") => Status::EnteredInError,
                _ => Status::Active,
            },
            encounter: get_opt_s(i, "encounterId").and_then(AppointmentId::parse),
            author: UserId::parse(get_s(i, "authorId")?).ok_or_else(|| bad("author"))?,
            author_role: get_opt_s(i, "authorRole").unwrap_or_default().to_string(),
            created_at: get_opt_n(i, "createdAt").unwrap_or(0),
            updated_at: get_opt_n(i, "updatedAt").unwrap_or(0),
            sealed,
            sealed_reason: get_opt_s(i, "reason").map(str::to_string),
        })
    }

    pub fn current_sk(&self) -> String {
        keys::ehr_sk(&self.patient, self.kind.slug, &self.id)
    }

    pub fn version_sk(&self) -> String {
        keys::ehr_version_sk(&self.patient, self.kind.slug, &self.id, self.version)
    }
}
