//! How kassa writes values in its JSON: timestamps as `2026-02-15T01:42:19.000Z`, as the seeds do.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Serialises a timestamp in UTC with millisecond precision and a `Z`.
pub fn timestamp<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// As [`timestamp`], for a time that may be absent (written only when present).
pub fn optional_timestamp<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => timestamp(t, s),
        None => s.serialize_none(),
    }
}
