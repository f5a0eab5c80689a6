//! What qr does with orders' events: a paid order for items gets a code for each unit to hand
//! out (and, with nothing to hand out, completes at once); a cancelled one's codes are revoked.

use async_trait::async_trait;
use kassa_contracts::{
    Envelope, EventContext,
    events::{Event, OrderCancelled, OrderReady},
};
use kassa_platform::{
    bus::HandlerError,
    consumer::{Applied, Apply, Fresh},
    db::Tx,
};

use crate::codes;

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 2] = [OrderReady::TYPE, OrderCancelled::TYPE];

pub enum OrderEvent {
    Paid(OrderReady),
    Cancelled(OrderCancelled),
}

pub struct Pickups;

#[async_trait]
impl Apply for Pickups {
    type Event = OrderEvent;
    type AfterCommit = ();

    fn decode(&self, event: &Envelope) -> Result<OrderEvent, HandlerError> {
        match event.event_type.as_str() {
            OrderReady::TYPE => Ok(OrderEvent::Paid(event.decode()?)),
            OrderCancelled::TYPE => Ok(OrderEvent::Cancelled(event.decode()?)),
            other => Err(HandlerError::new(format!("qr does not handle {other}"))),
        }
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        events: Vec<Fresh<'_, OrderEvent>>,
    ) -> Result<Applied<()>, HandlerError> {
        let now = kassa_contracts::now();
        for Fresh { envelope, event } in events {
            match event {
                // Nothing ordered (orders send none, but a payload may): nothing to hand out.
                OrderEvent::Paid(paid) if paid.lines.is_empty() => {}
                OrderEvent::Paid(paid) => {
                    let ctx = EventContext::caused_by(envelope);
                    if codes::note_pickups(tx, paid.order_id, &paid.lines).await? {
                        let issued = codes::issue(tx, paid.order_id, now).await?;
                        tracing::info!(order_id = %paid.order_id, codes = issued.len(), "pickup codes issued");
                    } else {
                        // Nothing a dispenser hands out: complete as soon as it is paid.
                        codes::complete(tx, paid.order_id, now, &ctx).await?;
                    }
                }
                OrderEvent::Cancelled(cancelled) => codes::revoke(tx, cancelled.order_id).await?,
            }
        }
        Ok(Applied::publish(Vec::new()))
    }
}
