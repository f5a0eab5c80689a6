//! The seed's four report routes (`/api/v1/reports/reports/…`): each takes a range of local
//! dates and a time zone, answers money as exact decimals by currency, and is open to staff and
//! the shop's own devices, never to customers.

use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    routing::get,
};
use chrono::{NaiveDate, SecondsFormat};
use chrono_tz::Tz;
use kassa_contracts::{Currency, money::raw_number};
use kassa_platform::{
    access::{Policy, Rule},
    auth::Access,
    db::Db,
    http::{
        ApiError, ApiResult, Page, Pagination,
        openapi::{self, InvalidParams, ProblemResponses, RoleRequired},
        parse_currency,
    },
    listing::query_pairs,
};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::{
    IntoResponses, OpenApi, ToSchema,
    openapi::{
        RefOr, Response,
        schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type},
    },
};
use uuid::Uuid;

use crate::{
    clickhouse::{ChError, ClickHouse},
    facts::{OrderFacts, Sales, Status},
    period::{Interval, MAX_BUCKETS, MAX_DAYS, Period},
    reports::{self, ProductFigures, Rank},
};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// The shop's time zone, for a request that names none.
    pub zone: Tz,
    /// Where reports are read when not from `db`.
    pub clickhouse: Option<ClickHouse>,
}

/// The report store could not answer: a 503, the cause logged.
fn unavailable(e: ChError) -> ApiError {
    tracing::warn!(error = %e, "the report store did not answer");
    ApiError::unavailable("The report store (ClickHouse) is not answering; try again shortly.")
}

/// What every report is asked: a period in a time zone, perhaps one currency.
#[derive(Debug, Clone)]
pub struct Asked {
    pub period: Period,
    pub currency: Option<String>,
    /// Whether the period was asked for (`from` or `to`), or is today by default.
    pub ranged: bool,
    /// The other parameters, by name.
    pub rest: BTreeMap<String, String>,
}

fn date(param: &str, value: &str) -> Result<NaiveDate, ApiError> {
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::invalid(
                param,
                "invalid_date",
                format!("`{param}` must be a date written YYYY-MM-DD."),
            )
        })
}

/// Declares a query parameter's type by its schema, for the routes' documents.
macro_rules! parameter {
    ($(#[$doc:meta])* $name:ident, $schema:path) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<Schema> {
                $schema().into()
            }
        }

        impl ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
    };
}

parameter!(
    /// A local date, YYYY-MM-DD.
    LocalDate,
    date_schema
);
parameter!(
    /// An IANA time zone name.
    TimeZoneName,
    time_zone_schema
);
parameter!(
    /// `hour`, `day` or `week`.
    TrendInterval,
    interval_schema
);
parameter!(
    /// Where an order stands.
    StatusFilter,
    status_schema
);
parameter!(
    /// How many products a ranking lists.
    TopCount,
    top_schema
);

/// The parameters every report takes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read from the raw query by [`asked`]; this only documents them.
pub struct Range {
    /// The first local day (YYYY-MM-DD). With neither `from` nor `to`, the report covers today
    /// (the recent orders: every order).
    from: Option<LocalDate>,
    /// The last local day, included: `from` when not given, or today when `from` is past.
    to: Option<LocalDate>,
    /// The IANA time zone the days are in (the service's `--report-time-zone` when not given).
    #[param(rename = "timeZone")]
    time_zone: Option<TimeZoneName>,
    /// Only orders in this currency.
    currency: Option<openapi::CurrencyCode>,
}

/// What a report can answer besides its figures: 401 and 403 (a customer's token: reports are
/// for the shop), 422 for parameters that do not go together, 400, 500 and 503.
pub struct ReportErrors;

impl IntoResponses for ReportErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = RoleRequired::responses();
        responses.append(&mut InvalidParams::responses());
        responses.insert(
            "422".into(),
            RefOr::T(openapi::problem_response(
                422,
                "The parameters do not go together: `to` before `from` or more than 3660 days \
                 (`invalid_range`), more than 1000 points in a trend (`too_many_points`), or a \
                 page of recent orders past the 10,000th (`page_too_deep`).",
            )),
        );
        responses
    }
}

/// A date parameter as [`date`] reads it.
pub fn date_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .pattern(Some("^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))
        .into()
}

/// A time zone parameter: an IANA name, exactly as the time zone database writes it.
pub fn time_zone_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|z| z.name())))
        .examples([serde_json::json!("Asia/Jakarta")])
        .into()
}

fn interval_schema() -> Schema {
    openapi::any_case_text(
        &Interval::NAMES,
        "`hour`, `day` or `week`, in any letter case.",
    )
}

const STATUSES: [&str; 6] = [
    "PENDING",
    "PAID",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CANCELED",
];

fn status_schema() -> Schema {
    openapi::any_case_text(&STATUSES, "Where the order stands now, in any letter case.")
}

fn top_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^(?:[1-9][0-9]?|100)$"))
        .description(Some("A whole number from 1 to 100, in digits."))
        .into()
}

/// Reads the common parameters and those in `extra`; any other (and a repeated one) is a 400.
pub fn asked(
    query: Option<&str>,
    extra: &[&str],
    paged: bool,
    state: &AppState,
) -> Result<Asked, ApiError> {
    let mut allowed = vec!["from", "to", "timeZone", "currency"];
    allowed.extend_from_slice(extra);
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in query_pairs(query, &allowed)? {
        if !paged && (name == "page" || name == "limit") {
            return Err(ApiError::invalid(
                name.as_str(),
                "unknown_parameter",
                format!("`{name}` is not a parameter of this report; it has no pages."),
            ));
        }
        if given.insert(name.clone(), value).is_some() {
            return Err(ApiError::invalid(
                name.as_str(),
                "repeated_parameter",
                format!("`{name}` is given more than once."),
            ));
        }
    }
    let zone = match given.remove("timeZone") {
        None => state.zone,
        Some(name) => name.parse::<Tz>().map_err(|_| {
            ApiError::invalid(
                "timeZone",
                "invalid_time_zone",
                "`timeZone` must name an IANA time zone, such as Asia/Jakarta or UTC.",
            )
        })?,
    };
    let today = Period::today(zone, kassa_contracts::now());
    let from = given.remove("from").map(|v| date("from", &v)).transpose()?;
    let to = given.remove("to").map(|v| date("to", &v)).transpose()?;
    let ranged = from.is_some() || to.is_some();
    let (from, to) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, f.max(today.to)),
        (None, Some(t)) => (t, t),
        (None, None) => (today.from, today.to),
    };
    if to < from {
        return Err(
            ApiError::unprocessable("invalid_range", "`to` must not be before `from`.")
                .with_param("to"),
        );
    }
    let period = Period { zone, from, to };
    if period.days() > MAX_DAYS || period.end() <= period.start() {
        return Err(ApiError::unprocessable(
            "invalid_range",
            format!("A report covers at most {MAX_DAYS} days, each before 9999-12-31."),
        )
        .with_param("to"));
    }
    let currency = given
        .remove("currency")
        .map(|c| parse_currency("currency", &c).map(|c| c.code().to_owned()))
        .transpose()?;
    Ok(Asked {
        period,
        currency,
        ranged,
        rest: given,
    })
}

fn exponent(currency: &str) -> u8 {
    Currency::parse(currency).map(|c| c.exponent()).unwrap_or(2)
}

/// `minor / n` rounded half away from zero.
fn average(minor: i64, n: i64) -> i64 {
    if n == 0 {
        return 0;
    }
    let (q, r) = (minor / n, minor % n);
    if 2 * r.abs() >= n {
        q + minor.signum()
    } else {
        q
    }
}

/// Money of one currency in a report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    #[schema(value_type = openapi::CurrencyCode)]
    pub currency: String,
    /// Orders placed in this currency.
    pub orders: i64,
    /// Of those, the orders whose payment went through (refunded ones included).
    pub paid_orders: i64,
    /// What their payments took in.
    #[schema(schema_with = openapi::amount_output)]
    pub revenue: Box<RawValue>,
    /// What went back to customers of these orders.
    #[schema(schema_with = openapi::amount_output)]
    pub refunds: Box<RawValue>,
    /// Revenue less refunds.
    #[schema(schema_with = openapi::amount_output)]
    pub net: Box<RawValue>,
    /// Revenue per paid order, rounded to the currency's minor unit (half away from zero).
    #[schema(schema_with = openapi::amount_output)]
    pub average_ticket: Box<RawValue>,
}

impl Totals {
    fn new(currency: &str, s: &Sales) -> Self {
        let e = exponent(currency);
        Totals {
            currency: currency.to_owned(),
            orders: s.orders,
            paid_orders: s.paid_orders,
            revenue: raw_number(s.revenue_minor, e),
            refunds: raw_number(s.refunds_minor, e),
            net: raw_number(s.revenue_minor - s.refunds_minor, e),
            average_ticket: raw_number(average(s.revenue_minor, s.paid_orders), e),
        }
    }
}

/// The period a report covers, as it was read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Covered {
    /// The first local day.
    #[schema(value_type = String, format = Date)]
    pub from: String,
    /// The last local day (included).
    #[schema(value_type = String, format = Date)]
    pub to: String,
    pub time_zone: String,
    /// When the first day begins, with its offset.
    #[schema(value_type = String, format = DateTime)]
    pub start: String,
    /// When the day after the last begins.
    #[schema(value_type = String, format = DateTime)]
    pub end: String,
}

impl From<&Period> for Covered {
    fn from(p: &Period) -> Self {
        Covered {
            from: p.from.to_string(),
            to: p.to.to_string(),
            time_zone: p.zone.name().to_owned(),
            start: p.start().to_rfc3339_opts(SecondsFormat::Secs, false),
            end: p.end().to_rfc3339_opts(SecondsFormat::Secs, false),
        }
    }
}

/// Orders by where they stand now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub orders: i64,
    pub pending: i64,
    pub paid: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Orders whose payment went through, whatever happened after.
    pub paid_orders: i64,
    /// Orders with money given back.
    pub refunded_orders: i64,
}

impl From<&Sales> for Counts {
    fn from(s: &Sales) -> Self {
        Counts {
            orders: s.orders,
            pending: s.pending,
            paid: s.paid,
            completed: s.completed,
            failed: s.failed,
            cancelled: s.cancelled,
            paid_orders: s.paid_orders,
            refunded_orders: s.refunded_orders,
        }
    }
}

/// A period's summary: its orders by status, money by currency, and how many events of each
/// type came (sign-ups, low stock, pickups…).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[serde(flatten)]
    pub covered: Covered,
    #[serde(flatten)]
    pub counts: Counts,
    pub totals: Vec<Totals>,
    pub activity: BTreeMap<String, i64>,
}

pub async fn summary_of(state: &AppState, asked: &Asked) -> ApiResult<Summary> {
    let db = &state.db;
    let currency = asked.currency.as_deref();
    let sales = match &state.clickhouse {
        None => reports::sales(db, &asked.period, currency).await?,
        Some(ch) => {
            let (first, end) = asked.period.slots();
            let rows = ch
                .slot_sales(first, end, currency)
                .await
                .map_err(unavailable)?;
            crate::clickhouse::by_currency(&rows)
        }
    };
    let mut all = Sales::default();
    for s in sales.values() {
        all.add_all(s);
    }
    Ok(Summary {
        covered: (&asked.period).into(),
        counts: Counts::from(&all),
        totals: sales.iter().map(|(c, s)| Totals::new(c, s)).collect(),
        activity: reports::activity(db, &asked.period).await?,
    })
}

/// Today's summary (or any period's): orders, revenue, average ticket, paid, failed and
/// cancelled orders, refunds.
#[utoipa::path(get, path = "/api/v1/reports/reports/summary", tag = "Reports",
    operation_id = "report_summary",
    security((), ("bearer" = []), ("cookie" = [])),
    params(
        Range,
    ),
    responses(
        (status = 200, body = Summary, description = "The period's figures."),
        ReportErrors,
    ))]
pub async fn summary(
    State(state): State<AppState>,
    access: Access,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Summary>> {
    access.sees_everything()?;
    let asked = asked(query.as_deref(), &[], false, &state)?;
    Ok(Json(summary_of(&state, &asked).await?))
}

/// A product among the best sellers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Favorite {
    pub product_id: Uuid,
    pub name: String,
    #[schema(value_type = openapi::CurrencyCode)]
    pub currency: String,
    /// Units sold in orders paid and not cancelled.
    pub quantity: i64,
    /// What those units were sold for.
    #[schema(schema_with = openapi::amount_output)]
    pub revenue: Box<RawValue>,
}

impl From<ProductFigures> for Favorite {
    fn from(p: ProductFigures) -> Self {
        Favorite {
            revenue: raw_number(p.revenue_minor, exponent(&p.currency)),
            product_id: p.product_id,
            name: p.name,
            currency: p.currency,
            quantity: p.quantity,
        }
    }
}

/// The best sellers of a period, ranked two ways.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Favorites {
    #[serde(flatten)]
    pub covered: Covered,
    pub top: u32,
    /// Most units first.
    pub by_quantity: Vec<Favorite>,
    /// Most revenue first.
    pub by_revenue: Vec<Favorite>,
}

pub const MAX_TOP: u32 = 100;

pub async fn favorites_of(state: &AppState, asked: &Asked) -> ApiResult<Favorites> {
    let top = match asked.rest.get("top") {
        None => 10,
        Some(t) => t
            .parse::<u32>()
            .ok()
            // Digits as written, with no sign or leading zero.
            .filter(|n| n.to_string() == *t)
            .filter(|t| (1..=MAX_TOP).contains(t))
            .ok_or_else(|| {
                ApiError::invalid(
                    "top",
                    "invalid_top",
                    format!("`top` must be a whole number from 1 to {MAX_TOP}."),
                )
            })?,
    };
    let currency = asked.currency.as_deref();
    let all = match &state.clickhouse {
        None => reports::product_sales(&state.db, &asked.period, currency).await?,
        Some(ch) => {
            let (first, end) = asked.period.slots();
            ch.product_sales(first, end, currency)
                .await
                .map_err(unavailable)?
        }
    };
    let by = |rank| -> Vec<Favorite> {
        reports::best(all.clone(), rank, top)
            .into_iter()
            .map(Favorite::from)
            .collect()
    };
    Ok(Favorites {
        covered: (&asked.period).into(),
        top,
        by_quantity: by(Rank::Quantity),
        by_revenue: by(Rank::Revenue),
    })
}

/// The best-selling products of a period, by units and by revenue.
#[utoipa::path(get, path = "/api/v1/reports/reports/favorites", tag = "Reports",
    operation_id = "report_favorites",
    security((), ("bearer" = []), ("cookie" = [])),
    params(
        Range,
        ("top" = Option<TopCount>, Query, description = "How many products each ranking lists (10 when not given)."),
    ),
    responses(
        (status = 200, body = Favorites, description = "The best sellers."),
        ReportErrors,
    ))]
pub async fn favorites(
    State(state): State<AppState>,
    access: Access,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Favorites>> {
    access.sees_everything()?;
    let asked = asked(query.as_deref(), &["top"], false, &state)?;
    Ok(Json(favorites_of(&state, &asked).await?))
}

/// One hour, day or week of a trend.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    /// When it begins, local, with its offset.
    #[schema(value_type = String, format = DateTime)]
    pub start: String,
    pub orders: i64,
    pub paid_orders: i64,
    /// Money by currency (none when no order was placed).
    pub totals: Vec<Totals>,
}

/// Revenue and orders per hour, day or week.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trend {
    #[serde(flatten)]
    pub covered: Covered,
    #[schema(value_type = String, example = "day")]
    pub interval: &'static str,
    pub points: Vec<TrendPoint>,
}

pub async fn trend_of(state: &AppState, asked: &Asked) -> ApiResult<Trend> {
    let interval = match asked.rest.get("interval") {
        None if asked.period.days() == 1 => Interval::Hour,
        None => Interval::Day,
        Some(i) => Interval::parse(i).ok_or_else(|| {
            ApiError::invalid(
                "interval",
                "invalid_interval",
                "`interval` must be hour, day or week.",
            )
        })?,
    };
    let buckets = asked.period.buckets(interval).ok_or_else(|| {
        ApiError::unprocessable(
            "too_many_points",
            format!(
                "A trend has at most {MAX_BUCKETS} points: choose a longer interval or a shorter range."
            ),
        )
        .with_param("interval")
    })?;
    let currency = asked.currency.as_deref();
    let sums = match &state.clickhouse {
        None => reports::trend(&state.db, &asked.period, &buckets, currency).await?,
        Some(ch) => {
            let (first, end) = asked.period.slots();
            let rows = ch
                .slot_sales(first, end, currency)
                .await
                .map_err(unavailable)?;
            reports::fold(&buckets, rows)
        }
    };
    Ok(Trend {
        covered: (&asked.period).into(),
        interval: interval.as_str(),
        points: buckets
            .iter()
            .zip(sums)
            .map(|(b, by_currency)| TrendPoint {
                start: b.start.to_rfc3339_opts(SecondsFormat::Secs, false),
                orders: by_currency.values().map(|s| s.orders).sum(),
                paid_orders: by_currency.values().map(|s| s.paid_orders).sum(),
                totals: by_currency.iter().map(|(c, s)| Totals::new(c, s)).collect(),
            })
            .collect(),
    })
}

/// Revenue and orders per hour, day or week over a period.
#[utoipa::path(get, path = "/api/v1/reports/reports/sales-trend", tag = "Reports",
    operation_id = "report_sales_trend",
    security((), ("bearer" = []), ("cookie" = [])),
    params(
        Range,
        ("interval" = Option<TrendInterval>, Query, description = "`hour`, `day` or `week` (weeks begin on Monday); `hour` for one day, else `day`, when not given. At most 1000 points."),
    ),
    responses(
        (status = 200, body = Trend, description = "One point per interval, empty ones included."),
        ReportErrors,
    ))]
pub async fn sales_trend(
    State(state): State<AppState>,
    access: Access,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Trend>> {
    access.sees_everything()?;
    let asked = asked(query.as_deref(), &["interval"], false, &state)?;
    Ok(Json(trend_of(&state, &asked).await?))
}

/// One line of a recent order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentLine {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    #[schema(schema_with = openapi::amount_output)]
    pub unit_price: Box<RawValue>,
}

/// An order as analytics knows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentOrder {
    pub order_id: Uuid,
    /// Its number (seed 001's `orderID`).
    pub order_number: Option<i64>,
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: String,
    #[schema(schema_with = Status::schema)]
    pub status: &'static str,
    #[schema(value_type = openapi::CurrencyCode)]
    pub currency: String,
    #[schema(schema_with = openapi::amount_output)]
    pub total: Box<RawValue>,
    /// What its payment took in (0 until it went through).
    #[schema(schema_with = openapi::amount_output)]
    pub paid: Box<RawValue>,
    #[schema(schema_with = openapi::amount_output)]
    pub refunded: Box<RawValue>,
    /// How it was paid, where known: Cash, QRIS, saved_card.
    pub method: Option<String>,
    /// What was ordered, in the customer's words.
    pub item: Option<String>,
    pub items: Vec<RecentLine>,
}

impl RecentOrder {
    fn new(o: OrderFacts, zone: Tz) -> Self {
        let currency = o.currency.clone().unwrap_or_default();
        let e = exponent(&currency);
        RecentOrder {
            order_id: o.order_id,
            order_number: o.order_number,
            placed_at: o
                .placed_at
                .map(|t| {
                    t.with_timezone(&zone)
                        .to_rfc3339_opts(SecondsFormat::Millis, false)
                })
                .unwrap_or_default(),
            status: o.status().as_str(),
            total: raw_number(o.total_minor.unwrap_or(0), e),
            paid: raw_number(o.paid_minor, e),
            refunded: raw_number(o.refunded_minor, e),
            method: o.method.clone(),
            item: o.item.clone(),
            items: o
                .lines
                .iter()
                .map(|l| RecentLine {
                    product_id: l.product_id,
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: raw_number(l.unit_price_minor, e),
                })
                .collect(),
            currency,
        }
    }
}

/// How deep the recent orders' pages go: older orders are reached by narrowing `from` and `to`
/// (a page deeper than this would cost a scan of every order before it).
pub const MAX_RECENT_DEPTH: i64 = 10_000;

pub async fn recent_of(
    state: &AppState,
    asked: &Asked,
    pagination: Pagination,
) -> ApiResult<Page<RecentOrder>> {
    if pagination.offset() + i64::from(pagination.limit) > MAX_RECENT_DEPTH {
        return Err(ApiError::unprocessable(
            "page_too_deep",
            format!(
                "The recent orders go {MAX_RECENT_DEPTH} orders deep; narrow `from` and `to` to reach older ones."
            ),
        )
        .with_param("page"));
    }
    let status = asked
        .rest
        .get("status")
        .map(|s| {
            (s.trim() == s)
                .then(|| Status::parse(s))
                .flatten()
                .ok_or_else(|| {
                    ApiError::invalid(
                        "status",
                        "invalid_status",
                        "`status` must be PENDING, PAID, COMPLETED, FAILED or CANCELLED.",
                    )
                })
        })
        .transpose()?;
    let period = asked.ranged.then_some(&asked.period);
    let currency = asked.currency.as_deref();
    let page = match &state.clickhouse {
        None => reports::recent_orders(&state.db, pagination, period, status, currency).await?,
        Some(ch) => {
            let (since, until) = reports::instants(period);
            ch.recent_orders(pagination, since, until, status, currency)
                .await
                .map_err(unavailable)?
        }
    };
    let zone = asked.period.zone;
    Ok(page.map(|o| RecentOrder::new(o, zone)))
}

/// Orders newest first, a page at a time: every order, or those placed in a period.
#[utoipa::path(get, path = "/api/v1/reports/reports/recent-orders", tag = "Reports",
    operation_id = "report_recent_orders",
    security((), ("bearer" = []), ("cookie" = [])),
    params(
        Pagination,
        Range,
        ("status" = Option<StatusFilter>, Query, description = "Only orders where they stand now: PENDING, PAID, COMPLETED, FAILED or CANCELLED."),
    ),
    responses(
        (status = 200, body = Page<RecentOrder>, description = "One page and the paging facts."),
        ReportErrors,
    ))]
pub async fn recent_orders(
    State(state): State<AppState>,
    access: Access,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<RecentOrder>>> {
    access.sees_everything()?;
    let pagination = Pagination::from_query(query.as_deref())?;
    let asked = asked(query.as_deref(), &["status"], true, &state)?;
    Ok(Json(recent_of(&state, &asked, pagination).await?))
}

/// The figures over every customer are the staff's.
pub const RULES: &[Rule] = &[
    Rule::get("/api/v1/reports/reports/summary", Policy::STAFF),
    Rule::get("/api/v1/reports/reports/favorites", Policy::STAFF),
    Rule::get("/api/v1/reports/reports/sales-trend", Policy::STAFF),
    Rule::get("/api/v1/reports/reports/recent-orders", Policy::STAFF),
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/reports/reports/summary", get(summary))
        .route("/api/v1/reports/reports/favorites", get(favorites))
        .route("/api/v1/reports/reports/sales-trend", get(sales_trend))
        .route("/api/v1/reports/reports/recent-orders", get(recent_orders))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(summary, favorites, sales_trend, recent_orders),
    components(schemas(LocalDate, TimeZoneName, TrendInterval, StatusFilter, TopCount, Summary, Covered, Counts, Totals, Favorites, Favorite, Trend, TrendPoint, RecentOrder, RecentLine)),
    modifiers(&ProblemResponses)
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_round_half_away_from_zero() {
        assert_eq!(average(1000, 3), 333);
        assert_eq!(average(1001, 2), 501);
        assert_eq!(average(999, 2), 500);
        assert_eq!(average(5, 0), 0);
        assert_eq!(average(-5, 2), -3);
    }
}
