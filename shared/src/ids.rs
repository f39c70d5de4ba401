//! Typed identifiers, so a user id can never be passed where a clinic id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An optional id query parameter: absent, or well-formed (422 `invalid_id` naming the field).
pub fn query_id<T>(
    v: Option<&str>,
    field: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, crate::ApiError> {
    v.map(|v| {
        parse(v)
            .ok_or_else(|| crate::ApiError::invalid_field(field, "invalid_id", "Not a valid id."))
    })
    .transpose()
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            /// Accepts only the canonical hyphenated lowercase UUID form, so ids are safe in
            /// keys, paths and logs.
            pub fn parse(s: &str) -> Option<Self> {
                let u = uuid::Uuid::try_parse(s).ok()?;
                let canonical = u.hyphenated().to_string();
                (canonical == s).then_some(Self(canonical))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s).ok_or_else(|| format!("invalid {}", stringify!($name)))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

typed_id!(
    /// A person's identity, global across clinics.
    UserId
);
typed_id!(
    /// A tenant.
    ClinicId
);
impl ClinicId {
    /// The scope of what happens outside any clinic (a person's own profile, their inbox): the
    /// nil UUID, which no clinic is ever given. The audit trail keeps such accesses under it.
    pub fn platform() -> Self {
        Self(uuid::Uuid::nil().hyphenated().to_string())
    }

    pub fn is_platform(&self) -> bool {
        *self == Self::platform()
    }
}

typed_id!(
    /// An appointment, unique within the platform.
    AppointmentId
);
typed_id!(
    /// A clinic location (branch).
    LocationId
);
typed_id!(
    /// One login session (a refresh-token family).
    SessionId
);
typed_id!(
    /// A single-use link sent to a person's address (reset, invitation, verification).
    LinkId
);
typed_id!(
    /// One domain event.
    EventId
);
typed_id!(
    /// A clinic's subscription plan.
    PlanId
);
typed_id!(
    /// A patient's subscription to a plan.
    SubscriptionId
);
typed_id!(
    /// An invoice (its human-facing number is separate: `INV-<year>-<sequence>`).
    InvoiceId
);
typed_id!(
    /// A payment or a refund.
    PaymentId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_parse() {
        let id = UserId::generate();
        assert_eq!(UserId::parse(id.as_str()), Some(id.clone()));
        assert!(UserId::parse("not-a-uuid").is_none());
        assert!(UserId::parse(&id.as_str().to_uppercase()).is_none());
        assert!(UserId::parse("CLINIC#x").is_none());
    }

    #[test]
    fn ids_deserialize_with_validation() {
        let ok: Result<ClinicId, _> =
            serde_json::from_str("\"0f8fad5b-d9cb-469f-a165-70867728950e\"");
        assert!(ok.is_ok());
        let bad: Result<ClinicId, _> = serde_json::from_str("\"../etc\"");
        assert!(bad.is_err());
    }
}
typed_id!(
    /// One health record (all its versions share it).
    RecordId
);
typed_id!(
    /// One audit record.
    AuditId
);
