//! Group commit for new orders: requests that arrive together share one transaction.
//!
//! Each `POST /api/orders` without an `Idempotency-Key` hands its order and `order.created`
//! event to one writer task and waits for the commit. The writer takes everything queued at that
//! moment and stores it with multi-row statements in one transaction, so under load a commit
//! (and its round trips) is shared by many orders, while a lone request waits for nothing but its
//! own commit. A request is answered only after the transaction holding its order and event has
//! committed, as it would be on its own.

use kassa_contracts::Envelope;
use kassa_platform::{
    db::{Db, DbResult},
    http::ApiError,
    outbox,
    service::Background,
};
use tokio::sync::{mpsc, oneshot};

use crate::{domain::Order, store};

/// The most orders one transaction takes.
const MAX_ORDERS_PER_COMMIT: usize = 256;
/// Orders waiting for the writer, at most; past that a request is answered 503 with
/// `Retry-After` rather than queued without bound.
pub const QUEUE: usize = 4096;

struct Placement {
    order: Order,
    event: Envelope,
    done: oneshot::Sender<Result<(), ApiError>>,
}

/// The handle requests place orders through.
#[derive(Clone)]
pub struct Placer {
    queue: mpsc::Sender<Placement>,
}

impl Placer {
    /// Starts the writer: the handle, and the task that must run for it to answer. The task ends
    /// once every handle is dropped and the queue is empty.
    pub fn start(db: Db) -> (Placer, Background) {
        Self::with_capacity(db, QUEUE)
    }

    /// A writer whose queue holds at most `capacity` orders.
    pub fn with_capacity(db: Db, capacity: usize) -> (Placer, Background) {
        let (queue, rx) = mpsc::channel(capacity);
        (Placer { queue }, Box::pin(write_loop(db, rx)))
    }

    /// Orders waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Stores `order` with its `event` and returns once they are committed; a 503 with
    /// `Retry-After` when the queue is full.
    pub async fn place(&self, order: Order, event: Envelope) -> Result<(), ApiError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .try_send(Placement { order, event, done })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    metrics::counter!("kassa_orders_refused_busy_total").increment(1);
                    ApiError::unavailable(
                        "The orders service has more orders waiting than it takes; try again shortly.",
                    )
                }
                mpsc::error::TrySendError::Closed(_) => stopping(),
            })?;
        answer.await.map_err(|_| stopping())?
    }
}

fn stopping() -> ApiError {
    ApiError::unavailable("The orders service is stopping; try again shortly.")
}

async fn write_loop(db: Db, mut queue: mpsc::Receiver<Placement>) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MAX_ORDERS_PER_COMMIT).await > 0 {
        // A request that gave up while queued (its client left, or it timed out) was answered
        // with an error: its order must not appear afterwards.
        let placements: Vec<Placement> = batch.drain(..).filter(|p| !p.done.is_closed()).collect();
        if placements.is_empty() {
            continue;
        }
        let mut placements = placements;
        match write(&db, &mut placements).await {
            Ok(()) => answer(placements, Ok(())),
            // The database is down: every order of the batch would fail alone too.
            Err(e) if placements.len() == 1 || e.is_unavailable() => {
                answer(placements, Err(e.into()))
            }
            // Something in the batch was refused: each order on its own, so only it fails.
            Err(e) => {
                tracing::warn!(orders = placements.len(), error = %e, "batch of new orders refused; storing them one by one");
                for mut p in placements {
                    if p.done.is_closed() {
                        continue;
                    }
                    let result = write(&db, std::slice::from_mut(&mut p)).await;
                    answer(vec![p], result.map_err(ApiError::from));
                }
            }
        }
    }
}

fn answer(placements: Vec<Placement>, result: Result<(), ApiError>) {
    for p in placements {
        // A request that gave up during the write is not told; its order stands, as it would
        // had it given up during its own commit.
        let order_id = p.order.id;
        if p.done.send(result.clone()).is_err() {
            tracing::debug!(%order_id, "the request gave up while its order was written");
        }
    }
}

async fn write(db: &Db, placements: &mut [Placement]) -> DbResult<()> {
    let mut tx = db.begin().await?;
    store::number(
        &mut tx,
        placements.iter_mut().map(|p| (&mut p.order, &mut p.event)),
    )
    .await?;
    store::insert_all(&mut tx, placements.iter().map(|p| &p.order)).await?;
    outbox::add_all(&mut tx, placements.iter().map(|p| &p.event)).await?;
    tx.commit().await
}
