//! The nine kinds of health record, each a declaration over [`shared::clinical::Kind`].

pub mod allergies;
pub mod conditions;
pub mod family_history;
pub mod immunizations;
pub mod lab_reports;
pub mod medications;
pub mod radiology;
pub mod surgical;
pub mod vitals;

use shared::clinical::Kind;

/// Every kind, in the order a summary lists them.
pub static ALL: [&Kind; 9] = [
    &conditions::KIND,
    &allergies::KIND,
    &medications::KIND,
    &immunizations::KIND,
    &vitals::KIND,
    &lab_reports::KIND,
    &radiology::KIND,
    &surgical::KIND,
    &family_history::KIND,
];

/// The kind a path names; anything else is 404.
pub fn by_slug(slug: &str) -> Result<&'static Kind, shared::ApiError> {
    ALL.iter()
        .find(|k| k.slug == slug)
        .copied()
        .ok_or(shared::ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_once_and_declare_their_coded_fields() {
        let mut slugs: Vec<_> = ALL.iter().map(|k| k.slug).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ALL.len());
        for k in ALL {
            for (path, _) in k.codes {
                let top = path.split("[].").next().unwrap_or(path);
                assert!(
                    k.fields.contains(&top),
                    "{} codes undeclared {path}",
                    k.slug
                );
            }
            assert!(!k.event.contains('-'), "{}", k.slug);
        }
    }
}
