//! The payments consumer against real storage (an SQLite file), fed order events directly, in
//! the orders and repetitions a broker may deliver them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use kassa_contracts::{
    Currency, Envelope, EventContext, Money,
    events::{OrderCancelled, OrderCreated},
};
use kassa_payments::{
    ProcessorSettings, RefundLoop, Refunds,
    domain::{ChargeOutcome, PaymentStatus},
    events::OrderEvents,
    processor,
    provider::{PaymentProvider, RefundError},
    store,
};
use kassa_platform::{
    bus::Handler,
    cache::MemoryCache,
    consumer::Inboxed,
    db::{Db, DbLocation},
    migrate, outbox, shutdown,
};
use uuid::Uuid;

/// Approves every charge (after `latency`) and counts what it was asked to do; refuses the
/// first `failing_refunds` refunds.
#[derive(Default)]
struct CountingProvider {
    latency: Duration,
    charges: AtomicU32,
    refunds: AtomicU32,
    failing_refunds: AtomicU32,
}

#[async_trait]
impl PaymentProvider for CountingProvider {
    async fn charge(&self, payment_id: Uuid, _amount: Money) -> ChargeOutcome {
        self.charges.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        ChargeOutcome::Approved {
            reference: format!("ref_{payment_id}"),
        }
    }

    async fn refund(&self, _payment_id: Uuid, _amount: Money) -> Result<(), RefundError> {
        let refusing = self
            .failing_refunds
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refusing {
            return Err(RefundError("provider unavailable (test)".into()));
        }
        self.refunds.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Rig {
    db: Db,
    handler: Inboxed<OrderEvents>,
    provider: Arc<CountingProvider>,
    _stop: shutdown::ShutdownTrigger,
}

async fn rig() -> Rig {
    rig_with(Duration::ZERO, Duration::from_secs(30)).await
}

async fn rig_with(latency: Duration, lease: Duration) -> Rig {
    rig_of(
        CountingProvider {
            latency,
            ..CountingProvider::default()
        },
        ProcessorSettings {
            lease,
            sweep_every: Duration::from_millis(50),
            ..ProcessorSettings::default()
        },
    )
    .await
}

/// A rig with this provider and these processor settings.
async fn rig_of(provider: CountingProvider, settings: ProcessorSettings) -> Rig {
    let path = std::env::temp_dir().join(format!("kassa-payments-{}.db", Uuid::new_v4()));
    let db = Db::connect(&DbLocation::Sqlite { path }).await.unwrap();
    migrate::run(&db, &[&migrate::PLATFORM, &kassa_payments::MIGRATIONS])
        .await
        .unwrap();
    let provider = Arc::new(provider);
    let cache = Arc::new(MemoryCache::new(100));
    let (trigger, stop) = shutdown::channel();
    let lease = settings.lease;
    let refunds = Refunds::default();
    let (processor, processor_loop) = processor::processor(
        db.clone(),
        provider.clone(),
        cache.clone(),
        refunds.clone(),
        settings,
    );
    tokio::spawn(processor_loop.run(stop.clone()));
    let refund_loop = RefundLoop {
        db: db.clone(),
        provider: provider.clone(),
        cache: cache.clone(),
        refunds: refunds.clone(),
        poll: Duration::from_millis(50),
    };
    tokio::spawn(refund_loop.run(stop));
    let events = OrderEvents {
        db: db.clone(),
        processor,
        refunds,
        cache,
        lease,
    };
    let handler = Inboxed::new("payments", db.clone(), events);
    Rig {
        db,
        handler,
        provider,
        _stop: trigger,
    }
}

fn created(order_id: Uuid) -> Envelope {
    let event = OrderCreated {
        order_id,
        user_id: Uuid::new_v4(),
        amount_minor: 1_250,
        currency: "USD".into(),
    };
    Envelope::new("orders", order_id, &event, &EventContext::new("test"))
}

fn cancelled(order_id: Uuid) -> Envelope {
    Envelope::new(
        "orders",
        order_id,
        &OrderCancelled { order_id },
        &EventContext::new("test"),
    )
}

impl Rig {
    async fn status(&self, order_id: Uuid) -> Option<PaymentStatus> {
        store::find_by_order(&self.db, order_id)
            .await
            .unwrap()
            .map(|p| p.status)
    }

    async fn settles_as(&self, order_id: Uuid, wanted: PaymentStatus) {
        for _ in 0..200 {
            if self.status(order_id).await == Some(wanted) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "payment of {order_id} is {:?}, not {wanted:?}",
            self.status(order_id).await
        );
    }

    /// Waits until no refund waits for the provider.
    async fn refunds_settle(&self) {
        for _ in 0..200 {
            if store::refunds_pending(&self.db).await.unwrap() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("refunds still pending");
    }

    async fn pending_events(&self) -> usize {
        outbox::pending(&self.db).await.unwrap() as usize
    }
}

#[tokio::test]
async fn a_repeated_order_created_charges_once() {
    let rig = rig().await;
    let order = Uuid::new_v4();
    let event = created(order);
    rig.handler.handle(&event).await.unwrap();
    rig.handler.handle(&event).await.unwrap();
    rig.settles_as(order, PaymentStatus::Approved).await;
    let payment = store::find_by_order(&rig.db, order).await.unwrap().unwrap();
    assert_eq!(
        payment.amount,
        Money::from_minor(1_250, Currency::USD).unwrap()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rig.provider.charges.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_cancellation_that_overtakes_its_order_prevents_the_charge() {
    let rig = rig().await;
    let order = Uuid::new_v4();
    rig.handler.handle(&cancelled(order)).await.unwrap();
    assert_eq!(rig.status(order).await, None, "nothing to cancel yet");
    rig.handler.handle(&created(order)).await.unwrap();
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Cancelled));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rig.provider.charges.load(Ordering::SeqCst),
        0,
        "a cancelled order is never charged"
    );
    assert_eq!(
        rig.pending_events().await,
        1,
        "payment.cancelled is published"
    );
}

#[tokio::test]
async fn cancelling_an_approved_payment_refunds_it_once() {
    let rig = rig().await;
    let order = Uuid::new_v4();
    rig.handler.handle(&created(order)).await.unwrap();
    rig.settles_as(order, PaymentStatus::Approved).await;
    let cancel = cancelled(order);
    rig.handler.handle(&cancel).await.unwrap();
    rig.settles_as(order, PaymentStatus::Refunded).await;
    // A redelivery of the same cancellation changes nothing more.
    rig.handler.handle(&cancel).await.unwrap();
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Refunded));
    // A second, different cancellation of the same order refunds nothing more either.
    rig.handler.handle(&cancelled(order)).await.unwrap();
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Refunded));
    assert_eq!(rig.provider.refunds.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_payment_charged_twice_is_approved_once_and_keeps_its_money() {
    // The provider takes longer than the lease, so the sweep takes the payment over and charges
    // it again while the first charge is still out; the provider treats both as one charge.
    let rig = rig_with(Duration::from_millis(600), Duration::from_millis(200)).await;
    let order = Uuid::new_v4();
    rig.handler.handle(&created(order)).await.unwrap();
    rig.settles_as(order, PaymentStatus::Approved).await;
    // Let the later charges come back and be recorded too.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        rig.provider.charges.load(Ordering::SeqCst) >= 2,
        "taken over"
    );
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Approved));
    assert_eq!(
        rig.provider.refunds.load(Ordering::SeqCst),
        0,
        "a later answer about the same charge voids nothing"
    );
    assert_eq!(rig.pending_events().await, 1, "payment.approved once");
}

#[tokio::test]
async fn an_approval_after_the_payment_was_cancelled_is_voided() {
    let rig = rig_with(Duration::from_millis(300), Duration::from_secs(30)).await;
    let order = Uuid::new_v4();
    rig.handler.handle(&created(order)).await.unwrap();
    // Cancel once the provider is deciding (a payment cancelled before is never charged).
    for _ in 0..200 {
        if rig.provider.charges.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rig.provider.charges.load(Ordering::SeqCst), 1);
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Processing));
    rig.handler.handle(&cancelled(order)).await.unwrap();
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Cancelled));
    // The provider approves the charge it was already making; that money goes back.
    for _ in 0..200 {
        if rig.provider.refunds.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rig.provider.refunds.load(Ordering::SeqCst), 1, "voided");
    rig.refunds_settle().await;
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Cancelled));
}

#[tokio::test]
async fn a_refund_the_provider_refuses_is_retried_until_it_confirms() {
    let rig = rig_of(
        CountingProvider {
            failing_refunds: AtomicU32::new(2),
            ..CountingProvider::default()
        },
        ProcessorSettings::default(),
    )
    .await;
    let order = Uuid::new_v4();
    rig.handler.handle(&created(order)).await.unwrap();
    rig.settles_as(order, PaymentStatus::Approved).await;
    rig.handler.handle(&cancelled(order)).await.unwrap();
    // The request is durable from the moment the cancellation is handled.
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Approved));
    // Two refusals, then waits of 1 s and 2 s before the attempt that goes through.
    for _ in 0..80 {
        if rig.status(order).await == Some(PaymentStatus::Refunded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Refunded));
    rig.refunds_settle().await;
    assert_eq!(rig.provider.refunds.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_payment_cancelled_while_it_waits_for_the_provider_is_not_charged() {
    // One charge at a time, each slow: the second order's payment waits for a slot.
    let rig = rig_of(
        CountingProvider {
            latency: Duration::from_millis(400),
            ..CountingProvider::default()
        },
        ProcessorSettings {
            max_in_flight: 1,
            ..ProcessorSettings::default()
        },
    )
    .await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    rig.handler.handle(&created(first)).await.unwrap();
    rig.handler.handle(&created(second)).await.unwrap();
    rig.handler.handle(&cancelled(second)).await.unwrap();
    assert_eq!(rig.status(second).await, Some(PaymentStatus::Cancelled));
    rig.settles_as(first, PaymentStatus::Approved).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        rig.provider.charges.load(Ordering::SeqCst),
        1,
        "only the first is charged"
    );
    assert_eq!(
        rig.provider.refunds.load(Ordering::SeqCst),
        0,
        "nothing to void"
    );
}

#[tokio::test]
async fn an_order_created_and_cancelled_in_one_batch_is_never_charged() {
    let rig = rig().await;
    let order = Uuid::new_v4();
    rig.handler
        .handle_batch(&[created(order), cancelled(order)])
        .await
        .unwrap();
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Cancelled));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rig.provider.charges.load(Ordering::SeqCst), 0);
    assert_eq!(rig.pending_events().await, 1, "payment.cancelled once");
}

#[tokio::test]
async fn an_order_created_with_a_field_added_by_a_newer_release_is_handled() {
    let rig = rig().await;
    let order = Uuid::new_v4();
    let mut event = created(order);
    event.data["loyaltyPoints"] = serde_json::json!(120);
    event.data["channel"] = serde_json::json!({ "kind": "kiosk", "id": 7 });
    rig.handler.handle(&event).await.unwrap();
    rig.settles_as(order, PaymentStatus::Approved).await;
}
