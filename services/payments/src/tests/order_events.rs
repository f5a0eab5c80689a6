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
    provider::{Charged, PaymentProvider, RefundError},
    store,
};
use kassa_platform::{
    bus::Handler,
    cache::MemoryCache,
    consumer::Inboxed,
    db::{Db, DbLocation},
    migrate, outbox, shutdown,
    testing::eventually,
};
use uuid::Uuid;

/// Approves every charge (after `latency`) and counts what it was asked to do; refuses the
/// first `failing_refunds` refunds.
#[derive(Default)]
struct CountingProvider {
    latency: Duration,
    /// Charges asked for.
    charges: AtomicU32,
    /// Charges answered.
    answered: AtomicU32,
    refunds: AtomicU32,
    failing_refunds: AtomicU32,
}

#[async_trait]
impl PaymentProvider for CountingProvider {
    async fn charge(
        &self,
        payment_id: Uuid,
        _amount: Money,
        _card: Option<&kassa_payments::cards::SavedCard>,
    ) -> Charged {
        self.charges.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        self.answered.fetch_add(1, Ordering::SeqCst);
        Charged::Settled(ChargeOutcome::Approved {
            reference: format!("ref_{payment_id}"),
        })
    }

    async fn refund(
        &self,
        _payment_id: Uuid,
        _amount: Money,
        _reference: Option<&str>,
    ) -> Result<(), RefundError> {
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
    // Seed 003's orders only: no saved card is ever looked up, so no users service is needed.
    let cards = Arc::new(kassa_payments::cards::Cards::new(
        kassa_platform::peer::PeerClient::new(
            kassa_platform::peer::Directory::default(),
            "users",
            kassa_platform::peer::PeerSettings::default(),
        ),
        None,
    ));
    let (processor, processor_loop) = processor::processor(
        db.clone(),
        provider.clone(),
        cards,
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
        payment_method: None,
        item: None,
        lines: Vec::new(),
        order_number: None,
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
        self.settles_within(order_id, wanted, Duration::from_secs(2))
            .await
    }

    async fn settles_within(&self, order_id: Uuid, wanted: PaymentStatus, within: Duration) {
        eventually(
            &format!("payment of {order_id} {wanted:?}"),
            within,
            async || self.status(order_id).await,
            |status| *status == Some(wanted),
        )
        .await;
    }

    /// Waits until no refund waits for the provider.
    async fn refunds_settle(&self) {
        eventually(
            "no refund pending",
            Duration::from_secs(2),
            async || store::refunds_pending(&self.db).await.unwrap(),
            |n| *n == 0,
        )
        .await;
    }

    /// Creates a payment for a new order after everything handled so far and waits until it is
    /// approved: the processor takes payments in turn, so whatever it was to do with earlier
    /// ones it has begun.
    async fn a_later_order_is_approved(&self) {
        let later = Uuid::new_v4();
        self.handler.handle(&created(later)).await.unwrap();
        self.settles_as(later, PaymentStatus::Approved).await;
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
    rig.a_later_order_is_approved().await;
    assert_eq!(
        rig.provider.charges.load(Ordering::SeqCst),
        2,
        "one charge for each order"
    );
}

#[tokio::test]
async fn a_cancellation_that_overtakes_its_order_prevents_the_charge() {
    let rig = rig().await;
    let order = Uuid::new_v4();
    rig.handler.handle(&cancelled(order)).await.unwrap();
    assert_eq!(rig.status(order).await, None, "nothing to cancel yet");
    rig.handler.handle(&created(order)).await.unwrap();
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Cancelled));
    assert_eq!(
        rig.pending_events().await,
        1,
        "payment.cancelled is published"
    );
    rig.a_later_order_is_approved().await;
    assert_eq!(
        rig.provider.charges.load(Ordering::SeqCst),
        1,
        "a cancelled order is never charged, only the later one"
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
    // Let the later charges come back.
    eventually(
        "a charge taken over and every charge answered",
        Duration::from_secs(5),
        async || {
            (
                rig.provider.charges.load(Ordering::SeqCst),
                rig.provider.answered.load(Ordering::SeqCst),
            )
        },
        |(charges, answered)| *charges >= 2 && answered == charges,
    )
    .await;
    // And be recorded: a void, were one wrongly decided, is requested in the transaction that
    // records the answer and sent within the refund loop's 50 ms poll. A sleep, not a poll:
    // nothing marks the answer recorded when it changes nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    eventually(
        "the provider deciding",
        Duration::from_secs(2),
        async || rig.provider.charges.load(Ordering::SeqCst),
        |n| *n == 1,
    )
    .await;
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Processing));
    rig.handler.handle(&cancelled(order)).await.unwrap();
    assert_eq!(rig.status(order).await, Some(PaymentStatus::Cancelled));
    // The provider approves the charge it was already making; that money goes back.
    eventually(
        "the approval voided",
        Duration::from_secs(2),
        async || rig.provider.refunds.load(Ordering::SeqCst),
        |n| *n == 1,
    )
    .await;
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
    rig.settles_within(order, PaymentStatus::Refunded, Duration::from_secs(8))
        .await;
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
    // One slot: the later order's charge starts only once the second's turn has passed.
    rig.a_later_order_is_approved().await;
    assert_eq!(
        rig.provider.charges.load(Ordering::SeqCst),
        2,
        "only the first and the later one are charged"
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
    assert_eq!(rig.pending_events().await, 1, "payment.cancelled once");
    rig.a_later_order_is_approved().await;
    assert_eq!(
        rig.provider.charges.load(Ordering::SeqCst),
        1,
        "only the later order is charged"
    );
    assert_eq!(
        rig.pending_events().await,
        2,
        "payment.cancelled once, then the later payment.approved"
    );
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

#[tokio::test]
async fn a_burst_larger_than_the_charges_allowed_at_once_is_charged_in_turn() {
    // Two charges at a time, five new orders in one delivery batch: the processor must not wait
    // for more slots than there are.
    let rig = rig_of(
        CountingProvider {
            latency: Duration::from_millis(20),
            ..CountingProvider::default()
        },
        ProcessorSettings {
            max_in_flight: 2,
            ..ProcessorSettings::default()
        },
    )
    .await;
    let orders: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let events: Vec<Envelope> = orders.iter().map(|o| created(*o)).collect();
    rig.handler.handle_batch(&events).await.unwrap();
    for order in &orders {
        rig.settles_as(*order, PaymentStatus::Approved).await;
    }
    assert_eq!(rig.provider.charges.load(Ordering::SeqCst), 5);
}
