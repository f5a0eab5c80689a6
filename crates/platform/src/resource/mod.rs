//! The resource kit: plain records (a gym's members, classes and staff; a shop's products) with
//! create, read, full and partial update, delete, paged lists with filters, optimistic
//! concurrency (`ETag` / `If-Match`), `<kind>.created|updated|deleted` events through the outbox,
//! and their OpenAPI document. A service declares its record and its rules; the kit does the
//! rest.
//!
//! A record is a table with `id` (UUID), `version`, `created_at`, `updated_at` and one column per
//! declared [`Field`]; its JSON is the fields in camelCase plus `id`, `createdAt` and
//! `updatedAt`. Unique constraints of the table answer 409 with the field at fault.
//!
//! - `store.rs`: the SQL, written once from the declared fields
//! - `api.rs`: the routes and their rules (ETag, If-Match, merge-patch, Idempotency-Key)
//! - `openapi.rs`: the document of those routes

mod api;
mod openapi;
mod store;

use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

pub use api::{list_answer, router};
pub use openapi::document;

pub use store::Records;

use crate::http::ApiError;

/// How a field is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Integer,
    Uuid,
    Bool,
    Timestamp,
    /// Money with this many decimal places, stored exactly as minor units in a `BIGINT`
    /// ([`validate::Amount`](crate::validate::Amount) in the fields).
    Amount(u8),
}

/// One field of a record: its JSON name, its column, whether lists can filter on it, and
/// whether clients may set it.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// camelCase, as in the JSON.
    pub name: &'static str,
    pub column: &'static str,
    pub kind: FieldKind,
    /// `GET /…?name=value` keeps only records whose field equals the value.
    pub filter: bool,
    /// `false` for a field the service keeps from what happens elsewhere (a member's `classId`
    /// follows their enrolment): a body may leave it out, send `null` on create or send its
    /// current value; any other value is a 422 naming it.
    pub writable: bool,
}

impl Field {
    /// A field clients set, not filtered on.
    pub const fn new(name: &'static str, column: &'static str, kind: FieldKind) -> Self {
        Field {
            name,
            column,
            kind,
            filter: false,
            writable: true,
        }
    }

    pub const fn text(name: &'static str, column: &'static str) -> Self {
        Field::new(name, column, FieldKind::Text)
    }

    pub const fn uuid(name: &'static str, column: &'static str) -> Self {
        Field::new(name, column, FieldKind::Uuid)
    }

    pub const fn integer(name: &'static str, column: &'static str) -> Self {
        Field::new(name, column, FieldKind::Integer)
    }

    /// An amount of money with `places` decimal places, in a column of minor units.
    pub const fn amount(name: &'static str, column: &'static str, places: u8) -> Self {
        Field::new(name, column, FieldKind::Amount(places))
    }

    pub const fn timestamp(name: &'static str, column: &'static str) -> Self {
        Field::new(name, column, FieldKind::Timestamp)
    }

    /// Lists can filter on it.
    pub const fn filtered(self) -> Self {
        Field {
            filter: true,
            ..self
        }
    }

    /// The service keeps it; clients cannot set it.
    pub const fn kept(self) -> Self {
        Field {
            writable: false,
            ..self
        }
    }
}

/// How a prefix's routes answer: kassa's way, or the way a seed's clients already expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Lists are `{data, meta}`; a replace answers 200 with the record.
    Kassa,
    /// Lists are a plain JSON array of one page (`X-Total-Count` tells how many in all); a
    /// replace answers 204; bodies may carry the record's `id` (on a replace it must be the
    /// path's), `createdAt` and `updatedAt`, which are not the client's to set and are ignored.
    Seed,
}

/// A path prefix the routes of a kind of record are served under.
#[derive(Debug, Clone, Copy)]
pub struct Mount {
    pub prefix: &'static str,
    pub style: Style,
}

impl Mount {
    pub const fn kassa(prefix: &'static str) -> Self {
        Mount {
            prefix,
            style: Style::Kassa,
        }
    }

    pub const fn seed(prefix: &'static str) -> Self {
        Mount {
            prefix,
            style: Style::Seed,
        }
    }
}

/// A unique constraint of the table, as a client hears of it: 409 with this code and sentence,
/// naming the field.
#[derive(Debug, Clone, Copy)]
pub struct Unique {
    pub constraint: &'static str,
    pub field: &'static str,
    pub code: &'static str,
    pub detail: &'static str,
}

/// What a kind of record is.
#[derive(Debug)]
pub struct ResourceSpec {
    /// Singular, lower case: `member` names the events `member.created|updated|deleted`.
    pub kind: &'static str,
    /// The OpenAPI tag and the schema names' stem: `Member`.
    pub title: &'static str,
    pub table: &'static str,
    pub fields: &'static [Field],
    pub unique: &'static [Unique],
    /// Problem code for an id that names no record: `member_not_found`.
    pub not_found: &'static str,
    /// The other 409s the record's `in_write` answers, for its document (`""`: none).
    pub conflicts: &'static str,
    /// When the record's `in_write` refuses a deletion (409), for its document (`""`: never).
    pub undeletable: &'static str,
}

impl ResourceSpec {
    pub fn created(&self) -> String {
        format!("{}.created", self.kind)
    }

    pub fn updated(&self) -> String {
        format!("{}.updated", self.kind)
    }

    pub fn deleted(&self) -> String {
        format!("{}.deleted", self.kind)
    }

    pub(crate) fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A kind of record: its declaration and its rules.
#[async_trait::async_trait]
pub trait Resource: Send + Sync + 'static {
    /// What a client sets, in camelCase JSON; the kit stores each declared field in its column.
    /// Declare it `#[serde(deny_unknown_fields)]` so a misspelt field is a 400.
    type Fields: Serialize + DeserializeOwned + utoipa::ToSchema + Clone + Send + Sync + 'static;

    const SPEC: &'static ResourceSpec;

    /// Checks and normalises what a client sent (trims names, lower-cases emails); the error
    /// names the field at fault.
    /// By default nothing: rules of one field belong in its type (`validate::Text`, `Email`,
    /// `Phone`), which its schema then states too.
    fn validate(_fields: &mut Self::Fields) -> Result<(), ApiError> {
        Ok(())
    }

    /// The service's part of a change, once the request is known to be valid and current:
    /// checked against the record as it stands (`None` on create), which transitions its
    /// states allow, and the fields it derives from them (a payment's `paidAt` once it is
    /// completed). By default nothing.
    fn settle(_current: Option<&Self::Fields>, _next: &mut Self::Fields) -> Result<(), ApiError> {
        Ok(())
    }

    /// Runs in a write's transaction, before the write: checks it against what else the
    /// service holds (a class's enrolments against its capacity, a reference against the
    /// records it knows) and changes what goes with it. `current` is the record as it stands,
    /// locked for the write (`None` on create), `fields` what it becomes (`None` on delete). By
    /// default there is nothing to check.
    async fn in_write(
        _tx: &mut crate::db::Tx,
        _current: Option<&Stored<Self::Fields>>,
        _fields: Option<&Self::Fields>,
    ) -> Result<(), ApiError> {
        Ok(())
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<F> {
    pub id: Uuid,
    /// Starts at 1, one more for every change: the `ETag`.
    pub version: i64,
    pub fields: F,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A record as the API and the events show it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct View<'a, F> {
    id: Uuid,
    #[serde(flatten)]
    fields: &'a F,
    #[serde(serialize_with = "kassa_contracts::json::timestamp")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "kassa_contracts::json::timestamp")]
    updated_at: DateTime<Utc>,
}

impl<F: Serialize> Stored<F> {
    /// The record's JSON: `id`, the fields, `createdAt`, `updatedAt`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(View {
            id: self.id,
            fields: &self.fields,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
        // Fields are plain JSON values: serialising them cannot fail.
        .unwrap_or(serde_json::Value::Null)
    }

    /// The strong `ETag` of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

#[cfg(test)]
mod tests;

/// Declares a service of plain records: its name, port, migrations, routes and how it is
/// built, so the service's crate holds only its record and rules. It defines `NAME`,
/// `MIGRATIONS`, `MOUNTS`, `SERVICE`, `records(db)` and `api(records)`:
///
/// ```ignore
/// kassa_platform::records_service! {
///     name: "members", port: 5062, resource: Members,
///     mounts: [kassa "/api/members", seed "/Member"],
///     access: { read: Policy::STAFF, write: Policy::STAFF, seed_group: "seed002" },
///     migrations: [1 "0001_members"],
/// }
/// ```
///
/// `access` says who may read the records (`GET`) and who may change them, under every
/// mount; a seed mount's routes are in `seed_group`, which the operator may open to anonymous
/// callers. Routes the service adds have their rules in `more_access: [RULES, …]`.
///
/// Migration `0001_members` is read from `migrations/postgres/0001_members.sql` and
/// `migrations/sqlite/0001_members.sql` beside the crate's `src`. The service's document is
/// the records' unless `document: path` names a `fn() -> OpenApi` of its own (the records'
/// and more). A service that also consumes events (`consumes: &TOPICS`) or serves more routes
/// (under its mounts, or under prefixes of their own named in `more_routes: ["/api/…"]`) names
/// a function that adds its parts: `extend: more` with `fn more(infra: &Infra, parts:
/// ServiceParts, records: Records<R>) -> Result<ServiceParts, BuildError>`.
#[macro_export]
macro_rules! records_service {
    (
        name: $name:literal, port: $port:literal, resource: $resource:ty,
        mounts: [$($style:ident $prefix:literal),+ $(,)?],
        access: { read: $read:expr, write: $write:expr $(, seed_group: $group:literal)? $(,)? },
        $(more_routes: [$($more:literal),+ $(,)?],)?
        $(more_access: [$($more_rules:expr),+ $(,)?],)?
        migrations: [$($version:literal $file:literal),+ $(,)?]
        $(, document: $document:path)?
        $(, consumes: $consumes:expr)?
        $(, extend: $extend:path)? $(,)?
    ) => {
        pub const NAME: &str = $name;

        pub const MIGRATIONS: $crate::migrate::Migrations =
            $crate::migrations!(NAME, [$($version $file),+]);

        /// The route group of the seed mounts, which the operator may open to anonymous
        /// callers.
        const SEED_GROUP: ::std::option::Option<&'static str> =
            $crate::records_service!(@group $($group)?);

        /// The prefixes the routes are served under, each in its style.
        pub const MOUNTS: &[$crate::resource::Mount] = &[$($crate::resource::Mount::$style($prefix)),+];

        pub static SERVICE: $crate::service::Service = $crate::service::Service {
            name: NAME,
            default_port: $port,
            migrations: Some(&MIGRATIONS),
            routes: &[$($prefix,)+ $($($more,)+)?],
            access: &[
                $($crate::record_rules!($prefix, $read, $write, $style, SEED_GROUP),)+
                $($($more_rules,)+)?
            ],
            consumes: $crate::records_service!(@consumes $($consumes)?),
            settings: &[],
            tasks: &[],
            openapi: $crate::records_service!(@document $resource $(, $document)?),
            build,
        };

        /// The records in `db`, whose events name this service as their source.
        pub fn records(db: $crate::db::Db) -> $crate::resource::Records<$resource> {
            $crate::resource::Records::new(db, NAME)
        }

        /// The record routes over `records`.
        pub fn api(records: $crate::resource::Records<$resource>) -> $crate::http::Router {
            $crate::resource::router(records, MOUNTS)
        }

        fn build(
            infra: &$crate::service::Infra,
        ) -> ::std::result::Result<$crate::service::ServiceParts, $crate::service::BuildError> {
            let records = records(infra.db()?);
            let parts = $crate::service::ServiceParts::api(api(records.clone()), SERVICE.openapi);
            $crate::records_service!(@extend infra, parts, records $(, $extend)?)
        }
    };
    (@document $resource:ty) => { || $crate::resource::document::<$resource>(MOUNTS) };
    (@document $resource:ty, $document:path) => { $document };
    (@group) => { ::std::option::Option::None };
    (@group $group:literal) => { ::std::option::Option::Some($group) };
    (@consumes) => { &[] };
    (@consumes $consumes:expr) => { $consumes };
    (@extend $infra:ident, $parts:ident, $records:ident) => {{
        let _ = $records;
        Ok($parts)
    }};
    (@extend $infra:ident, $parts:ident, $records:ident, $extend:path) => {
        $extend($infra, $parts, $records)
    };
}
