//! The routes of a kind of record, mounted under each of its path prefixes:
//!
//! - `POST /prefix`: create (201, `Location`, `ETag`); an `Idempotency-Key` replays the answer
//! - `GET /prefix?page=&limit=&<field>=`: a page, newest first, filtered on declared fields
//! - `GET /prefix/{id}`: one record with its `ETag`
//! - `PUT /prefix/{id}`: replace every field; `PATCH /prefix/{id}`: a JSON merge patch
//! - `DELETE /prefix/{id}`: 204
//!
//! Changes honour `If-Match` (412 when the record changed since it was read) and lock the record
//! for their transaction, so two changes never interleave. A prefix of [`Style::Seed`] answers
//! as a seed's clients expect (a list is an array, a replace is 204, bodies may carry `id` and
//! the timestamps); fields that are not `writable` keep their value whatever the style.

use axum::{
    Json, Router,
    extract::{MatchedPath, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use std::collections::BTreeMap;

use serde_json::{Map, Value, value::RawValue};
use uuid::Uuid;

use super::{FieldKind, Mount, Records, Resource, Stored, Style};
use crate::{
    db::Arg,
    http::{ApiError, ApiJson, ApiResult, PathId, RequestIds, parse_json, parse_uuid},
    idempotency::{self, Begun, IdempotencyKey},
    listing::Filters,
};

/// The routes of `R` under each of `mounts` (`/api/members`, and a seed's `/Member`).
pub fn router<R: Resource>(records: Records<R>, mounts: &[Mount]) -> Router {
    let mut router = Router::new();
    for mount in mounts {
        router = match mount.style {
            Style::Kassa => routes::<R, false>(router, mount.prefix),
            Style::Seed => routes::<R, true>(router, mount.prefix),
        };
    }
    router.with_state(records)
}

/// `SEED`: the prefix answers in [`Style::Seed`].
fn routes<R: Resource, const SEED: bool>(
    router: Router<Records<R>>,
    prefix: &str,
) -> Router<Records<R>> {
    router
        .route(prefix, get(list::<R, SEED>).post(create::<R, SEED>))
        .route(
            &format!("{prefix}/{{id}}"),
            get(read::<R>)
                .put(replace::<R, SEED>)
                .patch(patch::<R>)
                .delete(remove::<R>),
        )
}

/// The fields of a body, after the style's and the read-only fields' rules: `path_id` is the
/// record a replace is for, `current` its fields (`None` on create).
fn fields_of<R: Resource>(
    mut body: Map<String, Value>,
    seed: bool,
    path_id: Option<Uuid>,
    current: Option<&R::Fields>,
) -> ApiResult<R::Fields> {
    if seed {
        // What the client read back with the record: ignored, but only when it is what it
        // says it is.
        for name in ["createdAt", "updatedAt"] {
            match body.remove(name) {
                None => {}
                Some(Value::String(t)) if chrono::DateTime::parse_from_rfc3339(&t).is_ok() => {}
                Some(_) => {
                    return Err(ApiError::invalid(
                        name,
                        "invalid_field",
                        format!("Field `{name}` must be an RFC 3339 time (it is ignored)."),
                    ));
                }
            }
        }
        match (body.remove("id"), path_id) {
            (None, _) => {}
            (Some(Value::String(id)), path_id) => {
                let id = parse_uuid("id", &id)?;
                if path_id.is_some_and(|path_id| path_id != id) {
                    return Err(ApiError::invalid(
                        "id",
                        "id_mismatch",
                        "The body's `id` must be the id in the path (or be left out).",
                    ));
                }
            }
            (Some(_), _) => {
                return Err(ApiError::invalid(
                    "id",
                    "invalid_field",
                    "Field `id` must be the record's id, a UUID (or be left out).",
                ));
            }
        }
    }
    keep_read_only::<R>(&mut body, current, seed)?;
    let bytes = serde_json::to_vec(&body).map_err(|_| ApiError::internal())?;
    parse_json(&bytes)
}

/// Gives each field clients may not set its current value (`null` on create). On kassa's
/// routes a body that names one is refused (422); a seed's clients send back what they read,
/// so there a value of the right type is ignored.
fn keep_read_only<R: Resource>(
    body: &mut Map<String, Value>,
    current: Option<&R::Fields>,
    seed: bool,
) -> ApiResult<()> {
    let current = match current {
        Some(fields) => serde_json::to_value(fields).map_err(|_| ApiError::internal())?,
        None => Value::Null,
    };
    for field in R::SPEC.fields.iter().filter(|f| !f.writable) {
        if let Some(sent) = body.get(field.name) {
            if !seed {
                return Err(ApiError::unprocessable(
                    "read_only_field",
                    format!(
                        "`{}` is kept by the service and cannot be set; leave it out.",
                        field.name
                    ),
                )
                .with_param(field.name));
            }
            super::store::arg(field.kind, field.name, sent)?;
        }
        let now = current.get(field.name).cloned().unwrap_or(Value::Null);
        body.insert(field.name.to_owned(), now);
    }
    Ok(())
}

/// A body as it arrives: each member's JSON text.
type RawBody = BTreeMap<String, Box<RawValue>>;

/// A body's members as JSON values. An amount's own text is checked first: a double holds the
/// digits an amount may have, not the ones a client may send beyond them (`0.100000000000000001`
/// would otherwise pass as `0.1`).
fn values<R: Resource>(raw: RawBody) -> ApiResult<Map<String, Value>> {
    raw.into_iter()
        .map(|(name, raw)| {
            let text = raw.get().trim();
            if let Some(FieldKind::Amount(places)) = R::SPEC.field(&name).map(|f| f.kind)
                && text.starts_with(|c: char| c.is_ascii_digit() || c == '-')
            {
                kassa_contracts::money::parse_minor(text, places).map_err(|e| {
                    ApiError::invalid(&name, "invalid_amount", format!("Field `{name}` {e}."))
                })?;
            }
            let value = serde_json::from_str(text)
                .map_err(|e| crate::http::extract::json_problem(&name, e))?;
            Ok((name, value))
        })
        .collect()
}

fn with_etag(mut response: Response, record: &Stored<impl serde::Serialize>) -> Response {
    if let Ok(v) = HeaderValue::from_str(&record.etag()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn answer<F: serde::Serialize>(status: StatusCode, record: &Stored<F>) -> Response {
    with_etag((status, Json(record.to_json())).into_response(), record)
}

fn not_found<R: Resource>() -> ApiError {
    ApiError::not_found(
        R::SPEC.not_found,
        format!("No {} has this id.", R::SPEC.kind),
    )
}

/// The entity tags of an `If-Match` value (RFC 9110: `*`, or `"…"` and `W/"…"` separated by
/// commas); `None` when it is not one.
fn entity_tags(value: &str) -> Option<Vec<&str>> {
    if value.trim() == "*" {
        return Some(vec!["*"]);
    }
    value
        .split(',')
        .map(|tag| {
            let tag = tag.trim_matches([' ', '\t']);
            let opaque = tag.strip_prefix("W/").unwrap_or(tag);
            let inner = opaque.strip_prefix('"')?.strip_suffix('"')?;
            inner
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
                .then_some(tag)
        })
        .collect()
}

/// Refuses a change whose `If-Match` names no current version of the record (412). A value
/// that is not a list of entity tags names none, so it is refused the same way, as RFC 9110
/// evaluates it: the condition is false.
fn precondition<F: serde::Serialize>(headers: &HeaderMap, current: &Stored<F>) -> ApiResult<()> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let etag = current.etag();
    // A weak tag never matches (strong comparison, RFC 9110 13.1.1).
    let tags = value
        .to_str()
        .ok()
        .and_then(entity_tags)
        .unwrap_or_default();
    if tags.iter().any(|t| *t == "*" || *t == etag) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            format!("The record is not at the version `If-Match` names (its ETag is now {etag}); read it again and retry."),
        )
        .with_param("If-Match"))
    }
}

async fn create<R: Resource, const SEED: bool>(
    State(records): State<Records<R>>,
    matched: MatchedPath,
    ids: RequestIds,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RawBody>,
) -> ApiResult<Response> {
    let mut fields = fields_of::<R>(values::<R>(body)?, SEED, None, None)?;
    R::validate(&mut fields)?;
    let ctx = ids.event_context();
    let key = IdempotencyKey::from_headers(&headers)?;
    let location = |record: &Stored<R::Fields>| format!("{}/{}", matched.as_str(), record.id);
    let fingerprint = || {
        let body = serde_json::to_vec(&fields).map_err(|_| ApiError::internal())?;
        Ok(idempotency::fingerprint(&[&body]))
    };
    let mut write =
        match idempotency::begin(records.db(), &R::SPEC.created(), key, fingerprint).await? {
            Begun::Replay(response) => return Ok(response),
            Begun::Fresh(write) => write,
        };
    R::settle(None, &mut fields)?;
    R::in_write(write.tx(), None, Some(&fields)).await?;
    let record = records.create_in(write.tx(), fields, &ctx).await?;
    let body = serde_json::to_vec(&record.to_json()).map_err(|_| ApiError::internal())?;
    let mut response = with_etag(write.finish(StatusCode::CREATED, body).await?, &record);
    records.cache_changed(&record).await;
    if let Ok(v) = HeaderValue::from_str(&location(&record)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// A filter's value from the query, as its column's argument.
fn filter_arg(kind: FieldKind, name: &str, value: &str) -> ApiResult<Arg> {
    let bad =
        |what: &str| ApiError::invalid(name, "invalid_filter", format!("`{name}` must be {what}."));
    Ok(match kind {
        FieldKind::Text => Arg::from(value),
        FieldKind::Integer => Arg::from(value.parse::<i64>().map_err(|_| bad("a whole number"))?),
        FieldKind::Uuid => Arg::from(parse_uuid(name, value)?),
        FieldKind::Bool => Arg::from(match value {
            "true" => true,
            "false" => false,
            _ => return Err(bad("true or false")),
        }),
        FieldKind::Timestamp => Arg::from(
            chrono::DateTime::parse_from_rfc3339(value)
                .map_err(|_| bad("an RFC 3339 time"))?
                .with_timezone(&chrono::Utc),
        ),
        FieldKind::Amount(places) => Arg::from(
            kassa_contracts::money::parse_minor(value, places)
                .map_err(|_| bad("an amount above zero"))?,
        ),
    })
}

async fn list<R: Resource, const SEED: bool>(
    State(records): State<Records<R>>,
    matched: MatchedPath,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let style = if SEED { Style::Seed } else { Style::Kassa };
    list_answer(
        &records,
        matched.as_str(),
        query.as_deref(),
        style,
        Filters::new(),
    )
    .await
}

/// A list's answer in `style`: one page of the records that pass `fixed` and the filters of
/// `query` (paging and declared fields), for the list at `path`. For a service that serves a
/// subset of its records at a path of its own (a seed's `/api/Product/availability`).
pub async fn list_answer<R: Resource>(
    records: &Records<R>,
    path: &str,
    query: Option<&str>,
    style: Style,
    fixed: Filters,
) -> ApiResult<Response> {
    let seed = style == Style::Seed;
    let filterable: Vec<&str> = R::SPEC
        .fields
        .iter()
        .filter(|f| f.filter)
        .map(|f| f.name)
        .collect();
    let (pagination, pairs) = crate::listing::list_query(query, &filterable, seed)?;
    let mut filters = fixed;
    for (name, value) in &pairs {
        // Paging aside, `list_query` let through only the fields lists filter on.
        if let Some(field) = R::SPEC.field(name).filter(|f| f.filter) {
            filters = filters.equal(field.column, Some(filter_arg(field.kind, name, value)?));
        }
    }
    let page = records
        .page(pagination, &filters)
        .await?
        .map(|r| r.to_json());
    if !seed {
        return Ok(Json(page).into_response());
    }
    crate::listing::plain_page(&page, path, pairs)
}

async fn read<R: Resource>(
    State(records): State<Records<R>>,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let (version, json) = records.read_json(id).await?.ok_or_else(not_found::<R>)?;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], json).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

/// Applies a change to the record `id` under its lock, after checking `If-Match`.
async fn change<R: Resource>(
    records: &Records<R>,
    id: Uuid,
    headers: &HeaderMap,
    ids: &RequestIds,
    next: impl FnOnce(&Stored<R::Fields>) -> ApiResult<R::Fields>,
) -> ApiResult<Response> {
    let mut tx = records.db().begin().await?;
    let current = records
        .find_for_update(&mut tx, id)
        .await?
        .ok_or_else(not_found::<R>)?;
    // What is wrong with the request itself (400, 422) comes before what is wrong with its
    // timing (412).
    let mut fields = next(&current)?;
    R::validate(&mut fields)?;
    precondition(headers, &current)?;
    R::settle(Some(&current.fields), &mut fields)?;
    R::in_write(&mut tx, Some(&current), Some(&fields)).await?;
    let version = current.version;
    let record = records
        .replace_in(&mut tx, current, fields, &ids.event_context())
        .await?;
    // From here until the new version is cached, reads go to the database.
    records.cache_changing(id, version).await;
    tx.commit().await?;
    records.cache_changed(&record).await;
    Ok(answer(StatusCode::OK, &record))
}

async fn replace<R: Resource, const SEED: bool>(
    State(records): State<Records<R>>,
    PathId(id): PathId,
    ids: RequestIds,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RawBody>,
) -> ApiResult<Response> {
    let body = values::<R>(body)?;
    let changed = change(&records, id, &headers, &ids, |current| {
        fields_of::<R>(body, SEED, Some(id), Some(&current.fields))
    })
    .await?;
    Ok(if SEED {
        StatusCode::NO_CONTENT.into_response()
    } else {
        changed
    })
}

/// RFC 7396: each member of the patch replaces that field; `null` clears it.
async fn patch<R: Resource>(
    State(records): State<Records<R>>,
    PathId(id): PathId,
    ids: RequestIds,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<RawBody>,
) -> ApiResult<Response> {
    let patch = values::<R>(patch)?;
    change(&records, id, &headers, &ids, |current| {
        let mut merged = match serde_json::to_value(&current.fields) {
            Ok(Value::Object(map)) => map,
            _ => return Err(ApiError::internal()),
        };
        // Only what the patch names is the client's; the kept fields are put back as they are.
        for field in R::SPEC.fields.iter().filter(|f| !f.writable) {
            merged.remove(field.name);
        }
        for (name, value) in patch {
            merged.insert(name, value);
        }
        fields_of::<R>(merged, false, Some(current.id), Some(&current.fields))
    })
    .await
}

async fn remove<R: Resource>(
    State(records): State<Records<R>>,
    PathId(id): PathId,
    ids: RequestIds,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let mut tx = records.db().begin().await?;
    let current = records
        .find_for_update(&mut tx, id)
        .await?
        .ok_or_else(not_found::<R>)?;
    precondition(&headers, &current)?;
    R::in_write(&mut tx, Some(&current), None).await?;
    records
        .delete_in(&mut tx, &current, &ids.event_context())
        .await?;
    records.cache_changing(id, current.version).await;
    tx.commit().await?;
    records.cache_deleted(&current).await;
    Ok(StatusCode::NO_CONTENT)
}
