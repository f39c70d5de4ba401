//! Validated value types: a value of one of these types is valid by construction.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A normalised (trimmed, lower-cased) email address. It is PHI: its `Debug` redacts.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Option<Self> {
        let s = raw.trim().to_lowercase();
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let (local, domain) = s.split_once('@')?;
        let domain_ok = !domain.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty() && local.len() <= 64 && !local.contains('@');
        (domain_ok && local_ok).then_some(Self(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(«redacted»)")
    }
}

/// A phone number in E.164 form (`+` then 7 to 15 digits, no leading zero). PHI.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneE164(String);

impl PhoneE164 {
    pub fn parse(raw: &str) -> Option<Self> {
        let s: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        let digits = s.strip_prefix('+')?;
        let ok = (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then_some(Self(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneE164(«redacted»)")
    }
}

/// An active ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB \
BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD \
FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR \
KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR \
MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK \
SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES \
VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL";

impl Currency {
    pub fn parse(raw: &str) -> Option<Self> {
        let b = raw.as_bytes();
        (b.len() == 3 && ISO_4217.split(' ').any(|c| c == raw)).then(|| Self([b[0], b[1], b[2]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "not an ISO 4217 currency code".to_string())
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_string()
    }
}

/// An amount in integer minor units (cents) with its currency. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// Sum of two amounts in the same currency; `None` on a currency mismatch or overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        (self.currency == other.currency)
            .then(|| self.amount_minor.checked_add(other.amount_minor))
            .flatten()
            .map(|amount_minor| Money::new(amount_minor, self.currency))
    }
}

/// A valid IANA time zone name such as `Europe/Berlin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn parse(raw: &str) -> Option<Self> {
        jiff::tz::db().get(raw).ok().map(|_| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "not an IANA time zone".to_string())
    }
}

impl From<TimeZoneName> for String {
    fn from(t: TimeZoneName) -> String {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse("  Ana.Pop@Example.COM ").unwrap().expose(),
            "ana.pop@example.com"
        );
        for bad in [
            "", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@b..c", "a@.b.c", "a@b@c.d",
        ] {
            assert!(Email::parse(bad).is_none(), "{bad}");
        }
        assert!(!format!("{:?}", Email::parse("x@y.zz").unwrap()).contains("x@y"));
    }

    #[test]
    fn phones() {
        assert_eq!(
            PhoneE164::parse("+49 (30) 1234-567").unwrap().expose(),
            "+49301234567"
        );
        for bad in [
            "49301234567",
            "+0301234567",
            "+12",
            "+1234567890123456",
            "+49abc12345",
        ] {
            assert!(PhoneE164::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn currencies_and_money() {
        let eur = Currency::parse("EUR").unwrap();
        assert!(Currency::parse("eur").is_none());
        assert!(Currency::parse("XYZ").is_none());
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(
            Money::new(150, eur).checked_add(Money::new(50, eur)),
            Some(Money::new(200, eur))
        );
        assert_eq!(Money::new(1, eur).checked_add(Money::new(1, usd)), None);
        assert_eq!(
            Money::new(i64::MAX, eur).checked_add(Money::new(1, eur)),
            None
        );
        assert_eq!(
            serde_json::to_string(&Money::new(1999, eur)).unwrap(),
            r#"{"amountMinor":1999,"currency":"EUR"}"#
        );
    }

    #[test]
    fn time_zones() {
        assert!(TimeZoneName::parse("Europe/Berlin").is_some());
        assert!(TimeZoneName::parse("America/Argentina/Buenos_Aires").is_some());
        assert!(TimeZoneName::parse("Mars/Olympus").is_none());
    }
}
