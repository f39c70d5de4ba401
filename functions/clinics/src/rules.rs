//! Pure checks of this context's request fields: name lengths and locale tags. No I/O, no
//! AWS types.

/// Counted in characters after trimming, so a name of blanks is empty.
pub(crate) fn name_ok(v: &str, max: usize) -> bool {
    let n = v.trim().chars().count();
    n > 0 && n <= max
}

/// The shape of a BCP 47 tag, not its registry: enough to keep junk out of the setting.
pub(crate) fn locale_ok(v: &str) -> bool {
    (2..=35).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_counted_in_characters() {
        for (name, max, ok) in [
            ("Clinic", 200, true),
            ("", 200, false),
            ("   ", 200, false),
            ("  a  ", 1, true),
            ("ab", 1, false),
            ("äöü", 3, true),
            ("äöüß", 3, false),
        ] {
            assert_eq!(name_ok(name, max), ok, "{name:?} within {max}");
        }
    }

    #[test]
    fn locales_are_short_ascii_tags() {
        for (tag, ok) in [
            ("en", true),
            ("de-DE", true),
            ("zh-Hant-TW", true),
            ("e", false),
            ("de_DE", false),
            ("fr FR", false),
            (&"a".repeat(36), false),
        ] {
            assert_eq!(locale_ok(tag), ok, "{tag:?}");
        }
    }
}
