//! The SQL of a kind of record, put together from its declared fields (never from input), and
//! the typed operations on it. Every change writes its event to the outbox in its transaction.

use std::{marker::PhantomData, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use kassa_contracts::{Envelope, EventContext};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{FieldKind, Resource, ResourceSpec, Stored};
use crate::{
    cache::{Cache, Write},
    db::{Arg, Db, DbError, DbResult, Row, Tx, sql_assembled},
    http::{ApiError, Page, Pagination},
    listing::{Filters, Listing},
    outbox,
};

/// The records of one kind in one database.
pub struct Records<R> {
    db: Db,
    /// The service that publishes their events.
    source: &'static str,
    /// Reads served from here first (cache-aside), and for how long an entry lives.
    cache: Option<(Arc<dyn Cache>, Duration)>,
    _kind: PhantomData<fn() -> R>,
}

impl<R> Clone for Records<R> {
    fn clone(&self) -> Self {
        Records {
            db: self.db.clone(),
            source: self.source,
            cache: self.cache.clone(),
            _kind: PhantomData,
        }
    }
}

/// A record as cached: its version, a line feed, its JSON.
fn cache_entry(version: i64, json: &[u8]) -> Vec<u8> {
    let mut entry = format!("{version}\n").into_bytes();
    entry.extend_from_slice(json);
    entry
}

/// The version and JSON of a cached record; `None` for an entry of another layout.
fn cache_parts(entry: &[u8]) -> Option<(i64, &[u8])> {
    let at = entry.iter().position(|b| *b == b'\n')?;
    let version = std::str::from_utf8(&entry[..at]).ok()?.parse().ok()?;
    Some((version, &entry[at + 1..]))
}

fn columns(spec: &ResourceSpec) -> String {
    let mut out = String::from("id, version, created_at, updated_at");
    for f in spec.fields {
        out.push_str(", ");
        out.push_str(f.column);
    }
    out
}

/// A field's JSON value as a bound argument of its column.
pub(super) fn arg(kind: FieldKind, name: &str, value: &Value) -> Result<Arg, ApiError> {
    let wrong = |what: &str| {
        ApiError::invalid(
            name,
            "invalid_field",
            format!("Field `{name}` must be {what}."),
        )
    };
    Ok(match (kind, value) {
        (FieldKind::Text, Value::Null) => Arg::Text(None),
        (FieldKind::Text, Value::String(s)) => Arg::from(s.as_str()),
        (FieldKind::Integer, Value::Null) => Arg::I64(None),
        (FieldKind::Integer, Value::Number(n)) => {
            Arg::from(n.as_i64().ok_or_else(|| wrong("a whole number"))?)
        }
        (FieldKind::Uuid, Value::Null) => Arg::Uuid(None),
        (FieldKind::Uuid, Value::String(s)) => {
            Arg::from(crate::http::parse_uuid(name, s).map_err(|_| wrong("a UUID"))?)
        }
        (FieldKind::Bool, Value::Null) => Arg::Bool(None),
        (FieldKind::Bool, Value::Bool(b)) => Arg::from(*b),
        (FieldKind::Timestamp, Value::Null) => Arg::Time(None),
        (FieldKind::Timestamp, Value::String(s)) => Arg::from(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| wrong("an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
        (FieldKind::Amount(_), Value::Null) => Arg::I64(None),
        (FieldKind::Amount(places), Value::Number(n)) => Arg::from(
            kassa_contracts::money::parse_minor(&n.to_string(), places).map_err(|e| {
                ApiError::invalid(name, "invalid_amount", format!("Field `{name}` {e}."))
            })?,
        ),
        (FieldKind::Text, _) => return Err(wrong("a string")),
        (FieldKind::Integer, _) => return Err(wrong("a whole number")),
        (FieldKind::Uuid, _) => return Err(wrong("a UUID")),
        (FieldKind::Bool, _) => return Err(wrong("true or false")),
        (FieldKind::Timestamp, _) => return Err(wrong("an RFC 3339 time")),
        (FieldKind::Amount(_), _) => return Err(wrong("a number")),
    })
}

/// A column's value as the field's JSON value.
fn json_of(kind: FieldKind, row: &Row, column: &str) -> DbResult<Value> {
    Ok(match kind {
        FieldKind::Text => row.get::<Option<String>>(column)?.map(Value::from),
        FieldKind::Integer => row.get::<Option<i64>>(column)?.map(Value::from),
        FieldKind::Uuid => row
            .get::<Option<Uuid>>(column)?
            .map(|u| Value::from(u.to_string())),
        FieldKind::Bool => row.get::<Option<bool>>(column)?.map(Value::from),
        FieldKind::Timestamp => row
            .get::<Option<DateTime<Utc>>>(column)?
            .map(|t| Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))),
        FieldKind::Amount(places) => row
            .get::<Option<i64>>(column)?
            .map(|minor| {
                serde_json::from_str(kassa_contracts::money::raw_number(minor, places).get())
            })
            .transpose()
            .map_err(|e| DbError::column(column, e.to_string()))?,
    }
    .unwrap_or(Value::Null))
}

impl<R: Resource> Records<R> {
    pub fn new(db: Db, source: &'static str) -> Self {
        Records {
            db,
            source,
            cache: None,
            _kind: PhantomData,
        }
    }

    /// Reads of one record are served from `cache` first (cache-aside), each entry living
    /// `ttl`; the kit's routes write an entry on every create and change, and leave a tombstone
    /// on a delete, after the transaction commits. Entries carry the record's version, so a
    /// slow reader never puts back a state a change has replaced (see [`crate::cache`]).
    pub fn cached(mut self, cache: Arc<dyn Cache>, ttl: Duration) -> Self {
        self.cache = Some((cache, ttl));
        self
    }

    fn cache_key(&self, id: Uuid) -> String {
        format!("{}:{id}", self.spec().table)
    }

    /// The version and JSON of record `id`: from the cache when it holds it, else from the
    /// database (then cached, unless a later version is).
    pub async fn read_json(&self, id: Uuid) -> DbResult<Option<(i64, Vec<u8>)>> {
        if let Some((cache, _)) = &self.cache
            && let Some(entry) = cache.get(&self.cache_key(id)).await
            && let Some((version, json)) = cache_parts(&entry)
        {
            return Ok(Some((version, json.to_vec())));
        }
        let Some(record) = self.find(id).await? else {
            return Ok(None);
        };
        let json = serde_json::to_vec(&record.to_json())
            .map_err(|e| DbError::column(self.spec().table, e.to_string()))?;
        if let Some((cache, ttl)) = &self.cache {
            // Best effort: a read the cache does not take is served all the same.
            let _cached = cache
                .put_if_newer(
                    &self.cache_key(id),
                    record.version,
                    cache_entry(record.version, &json),
                    *ttl,
                )
                .await;
        }
        Ok(Some((record.version, json)))
    }

    /// Before a change to record `id`, at `version` now, commits: a tombstone of that version,
    /// so that from now on no reader serves or caches it again (a read misses and goes to the
    /// database until the change's own entry is written).
    pub async fn cache_changing(&self, id: Uuid, version: i64) {
        if let Some((cache, ttl)) = &self.cache {
            self.tombstone(cache.as_ref(), *ttl, id, version).await;
        }
    }

    /// Caches `record` as a committed change left it, so the next read sees it (see
    /// [`crate::cache::write_change`]).
    pub async fn cache_changed(&self, record: &Stored<R::Fields>) {
        let Some((cache, ttl)) = &self.cache else {
            return;
        };
        let Ok(json) = serde_json::to_vec(&record.to_json()) else {
            return;
        };
        let entry = cache_entry(record.version, &json);
        let write = Write::Value(record.version);
        crate::cache::write_change(cache, self.cache_key(record.id), write, Some(entry), *ttl)
            .await;
    }

    /// After a deletion commits: a tombstone one version past the record, so that no reader
    /// that loaded it before puts it back.
    pub async fn cache_deleted(&self, record: &Stored<R::Fields>) {
        if let Some((cache, ttl)) = &self.cache {
            let write = Write::Tombstone(record.version + 1);
            crate::cache::write_change(cache, self.cache_key(record.id), write, None, *ttl).await;
        }
    }

    /// A tombstone of `version` for record `id`; if the cache does not take it, the entry is
    /// removed.
    async fn tombstone(&self, cache: &dyn Cache, ttl: Duration, id: Uuid, version: i64) {
        let key = self.cache_key(id);
        if !cache.remove_if_newer(&key, version, ttl).await {
            cache.remove(&key).await;
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn spec(&self) -> &'static ResourceSpec {
        R::SPEC
    }

    /// The declared fields of `fields`, each as its column's argument.
    fn args(&self, fields: &R::Fields) -> Result<Vec<Arg>, ApiError> {
        let json = serde_json::to_value(fields).map_err(|_| ApiError::internal())?;
        self.spec()
            .fields
            .iter()
            .map(|f| arg(f.kind, f.name, json.get(f.name).unwrap_or(&Value::Null)))
            .collect()
    }

    fn read(row: &Row) -> DbResult<Stored<R::Fields>> {
        let spec = R::SPEC;
        let mut map = Map::new();
        for f in spec.fields {
            map.insert(f.name.to_owned(), json_of(f.kind, row, f.column)?);
        }
        let fields = serde_json::from_value(Value::Object(map))
            .map_err(|e| DbError::column(spec.table, e.to_string()))?;
        Ok(Stored {
            id: row.get("id")?,
            version: row.get("version")?,
            fields,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }

    /// A 409 for a unique constraint the write broke; other failures as they are.
    fn refused(&self, e: DbError) -> ApiError {
        // PostgreSQL names the constraint; SQLite names the table and column.
        let spec = self.spec();
        let broke = |name: &str, u: &super::Unique| {
            name.contains(u.constraint)
                || spec
                    .field(u.field)
                    .is_some_and(|f| name.contains(&format!("{}.{}", spec.table, f.column)))
        };
        if let DbError::Constraint(name) = &e
            && let Some(u) = spec.unique.iter().find(|u| broke(name, u))
        {
            return ApiError::conflict(u.code, u.detail).with_param(u.field);
        }
        e.into()
    }

    fn event(
        &self,
        event_type: String,
        record: &Stored<R::Fields>,
        ctx: &EventContext,
    ) -> Envelope {
        Envelope::record(self.source, record.id, event_type, record.to_json(), ctx)
    }

    /// Stores a new record in `tx` with its `created` event.
    pub async fn create_in(
        &self,
        tx: &mut Tx,
        fields: R::Fields,
        ctx: &EventContext,
    ) -> Result<Stored<R::Fields>, ApiError> {
        let now = kassa_contracts::now();
        let record = Stored {
            id: Uuid::now_v7(),
            version: 1,
            fields,
            created_at: now,
            updated_at: now,
        };
        let spec = self.spec();
        let mut values = vec![
            Arg::from(record.id),
            Arg::from(record.version),
            Arg::from(now),
            Arg::from(now),
        ];
        values.extend(self.args(&record.fields)?);
        let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("${i}")).collect();
        let mut q = sql_assembled(format!(
            "INSERT INTO {} ({}) VALUES ({})",
            spec.table,
            columns(spec),
            placeholders.join(", ")
        ));
        for v in values {
            q = q.bind(v);
        }
        q.execute(&mut *tx).await.map_err(|e| self.refused(e))?;
        outbox::add(tx, &self.event(spec.created(), &record, ctx)).await?;
        Ok(record)
    }

    pub async fn find(&self, id: Uuid) -> DbResult<Option<Stored<R::Fields>>> {
        let spec = self.spec();
        let row = sql_assembled(format!(
            "SELECT {} FROM {} WHERE id = $1",
            columns(spec),
            spec.table
        ))
        .bind(id)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(Self::read).transpose()
    }

    /// Reads a record and locks it for the rest of `tx`.
    pub async fn find_for_update(
        &self,
        tx: &mut Tx,
        id: Uuid,
    ) -> DbResult<Option<Stored<R::Fields>>> {
        let spec = self.spec();
        let row = sql_assembled(format!(
            "SELECT {} FROM {} WHERE id = $1{}",
            columns(spec),
            spec.table,
            self.db.for_update()
        ))
        .bind(id)
        .fetch_optional(tx)
        .await?;
        row.as_ref().map(Self::read).transpose()
    }

    /// One page, newest first, of the records that pass `filters`.
    pub async fn page(
        &self,
        pagination: Pagination,
        filters: &Filters,
    ) -> DbResult<Page<Stored<R::Fields>>> {
        let spec = self.spec();
        let listing = Listing {
            table: spec.table,
            columns: columns(spec).into(),
            order_by: "created_at DESC, id DESC",
        };
        listing
            .page(&self.db, pagination, filters, Self::read)
            .await
    }

    /// Replaces the fields of `current` (read for update in `tx`) with `fields`, with its
    /// `updated` event.
    pub async fn replace_in(
        &self,
        tx: &mut Tx,
        current: Stored<R::Fields>,
        fields: R::Fields,
        ctx: &EventContext,
    ) -> Result<Stored<R::Fields>, ApiError> {
        let spec = self.spec();
        let now = kassa_contracts::now();
        let record = Stored {
            id: current.id,
            version: current.version + 1,
            fields,
            created_at: current.created_at,
            updated_at: now.max(current.updated_at),
        };
        let sets: Vec<String> = spec
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{} = ${}", f.column, i + 3))
            .collect();
        let n = spec.fields.len();
        let mut q = sql_assembled(format!(
            "UPDATE {} SET version = $1, updated_at = $2, {} WHERE id = ${} AND version = ${}",
            spec.table,
            sets.join(", "),
            n + 3,
            n + 4
        ))
        .bind(record.version)
        .bind(record.updated_at);
        for v in self.args(&record.fields)? {
            q = q.bind(v);
        }
        let changed = q
            .bind(record.id)
            .bind(current.version)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.refused(e))?;
        if changed != 1 {
            // Read for update in this transaction: only a bug gets here.
            return Err(ApiError::internal());
        }
        outbox::add(tx, &self.event(spec.updated(), &record, ctx)).await?;
        Ok(record)
    }

    /// Changes the record `id` in `tx` as `change` says, when it exists and `change` returns
    /// new fields (`None`: nothing to change), with its `updated` event. For a service applying
    /// what it heard from elsewhere; clients change records through the routes.
    pub async fn update_in(
        &self,
        tx: &mut Tx,
        id: Uuid,
        ctx: &EventContext,
        change: impl FnOnce(&R::Fields) -> Option<R::Fields>,
    ) -> Result<Option<Stored<R::Fields>>, ApiError> {
        let Some(current) = self.find_for_update(tx, id).await? else {
            return Ok(None);
        };
        let Some(fields) = change(&current.fields) else {
            return Ok(None);
        };
        // The change commits with the caller's transaction, after this returns: the tombstone
        // keeps the version it replaces out of the cache, and lets the new one in once a read
        // loads it.
        self.cache_changing(id, current.version).await;
        self.replace_in(tx, current, fields, ctx).await.map(Some)
    }

    /// Deletes `current` (read for update in `tx`), with its `deleted` event carrying the
    /// record as it was.
    pub async fn delete_in(
        &self,
        tx: &mut Tx,
        current: &Stored<R::Fields>,
        ctx: &EventContext,
    ) -> Result<(), ApiError> {
        let spec = self.spec();
        sql_assembled(format!("DELETE FROM {} WHERE id = $1", spec.table))
            .bind(current.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.refused(e))?;
        outbox::add(tx, &self.event(spec.deleted(), current, ctx)).await?;
        Ok(())
    }
}
