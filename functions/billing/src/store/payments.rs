//! Payments and refunds: the record and its lists, and the provider-reference lookup.

use super::*;

shared::record!(PaymentRecord, keys::payment_sk, "paymentId");

/// Which payment list a page is cut from.
#[derive(Debug, Clone, Copy)]
pub enum PaymentList<'a> {
    Clinic,
    Patient(&'a UserId),
    Invoice(&'a InvoiceId),
}

impl PaymentList<'_> {
    /// The index query of this list in `clinic`, narrowed to a patient and a status.
    pub fn query(
        self,
        clinic: &ClinicId,
        patient: Option<&UserId>,
        status: Option<&'static str>,
    ) -> shared::db::IndexQuery<'static> {
        let partition = match self {
            Self::Clinic => (keys::GSI1, keys::GSI1PK, keys::clinic_payments_pk(clinic)),
            Self::Patient(p) => (
                keys::GSI2,
                keys::GSI2PK,
                keys::patient_payments_pk(clinic, p),
            ),
            Self::Invoice(i) => (
                keys::GSI3,
                keys::GSI3PK,
                keys::invoice_payments_pk(clinic, i),
            ),
        };
        list_query(partition, patient, status)
    }
}

#[derive(Debug, Clone)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub clinic: ClinicId,
    pub invoice: InvoiceId,
    pub patient: UserId,
    pub location: Option<LocationId>,
    pub method: Method,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub status: PaymentStatus,
    pub amount: i64,
    pub refunded: i64,
    pub currency: String,
    /// For a refund: the payment it gives money back from.
    pub refund_of: Option<PaymentId>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

impl PaymentRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            id: PaymentId::parse(get_s(i, "paymentId")?).ok_or_else(|| bad("paymentId"))?,
            clinic: ClinicId::parse(get_s(i, "clinicId")?).ok_or_else(|| bad("clinicId"))?,
            invoice: InvoiceId::parse(get_s(i, "invoiceId")?).ok_or_else(|| bad("invoiceId"))?,
            patient: UserId::parse(get_s(i, "patientId")?).ok_or_else(|| bad("patientId"))?,
            location: get_opt_s(i, "locationId").and_then(LocationId::parse),
            method: Method::parse(get_s(i, "method")?).ok_or_else(|| bad("method"))?,
            provider: get_s(i, "provider")?.to_string(),
            provider_ref: get_opt_s(i, "providerRef").map(str::to_string),
            status: PaymentStatus::parse(get_s(i, "status")?).ok_or_else(|| bad("status"))?,
            amount: get_n(i, "amount")?,
            refunded: get_opt_n(i, "refunded").unwrap_or(0),
            currency: get_s(i, "currency")?.to_string(),
            refund_of: get_opt_s(i, "refundOf").and_then(PaymentId::parse),
            version: get_n(i, "version")?,
            created_at: get_n(i, "createdAt")?,
            updated_at: get_n(i, "updatedAt")?,
            completed_at: get_opt_n(i, "completedAt"),
        })
    }

    /// Where the payment sorts in its lists: newest first, the id making the key unique.
    pub fn list_key(&self) -> String {
        format!("{}{}", shared::db::newest_first(self.created_at), self.id)
    }

    pub fn put(&self, table: &Table) -> Result<TransactWriteItem, ApiError> {
        let key = self.list_key();
        let entity = if self.refund_of.is_some() {
            "REFUND"
        } else {
            "PAYMENT"
        };
        let mut p = self
            .new_put(table, entity)
            .item("invoiceId", s(self.invoice.as_str()))
            .item("patientId", s(self.patient.as_str()))
            .item("method", s(self.method.as_str()))
            .item("provider", s(&self.provider))
            .item("status", s(self.status.as_str()))
            .item("amount", n(self.amount))
            .item("refunded", n(self.refunded))
            .item("currency", s(&self.currency))
            // The lists: the clinic's, the patient's and the invoice's (data model A34c).
            .item(keys::GSI1PK, s(keys::clinic_payments_pk(&self.clinic)))
            .item(keys::GSI1SK, s(&key))
            .item(
                keys::GSI2PK,
                s(keys::patient_payments_pk(&self.clinic, &self.patient)),
            )
            .item(keys::GSI2SK, s(&key))
            .item(
                keys::GSI3PK,
                s(keys::invoice_payments_pk(&self.clinic, &self.invoice)),
            )
            .item(keys::GSI3SK, s(&key));
        if let Some(x) = &self.location {
            p = p.item("locationId", s(x.as_str()));
        }
        if let Some(x) = &self.provider_ref {
            p = p.item("providerRef", s(x));
        }
        if let Some(x) = &self.refund_of {
            p = p.item("refundOf", s(x.as_str()));
        }
        if let Some(x) = self.completed_at {
            p = p.item("completedAt", n(x));
        }
        tx_put(p)
    }
}

pub async fn get_payment(
    table: &Table,
    clinic: &ClinicId,
    id: &PaymentId,
) -> Result<Option<PaymentRecord>, ApiError> {
    get(table, clinic, keys::payment_sk(id)).await
}

/// The lookup from a provider's reference to the payment it settles.
pub fn provider_ref_put(
    table: &Table,
    provider: &str,
    reference: &str,
    p: &PaymentRecord,
) -> Result<TransactWriteItem, ApiError> {
    tx_put(
        Put::builder()
            .table_name(&table.name)
            .item(keys::PK, s(keys::provider_ref_pk(provider, reference)))
            .item(keys::SK, s(keys::PROVIDER_REF_SK))
            .item(keys::ENTITY, s("PROVIDER_REF"))
            .item("clinicId", s(p.clinic.as_str()))
            .item("paymentId", s(p.id.as_str()))
            .condition_expression("attribute_not_exists(pk)"),
    )
}

pub async fn resolve_provider_ref(
    table: &Table,
    provider: &str,
    reference: &str,
) -> Result<Option<(ClinicId, PaymentId)>, ApiError> {
    let Some(i) = table
        .get(
            keys::provider_ref_pk(provider, reference),
            keys::PROVIDER_REF_SK,
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(ClinicId::parse(get_s(&i, "clinicId")?).zip(PaymentId::parse(get_s(&i, "paymentId")?)))
}
