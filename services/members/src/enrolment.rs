//! A member's `classId` follows their enrolment, as the classes service announces it: set on
//! `enrollment.created`, cleared on `enrollment.deleted` (when it still names that class) and
//! on `class.deleted`. Each change is the member's `member.updated`.

use async_trait::async_trait;
use kassa_contracts::{
    Envelope, EventContext,
    events::{EnrollmentCreated, EnrollmentDeleted},
};
use kassa_platform::{
    bus::HandlerError,
    consumer::{Applied, Apply, Fresh},
    db::{Tx, sql},
    known::RecordEvent,
    resource::Records,
};
use uuid::Uuid;

use crate::Members;

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 3] = ["enrollment.created", "enrollment.deleted", "class.deleted"];

/// What an event asks of members' `classId`.
pub enum Enrolment {
    /// `member` is now in `class`.
    Joined { member: Uuid, class: Uuid },
    /// `member` left `class`.
    Left { member: Uuid, class: Uuid },
    /// `class` is gone: nobody is in it.
    ClassGone { class: Uuid },
}

pub struct Enrolments {
    pub records: Records<Members>,
}

impl Enrolments {
    /// Sets the `classId` of `member` to `class` when it is `now` (if the member exists).
    async fn set(
        &self,
        tx: &mut Tx,
        member: Uuid,
        now: Option<Uuid>,
        only_if: Option<Uuid>,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let follow = |member: &crate::Member| {
            let applies = only_if.is_none_or(|class| member.class_id == Some(class));
            (applies && member.class_id != now).then(|| {
                let mut member = member.clone();
                member.class_id = now;
                member
            })
        };
        // A member deleted since has nothing to follow.
        self.records
            .update_in(tx, member, &EventContext::caused_by(cause), follow)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Apply for Enrolments {
    type Event = Enrolment;
    type AfterCommit = ();

    fn decode(&self, event: &Envelope) -> Result<Enrolment, HandlerError> {
        Ok(match event.event_type.as_str() {
            "enrollment.created" => {
                let e = event.decode::<EnrollmentCreated>()?;
                Enrolment::Joined {
                    member: e.member_id,
                    class: e.class_id,
                }
            }
            "enrollment.deleted" => {
                let e = event.decode::<EnrollmentDeleted>()?;
                Enrolment::Left {
                    member: e.member_id,
                    class: e.class_id,
                }
            }
            "class.deleted" => Enrolment::ClassGone {
                class: RecordEvent::decode(event)?.id,
            },
            other => {
                return Err(HandlerError::new(format!(
                    "members does not handle {other}"
                )));
            }
        })
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        events: Vec<Fresh<'_, Enrolment>>,
    ) -> Result<Applied<()>, HandlerError> {
        for Fresh { envelope, event } in events {
            match event {
                Enrolment::Joined { member, class } => {
                    self.set(tx, member, Some(class), None, envelope).await?;
                }
                Enrolment::Left { member, class } => {
                    self.set(tx, member, None, Some(class), envelope).await?;
                }
                Enrolment::ClassGone { class } => {
                    let rows = sql("SELECT id FROM members WHERE class_id = $1")
                        .bind(class)
                        .fetch_all(&mut *tx)
                        .await?;
                    for row in rows {
                        let member: Uuid = row.get("id")?;
                        self.set(tx, member, None, Some(class), envelope).await?;
                    }
                }
            }
        }
        // The records wrote each member's `member.updated` to the outbox themselves.
        Ok(Applied::publish(Vec::new()))
    }
}
