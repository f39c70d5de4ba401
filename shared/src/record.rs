//! The one generic record abstraction: an item in its clinic's partition, identified by a sort
//! key, changed only under its optimistic version. A record kind implements [`Record`] (most
//! through [`record!`]); reads by key, new-item puts and versioned updates then come for free.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use crate::{
    ApiError,
    db::{Item, Table, VersionedUpdate, n, s},
    ids::ClinicId,
    keys,
};

/// A tenant record: one item in its clinic's partition, changed under its version.
pub trait Record: Sized {
    fn parse(item: &Item) -> Result<Self, ApiError>;
    /// Its clinic, sort key and version.
    fn key(&self) -> (&ClinicId, String, i64);
    /// Its id attribute and value, and when it was created and last updated.
    fn identity(&self) -> (&'static str, &str, i64, i64);

    /// A put of this record as a new item (only if its key is free) with its keys, `entity`,
    /// ids, version and times; the caller adds the rest of its attributes.
    fn new_put(
        &self,
        table: &Table,
        entity: &str,
    ) -> aws_sdk_dynamodb::types::builders::PutBuilder {
        let (clinic, sk, version) = self.key();
        let (id_attr, id, created, updated) = self.identity();
        Put::builder()
            .table_name(&table.name)
            .item(keys::PK, s(keys::clinic_pk(clinic)))
            .item(keys::SK, s(sk))
            .item(keys::ENTITY, s(entity))
            .item(id_attr, s(id))
            .item("clinicId", s(clinic.as_str()))
            .item("version", n(version))
            .item("createdAt", n(created))
            .item("updatedAt", n(updated))
            .condition_expression("attribute_not_exists(pk)")
    }

    /// A versioned update of this record (fails its condition if the version moved).
    fn update(
        &self,
        table: &Table,
        u: VersionedUpdate,
        now: i64,
    ) -> Result<TransactWriteItem, ApiError> {
        let (clinic, sk, version) = self.key();
        u.build(table, keys::clinic_pk(clinic), sk, version, now)
    }
}

/// One record by sort key (strongly consistent).
pub async fn get<R: Record>(
    table: &Table,
    clinic: &ClinicId,
    sk: String,
) -> Result<Option<R>, ApiError> {
    table
        .get(keys::clinic_pk(clinic), sk)
        .await?
        .map(|i| R::parse(&i))
        .transpose()
}

/// One page of records from an index partition (see [`crate::db::index_page`]): `limit` from
/// the query string (1-100, default 50), the cursor opened and the next one sealed for the
/// clinic and `query` (the list and its filters), so a cursor continues only what it was made
/// for. Reads one page whatever the partition's size.
pub async fn page<R: Record>(
    table: &Table,
    cursors: &crate::db::CursorCodec,
    clinic: &ClinicId,
    query: &str,
    q: crate::db::IndexQuery<'_>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<R>, Option<String>), ApiError> {
    let limit = crate::db::page_limit(limit)?;
    let start = cursor
        .map(|c| cursors.open(clinic.as_str(), query, c))
        .transpose()?;
    let (items, last) = crate::db::index_page(table, q, limit, start).await?;
    let items = items.iter().map(R::parse).collect::<Result<_, _>>()?;
    let next = last.map(|k| cursors.seal(clinic.as_str(), query, &k));
    Ok((items, next))
}

/// Implements [`Record`] for a type with `id`, `clinic`, `version`, `created_at` and
/// `updated_at` fields and a `from_item` parser: `record!(PlanRecord, keys::plan_sk, "planId")`.
#[macro_export]
macro_rules! record {
    ($t:ty, $sk:path, $id_attr:literal) => {
        impl $crate::record::Record for $t {
            fn parse(item: &$crate::db::Item) -> Result<Self, $crate::ApiError> {
                Self::from_item(item)
            }
            fn key(&self) -> (&$crate::ids::ClinicId, String, i64) {
                (&self.clinic, $sk(&self.id), self.version)
            }
            fn identity(&self) -> (&'static str, &str, i64, i64) {
                ($id_attr, self.id.as_str(), self.created_at, self.updated_at)
            }
        }
    };
}
