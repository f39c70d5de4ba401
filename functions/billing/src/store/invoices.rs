//! Invoices: the record and its lists, and the per-clinic, per-year number counter.

use super::*;

shared::record!(InvoiceRecord, keys::invoice_sk, "invoiceId");

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredLine {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

impl From<&Line> for StoredLine {
    fn from(l: &Line) -> Self {
        Self {
            description: l.description.clone(),
            quantity: l.quantity,
            unit_amount: l.unit_amount,
        }
    }
}

#[derive(Debug, Clone)]
pub struct InvoiceRecord {
    pub id: InvoiceId,
    pub clinic: ClinicId,
    /// `INV-<year>-<sequence>`; a DRAFT has none until it is finalized.
    pub number: Option<String>,
    pub patient: UserId,
    pub subscription: Option<SubscriptionId>,
    pub appointment: Option<AppointmentId>,
    pub location: Option<LocationId>,
    pub status: InvoiceStatus,
    pub currency: String,
    pub lines: Vec<StoredLine>,
    pub totals: Totals,
    pub amount_paid: i64,
    pub due_at: i64,
    pub issued_at: i64,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl InvoiceRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            id: InvoiceId::parse(get_s(i, "invoiceId")?).ok_or_else(|| bad("invoiceId"))?,
            clinic: ClinicId::parse(get_s(i, "clinicId")?).ok_or_else(|| bad("clinicId"))?,
            number: get_opt_s(i, "number").map(str::to_string),
            patient: UserId::parse(get_s(i, "patientId")?).ok_or_else(|| bad("patientId"))?,
            subscription: get_opt_s(i, "subscriptionId").and_then(SubscriptionId::parse),
            appointment: get_opt_s(i, "appointmentId").and_then(AppointmentId::parse),
            location: get_opt_s(i, "locationId").and_then(LocationId::parse),
            status: InvoiceStatus::parse(get_s(i, "status")?).ok_or_else(|| bad("status"))?,
            currency: get_s(i, "currency")?.to_string(),
            lines: json_attr(i, "lines")?,
            totals: Totals {
                subtotal: get_n(i, "subtotal")?,
                tax: get_n(i, "tax")?,
                discount: get_n(i, "discount")?,
                total: get_n(i, "total")?,
            },
            amount_paid: get_n(i, "amountPaid")?,
            due_at: get_n(i, "dueAt")?,
            issued_at: get_n(i, "issuedAt")?,
            paid_at: get_opt_n(i, "paidAt"),
            voided_at: get_opt_n(i, "voidedAt"),
            version: get_n(i, "version")?,
            created_at: get_n(i, "createdAt")?,
            updated_at: get_n(i, "updatedAt")?,
        })
    }

    /// Where the invoice sorts in its lists: drafts first (newest first), then issued invoices
    /// by number, highest first; the id makes the key unique.
    pub fn list_key(&self) -> String {
        match &self.number {
            None => format!("0{}{}", shared::db::newest_first(self.created_at), self.id),
            Some(number) => format!("1{}{}", descending(number), self.id),
        }
    }

    /// The list indexes the invoice is in: the clinic's (gsi1), its patient's (gsi2) and its
    /// subscription's (gsi3), each sorted by [`Self::list_key`].
    fn list_index(&self) -> Vec<(&'static str, String)> {
        let key = self.list_key();
        let mut out = vec![
            (keys::GSI1PK, keys::clinic_invoices_pk(&self.clinic)),
            (keys::GSI1SK, key.clone()),
            (
                keys::GSI2PK,
                keys::patient_invoices_pk(&self.clinic, &self.patient),
            ),
            (keys::GSI2SK, key.clone()),
        ];
        if let Some(sub) = &self.subscription {
            out.push((
                keys::GSI3PK,
                keys::subscription_invoices_pk(&self.clinic, sub),
            ));
            out.push((keys::GSI3SK, key));
        }
        out
    }

    /// Moves the invoice within its lists after a change of `list_key` (a draft numbered).
    pub fn reindex(&self, u: &mut shared::db::VersionedUpdate) {
        for (name, value) in self.list_index() {
            if name == keys::GSI1SK || name == keys::GSI2SK || name == keys::GSI3SK {
                u.set(name, s(value));
            }
        }
    }

    /// Its entry in the billing job's work list: while open, at its due date (when the job
    /// marks it overdue).
    pub fn due_key(&self) -> Option<(String, String)> {
        (self.status == InvoiceStatus::Open).then(|| {
            (
                keys::due_invoices_pk(&self.clinic),
                keys::due_sk(self.due_at, self.id.as_str()),
            )
        })
    }

    pub fn put(&self, table: &Table) -> Result<TransactWriteItem, ApiError> {
        let mut p = self
            .new_put(table, "INVOICE")
            .item("patientId", s(self.patient.as_str()))
            .item("status", s(self.status.as_str()))
            .item("currency", s(&self.currency))
            .item("lines", s(to_json(&self.lines)?))
            .item("subtotal", n(self.totals.subtotal))
            .item("tax", n(self.totals.tax))
            .item("discount", n(self.totals.discount))
            .item("total", n(self.totals.total))
            .item("amountPaid", n(self.amount_paid))
            .item("dueAt", n(self.due_at))
            .item("issuedAt", n(self.issued_at));
        if let Some(x) = &self.number {
            p = p.item("number", s(x));
        }
        if let Some(x) = &self.subscription {
            p = p.item("subscriptionId", s(x.as_str()));
        }
        if let Some(x) = &self.appointment {
            p = p.item("appointmentId", s(x.as_str()));
        }
        if let Some(x) = &self.location {
            p = p.item("locationId", s(x.as_str()));
        }
        for (name, value) in self.list_index() {
            p = p.item(name, s(value));
        }
        if let Some((pk, sk)) = self.due_key() {
            p = p.item(keys::GSI5PK, s(pk)).item(keys::GSI5SK, s(sk));
        }
        tx_put(p)
    }
}

/// A string that sorts in the reverse order of `number` (`INV-<year>-<sequence>`, fixed width):
/// every digit d becomes 9 - d.
fn descending(number: &str) -> String {
    number
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_digit(9 - d, 10).unwrap_or(c),
            None => c,
        })
        .collect()
}

/// Which invoice list a page is cut from.
#[derive(Debug, Clone, Copy)]
pub enum InvoiceList<'a> {
    Clinic,
    Patient(&'a UserId),
    Subscription(&'a SubscriptionId),
}

impl InvoiceList<'_> {
    /// The index query of this list in `clinic`, narrowed to a patient and a status.
    pub fn query(
        self,
        clinic: &ClinicId,
        patient: Option<&UserId>,
        status: Option<&'static str>,
    ) -> shared::db::IndexQuery<'static> {
        let partition = match self {
            Self::Clinic => (keys::GSI1, keys::GSI1PK, keys::clinic_invoices_pk(clinic)),
            Self::Patient(p) => (
                keys::GSI2,
                keys::GSI2PK,
                keys::patient_invoices_pk(clinic, p),
            ),
            Self::Subscription(x) => (
                keys::GSI3,
                keys::GSI3PK,
                keys::subscription_invoices_pk(clinic, x),
            ),
        };
        list_query(partition, patient, status)
    }
}

pub async fn get_invoice(
    table: &Table,
    clinic: &ClinicId,
    id: &InvoiceId,
) -> Result<Option<InvoiceRecord>, ApiError> {
    get(table, clinic, keys::invoice_sk(id)).await
}

/// The last invoice number a clinic issued in `year` (0 before the first).
pub async fn invoice_counter(table: &Table, clinic: &ClinicId, year: i16) -> Result<i64, ApiError> {
    Ok(table
        .get(keys::clinic_pk(clinic), keys::invoice_counter_sk(year))
        .await?
        .and_then(|i| get_opt_n(&i, "last"))
        .unwrap_or(0))
}

/// Moves the counter from `last` to `last + 1`, only if nobody moved it meanwhile. In the same
/// transaction as the invoice carrying number `last + 1`, this makes numbers gapless and unique.
pub fn invoice_counter_next(
    table: &Table,
    clinic: &ClinicId,
    year: i16,
    last: i64,
) -> Result<TransactWriteItem, ApiError> {
    let u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::clinic_pk(clinic)))
        .key(keys::SK, s(keys::invoice_counter_sk(year)))
        .update_expression("SET #last = :next, #entity = :entity")
        .expression_attribute_names("#last", "last")
        .expression_attribute_names("#entity", keys::ENTITY)
        .expression_attribute_values(":next", n(last + 1))
        .expression_attribute_values(":entity", s("INVOICE_COUNTER"));
    let u = if last == 0 {
        u.condition_expression("attribute_not_exists(#last)")
    } else {
        u.condition_expression("#last = :last")
            .expression_attribute_values(":last", n(last))
    };
    tx_update(u)
}
