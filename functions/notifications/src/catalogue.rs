//! The built-in messages: each template's subject and text, the variables it may use, its
//! category and priority. Rendering is strict: a variable the template names but the job does
//! not carry is an error, never an empty string. Messages say what happened and link into the
//! app; they carry no clinical content and no secrets beyond a link's own URL.

use minijinja::{Environment, UndefinedBehavior};
use std::collections::BTreeMap;

/// What a message is about; users choose channels per category (account mail always goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Account,
    Appointments,
    Billing,
    Clinical,
}

impl Category {
    /// The name preferences use (`shared::preferences::CATEGORIES`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Account => shared::preferences::ACCOUNT,
            Category::Appointments => "appointments",
            Category::Billing => "billing",
            Category::Clinical => "clinical",
        }
    }
}

/// Which queue carries it: critical work is never behind bulk work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Critical clinical alerts: never held by quiet hours or sending limits.
    Critical,
    /// Account mail: links that expire, sign-in notices.
    High,
    /// What happened to an appointment, a subscription or an invoice; reminders.
    Normal,
    /// Bulk messages, never ahead of the others.
    Low,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The queue's place in the worker's list (critical first).
    pub fn index(self) -> usize {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        }
    }
}

/// The channels a message may take.
pub const EMAIL: &str = "email";
pub const SMS: &str = "sms";
pub const PUSH: &str = "push";
pub const IN_APP: &str = "inApp";
/// Account mail goes by email only; everything else by every channel the recipient allows.
pub const EMAIL_ONLY: &[&str] = &[EMAIL];
pub const EVERY_CHANNEL: &[&str] = &[EMAIL, SMS, PUSH, IN_APP];

/// One catalogue entry.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub name: &'static str,
    pub category: Category,
    pub priority: Priority,
    pub channels: &'static [&'static str],
    /// The variables the template may use (the job's params, plus `url` for link mail).
    pub variables: &'static [&'static str],
    pub subject: &'static str,
    /// One line for SMS and push (empty for email-only templates).
    pub short: &'static str,
    pub text: &'static str,
}

const LINK: &[&str] = &["url", "expiresAt"];
const APPOINTMENT: &[&str] = &["clinicName", "startsAt", "appointmentUrl"];
const BILLING: &[&str] = &["clinicName", "billingUrl"];

/// Every template the worker can send.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "appointment-booked",
        category: Category::Appointments,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: APPOINTMENT,
        subject: "Your appointment on {{ startsAt }}",
        short: "{{ clinicName }}: appointment booked for {{ startsAt }}. {{ appointmentUrl }}",
        text: "An appointment at {{ clinicName }} was booked for you on {{ startsAt }}. The clinic confirms it soon.\n\nSee it in the app: {{ appointmentUrl }}\n",
    },
    Template {
        name: "appointment-confirmed",
        category: Category::Appointments,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: APPOINTMENT,
        subject: "Your appointment on {{ startsAt }} is confirmed",
        short: "{{ clinicName }}: your appointment on {{ startsAt }} is confirmed. {{ appointmentUrl }}",
        text: "{{ clinicName }} confirmed your appointment on {{ startsAt }}.\n\nSee it in the app: {{ appointmentUrl }}\n",
    },
    Template {
        name: "appointment-rescheduled",
        category: Category::Appointments,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: &[
            "clinicName",
            "startsAt",
            "appointmentUrl",
            "previousStartsAt",
        ],
        subject: "Your appointment moved to {{ startsAt }}",
        short: "{{ clinicName }}: your appointment moved to {{ startsAt }}. {{ appointmentUrl }}",
        text: "Your appointment at {{ clinicName }}{% if previousStartsAt is defined %} on {{ previousStartsAt }}{% endif %} is now on {{ startsAt }}.\n\nSee it in the app: {{ appointmentUrl }}\n",
    },
    Template {
        name: "appointment-cancelled",
        category: Category::Appointments,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: APPOINTMENT,
        subject: "Your appointment on {{ startsAt }} was cancelled",
        short: "{{ clinicName }}: your appointment on {{ startsAt }} was cancelled. {{ appointmentUrl }}",
        text: "Your appointment at {{ clinicName }} on {{ startsAt }} was cancelled.\n\nBook another in the app: {{ appointmentUrl }}\n",
    },
    Template {
        name: "appointment-missed",
        category: Category::Appointments,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: APPOINTMENT,
        subject: "You missed your appointment on {{ startsAt }}",
        short: "{{ clinicName }}: you missed your appointment on {{ startsAt }}. {{ appointmentUrl }}",
        text: "{{ clinicName }} recorded that you did not come to your appointment on {{ startsAt }}.\n\nBook another in the app: {{ appointmentUrl }}\n",
    },
    Template {
        name: "schedule-booked",
        category: Category::Appointments,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: APPOINTMENT,
        subject: "New appointment on {{ startsAt }}",
        short: "{{ clinicName }}: new appointment on your schedule, {{ startsAt }}. {{ appointmentUrl }}",
        text: "An appointment on {{ startsAt }} was booked on your schedule at {{ clinicName }}.\n\nSee it in the app: {{ appointmentUrl }}\n",
    },
    Template {
        name: "schedule-cancelled",
        category: Category::Appointments,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: APPOINTMENT,
        subject: "Appointment on {{ startsAt }} cancelled",
        short: "{{ clinicName }}: the appointment on {{ startsAt }} on your schedule was cancelled. {{ appointmentUrl }}",
        text: "The appointment on {{ startsAt }} on your schedule at {{ clinicName }} was cancelled; the time is free again.\n\nSee your schedule in the app: {{ appointmentUrl }}\n",
    },
    Template {
        name: "appointment-reminder-24h",
        category: Category::Appointments,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: APPOINTMENT,
        subject: "Reminder: your appointment on {{ startsAt }}",
        short: "{{ clinicName }}: reminder of your appointment on {{ startsAt }}. {{ appointmentUrl }}",
        text: "A reminder of your appointment at {{ clinicName }} on {{ startsAt }}.\n\nIf you cannot come, cancel or move it in the app: {{ appointmentUrl }}\n",
    },
    Template {
        name: "appointment-reminder-2h",
        category: Category::Appointments,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: APPOINTMENT,
        subject: "Your appointment is at {{ startsAt }}",
        short: "{{ clinicName }}: your appointment is soon, {{ startsAt }}. {{ appointmentUrl }}",
        text: "Your appointment at {{ clinicName }} is in about two hours, {{ startsAt }}.\n\nSee it in the app: {{ appointmentUrl }}\n",
    },
    Template {
        name: "subscription-started",
        category: Category::Billing,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: BILLING,
        subject: "Your subscription at {{ clinicName }} has started",
        short: "{{ clinicName }}: your subscription has started. {{ billingUrl }}",
        text: "Your subscription at {{ clinicName }} has started.\n\nSee it and its invoices in the app: {{ billingUrl }}\n",
    },
    Template {
        name: "invoice-issued",
        category: Category::Billing,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: BILLING,
        subject: "A new invoice from {{ clinicName }}",
        short: "{{ clinicName }}: a new invoice is ready. {{ billingUrl }}",
        text: "{{ clinicName }} issued an invoice to you.\n\nSee and pay it in the app: {{ billingUrl }}\n",
    },
    Template {
        name: "payment-completed",
        category: Category::Billing,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: BILLING,
        subject: "Payment received by {{ clinicName }}",
        short: "{{ clinicName }}: payment received, thank you. {{ billingUrl }}",
        text: "{{ clinicName }} received your payment. Thank you.\n\nSee the receipt in the app: {{ billingUrl }}\n",
    },
    Template {
        name: "payment-failed",
        category: Category::Billing,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: BILLING,
        subject: "A payment to {{ clinicName }} did not go through",
        short: "{{ clinicName }}: a payment did not go through. {{ billingUrl }}",
        text: "A payment to {{ clinicName }} did not go through. Nothing was charged.\n\nTry again in the app: {{ billingUrl }}\n",
    },
    Template {
        name: "payment-refunded",
        category: Category::Billing,
        priority: Priority::Normal,
        channels: EVERY_CHANNEL,
        variables: BILLING,
        subject: "{{ clinicName }} refunded a payment",
        short: "{{ clinicName }}: a payment was refunded to you. {{ billingUrl }}",
        text: "{{ clinicName }} refunded a payment to you.\n\nSee it in the app: {{ billingUrl }}\n",
    },
    Template {
        name: "clinical-alert",
        category: Category::Clinical,
        priority: Priority::Critical,
        channels: EVERY_CHANNEL,
        variables: &["clinicName", "alertUrl"],
        subject: "A clinical alert from {{ clinicName }}",
        short: "{{ clinicName }}: a clinical alert needs your attention. {{ alertUrl }}",
        text: "{{ clinicName }} has a clinical alert for you. Open it in the app: {{ alertUrl }}\n",
    },
    Template {
        name: "break-glass-opened",
        category: Category::Clinical,
        priority: Priority::High,
        channels: EVERY_CHANNEL,
        variables: &["clinicName", "expiresAt", "auditUrl"],
        subject: "Emergency access to a health record at {{ clinicName }}",
        short: "{{ clinicName }}: a clinician used emergency access to a patient's record, open until {{ expiresAt }}. Review: {{ auditUrl }}",
        text: "A clinician at {{ clinicName }} used emergency (break-glass) access to a patient's health record. The access stays open until {{ expiresAt }} and every read under it is in the audit trail.\n\nReview it in the app: {{ auditUrl }}\n",
    },
    Template {
        name: "email-verification",
        category: Category::Account,
        priority: Priority::High,
        channels: EMAIL_ONLY,
        variables: LINK,
        subject: "Confirm your email address",
        short: "",
        text: "Please confirm that this address is yours by opening this link:\n\n{{ url }}\n\nThe link works once, until {{ expiresAt }}. If you did not create an account, ignore this message.\n",
    },
    Template {
        name: "password-reset",
        category: Category::Account,
        priority: Priority::High,
        channels: EMAIL_ONLY,
        variables: LINK,
        subject: "Reset your password",
        short: "",
        text: "Someone asked to reset the password of your account. To choose a new one, open this link:\n\n{{ url }}\n\nThe link works once, until {{ expiresAt }}. If it was not you, ignore this message: your password stays as it is.\n",
    },
    Template {
        name: "membership-invitation",
        category: Category::Account,
        priority: Priority::High,
        channels: EMAIL_ONLY,
        variables: &["url", "expiresAt", "clinicId"],
        subject: "You are invited to join a clinic",
        short: "",
        text: "A clinic invited you to join it. To accept, open this link:\n\n{{ url }}\n\nThe link works once, until {{ expiresAt }}. If you do not expect this invitation, ignore this message: nothing changes until you accept.\n",
    },
    Template {
        name: "membership-granted",
        category: Category::Account,
        priority: Priority::High,
        channels: EMAIL_ONLY,
        variables: &["clinicId", "role"],
        subject: "You have joined a clinic",
        short: "",
        text: "You are now a member of a clinic, as {{ role }}. Sign in to the app to see it.\n\nIf you did not accept this, tell the clinic and change your password.\n",
    },
    Template {
        name: "role-changed",
        category: Category::Account,
        priority: Priority::High,
        channels: EMAIL_ONLY,
        variables: &["clinicId", "role"],
        subject: "Your role in a clinic changed",
        short: "",
        text: "Your role in one of your clinics is now {{ role }}. Sign in to the app to see it.\n",
    },
    Template {
        name: "new-sign-in",
        category: Category::Account,
        priority: Priority::High,
        channels: EMAIL_ONLY,
        variables: &[],
        subject: "New sign-in to your account",
        short: "",
        text: "Your account was just signed in to. If this was you, there is nothing to do.\n\nIf it was not, change your password and end your other sessions in the app at once.\n",
    },
    Template {
        name: "mfa-enabled",
        category: Category::Account,
        priority: Priority::High,
        channels: EMAIL_ONLY,
        variables: &[],
        subject: "Two-step sign-in is on",
        short: "",
        text: "An authenticator app was added to your account: signing in now takes a code from it.\n\nIf this was not you, change your password and tell your clinic at once.\n",
    },
    Template {
        name: "mfa-disabled",
        category: Category::Account,
        priority: Priority::High,
        channels: EMAIL_ONLY,
        variables: &[],
        subject: "Two-step sign-in is off",
        short: "",
        text: "The authenticator app was removed from your account: signing in takes the password alone again.\n\nIf this was not you, change your password and tell your clinic at once.\n",
    },
    Template {
        name: "mfa-recovery-code-used",
        category: Category::Account,
        priority: Priority::High,
        channels: EMAIL_ONLY,
        variables: &[],
        subject: "A recovery code was used to sign in",
        short: "",
        text: "Someone signed in to your account with one of its recovery codes. Each code works once.\n\nIf this was not you, change your password and tell your clinic at once.\n",
    },
];

pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    /// The one line SMS and push carry.
    pub short: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {0} offers no variable {1}")]
    NotOffered(&'static str, String),
    #[error("template {0}: {1}")]
    Template(&'static str, String),
}

/// A template's wording: the built-in one, or a clinic's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wording<'a> {
    pub subject: &'a str,
    pub short: &'a str,
    pub text: &'a str,
}

impl Template {
    /// The built-in wording.
    pub fn wording(&self) -> Wording<'static> {
        Wording {
            subject: self.subject,
            short: self.short,
            text: self.text,
        }
    }

    /// Whether a clinic may word it its own way (account mail is the platform's).
    pub fn clinic_may_word(&self) -> bool {
        self.category != Category::Account
    }
}

/// Renders `t` with `vars`: only the variables the entry offers are passed in, and one the
/// text names that is missing fails.
pub fn render(t: &Template, vars: &BTreeMap<String, String>) -> Result<Message, RenderError> {
    render_worded(t, t.wording(), vars)
}

/// Renders `t` in `wording` (a clinic's own, checked when it was saved), as [`render`] does.
pub fn render_worded(
    t: &Template,
    wording: Wording<'_>,
    vars: &BTreeMap<String, String>,
) -> Result<Message, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let offered: BTreeMap<String, String> = vars
        .iter()
        .filter(|(k, _)| t.variables.iter().any(|v| v == k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fail = |e: minijinja::Error| RenderError::Template(t.name, e.to_string());
    let subject = env
        .render_str(wording.subject, offered.clone())
        .map_err(fail)?;
    let short = env
        .render_str(wording.short, offered.clone())
        .map_err(fail)?;
    let text = env.render_str(wording.text, offered).map_err(fail)?;
    Ok(Message {
        subject,
        short,
        text,
    })
}

/// Checks a template text names only the variables its entry offers (for templates a clinic
/// writes): renders it with every offered variable set, strictly.
/// The longest a checked text may render to (a loop in a clinic's wording could otherwise
/// turn a short text into a huge message).
pub const RENDERED_MAX: usize = 10_000;

pub fn check(t: &Template, text: &str) -> Result<(), RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let all: BTreeMap<&str, &str> = t.variables.iter().map(|v| (*v, "x")).collect();
    let rendered = env
        .render_str(text, all)
        .map_err(|e| RenderError::NotOffered(t.name, e.to_string()))?;
    if rendered.chars().count() > RENDERED_MAX {
        return Err(RenderError::Template(
            t.name,
            format!("it renders to more than {RENDERED_MAX} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_template_renders_with_its_own_variables() {
        for t in TEMPLATES {
            let all = vars(&t.variables.iter().map(|v| (*v, "V")).collect::<Vec<_>>());
            let m = render(t, &all).unwrap_or_else(|e| panic!("{}: {e}", t.name));
            assert!(!m.subject.is_empty() && !m.text.is_empty(), "{}", t.name);
            assert!(check(t, t.text).is_ok(), "{}", t.name);
        }
        let names: std::collections::BTreeSet<_> = TEMPLATES.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), TEMPLATES.len(), "names are unique");
    }

    #[test]
    fn a_missing_variable_fails_instead_of_rendering_empty() {
        let t = template("password-reset").unwrap();
        assert!(render(t, &vars(&[("expiresAt", "soon")])).is_err());
        let m = render(
            t,
            &vars(&[("url", "https://app/r?token=x"), ("expiresAt", "soon")]),
        )
        .unwrap();
        assert!(m.text.contains("https://app/r?token=x"));
    }

    #[test]
    fn a_template_may_name_only_what_its_entry_offers() {
        let t = template("membership-granted").unwrap();
        assert!(check(t, "You are {{ role }}").is_ok());
        assert!(check(t, "Reason: {{ reason }}").is_err());
        // A loop may not turn a short text into a huge message.
        assert!(check(t, "{% for i in range(3) %}{{ role }} {% endfor %}").is_ok());
        assert!(check(t, "{% for i in range(9000) %}{{ role }} {% endfor %}").is_err());
        // A variable a job carries but the entry does not offer never reaches the text.
        let m = render(
            &Template {
                text: "{{ role }}",
                ..*t
            },
            &vars(&[("role", "DOCTOR"), ("reason", "CANARY")]),
        )
        .unwrap();
        assert!(!m.text.contains("CANARY"));
    }
}
