//! An order whose stock hold expired before it was paid is cancelled (its items are back on
//! sale); a paid one is not, and a hold for an order never stored is nothing to orders.

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
use uuid::Uuid;

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
    let pending = Order::place(Uuid::now_v7(), total);
    let mut paid = Order::place(Uuid::now_v7(), total);
    paid.status = OrderStatus::Paid;
    let mut tx = t.db.begin().await.unwrap();
    store::insert_all(&mut tx, [&pending, &paid]).await.unwrap();
    tx.commit().await.unwrap();

    let handler = Inboxed::new(
        kassa_orders::NAME,
        t.db.clone(),
        PaymentOutcomes { db: t.db.clone() },
    );
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

kassa_platform::on_both_databases!(an_expired_hold_cancels_an_unpaid_order);
