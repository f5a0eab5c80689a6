//! The CloudEvents 1.0 envelope every kassa event travels in, with correlation and causation ids.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::events::Event;

/// One event on the wire: CloudEvents 1.0 attributes (structured JSON mode) plus kassa's
/// extensions `correlationid`, `causationid` and `dataversion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    /// The aggregate the event is about (an order id, a payment id).
    pub subject: String,
    pub datacontenttype: String,
    /// Version of the payload schema for `type`.
    pub dataversion: u32,
    /// The id shared by everything one request set in motion.
    pub correlationid: String,
    /// The id of the event that caused this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<Uuid>,
    pub data: serde_json::Value,
}

/// Where an event comes from in a flow: carried from a request or a consumed event to the
/// events it causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    pub correlation_id: String,
    pub causation_id: Option<Uuid>,
}

impl EventContext {
    /// A context that starts a flow, as an HTTP request does.
    pub fn new(correlation_id: impl Into<String>) -> Self {
        EventContext {
            correlation_id: correlation_id.into(),
            causation_id: None,
        }
    }

    /// The context of whatever `cause` leads to.
    pub fn caused_by(cause: &Envelope) -> Self {
        EventContext {
            correlation_id: cause.correlationid.clone(),
            causation_id: Some(cause.id),
        }
    }
}

/// Why an event's payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("expected event type {expected}, got {actual}")]
    WrongType {
        expected: &'static str,
        actual: String,
    },
    #[error("unsupported {event_type} payload version {version}")]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("malformed {event_type} payload: {source}")]
    Malformed {
        event_type: String,
        source: serde_json::Error,
    },
}

impl Envelope {
    /// Wraps `event` about `subject` from service `source`, in the flow `ctx`.
    pub fn new<E: Event>(
        source: &str,
        subject: impl ToString,
        event: &E,
        ctx: &EventContext,
    ) -> Self {
        // Serialising a plain struct of strings and numbers cannot fail.
        let data = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
        let mut envelope = Envelope::record(source, subject, E::TYPE.into(), data, ctx);
        envelope.dataversion = E::VERSION;
        envelope
    }

    /// Wraps a record's JSON as event `event_type` (version 1) about `subject`: the events of
    /// plain records (`member.created`), whose payload is the record as it is after the change.
    pub fn record(
        source: &str,
        subject: impl ToString,
        event_type: String,
        data: serde_json::Value,
        ctx: &EventContext,
    ) -> Self {
        Envelope {
            specversion: "1.0".into(),
            id: Uuid::now_v7(),
            source: format!("/kassa/{source}"),
            event_type,
            time: Utc::now(),
            subject: subject.to_string(),
            datacontenttype: "application/json".into(),
            dataversion: 1,
            correlationid: ctx.correlation_id.clone(),
            causationid: ctx.causation_id,
            data,
        }
    }

    /// Reads the payload as `E`, checking its type first. A payload of an older version is
    /// upgraded to the current one; fields the reader does not know are ignored. A newer version
    /// than this release knows is refused (it is retried, and can be redriven from the dead
    /// letters once this consumer is deployed at that version).
    pub fn decode<E: Event + DeserializeOwned>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::TYPE {
            return Err(DecodeError::WrongType {
                expected: E::TYPE,
                actual: self.event_type.clone(),
            });
        }
        let unsupported = || DecodeError::UnsupportedVersion {
            event_type: self.event_type.clone(),
            version: self.dataversion,
        };
        let data = match self.dataversion.cmp(&E::VERSION) {
            std::cmp::Ordering::Equal => self.data.clone(),
            std::cmp::Ordering::Less if self.dataversion >= 1 => {
                E::upgrade(self.dataversion, self.data.clone()).map_err(|_| unsupported())?
            }
            std::cmp::Ordering::Less | std::cmp::Ordering::Greater => return Err(unsupported()),
        };
        serde_json::from_value(data).map_err(|source| DecodeError::Malformed {
            event_type: self.event_type.clone(),
            source,
        })
    }

    /// The envelope as bytes for a broker or an outbox row.
    pub fn to_bytes(&self) -> Vec<u8> {
        // An envelope holds only JSON-safe values, so this cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OrderCancelled;

    #[test]
    fn round_trips_and_checks_type_and_version() {
        let ctx = EventContext::new("corr-1");
        let order_id = Uuid::now_v7();
        let env = Envelope::new("orders", order_id, &OrderCancelled { order_id }, &ctx);
        let back = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.decode::<OrderCancelled>().unwrap().order_id, order_id);
        let json: serde_json::Value = serde_json::from_slice(&env.to_bytes()).unwrap();
        assert_eq!(json["type"], "order.cancelled");
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["correlationid"], "corr-1");

        let mut wrong = env.clone();
        wrong.dataversion = 9;
        assert!(matches!(
            wrong.decode::<OrderCancelled>(),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        wrong.dataversion = 0;
        assert!(wrong.decode::<OrderCancelled>().is_err());
        let caused = EventContext::caused_by(&env);
        assert_eq!(caused.causation_id, Some(env.id));
        assert_eq!(caused.correlation_id, "corr-1");
    }

    /// A type at version 2 whose version 1 called its field `amount`.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Tipped {
        total_minor: i64,
        #[serde(default)]
        tip_minor: i64,
    }

    impl Event for Tipped {
        const TYPE: &'static str = "test.tipped";
        const VERSION: u32 = 2;

        fn upgrade(version: u32, mut data: serde_json::Value) -> Result<serde_json::Value, String> {
            match version {
                1 => {
                    let amount = data["amount"].take();
                    Ok(serde_json::json!({ "total_minor": amount }))
                }
                other => Err(format!("no upgrade from version {other}")),
            }
        }
    }

    #[test]
    fn older_payloads_are_upgraded_and_unknown_fields_ignored() {
        let ctx = EventContext::new("c");
        let mut env = Envelope::new(
            "test",
            "s",
            &Tipped {
                total_minor: 5,
                tip_minor: 1,
            },
            &ctx,
        );
        env.data["addedLater"] = serde_json::json!("ignored");
        assert_eq!(
            env.decode::<Tipped>().unwrap(),
            Tipped {
                total_minor: 5,
                tip_minor: 1
            }
        );
        env.dataversion = 1;
        env.data = serde_json::json!({ "amount": 700 });
        assert_eq!(
            env.decode::<Tipped>().unwrap(),
            Tipped {
                total_minor: 700,
                tip_minor: 0
            }
        );
        env.dataversion = 3;
        assert!(matches!(
            env.decode::<Tipped>(),
            Err(DecodeError::UnsupportedVersion { version: 3, .. })
        ));
    }
}
