//! An order whose stock hold expired before it was paid is cancelled (its items are back on
//! sale); a paid one is not, and a hold for an order never stored is nothing to orders. A
//! product changed in the catalog has its cached price forgotten.

use kassa_contracts::{
    Currency, Envelope, EventContext, Money,
    events::{Event, ReservationExpired},
};
use kassa_orders::{
    domain::{Order, OrderStatus},
    events::PaymentOutcomes,
    store,
};
use kassa_platform::{
    bus::Handler,
    consumer::Inboxed,
    migrate,
    testing::{Throwaway, outbox_events},
};
use std::{sync::Arc, time::Duration};

use kassa_platform::cache::{Cache, MemoryCache};
use uuid::Uuid;

fn handler(t: &Throwaway, prices: Arc<dyn Cache>) -> Inboxed<PaymentOutcomes> {
    Inboxed::new(
        kassa_orders::NAME,
        t.db.clone(),
        PaymentOutcomes {
            db: t.db.clone(),
            prices,
        },
    )
}

fn expired(order_id: Uuid) -> Envelope {
    Envelope::new(
        "inventory",
        order_id,
        &ReservationExpired { order_id },
        &EventContext::new("test"),
    )
}

async fn an_expired_hold_cancels_an_unpaid_order(t: Throwaway) {
    migrate::run(&t.db, &[&migrate::PLATFORM, &kassa_orders::MIGRATIONS])
        .await
        .unwrap();
    let total = Money::from_minor(250, Currency::USD).unwrap();
    let mut pending = Order::place(Uuid::now_v7(), total);
    let mut paid = Order::place(Uuid::now_v7(), total);
    paid.status = OrderStatus::Paid;
    let mut tx = t.db.begin().await.unwrap();
    let numbers = store::next_numbers(&mut tx, 2).await.unwrap();
    (pending.number, paid.number) = (numbers[0], numbers[1]);
    store::insert_all(&mut tx, [&pending, &paid]).await.unwrap();
    tx.commit().await.unwrap();

    let handler = handler(&t, Arc::new(MemoryCache::new(100)));
    for order_id in [pending.id, paid.id, Uuid::now_v7()] {
        handler.handle(&expired(order_id)).await.unwrap();
    }
    let read = |id| {
        let db = t.db.clone();
        async move { store::find(&db, id).await.unwrap().unwrap() }
    };
    let cancelled = read(pending.id).await;
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        cancelled.failure_reason.as_deref(),
        Some("reservation_expired")
    );
    assert_eq!(read(paid.id).await.status, OrderStatus::Paid);
    // Payments hears of the cancellation (and cancels the payment, or refunds it).
    let events = outbox_events(&t.db).await;
    assert_eq!(
        events,
        [(
            "order.cancelled".to_owned(),
            serde_json::json!({"orderId": pending.id})
        )]
    );
    assert_eq!(ReservationExpired::TYPE, "reservation.expired");
    t.drop_now().await;
}

/// `product.updated` (a new price, say) and `product.deleted` clear what orders cached of the
/// product, so the next order is priced by the catalog again; nothing else changes.
async fn a_changed_product_is_priced_afresh(t: Throwaway) {
    migrate::run(&t.db, &[&migrate::PLATFORM, &kassa_orders::MIGRATIONS])
        .await
        .unwrap();
    let prices: Arc<dyn Cache> = Arc::new(MemoryCache::new(100));
    let handler = handler(&t, prices.clone());
    let (changed, deleted, untouched) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for id in [changed, deleted, untouched] {
        let key = kassa_orders::items::price_key(id);
        prices
            .set(&key, b"{}".to_vec(), Duration::from_secs(300))
            .await;
    }
    for (id, change) in [(changed, "updated"), (deleted, "deleted")] {
        let event = Envelope::record(
            "catalog",
            id,
            format!("product.{change}"),
            serde_json::json!({"id": id, "name": "Tea", "price": 2.5}),
            &EventContext::new("test"),
        );
        handler.handle(&event).await.unwrap();
    }
    let cached = async |id| prices.get(&kassa_orders::items::price_key(id)).await;
    assert_eq!(cached(changed).await, None);
    assert_eq!(cached(deleted).await, None);
    assert!(cached(untouched).await.is_some());
    assert!(outbox_events(&t.db).await.is_empty());
    t.drop_now().await;
}

kassa_platform::on_both_databases!(
    an_expired_hold_cancels_an_unpaid_order,
    a_changed_product_is_priced_afresh
);
