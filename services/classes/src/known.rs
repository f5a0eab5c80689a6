//! What member and staff events change in classes: its copy of who exists, a deleted member's
//! enrolments (each announced as `enrollment.deleted`), and a deleted instructor's classes
//! (their `instructorId` cleared, announced as `class.updated`).

use async_trait::async_trait;
use kassa_contracts::{Envelope, EventContext, events::EnrollmentDeleted};
use kassa_platform::{
    bus::HandlerError,
    consumer::{Applied, Apply, Fresh},
    db::{Tx, sql},
    known::{self, Change, RecordEvent},
    resource::Records,
};
use uuid::Uuid;

use crate::{Classes, NAME, enrollments};

/// The kinds of record this service keeps a copy of.
pub const MEMBER: &str = "member";
pub const STAFF: &str = "personal";

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 6] = [
    "member.created",
    "member.updated",
    "member.deleted",
    "personal.created",
    "personal.updated",
    "personal.deleted",
];

pub struct Known {
    pub records: Records<Classes>,
}

impl Known {
    /// Takes a deleted member out of their class.
    async fn member_deleted(
        &self,
        tx: &mut Tx,
        member_id: Uuid,
        cause: &Envelope,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let ctx = EventContext::caused_by(cause);
        Ok(enrollments::remove_member(tx, member_id)
            .await?
            .into_iter()
            .map(|class_id| {
                let event = EnrollmentDeleted {
                    class_id,
                    member_id,
                };
                Envelope::new(NAME, class_id, &event, &ctx)
            })
            .collect())
    }

    /// Clears a deleted instructor from the classes they taught (each a `class.updated`,
    /// written to the outbox by the records).
    async fn instructor_deleted(
        &self,
        tx: &mut Tx,
        instructor: Uuid,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let rows = sql("SELECT id FROM classes WHERE instructor_id = $1")
            .bind(instructor)
            .fetch_all(&mut *tx)
            .await?;
        let ctx = EventContext::caused_by(cause);
        for row in rows {
            let clear = |class: &crate::Class| {
                let mut class = class.clone();
                class.instructor_id = None;
                Some(class)
            };
            self.records
                .update_in(tx, row.get("id")?, &ctx, clear)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Apply for Known {
    type Event = RecordEvent;
    type AfterCommit = ();

    fn decode(&self, event: &Envelope) -> Result<RecordEvent, HandlerError> {
        RecordEvent::decode(event)
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        events: Vec<Fresh<'_, RecordEvent>>,
    ) -> Result<Applied<()>, HandlerError> {
        let mut publish = Vec::new();
        for Fresh { envelope, event } in events {
            known::note(tx, &event).await?;
            match (event.kind.as_str(), event.change) {
                (MEMBER, Change::Deleted) => {
                    publish.extend(self.member_deleted(tx, event.id, envelope).await?);
                }
                (STAFF, Change::Deleted) => {
                    self.instructor_deleted(tx, event.id, envelope).await?;
                }
                _ => {}
            }
        }
        Ok(Applied::publish(publish))
    }
}
