//! What other services' events do to stock: products the catalog announces get a stock item;
//! an order that fails or is cancelled gives back what it holds; a paid one (`order.ready`)
//! keeps it past its expiry; a completed one (the seed's `OrderCompletedEvent`) turns it into units sold.

use async_trait::async_trait;
use kassa_contracts::{
    Envelope, EventContext,
    events::{OrderCancelled, OrderCompleted, OrderFailed, OrderItem, OrderReady},
};
use kassa_platform::{
    bus::HandlerError,
    consumer::{Applied, Apply, Fresh},
    db::{Db, Tx},
    known::{Change, RecordEvent},
};
use uuid::Uuid;

use crate::stock::{self, Mover, Reason};

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 6] = [
    "product.created",
    "product.updated",
    "order.failed",
    "order.cancelled",
    "order.ready",
    "order.completed",
];

/// What an event asks of the stock.
pub enum StockEvent {
    /// A product exists, with this name.
    Product { id: Uuid, name: String },
    /// The order will not go ahead.
    Release(Uuid),
    /// The order is paid.
    Keep(Uuid),
    /// The order's items were handed out.
    Sell {
        order_id: Uuid,
        items: Vec<OrderItem>,
    },
    /// Nothing for the stock (a product deleted keeps its history).
    Nothing,
}

pub struct Stock {
    pub db: Db,
}

fn mover(cause: &Envelope) -> Mover {
    Mover {
        by: format!("event:{}", cause.event_type),
        ctx: EventContext::caused_by(cause),
    }
}

#[async_trait]
impl Apply for Stock {
    type Event = StockEvent;
    type AfterCommit = ();

    fn decode(&self, event: &Envelope) -> Result<StockEvent, HandlerError> {
        Ok(match event.event_type.as_str() {
            "product.created" | "product.updated" => {
                let record = RecordEvent::decode(event)?;
                if record.change == Change::Deleted {
                    return Ok(StockEvent::Nothing);
                }
                let name = record.data["name"]
                    .as_str()
                    .ok_or_else(|| HandlerError::new("a product event without a name"))?
                    .to_owned();
                StockEvent::Product {
                    id: record.id,
                    name,
                }
            }
            "order.failed" => StockEvent::Release(event.decode::<OrderFailed>()?.order_id),
            "order.cancelled" => StockEvent::Release(event.decode::<OrderCancelled>()?.order_id),
            "order.ready" => StockEvent::Keep(event.decode::<OrderReady>()?.order_id),
            "order.completed" => {
                let e = event.decode::<OrderCompleted>()?;
                StockEvent::Sell {
                    order_id: e.order_id,
                    items: e.items,
                }
            }
            other => {
                return Err(HandlerError::new(format!(
                    "inventory does not handle {other}"
                )));
            }
        })
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        events: Vec<Fresh<'_, StockEvent>>,
    ) -> Result<Applied<()>, HandlerError> {
        for Fresh { envelope, event } in events {
            match event {
                StockEvent::Product { id, name } => stock::ensure(tx, id, &name).await?,
                StockEvent::Release(order_id) => {
                    stock::release(&self.db, tx, order_id, Reason::Released, &mover(envelope))
                        .await?;
                }
                StockEvent::Keep(order_id) => {
                    stock::keep(&self.db, tx, order_id, &mover(envelope)).await?;
                }
                StockEvent::Sell { order_id, items } => {
                    stock::sell(&self.db, tx, order_id, &items, &mover(envelope)).await?;
                }
                StockEvent::Nothing => {}
            }
        }
        // The stock functions wrote their events (`stock.low`) to the outbox themselves.
        Ok(Applied::publish(Vec::new()))
    }
}
