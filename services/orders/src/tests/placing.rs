//! Group commit of new orders against real storage (an SQLite file).

use std::time::Duration;

use kassa_contracts::{Currency, Envelope, EventContext, Money, events::OrderCreated};
use kassa_orders::{domain::Order, placing::Placer, store};
use kassa_platform::{
    db::{Db, DbLocation},
    migrate, outbox,
};
use uuid::Uuid;

async fn db() -> Db {
    let path = std::env::temp_dir().join(format!("kassa-orders-{}.db", Uuid::now_v7()));
    let db = Db::connect(&DbLocation::Sqlite { path }).await.unwrap();
    migrate::run(&db, &[&migrate::PLATFORM, &kassa_orders::MIGRATIONS])
        .await
        .unwrap();
    db
}

fn new_order(cents: i64) -> (Order, Envelope) {
    let order = Order::place(
        Uuid::now_v7(),
        Money::from_minor(cents, Currency::USD).unwrap(),
    );
    let event = Envelope::new(
        "orders",
        order.id,
        &OrderCreated {
            order_id: order.id,
            user_id: order.user_id,
            amount_minor: cents,
            currency: "USD".into(),
            payment_method: None,
            item: None,
            lines: Vec::new(),
            order_number: None,
        },
        &EventContext::new("test"),
    );
    (order, event)
}

#[tokio::test]
async fn orders_placed_together_are_each_stored_with_their_event() {
    let db = db().await;
    let (placer, writer) = Placer::start(db.clone());
    tokio::spawn(writer);
    let mut placing = Vec::new();
    for cents in 1..=150 {
        let (order, event) = new_order(cents * 100);
        let placer = placer.clone();
        placing.push((
            order.id,
            tokio::spawn(async move { placer.place(order, event).await }),
        ));
    }
    for (id, task) in placing {
        task.await.unwrap().unwrap();
        assert!(store::find(&db, id).await.unwrap().is_some());
    }
    assert_eq!(outbox::pending(&db).await.unwrap(), 150);
}

#[tokio::test]
async fn a_request_that_gives_up_while_queued_leaves_no_order() {
    let db = db().await;
    let (placer, writer) = Placer::start(db.clone());
    // Queued while the writer is not running yet, then abandoned (a client that went away).
    let (gone, gone_event) = new_order(500);
    let abandoned = tokio::time::timeout(Duration::ZERO, placer.place(gone.clone(), gone_event));
    assert!(abandoned.await.is_err(), "still waiting for its commit");
    tokio::spawn(writer);
    let (kept, kept_event) = new_order(700);
    placer.place(kept.clone(), kept_event).await.unwrap();
    assert!(store::find(&db, kept.id).await.unwrap().is_some());
    assert!(store::find(&db, gone.id).await.unwrap().is_none());
    assert_eq!(outbox::pending(&db).await.unwrap(), 1);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_stores_nothing_for_it() {
    let db = db().await;
    // The writer is not running yet, so the queue of two fills up.
    let (placer, writer) = Placer::with_capacity(db.clone(), 2);
    let mut waiting = Vec::new();
    for cents in [100, 200] {
        let (order, event) = new_order(cents);
        let placer = placer.clone();
        waiting.push((
            order.id,
            tokio::spawn(async move { placer.place(order, event).await }),
        ));
    }
    // Let both reach the queue.
    while placer.queued() < 2 {
        tokio::task::yield_now().await;
    }
    let (refused, refused_event) = new_order(300);
    let e = placer
        .place(refused.clone(), refused_event)
        .await
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 503);
    assert_eq!(e.retry_after, Some(1));
    tokio::spawn(writer);
    for (id, task) in waiting {
        task.await.unwrap().unwrap();
        assert!(store::find(&db, id).await.unwrap().is_some());
    }
    assert!(store::find(&db, refused.id).await.unwrap().is_none());
    assert_eq!(outbox::pending(&db).await.unwrap(), 2);
}
