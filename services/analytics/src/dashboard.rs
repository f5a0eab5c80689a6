//! The dashboard at `/dashboard`: today's summary, the sales trend as charts, the best sellers
//! and the newest orders, on one page drawn here (charts as inline SVG). It loads nothing from
//! elsewhere, so it works offline, and it refreshes itself every few seconds with a few lines of
//! its own script (without script, the browser reloads it).
//!
//! Every figure carries a `data-figure` attribute naming what it shows, so a test (or a kiosk
//! screen scraper) reads the same numbers the reports answer.

use std::fmt::Write as _;

use axum::{
    Router,
    extract::{RawQuery, State},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::Duration;
use kassa_platform::{
    access::{Policy, Rule},
    auth::Access,
    http::{
        ApiResult, Pagination,
        openapi::{self, InvalidParams, ProblemResponses, RoleRequired},
    },
};
use utoipa::OpenApi;

use crate::{
    api::{self, AppState, Asked, Totals},
    period::{Interval, Period},
};

/// Seconds between refreshes.
pub const REFRESH_SECONDS: u32 = 10;

/// Text made safe inside HTML and SVG.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One bar of a chart: its label and value (in minor units), and its tooltip.
struct Bar {
    label: String,
    value: i64,
    title: String,
}

/// A bar chart as SVG, `name` naming it for tests.
fn bar_chart(name: &str, caption: &str, bars: &[Bar], exponent: u8) -> String {
    let (w, h, left, bottom, top) = (720.0_f64, 220.0_f64, 64.0_f64, 28.0_f64, 12.0_f64);
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let plot_w = w - left - 8.0;
    let plot_h = h - bottom - top;
    let step = plot_w / bars.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" data-chart="{name}" viewBox="0 0 {w} {h}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(caption)
    );
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{y}" x2="{x2}" y2="{y}" stroke="#999"/>"##,
        y = h - bottom,
        x2 = w - 8.0
    );
    let _ = write!(
        svg,
        r##"<text x="{x}" y="{y}" text-anchor="end" font-size="11" fill="#555">{}</text>"##,
        kassa_contracts::money::decimal_string(max, exponent),
        x = left - 6.0,
        y = top + 10.0
    );
    let _ = write!(
        svg,
        r##"<text x="{x}" y="{y}" text-anchor="end" font-size="11" fill="#555">0</text>"##,
        x = left - 6.0,
        y = h - bottom
    );
    let every = (bars.len() / 12).max(1);
    for (i, b) in bars.iter().enumerate() {
        let bh = plot_h * b.value as f64 / max as f64;
        let x = left + i as f64 * step + step * 0.1;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="#2b6cb0" data-value="{v}"><title>{t}</title></rect>"##,
            y = h - bottom - bh,
            bw = step * 0.8,
            v = kassa_contracts::money::decimal_string(b.value, exponent),
            t = escape(&b.title)
        );
        if i % every == 0 {
            let _ = write!(
                svg,
                r##"<text x="{x:.1}" y="{y}" text-anchor="middle" font-size="10" fill="#555">{}</text>"##,
                escape(&b.label),
                x = x + step * 0.4,
                y = h - bottom + 14.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn money(t: &Totals, field: &str, value: &serde_json::value::RawValue) -> String {
    format!(
        r#"<span data-figure="{field}" data-currency="{c}">{v}</span> {c}"#,
        c = escape(&t.currency),
        v = value.get()
    )
}

fn tile(label: &str, figure: &str, value: impl std::fmt::Display) -> String {
    format!(
        r#"<div class="tile"><div class="label">{label}</div><div class="value"><span data-figure="{figure}">{value}</span></div></div>"#
    )
}

/// The trend of `period` by `interval`, one chart per currency.
async fn trend_charts(
    state: &AppState,
    asked: &Asked,
    period: Period,
    interval: Interval,
    name: &str,
    caption: &str,
) -> ApiResult<String> {
    let mut rest = asked.rest.clone();
    rest.insert("interval".into(), interval.as_str().into());
    let asked = Asked {
        period,
        rest,
        ..asked.clone()
    };
    let trend = api::trend_of(state, &asked).await?;
    let mut currencies: Vec<String> = trend
        .points
        .iter()
        .flat_map(|p| p.totals.iter().map(|t| t.currency.clone()))
        .collect();
    currencies.sort();
    currencies.dedup();
    let mut html = String::new();
    if currencies.is_empty() {
        let _ = write!(
            html,
            r#"<p class="empty" data-chart="{name}">No orders in this period yet.</p>"#
        );
    }
    for currency in currencies {
        let exponent = kassa_contracts::Currency::parse(&currency)
            .map(|c| c.exponent())
            .unwrap_or(2);
        let bars: Vec<Bar> = trend
            .points
            .iter()
            .map(|p| {
                let t = p.totals.iter().find(|t| t.currency == currency);
                let value = t
                    .and_then(|t| {
                        kassa_contracts::money::parse_minor(t.revenue.get(), exponent).ok()
                    })
                    .unwrap_or(0);
                let label = match interval {
                    Interval::Hour => p.start.get(11..13).unwrap_or("").to_owned(),
                    Interval::Day | Interval::Week => p.start.get(5..10).unwrap_or("").to_owned(),
                };
                Bar {
                    title: format!(
                        "{}: {} {currency}, {} orders",
                        p.start,
                        kassa_contracts::money::decimal_string(value, exponent),
                        p.orders
                    ),
                    label,
                    value,
                }
            })
            .collect();
        let _ = write!(
            html,
            "<figure><figcaption>{} ({})</figcaption>{}</figure>",
            escape(caption),
            escape(&currency),
            bar_chart(&format!("{name}-{currency}"), caption, &bars, exponent)
        );
    }
    Ok(html)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1a202c}\
header{background:#1a365d;color:#fff;padding:12px 24px;display:flex;justify-content:space-between;align-items:baseline}\
main{padding:16px 24px;display:grid;gap:16px}\
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}\
h2{font-size:15px;margin:0 0 8px}h3{font-size:13px;margin:4px 0;color:#4a5568}.tiles{display:flex;flex-wrap:wrap;gap:12px}\
.tile{min-width:120px;padding:8px 12px;background:#edf2f7;border-radius:6px}\
.tile .label{font-size:12px;color:#4a5568}.tile .value{font-size:22px;font-weight:600}\
table{border-collapse:collapse;width:100%;font-size:13px}td,th{padding:4px 6px;border-bottom:1px solid #e2e8f0;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.chart{width:100%;max-width:760px;height:auto}\
.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}figure{margin:0}figcaption{font-size:12px;color:#4a5568}";

/// Refreshes the page's `main` from a fresh copy every few seconds, and counts refreshes.
const SCRIPT: &str = "(function(){var n=0;setInterval(function(){\
fetch(location.href,{cache:'no-store',credentials:'same-origin'}).then(function(r){return r.ok?r.text():null})\
.then(function(t){if(!t)return;var d=new DOMParser().parseFromString(t,'text/html');\
var m=d.querySelector('main');if(!m)return;document.querySelector('main').innerHTML=m.innerHTML;\
n++;document.body.setAttribute('data-refreshes',String(n));}).catch(function(){});},REFRESH_MS);})();";

/// The page.
/// The page, its style and script marked with `nonce` (the only ones its Content-Security-Policy
/// lets run).
pub async fn page_of(state: &AppState, asked: &Asked, nonce: &str) -> ApiResult<String> {
    let summary = api::summary_of(state, asked).await?;
    let favorites = {
        let mut a = asked.clone();
        a.rest.insert("top".into(), "5".into());
        api::favorites_of(state, &a).await?
    };
    let recent = api::recent_of(
        state,
        &Asked {
            ranged: false,
            ..asked.clone()
        },
        Pagination { page: 1, limit: 10 },
    )
    .await?;
    let today = asked.period;
    let fortnight = Period {
        from: today.to - Duration::days(13),
        ..today
    };

    let mut main = String::new();
    let _ = write!(
        main,
        r#"<section><h2>Today, {} ({})</h2><div class="tiles">"#,
        today.to,
        escape(today.zone.name())
    );
    let c = &summary.counts;
    main.push_str(&tile("Orders", "orders", c.orders));
    main.push_str(&tile("Paid", "paid", c.paid + c.completed));
    main.push_str(&tile("Pending", "pending", c.pending));
    main.push_str(&tile("Failed", "failed", c.failed));
    main.push_str(&tile("Cancelled", "cancelled", c.cancelled));
    main.push_str(&tile("Refunded", "refundedOrders", c.refunded_orders));
    main.push_str("</div>");
    for t in &summary.totals {
        let _ = write!(
            main,
            r#"<div class="tiles" data-totals="{c}"><div class="tile"><div class="label">Revenue</div><div class="value">{}</div></div><div class="tile"><div class="label">Average ticket</div><div class="value">{}</div></div><div class="tile"><div class="label">Refunds</div><div class="value">{}</div></div><div class="tile"><div class="label">Net</div><div class="value">{}</div></div></div>"#,
            money(t, "revenue", &t.revenue),
            money(t, "averageTicket", &t.average_ticket),
            money(t, "refunds", &t.refunds),
            money(t, "net", &t.net),
            c = escape(&t.currency),
        );
    }
    main.push_str("</section>");

    let _ = write!(
        main,
        "<section><h2>Sales trend</h2><div class=\"cols\"><div>{}</div><div>{}</div></div></section>",
        trend_charts(
            state,
            asked,
            today,
            Interval::Hour,
            "today",
            "Revenue by hour, today"
        )
        .await?,
        trend_charts(
            state,
            asked,
            fortnight,
            Interval::Day,
            "fortnight",
            "Revenue by day, last 14 days"
        )
        .await?,
    );

    main.push_str(r#"<section><h2>Favourites today</h2><div class="cols">"#);
    for (title, list, name) in [
        ("By units", &favorites.by_quantity, "byQuantity"),
        ("By revenue", &favorites.by_revenue, "byRevenue"),
    ] {
        let _ = write!(
            main,
            r#"<div><h3>{title}</h3><table data-list="{name}"><tr><th>Product</th><th>Units</th><th>Revenue</th></tr>"#
        );
        if list.is_empty() {
            main.push_str(r#"<tr><td colspan="3">Nothing sold yet.</td></tr>"#);
        }
        for f in list.iter() {
            let _ = write!(
                main,
                r#"<tr data-product="{}"><td>{}</td><td class="n" data-figure="quantity">{}</td><td class="n"><span data-figure="revenue">{}</span> {}</td></tr>"#,
                f.product_id,
                escape(&f.name),
                f.quantity,
                f.revenue.get(),
                escape(&f.currency)
            );
        }
        main.push_str("</table></div>");
    }
    main.push_str("</div></section>");

    let _ = write!(
        main,
        r#"<section><h2>Recent orders <small>({} in all)</small></h2><table data-list="recent"><tr><th>No.</th><th>Placed</th><th>Status</th><th>Total</th><th>Method</th></tr>"#,
        recent.meta.total
    );
    for o in &recent.data {
        let _ = write!(
            main,
            r#"<tr data-order="{}"><td>{}</td><td>{}</td><td data-figure="status">{}</td><td class="n"><span data-figure="total">{}</span> {}</td><td>{}</td></tr>"#,
            o.order_id,
            o.order_number.map(|n| n.to_string()).unwrap_or_default(),
            escape(o.placed_at.get(..19).unwrap_or(&o.placed_at)).replace('T', " "),
            o.status,
            o.total.get(),
            escape(&o.currency),
            escape(o.method.as_deref().unwrap_or("")),
        );
    }
    main.push_str("</table></section>");

    Ok(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>kassa dashboard</title><noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS}"></noscript><style nonce="{nonce}">{STYLE}</style></head><body data-refreshes="0"><header><strong>kassa</strong><span>refreshes every {REFRESH_SECONDS} s</span></header><main>{main}</main><script nonce="{nonce}">{}</script></body></html>"#,
        SCRIPT.replace("REFRESH_MS", &(REFRESH_SECONDS * 1000).to_string())
    ))
}

/// The dashboard: today's summary, the sales trend, favourites and recent orders.
#[utoipa::path(get, path = "/dashboard", tag = "Reports", operation_id = "dashboard",
    security((), ("bearer" = []), ("cookie" = [])),
    params(
        ("timeZone" = Option<api::TimeZoneName>, Query, description = "The IANA time zone of \"today\" (the service's `--report-time-zone` when not given)."),
        ("currency" = Option<openapi::CurrencyCode>, Query, description = "Only orders in this currency."),
    ),
    responses(
        (status = 200, content_type = "text/html", body = String, description = "The page, with a \
            Content-Security-Policy that runs only its own style and script (a nonce each time).",
            headers(("Content-Security-Policy" = String, description = "`default-src 'none'; script-src 'nonce-…'; style-src 'nonce-…'; connect-src 'self'; …`"))),
        RoleRequired,
        InvalidParams,
    ))]
pub async fn dashboard(
    State(state): State<AppState>,
    access: Access,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    access.sees_everything()?;
    // The dashboard shows today: a range is not a parameter of it.
    kassa_platform::listing::query_pairs(query.as_deref(), &["timeZone", "currency"])?;
    let asked = api::asked(query.as_deref(), &[], false, &state)?;
    // A page that runs only its own style and script: nothing injected into it runs, loads or
    // leaves (the charts are inline SVG; the script reads this same address again).
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let html = page_of(&state, &asked, &nonce).await?;
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::CONTENT_SECURITY_POLICY, policy),
        ],
        html,
    )
        .into_response())
}

/// A form for a member of staff to sign in with, before the dashboard: it sends the address
/// and password to `/api/auth/signin` (through the gateway, which serves both), whose answer
/// sets the `token` cookie, and goes on to the dashboard.
#[utoipa::path(get, path = "/dashboard/signin", tag = "Reports", operation_id = "dashboard_signin",
    responses(
        (status = 200, content_type = "text/html", body = String, description = "The form, with a \
            Content-Security-Policy that runs only its own style and script.",
            headers(("Content-Security-Policy" = String, description = "`default-src 'none'; script-src 'nonce-…'; style-src 'nonce-…'; connect-src 'self'; …`"))),
    ))]
pub async fn signin_page() -> Response {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>kassa: sign in</title><style nonce="{nonce}">{STYLE} form{{display:grid;gap:.6rem;max-width:20rem;margin:3rem auto}} input,button{{font:inherit;padding:.4rem}}</style></head><body><header><strong>kassa</strong><span>the dashboard is the staff's</span></header><main><form id="signin"><label>Email <input name="email" type="email" autocomplete="username" required></label><label>Password <input name="password" type="password" autocomplete="current-password" required></label><button>Sign in</button><p id="said" role="status"></p></form></main><script nonce="{nonce}">{SIGNIN_SCRIPT}</script></body></html>"#
    );
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::CONTENT_SECURITY_POLICY, policy),
        ],
        html,
    )
        .into_response()
}

/// Signs in with the form's fields and opens the dashboard (the answer set the cookie).
const SIGNIN_SCRIPT: &str = r#"document.getElementById('signin').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const said = document.getElementById('said');
  const r = await fetch('/api/auth/signin', {method: 'POST', credentials: 'same-origin',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({email: form.get('email'), password: form.get('password')})});
  if (r.ok) { location.assign('/dashboard'); } else { said.textContent = 'Not signed in: ' + r.status; }
});"#;

/// The dashboard shows the staff's figures, to a signed-in member of staff (the cookie); its
/// sign-in form is anyone's.
pub const RULES: &[Rule] = &[
    Rule::get("/dashboard", Policy::STAFF),
    Rule::get("/dashboard/signin", Policy::PUBLIC),
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/dashboard/signin", get(signin_page))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(paths(dashboard, signin_page), components(schemas(api::TimeZoneName)), modifiers(&ProblemResponses))]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_break_out_of_the_page() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
        );
    }

    #[test]
    fn a_chart_has_a_bar_per_point_scaled_to_the_largest() {
        let bars = vec![
            Bar {
                label: "00".into(),
                value: 0,
                title: "a".into(),
            },
            Bar {
                label: "01".into(),
                value: 1050,
                title: "b".into(),
            },
        ];
        let svg = bar_chart("t", "Revenue", &bars, 2);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains(r#"data-value="10.5""#));
        assert!(
            svg.contains(">10.5</text>"),
            "the axis shows the largest value"
        );
    }
}
