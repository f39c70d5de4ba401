//! Tamper evidence for the audit trail. Each day (UTC) of a clinic's records is sealed, once
//! the day is over, into a digest: a hash chain over the day's records in key order, seeded
//! with the previous day's root, signed with an asymmetric KMS key that only the sealing job
//! may sign with. [`verify`] recomputes every sealed day and checks the chain and the
//! signatures, so a changed, removed or inserted record, or a removed digest, shows.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::{
    primitives::Blob,
    types::{MessageType, SigningAlgorithmSpec},
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use jiff::{ToSpan, civil::Date};
use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::{
    ApiError,
    db::{Item, Table, fault, get_opt_n, get_opt_s, n, s},
    ids::ClinicId,
    keys,
};

/// The job's name on its work queue.
pub const JOB: &str = shared::audit::SEAL_JOB;
/// At most this many days are sealed for one clinic in one run (a backlog catches up daily).
const MAX_DAYS: usize = 31;
const ALGORITHM: SigningAlgorithmSpec = SigningAlgorithmSpec::EcdsaSha256;

/// What sealing needs besides the platform: the signing key.
#[derive(Debug, Clone)]
pub struct Signer {
    pub kms: aws_sdk_kms::Client,
    pub key_id: String,
}

/// One record's canonical bytes: every attribute, sorted by name, with its type.
pub fn canonical(item: &Item) -> Vec<u8> {
    fn value(v: &AttributeValue) -> serde_json::Value {
        match v {
            AttributeValue::S(s) => serde_json::json!(["S", s]),
            AttributeValue::N(n) => serde_json::json!(["N", n]),
            AttributeValue::Bool(b) => serde_json::json!(["BOOL", b]),
            AttributeValue::L(l) => {
                serde_json::json!(["L", l.iter().map(value).collect::<Vec<_>>()])
            }
            AttributeValue::M(m) => {
                let sorted: BTreeMap<_, _> = m.iter().map(|(k, v)| (k, value(v))).collect();
                serde_json::json!(["M", sorted])
            }
            other => serde_json::json!(["?", format!("{other:?}")]),
        }
    }
    let sorted: BTreeMap<_, _> = item.iter().map(|(k, v)| (k, value(v))).collect();
    serde_json::to_vec(&sorted).unwrap_or_default()
}

/// The chain over `records` from `seed`: h = SHA-256(h || SHA-256(record)).
pub fn chain(seed: [u8; 32], records: &[Item]) -> [u8; 32] {
    records.iter().fold(seed, |h, r| {
        let leaf = Sha256::digest(canonical(r));
        let mut next = Sha256::new();
        next.update(h);
        next.update(leaf);
        next.finalize().into()
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A sealed day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayDigest {
    pub clinic_id: String,
    pub day: String,
    pub count: i64,
    pub root: String,
    pub previous: String,
}

impl DayDigest {
    /// The bytes the signature is over.
    fn message(&self) -> Vec<u8> {
        format!(
            "clinic-audit-digest|v1|{}|{}|{}|{}|{}",
            self.clinic_id, self.day, self.count, self.root, self.previous
        )
        .into_bytes()
    }

    fn from_item(i: &Item) -> Option<(Self, Vec<u8>)> {
        Some((
            Self {
                clinic_id: get_opt_s(i, "clinicId")?.to_string(),
                day: get_opt_s(i, "day")?.to_string(),
                count: get_opt_n(i, "count")?,
                root: get_opt_s(i, "root")?.to_string(),
                previous: get_opt_s(i, "previous")?.to_string(),
            },
            B64.decode(get_opt_s(i, "signature")?).ok()?,
        ))
    }
}

fn digest_pk(clinic: &ClinicId) -> String {
    format!("AUDITDIGEST#{clinic}")
}

fn day_ms(day: Date) -> Result<(i64, i64), ApiError> {
    let start = day
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_err(ApiError::internal)?
        .timestamp()
        .as_millisecond();
    Ok((start, start + 86_400_000 - 1))
}

/// Every item of a query, all pages, in key order.
async fn query_all(
    table: &Table,
    pk: String,
    range: Option<(String, String)>,
) -> Result<Vec<Item>, ApiError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let mut q = table
            .client
            .query()
            .table_name(&table.name)
            .expression_attribute_values(":p", s(&pk))
            .consistent_read(true)
            .set_exclusive_start_key(start);
        q = match &range {
            Some((from, to)) => q
                .key_condition_expression("pk = :p AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to)),
            None => q.key_condition_expression("pk = :p"),
        };
        let page = q.send().await.map_err(fault)?;
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    Ok(out)
}

/// Every record of one clinic's day, in key order.
pub async fn day_records(
    table: &Table,
    clinic: &ClinicId,
    day: Date,
) -> Result<Vec<Item>, ApiError> {
    let (from, to) = day_ms(day)?;
    query_all(
        table,
        keys::audit_pk(clinic),
        Some((format!("{from:013}"), format!("{to:013}~"))),
    )
    .await
}

/// Every digest of the clinic, oldest first, with its signature.
async fn digests(table: &Table, clinic: &ClinicId) -> Result<Vec<(DayDigest, Vec<u8>)>, ApiError> {
    query_all(table, digest_pk(clinic), None)
        .await?
        .iter()
        .map(|i| {
            DayDigest::from_item(i).ok_or_else(|| ApiError::internal("a malformed audit digest"))
        })
        .collect()
}

/// The day of the clinic's first audit record, if it has any.
async fn first_day(table: &Table, clinic: &ClinicId) -> Result<Option<Date>, ApiError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", s(keys::audit_pk(clinic)))
        .limit(1)
        .send()
        .await
        .map_err(fault)?;
    Ok(out
        .items()
        .first()
        .and_then(|i| get_opt_n(i, "at"))
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date()))
}

/// Seals every finished day of the clinic not sealed yet (up to [`MAX_DAYS`]), each chained to
/// the one before; answers the days sealed.
pub async fn seal_clinic(
    table: &Table,
    signer: &Signer,
    clinic: &ClinicId,
    today: Date,
) -> Result<Vec<DayDigest>, ApiError> {
    let sealed = digests(table, clinic).await?;
    let (mut day, mut previous) = match sealed.last() {
        Some((d, _)) => (
            d.day
                .parse::<Date>()
                .map_err(ApiError::internal)?
                .checked_add(1.day())
                .map_err(ApiError::internal)?,
            d.root.clone(),
        ),
        None => match first_day(table, clinic).await? {
            Some(d) => (d, hex(&[0u8; 32])),
            None => return Ok(Vec::new()),
        },
    };
    let mut done = Vec::new();
    while day < today && done.len() < MAX_DAYS {
        let records = day_records(table, clinic, day).await?;
        let seed = unhex(&previous).ok_or_else(|| ApiError::internal("a malformed digest root"))?;
        let digest = DayDigest {
            clinic_id: clinic.to_string(),
            day: day.to_string(),
            count: records.len() as i64,
            root: hex(&chain(seed, &records)),
            previous: previous.clone(),
        };
        let signed = signer
            .kms
            .sign()
            .key_id(&signer.key_id)
            .message(Blob::new(digest.message()))
            .message_type(MessageType::Raw)
            .signing_algorithm(ALGORITHM)
            .send()
            .await
            .map_err(|e| {
                ApiError::internal(aws_sdk_kms::error::DisplayErrorContext(e).to_string())
            })?;
        let signature = signed
            .signature()
            .ok_or_else(|| ApiError::internal("KMS returned no signature"))?;
        table
            .client
            .put_item()
            .table_name(&table.name)
            .item(keys::PK, s(digest_pk(clinic)))
            .item(keys::SK, s(&digest.day))
            .item(keys::ENTITY, s("AUDIT_DIGEST"))
            .item("clinicId", s(&digest.clinic_id))
            .item("day", s(&digest.day))
            .item("count", n(digest.count))
            .item("root", s(&digest.root))
            .item("previous", s(&digest.previous))
            .item("signature", s(B64.encode(signature.as_ref())))
            .item("keyId", s(&signer.key_id))
            .item("algorithm", s(ALGORITHM.as_str()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(fault)?;
        previous = digest.root.clone();
        day = day.checked_add(1.day()).map_err(ApiError::internal)?;
        done.push(digest);
    }
    Ok(done)
}

/// What verification found wrong with one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub day: String,
    pub problem: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub days_sealed: usize,
    pub records_sealed: i64,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Recomputes every sealed day of the clinic and checks its count, its root, its link to the
/// day before and its signature.
pub async fn verify(table: &Table, signer: &Signer, clinic: &ClinicId) -> Result<Report, ApiError> {
    let mut report = Report::default();
    let mut expected_previous = hex(&[0u8; 32]);
    let mut expected_day: Option<Date> = None;
    for (d, signature) in digests(table, clinic).await? {
        let mut problem = |p: String| {
            report.findings.push(Finding {
                day: d.day.clone(),
                problem: p,
            })
        };
        let day: Date = d.day.parse().map_err(ApiError::internal)?;
        if expected_day.is_some_and(|e| e != day) {
            problem("the digest of the day before is missing".into());
        }
        if d.previous != expected_previous {
            problem("the digest does not follow the one before it".into());
        }
        let valid = signer
            .kms
            .verify()
            .key_id(&signer.key_id)
            .message(Blob::new(d.message()))
            .message_type(MessageType::Raw)
            .signature(Blob::new(signature))
            .signing_algorithm(ALGORITHM)
            .send()
            .await
            .map(|o| o.signature_valid())
            .unwrap_or(false);
        if !valid {
            problem("the digest's signature does not verify".into());
        }
        let records = day_records(table, clinic, day).await?;
        let found = records.len() as i64;
        let seed = unhex(&d.previous).unwrap_or([0u8; 32]);
        if found < d.count {
            problem(format!(
                "{} sealed records, {found} found: a record was removed",
                d.count
            ));
        } else if found > d.count {
            problem(format!(
                "{} sealed records, {found} found: a record was inserted",
                d.count
            ));
        } else if hex(&chain(seed, &records)) != d.root {
            problem("the records differ from those sealed: a record was changed".into());
        }
        report.days_sealed += 1;
        report.records_sealed += d.count;
        expected_previous = d.root;
        expected_day = day.checked_add(1.day()).ok();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, action: &str) -> Item {
        Item::from([
            ("auditId".to_string(), s(id)),
            ("action".to_string(), s(action)),
            ("at".to_string(), n(1)),
            (
                "resourceIds".to_string(),
                AttributeValue::L(vec![s("a"), s("b")]),
            ),
        ])
    }

    #[test]
    fn the_chain_changes_with_any_record_its_order_or_its_seed() {
        let a = [record("1", "read"), record("2", "create")];
        let root = chain([0; 32], &a);
        assert_eq!(root, chain([0; 32], &a.clone()));
        assert_ne!(root, chain([1; 32], &a));
        assert_ne!(root, chain([0; 32], &[a[1].clone(), a[0].clone()]));
        assert_ne!(
            root,
            chain([0; 32], &[record("1", "read"), record("2", "update")])
        );
        assert_ne!(root, chain([0; 32], &a[..1]));
        let mut reordered_list = a.clone();
        reordered_list[0].insert(
            "resourceIds".into(),
            AttributeValue::L(vec![s("b"), s("a")]),
        );
        assert_ne!(root, chain([0; 32], &reordered_list));
        assert_eq!(unhex(&hex(&root)), Some(root));
    }
}
