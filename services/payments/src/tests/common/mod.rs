//! What the payments tests share.

use std::time::Duration;

use kassa_contracts::{Currency, EventContext, Money};
use kassa_payments::{
    domain::{Payment, PaymentStatus},
    store,
};
use kassa_platform::db::Db;
use uuid::Uuid;

/// A new PROCESSING payment of 12.50 USD, stored, as stored.
pub async fn processing_payment(db: &Db) -> Payment {
    let payment = Payment::for_order(
        Uuid::now_v7(),
        Uuid::now_v7(),
        Money::from_minor(1_250, Currency::USD).unwrap(),
        PaymentStatus::Processing,
    );
    let mut tx = db.begin().await.unwrap();
    store::insert_all(
        &mut tx,
        &[(payment.clone(), EventContext::new("test"))],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    store::find(db, payment.id).await.unwrap().unwrap()
}
