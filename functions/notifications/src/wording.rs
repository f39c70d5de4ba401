//! A clinic's own wording of its messages, per template and locale, stored under the clinic and
//! checked when it is saved: it may name only the variables its catalogue entry offers (so a
//! clinic cannot put a reason or a result into a message), and renders strictly. What a clinic
//! did not word falls back to the built-in text. Account mail is the platform's own.

use serde::{Deserialize, Serialize};
use shared::{
    ApiError, FieldError,
    db::{self, Item, Table, get_opt_n, get_opt_s, n, s},
    ids::{ClinicId, UserId},
    keys,
};

use crate::catalogue::{self, Template, Wording};

/// Longest subject, line and text a clinic may save.
const SUBJECT_MAX: usize = 200;
const SHORT_MAX: usize = 320;
const TEXT_MAX: usize = 5000;

/// One saved wording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub locale: String,
    pub subject: String,
    pub short: String,
    pub text: String,
    pub updated_at: String,
    pub updated_by: String,
}

/// A template as a clinic admin sees it: what it offers, the built-in wording, and the
/// clinic's own per locale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    pub template: &'static str,
    pub category: &'static str,
    pub channels: &'static [&'static str],
    pub variables: &'static [&'static str],
    pub default: DefaultWording,
    pub clinic: Vec<Saved>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefaultWording {
    pub subject: &'static str,
    pub short: &'static str,
    pub text: &'static str,
}

/// `PUT` body: the wording of one template in one locale, or `useDefault` to remove it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WordingInput {
    pub template: String,
    pub locale: String,
    pub subject: Option<String>,
    pub short: Option<String>,
    pub text: Option<String>,
    #[serde(default)]
    pub use_default: bool,
}

/// `en`, `de`, `pt-BR`: a language and an optional region.
pub fn valid_locale(l: &str) -> bool {
    let (lang, region) = l.split_once('-').unwrap_or((l, ""));
    lang.len() == 2
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && (region.is_empty()
            || (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase())))
}

impl WordingInput {
    /// The template it words and every mistake at once (each text checked against the
    /// variables its entry offers).
    pub fn check(&self) -> Result<&'static Template, ApiError> {
        let mut errors = Vec::new();
        let template = catalogue::template(&self.template).filter(|t| t.clinic_may_word());
        if template.is_none() {
            errors.push(FieldError::new(
                "template",
                "unknown_template",
                "No such template a clinic may word (account mail is the platform's).",
            ));
        }
        if !valid_locale(&self.locale) {
            errors.push(FieldError::new(
                "locale",
                "invalid_locale",
                "A locale is a language, optionally with a region: en, de, pt-BR.",
            ));
        }
        let fields = [
            ("subject", &self.subject, SUBJECT_MAX),
            ("short", &self.short, SHORT_MAX),
            ("text", &self.text, TEXT_MAX),
        ];
        if self.use_default {
            if fields.iter().any(|(_, v, _)| v.is_some()) {
                errors.push(FieldError::new(
                    "useDefault",
                    "conflicting_fields",
                    "Either give the wording or ask for the default, not both.",
                ));
            }
        } else {
            for (name, value, max) in fields {
                match value {
                    None => errors.push(FieldError::new(name, "required", "Required.")),
                    Some(v) if v.trim().is_empty() || v.chars().count() > max => {
                        errors.push(FieldError::new(
                            name,
                            "invalid_length",
                            format!("1 to {max} characters."),
                        ));
                    }
                    Some(v) => {
                        if let Some(t) = template {
                            if let Err(e) = catalogue::check(t, v) {
                                errors.push(FieldError::new(
                                    name,
                                    "invalid_template",
                                    format!("{e}. It may use only {}.", t.variables.join(", ")),
                                ));
                            }
                        }
                    }
                }
            }
        }
        match (template, errors.is_empty()) {
            (Some(t), true) => Ok(t),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

fn saved(item: &Item) -> Option<Saved> {
    Some(Saved {
        locale: get_opt_s(item, "locale")?.to_string(),
        subject: get_opt_s(item, "subject")?.to_string(),
        short: get_opt_s(item, "short")?.to_string(),
        text: get_opt_s(item, "text")?.to_string(),
        updated_at: jiff::Timestamp::from_second(get_opt_n(item, "updatedAt").unwrap_or(0))
            .map_or_else(|_| String::new(), |t| t.to_string()),
        updated_by: get_opt_s(item, "updatedBy").unwrap_or_default().to_string(),
    })
}

/// Every template a clinic may word, with its own wordings.
pub async fn list(table: &Table, clinic: &ClinicId) -> Result<Vec<TemplateView>, ApiError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", s(keys::clinic_pk(clinic)))
        .expression_attribute_values(":prefix", s(keys::NOTIFICATION_TEMPLATE_PREFIX))
        .send()
        .await
        .map_err(db::fault)?;
    let items = out.items.unwrap_or_default();
    Ok(catalogue::TEMPLATES
        .iter()
        .filter(|t| t.clinic_may_word())
        .map(|t| TemplateView {
            template: t.name,
            category: t.category.as_str(),
            channels: t.channels,
            variables: t.variables,
            default: DefaultWording {
                subject: t.subject,
                short: t.short,
                text: t.text,
            },
            clinic: items
                .iter()
                .filter(|i| get_opt_s(i, "template") == Some(t.name))
                .filter_map(saved)
                .collect(),
        })
        .collect())
}

/// Saves (or, with `useDefault`, removes) one wording.
pub async fn save(
    table: &Table,
    clinic: &ClinicId,
    input: &WordingInput,
    by: &UserId,
    now: i64,
) -> Result<Option<Saved>, ApiError> {
    let template = input.check()?;
    let sk = keys::notification_template_sk(template.name, &input.locale);
    if input.use_default {
        table
            .client
            .delete_item()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(clinic)))
            .key(keys::SK, s(sk))
            .send()
            .await
            .map_err(db::fault)?;
        return Ok(None);
    }
    let (subject, short, text) = (
        input.subject.clone().unwrap_or_default(),
        input.short.clone().unwrap_or_default(),
        input.text.clone().unwrap_or_default(),
    );
    table
        .client
        .put_item()
        .table_name(&table.name)
        .item(keys::PK, s(keys::clinic_pk(clinic)))
        .item(keys::SK, s(sk))
        .item(keys::ENTITY, s("NOTIFICATION_TEMPLATE"))
        .item("template", s(template.name))
        .item("locale", s(&input.locale))
        .item("subject", s(&subject))
        .item("short", s(&short))
        .item("text", s(&text))
        .item("updatedAt", n(now))
        .item("updatedBy", s(by.as_str()))
        .send()
        .await
        .map_err(db::fault)?;
    Ok(Some(Saved {
        locale: input.locale.clone(),
        subject,
        short,
        text,
        updated_at: jiff::Timestamp::from_second(now)
            .map_or_else(|_| String::new(), |t| t.to_string()),
        updated_by: by.to_string(),
    }))
}

/// The clinic's wording of `template` for `locale` (or its language alone), if it has one.
pub async fn find(
    table: &Table,
    clinic: &ClinicId,
    template: &Template,
    locale: &str,
) -> Result<Option<Saved>, ApiError> {
    if !template.clinic_may_word() {
        return Ok(None);
    }
    let mut locales = vec![locale.to_string()];
    if let Some((lang, _)) = locale.split_once('-') {
        locales.push(lang.to_string());
    }
    let keys_: Vec<Item> = locales
        .iter()
        .map(|l| {
            db::key(
                keys::clinic_pk(clinic),
                keys::notification_template_sk(template.name, l),
            )
        })
        .collect();
    let items = table.batch_get(keys_).await?;
    Ok(locales.iter().find_map(|l| {
        items
            .iter()
            .filter(|i| get_opt_s(i, "locale") == Some(l.as_str()))
            .find_map(saved)
    }))
}

impl Saved {
    pub fn wording(&self) -> Wording<'_> {
        Wording {
            subject: &self.subject,
            short: &self.short,
            text: &self.text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(template: &str, text: &str) -> WordingInput {
        WordingInput {
            template: template.into(),
            locale: "de".into(),
            subject: Some("Termin am {{ startsAt }}".into()),
            short: Some("{{ clinicName }}: Termin {{ startsAt }}".into()),
            text: Some(text.into()),
            use_default: false,
        }
    }

    #[test]
    fn a_clinic_wording_may_name_only_what_its_entry_offers() {
        assert!(
            input(
                "appointment-booked",
                "Bis {{ startsAt }}: {{ appointmentUrl }}"
            )
            .check()
            .is_ok()
        );
        for bad in [
            input("appointment-booked", "Grund: {{ reason }}"),
            input("appointment-booked", "{{ startsAt"),
            input("password-reset", "{{ url }}"),
            input("nope", "x"),
            WordingInput {
                locale: "german".into(),
                ..input("appointment-booked", "x")
            },
            WordingInput {
                use_default: true,
                ..input("appointment-booked", "x")
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        for (l, ok) in [
            ("en", true),
            ("pt-BR", true),
            ("EN", false),
            ("en-us", false),
            ("", false),
        ] {
            assert_eq!(valid_locale(l), ok, "{l}");
        }
    }
}
