//! The code systems health records use, and the checks of their codes' formats (check
//! digits included where the system has them).

/// The code systems records use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSystem {
    Icd10,
    SnomedCt,
    Loinc,
    RxNorm,
    Cvx,
}

impl CodeSystem {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeSystem::Icd10 => "icd-10",
            CodeSystem::SnomedCt => "snomed-ct",
            CodeSystem::Loinc => "loinc",
            CodeSystem::RxNorm => "rxnorm",
            CodeSystem::Cvx => "cvx",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            CodeSystem::Icd10,
            CodeSystem::SnomedCt,
            CodeSystem::Loinc,
            CodeSystem::RxNorm,
            CodeSystem::Cvx,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// The system's URI in FHIR.
    pub fn uri(self) -> &'static str {
        match self {
            CodeSystem::Icd10 => "http://hl7.org/fhir/sid/icd-10",
            CodeSystem::SnomedCt => "http://snomed.info/sct",
            CodeSystem::Loinc => "http://loinc.org",
            CodeSystem::RxNorm => "http://www.nlm.nih.gov/research/umls/rxnorm",
            CodeSystem::Cvx => "http://hl7.org/fhir/sid/cvx",
        }
    }

    /// Whether `code` is well-formed in this system (check digits included where it has them).
    pub fn accepts(self, code: &str) -> bool {
        match self {
            CodeSystem::Icd10 => icd10_ok(code),
            CodeSystem::SnomedCt => snomed_ok(code),
            CodeSystem::Loinc => loinc_ok(code),
            CodeSystem::RxNorm => {
                (1..=8).contains(&code.len())
                    && !code.starts_with('0')
                    && code.bytes().all(|b| b.is_ascii_digit())
            }
            CodeSystem::Cvx => {
                (1..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit())
            }
        }
    }
}

/// ICD-10 (WHO and -CM): a letter, two digits or a digit and a letter, then optionally a dot
/// and one to four letters or digits (`E11.9`, `J45.909`, `U07.1`).
pub fn icd10_ok(code: &str) -> bool {
    let b = code.as_bytes();
    if b.len() < 3 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_digit() {
        return false;
    }
    if !(b[2].is_ascii_digit() || b[2].is_ascii_uppercase()) {
        return false;
    }
    match &code[3..] {
        "" => true,
        rest => rest.strip_prefix('.').is_some_and(|r| {
            (1..=4).contains(&r.len())
                && r.bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        }),
    }
}

/// SNOMED CT concept ids: 6 to 18 digits, a concept partition, and a Verhoeff check digit.
pub fn snomed_ok(code: &str) -> bool {
    let n = code.len();
    if !(6..=18).contains(&n) || code.starts_with('0') || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    // The partition: the two digits before the check digit (00 or 10: a concept).
    let partition = &code[n - 3..n - 1];
    matches!(partition, "00" | "10") && verhoeff_ok(code)
}

fn verhoeff_ok(digits: &str) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut c = 0u8;
    for (i, b) in digits.bytes().rev().enumerate() {
        c = D[c as usize][P[i % 8][(b - b'0') as usize] as usize];
    }
    c == 0
}

/// LOINC codes: up to seven digits, a dash and a mod-10 (Luhn) check digit (`8867-4`).
pub fn loinc_ok(code: &str) -> bool {
    let Some((num, check)) = code.split_once('-') else {
        return false;
    };
    if !(1..=7).contains(&num.len())
        || check.len() != 1
        || !num.bytes().chain(check.bytes()).all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let sum: u32 = num
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    u32::from(check.as_bytes()[0] - b'0') == (10 - sum % 10) % 10
}

/// UCUM unit syntax (case-sensitive symbols, annotations in braces): `mg/dL`, `10*3/uL`,
/// `mm[Hg]`, `%`. Checks the characters and length, not the unit's meaning.
pub fn ucum_ok(unit: &str) -> bool {
    (1..=40).contains(&unit.len())
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%./*[]{}()^'_-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icd10_codes_are_checked_in_shape() {
        for ok in ["E11.9", "J45.909", "U07.1", "I10", "C50.911", "S72.0"] {
            assert!(icd10_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "E1",
            "11.9",
            "e11.9",
            "E11.",
            "E11.12345",
            "E11-9",
            "EE1.9",
        ] {
            assert!(!icd10_ok(bad), "{bad}");
        }
    }

    #[test]
    fn snomed_ids_carry_a_concept_partition_and_a_verhoeff_digit() {
        // Diabetes mellitus, hypertensive disorder, myocardial infarction, penicillin allergy.
        for ok in ["73211009", "38341003", "22298006", "91936005"] {
            assert!(snomed_ok(ok), "{ok}");
        }
        for bad in [
            "73211008",
            "7321100",
            "073211009",
            "12345",
            "73211019x",
            "38341013",
        ] {
            assert!(!snomed_ok(bad), "{bad}");
        }
    }

    #[test]
    fn loinc_codes_carry_their_mod_10_check_digit() {
        for ok in [
            "8867-4", "8480-6", "8462-4", "2339-0", "29463-7", "718-7", "59408-5",
        ] {
            assert!(loinc_ok(ok), "{ok}");
        }
        for bad in [
            "8867-5",
            "8867",
            "-4",
            "88674",
            "8867-44",
            "12345678-1",
            "88a7-4",
        ] {
            assert!(!loinc_ok(bad), "{bad}");
        }
    }

    #[test]
    fn other_systems_and_units() {
        assert!(CodeSystem::RxNorm.accepts("197361"));
        assert!(!CodeSystem::RxNorm.accepts("0197361"));
        assert!(!CodeSystem::RxNorm.accepts("123456789"));
        assert!(CodeSystem::Cvx.accepts("08"));
        assert!(CodeSystem::Cvx.accepts("207"));
        assert!(!CodeSystem::Cvx.accepts("2071"));
        for ok in ["mg/dL", "10*3/uL", "mm[Hg]", "%", "kg/m2", "{cells}/uL"] {
            assert!(ucum_ok(ok), "{ok}");
        }
        for bad in ["", "mg dL", "mg/dL;", "x".repeat(41).as_str()] {
            assert!(!ucum_ok(bad), "{bad}");
        }
        assert_eq!(CodeSystem::parse("loinc"), Some(CodeSystem::Loinc));
        assert_eq!(CodeSystem::parse("LOINC"), None);
    }
}
