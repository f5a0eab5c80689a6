//! `Idempotency-Key` with Stripe's semantics: the first response to a key is stored in the same
//! transaction as the work it describes and replayed for every repeat; the same key with a
//! different request is refused.
//!
//! The key row is inserted first in the work's transaction. A concurrent duplicate blocks on that
//! row (PostgreSQL) or on the write lock (SQLite) until the first commits, then finds the stored
//! response and replays it: a duplicate never does the work twice.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::{
    db::{Db, DbResult, Tx, sql},
    http::ApiError,
};

pub const HEADER: &str = "idempotency-key";

/// A validated `Idempotency-Key` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Reads the header if present; a key longer than 255 characters or not printable ASCII is a 400.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get(HEADER) else {
            return Ok(None);
        };
        let invalid = || {
            ApiError::invalid(
                "Idempotency-Key",
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            )
        };
        let text = value.to_str().map_err(|_| invalid())?.trim();
        if text.is_empty()
            || text.len() > 255
            || !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(invalid());
        }
        Ok(Some(IdempotencyKey(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A fingerprint of the request a key was first used with.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Claim {
    /// First use: do the work in this transaction and [`store`] its response.
    Fresh,
    /// Seen before: answer with the stored response.
    Replay { status: StatusCode, body: Vec<u8> },
}

/// Claims `key` in `scope` inside `tx`.
pub async fn claim(
    tx: &mut Tx,
    scope: &str,
    key: &IdempotencyKey,
    request_hash: &str,
) -> Result<Claim, ApiError> {
    let inserted = sql("INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
        .bind(scope)
        .bind(key.as_str())
        .bind(request_hash)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let row = sql("SELECT request_hash, status_code, response FROM idempotency_keys WHERE scope = $1 AND key = $2")
        .bind(scope)
        .bind(key.as_str())
        .fetch_one(&mut *tx)
        .await?;
    let stored_hash: String = row.get("request_hash")?;
    if stored_hash != request_hash {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request; use a new key for a new request.",
        )
        .with_param("Idempotency-Key"));
    }
    let status: Option<i64> = row.get("status_code")?;
    let body: Option<Vec<u8>> = row.get("response")?;
    match (status, body) {
        (Some(status), Some(body)) => Ok(Claim::Replay {
            status: StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK),
            body,
        }),
        // Only reachable if a first attempt's transaction committed without storing a response.
        _ => Err(ApiError::conflict(
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
        )
        .with_param("Idempotency-Key")),
    }
}

/// Stores the response of a fresh claim, in the same transaction as the work.
pub async fn store(
    tx: &mut Tx,
    scope: &str,
    key: &IdempotencyKey,
    status: StatusCode,
    body: &[u8],
) -> DbResult<()> {
    sql(
        "UPDATE idempotency_keys SET status_code = $1, response = $2 WHERE scope = $3 AND key = $4",
    )
    .bind(status.as_u16() as i64)
    .bind(body.to_vec())
    .bind(scope)
    .bind(key.as_str())
    .execute(tx)
    .await?;
    Ok(())
}

/// A JSON answer from stored bytes.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// How the work of a request starts.
pub enum Begun {
    /// The key was used before with the same request: answer this, do nothing.
    Replay(Response),
    /// Do the work in [`Write::tx`], then [`Write::finish`].
    Fresh(Write),
}

/// The work of one request in one transaction, answered once: under the request's
/// `Idempotency-Key` when it carries one (the transaction holds the key, so a concurrent
/// duplicate waits on it and then replays the answer this one stores), in a plain transaction
/// when it does not.
pub struct Write {
    tx: Tx,
    key: Option<(String, IdempotencyKey)>,
}

/// Starts the work of a request in `scope` (one per endpoint). With a `key`, `fingerprint` makes
/// the request's fingerprint (only then), and the answer is a replay of the stored response, a
/// 422 for the same key with another request, or a transaction that holds the key. Without one,
/// a plain transaction.
pub async fn begin(
    db: &Db,
    scope: &str,
    key: Option<IdempotencyKey>,
    fingerprint: impl FnOnce() -> Result<String, ApiError>,
) -> Result<Begun, ApiError> {
    let Some(key) = key else {
        return Ok(Begun::Fresh(Write::plain(db).await?));
    };
    let fingerprint = fingerprint()?;
    let mut tx = db.begin().await?;
    match claim(&mut tx, scope, &key, &fingerprint).await? {
        Claim::Replay { status, body } => {
            tx.rollback().await?;
            let mut r = json_response(status, body);
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(Begun::Replay(r))
        }
        Claim::Fresh => Ok(Begun::Fresh(Write {
            tx,
            key: Some((scope.to_owned(), key)),
        })),
    }
}

impl Write {
    /// A write with no key to answer under: the work of a request without one, begun once the
    /// calls it makes first have answered (a keyed write holds its key from the start).
    pub async fn plain(db: &Db) -> Result<Write, ApiError> {
        Ok(Write {
            tx: db.begin().await?,
            key: None,
        })
    }

    /// The transaction to do the work in.
    pub fn tx(&mut self) -> &mut Tx {
        &mut self.tx
    }

    /// Stores the answer with the work when there is a key, and commits; returns the answer.
    pub async fn finish(mut self, status: StatusCode, body: Vec<u8>) -> Result<Response, ApiError> {
        if let Some((scope, key)) = &self.key {
            store(&mut self.tx, scope, key, status, &body).await?;
        }
        self.tx.commit().await?;
        Ok(json_response(status, body))
    }
}
