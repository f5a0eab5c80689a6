//! Paged lists: one query for a page of rows in a fixed order, one for how many there are in all,
//! answered as `{data, meta}`. Every list endpoint goes through here, so paging, filters and
//! their limits behave the same everywhere.

use std::borrow::Cow;

use crate::{
    db::{Arg, Db, DbResult, Row, sql_assembled},
    http::{Page, Pagination},
};

/// What a list reads: a table, its columns and an order that is total (ends in a unique column,
/// so pages never overlap or skip rows).
#[derive(Debug, Clone)]
pub struct Listing {
    pub table: &'static str,
    pub columns: Cow<'static, str>,
    /// `created_at DESC, id DESC`
    pub order_by: &'static str,
}

/// Equality filters on columns the service names (never on names from the request).
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<(&'static str, &'static str, Arg)>);

impl Filters {
    pub fn new() -> Self {
        Filters::default()
    }

    /// Only rows whose `column` equals `value`; nothing when `value` is `None`.
    pub fn equal(self, column: &'static str, value: Option<impl Into<Arg>>) -> Self {
        self.compare(column, "=", value)
    }

    /// Only rows whose `column` is `value` or later; nothing when `value` is `None`.
    pub fn at_least(self, column: &'static str, value: Option<impl Into<Arg>>) -> Self {
        self.compare(column, ">=", value)
    }

    /// Only rows whose `column` is before `value`; nothing when `value` is `None`.
    pub fn below(self, column: &'static str, value: Option<impl Into<Arg>>) -> Self {
        self.compare(column, "<", value)
    }

    fn compare(
        mut self,
        column: &'static str,
        op: &'static str,
        value: Option<impl Into<Arg>>,
    ) -> Self {
        if let Some(v) = value {
            self.0.push((column, op, v.into()));
        }
        self
    }

    fn clause(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let terms: Vec<String> = self
            .0
            .iter()
            .enumerate()
            .map(|(i, (column, op, _))| format!("{column} {op} ${}", i + 1))
            .collect();
        format!(" WHERE {}", terms.join(" AND "))
    }
}

impl Listing {
    /// One page of rows that pass `filters`, read with `read`, and the number of such rows.
    pub async fn page<T>(
        &self,
        db: &Db,
        pagination: Pagination,
        filters: &Filters,
        read: impl Fn(&Row) -> DbResult<T>,
    ) -> DbResult<Page<T>> {
        let clause = filters.clause();
        let n = filters.0.len();
        let mut rows = sql_assembled(format!(
            "SELECT {} FROM {}{clause} ORDER BY {} LIMIT ${} OFFSET ${}",
            self.columns,
            self.table,
            self.order_by,
            n + 1,
            n + 2
        ));
        let mut count = sql_assembled(format!("SELECT COUNT(*) AS n FROM {}{clause}", self.table));
        for (_, _, arg) in &filters.0 {
            rows = rows.bind(arg.clone());
            count = count.bind(arg.clone());
        }
        let rows = rows
            .bind(pagination.limit as i64)
            .bind(pagination.offset())
            .fetch_all(db)
            .await?;
        let total: i64 = count.fetch_one(db).await?.get("n")?;
        let data = rows.iter().map(read).collect::<DbResult<Vec<T>>>()?;
        Ok(Page::new(data, pagination, total))
    }
}

/// Declares a `GET` list endpoint answering `{data, meta}`: its handler reads a page through a
/// store function `fn(&Db, Pagination) -> DbResult<Page<Row>>` from the state's `db`, shows each
/// row as `$view` (`From<Row>`), and documents itself (paging parameters, 400, 500, 503).
#[macro_export]
macro_rules! list_endpoint {
    (
        $(#[$doc:meta])*
        fn $name:ident(path = $path:literal, tag = $tag:literal, description = $description:literal,
            state = $state:ty, view = $view:ident, page = $page:path)
    ) => {
        $(#[$doc])*
        #[utoipa::path(get, path = $path, tag = $tag, params($crate::http::Pagination),
            responses((status = 200, body = $crate::http::Page<$view>, description = $description),
                $crate::http::openapi::InvalidParams))]
        pub async fn $name(
            ::axum::extract::State(state): ::axum::extract::State<$state>,
            pagination: $crate::http::Pagination,
        ) -> $crate::http::ApiResult<::axum::Json<$crate::http::Page<$view>>> {
            Ok(::axum::Json($page(&state.db, pagination).await?.map($view::from)))
        }
    };
    // A list of things that belong to users: its store function also takes whose things to
    // list (`None`: everyone's), which the caller decides ([`crate::auth::Access::sees`]).
    (
        $(#[$doc:meta])*
        fn $name:ident(path = $path:literal, tag = $tag:literal, description = $description:literal,
            state = $state:ty, view = $view:ident, page = $page:path, owned_by_caller)
    ) => {
        $(#[$doc])*
        #[utoipa::path(get, path = $path, tag = $tag, params($crate::http::Pagination),
            security((), ("bearer" = []), ("cookie" = [])),
            responses((status = 200, body = $crate::http::Page<$view>, description = $description),
                $crate::http::openapi::SignedIn,
                $crate::http::openapi::InvalidParams))]
        pub async fn $name(
            ::axum::extract::State(state): ::axum::extract::State<$state>,
            access: $crate::auth::Access,
            pagination: $crate::http::Pagination,
        ) -> $crate::http::ApiResult<::axum::Json<$crate::http::Page<$view>>> {
            let owner = access.sees()?;
            Ok(::axum::Json($page(&state.db, pagination, owner).await?.map($view::from)))
        }
    };
}

/// The parameters of a list's query: paging, and the filters it names, each of `allowed`; any
/// other is a 400 `unknown_parameter` naming it.
pub fn query_pairs(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, crate::http::ApiError> {
    use crate::http::ApiError;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_query",
                "The query string is not valid form encoding.",
            )
        })?;
    for (name, _) in &pairs {
        if name != "page" && name != "limit" && !allowed.contains(&name.as_str()) {
            return Err(ApiError::invalid(
                name.as_str(),
                "unknown_parameter",
                format!(
                    "`{name}` is not a parameter of this list; it takes page, limit{}.",
                    allowed.iter().map(|a| format!(", {a}")).collect::<String>()
                ),
            ));
        }
    }
    Ok(pairs)
}

/// A list's paging and parameters (each of `allowed`, as [`query_pairs`] checks them). A
/// seed's clients (`seed`) read the whole list from one call: unless they name a `limit`, a
/// page holds the most one may.
pub fn list_query(
    query: Option<&str>,
    allowed: &[&str],
    seed: bool,
) -> Result<(Pagination, Vec<(String, String)>), crate::http::ApiError> {
    let mut pagination = Pagination::from_query(query)?;
    let pairs = query_pairs(query, allowed)?;
    if seed && !pairs.iter().any(|(name, _)| name == "limit") {
        pagination.limit = crate::http::extract::MAX_LIMIT;
    }
    Ok((pagination, pairs))
}

/// A page answered as a seed's clients read lists: a plain JSON array, `X-Total-Count` for how
/// many there are in all, and `Link: <…>; rel="next"` naming the next page of the list at
/// `path` with the same `query` parameters (`pairs`) when there is one.
pub fn plain_page<T: serde::Serialize>(
    page: &Page<T>,
    path: &str,
    pairs: Vec<(String, String)>,
) -> Result<axum::response::Response, crate::http::ApiError> {
    use axum::{
        http::{HeaderValue, header},
        response::IntoResponse,
    };
    let mut response = axum::Json(&page.data).into_response();
    let headers = response.headers_mut();
    headers.insert("x-total-count", HeaderValue::from(page.meta.total));
    if page.meta.page < page.meta.total_pages as u32 {
        let mut next: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(name, _)| name != "page" && name != "limit")
            .collect();
        next.push(("page".into(), (page.meta.page + 1).to_string()));
        next.push(("limit".into(), page.meta.limit.to_string()));
        let query =
            serde_urlencoded::to_string(&next).map_err(|_| crate::http::ApiError::internal())?;
        if let Ok(link) = HeaderValue::from_str(&format!("<{path}?{query}>; rel=\"next\"")) {
            headers.insert(header::LINK, link);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_number_their_placeholders_in_order() {
        let f = Filters::new()
            .equal("status", Some("PAID"))
            .equal("user_id", None::<&str>)
            .equal("currency", Some("EUR"));
        assert_eq!(f.clause(), " WHERE status = $1 AND currency = $2");
        let f = Filters::new()
            .at_least("placed_at", Some(1_i64))
            .below("placed_at", Some(2_i64));
        assert_eq!(f.clause(), " WHERE placed_at >= $1 AND placed_at < $2");
        assert_eq!(Filters::new().clause(), "");
    }
}
