//! Who may call each route, as the one policy says: every route of every service (its own rules
//! and the platform's), called on the service's own port and through the gateway by each kind
//! of caller: anonymous, customer A, customer B, staff, kiosk, device, desk, monitor, admin,
//! service, and a revoked key. A caller the route's rule does not let in is refused before the
//! route does anything (401 `token_required` or `invalid_key`, 403 `role_not_allowed`); one it
//! lets in is not refused for who it is. The cases are made from the rules themselves, so a
//! route is in this test by declaring who may call it, and a route that declares nothing is
//! refused to everyone (`registry`'s tests check every documented route declares a rule).

use crate::support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kassa_platform::{
    access::{PLATFORM, Rule},
    auth::{self, Role, Secret},
};
use reqwest::Method;
use serde_json::Value;
use support::{Backend, TOKEN_SECRET, TestApp, spawn_app_with};
use uuid::Uuid;

on_both_backends!(
    every_route_lets_in_whom_its_rule_names,
    a_revoked_key_is_refused_within_a_second,
    an_open_group_lets_anonymous_callers_in_to_what_no_one_owns
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    CustomerA,
    CustomerB,
    Staff,
    Kiosk,
    Device,
    Desk,
    Monitor,
    Admin,
    Service,
    Revoked,
}

impl Who {
    /// The role it calls with; `None` for no credential or one that no longer counts.
    fn role(self) -> Option<Role> {
        Some(match self {
            Who::Anonymous | Who::Revoked => return None,
            Who::CustomerA | Who::CustomerB => Role::Customer,
            Who::Staff => Role::Staff,
            Who::Kiosk => Role::Kiosk,
            Who::Device => Role::Device,
            Who::Desk => Role::Desk,
            Who::Monitor => Role::Monitor,
            Who::Admin => Role::Admin,
            Who::Service => Role::Service,
        })
    }
}

/// What a caller sends: a header and its value.
type Credential = Option<(&'static str, String)>;

/// A signed-up person's token and id.
async fn person(app: &TestApp) -> (String, Uuid, String) {
    let (token, email) = support::signed_up(&app.anon, &app.gateway).await;
    let me = support::me(&app.anon, &app.gateway, &token).await;
    let id = me["id"].as_str().unwrap().parse().unwrap();
    (token, id, email)
}

async fn callers(app: &TestApp) -> Vec<(Who, Credential)> {
    let bearer = |token: String| Some(("authorization", format!("Bearer {token}")));
    let key = |key: String| Some(("x-api-key", key));
    let (a, _, _) = person(app).await;
    let (b, _, _) = person(app).await;
    // A member of staff: a person the operator gave the role; their token says so, and the
    // users service agrees.
    let (_, staff_id, staff_email) = person(app).await;
    support::grant(&app.settings, &staff_email, Role::Staff).await;
    let staff = support::token(staff_id, &staff_email, Role::Staff);
    let revoked = support::key_in(&app.settings, Role::Admin, "revoked").await;
    revoke(app, "revoked").await;
    vec![
        (Who::Anonymous, None),
        (Who::CustomerA, bearer(a)),
        (Who::CustomerB, bearer(b)),
        (Who::Staff, bearer(staff)),
        (
            Who::Kiosk,
            key(support::key_in(&app.settings, Role::Kiosk, "lobby").await),
        ),
        (
            Who::Device,
            bearer(support::key_in(&app.settings, Role::Device, "dispenser-1").await),
        ),
        (
            Who::Desk,
            key(support::key_in(&app.settings, Role::Desk, "front-desk").await),
        ),
        (
            Who::Monitor,
            key(support::key_in(&app.settings, Role::Monitor, "prometheus").await),
        ),
        (Who::Admin, key(app.admin_key.clone())),
        (
            Who::Service,
            bearer(auth::service_token(&Secret::new(TOKEN_SECRET).unwrap())),
        ),
        (Who::Revoked, key(revoked)),
    ]
}

/// `kassa keys revoke NAME`.
async fn revoke(app: &TestApp, name: &str) {
    let task = kassa_users::principals::REVOKE_KEY;
    support::users_task(&app.settings, task, &[("name", name)]).await;
}

/// A path of `template` with each parameter filled: an id no record has.
fn filled(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            s if s.starts_with("{*") => "index.html".to_owned(),
            s if s.starts_with('{') => Uuid::now_v7().to_string(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The problem codes of a refusal for who the caller is.
const REFUSALS: &[&str] = &[
    "token_required",
    "invalid_key",
    "invalid_token",
    "role_not_allowed",
    "route_closed",
];

/// What `who` must get from a route of `rule`: `Some(code)` the refusal, `None` no refusal.
fn expected(rule: &Rule, who: Who) -> Option<&'static str> {
    if rule.policy.admits_anonymous() {
        return None;
    }
    match who.role() {
        None if who == Who::Revoked => Some("invalid_key"),
        None => Some("token_required"),
        Some(role) if rule.policy.admits(role) => None,
        Some(_) => Some("role_not_allowed"),
    }
}

async fn every_route_lets_in_whom_its_rule_names(backend: Backend) {
    let app = spawn_app_with(backend, support::ALL, |s| {
        // Every call comes from this one address: the limits are not what is tested here.
        for limit in [
            "auth-rate-limit",
            "order-rate-limit",
            "pos-order-rate-limit",
            "signin-account-limit",
        ] {
            s.options.set(limit, "off");
        }
    })
    .await;
    let callers = callers(&app).await;
    // Every (door, rule) pair: each service's own port with its rules and the platform's, and
    // the gateway for the routes it forwards.
    let mut calls: Vec<(String, Rule)> = Vec::new();
    for service in kassa::registry::SERVICES {
        let port = app.url_of(service.name);
        for rule in service.access.iter().flat_map(|r| r.iter()).chain(PLATFORM) {
            if rule.path == kassa_platform::access::FORWARDED {
                continue;
            }
            calls.push((port.clone(), *rule));
            if service.forwards(rule.path) {
                calls.push((app.gateway.clone(), *rule));
            }
        }
    }
    assert!(
        calls.len() > 300,
        "every route of every service: {}",
        calls.len()
    );
    let cases = calls.iter().flat_map(|(door, rule)| {
        callers
            .iter()
            .map(move |(who, cred)| (door, rule, *who, cred))
    });
    let wrong: Vec<String> = futures_util::stream::iter(cases)
        .map(|(door, rule, who, credential)| {
            let app = &app;
            async move {
                let path = filled(rule.path);
                let mut request = app
                    .anon
                    .request(rule.verb.method(), format!("{door}{path}"));
                if let Some((header, value)) = credential {
                    request = request.header(*header, value);
                }
                if matches!(
                    rule.verb.method(),
                    Method::POST | Method::PUT | Method::PATCH
                ) {
                    request = request
                        .header("content-type", "application/json")
                        .body("{}");
                }
                let answer = request.send().await.unwrap();
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap_or(Value::Null);
                let code = body["code"].as_str().filter(|c| REFUSALS.contains(c));
                let want = expected(rule, who);
                let right = match want {
                    None => code.is_none(),
                    Some(refusal) => {
                        code == Some(refusal)
                            && status
                                == if refusal == "role_not_allowed" {
                                    403
                                } else {
                                    401
                                }
                    }
                };
                (!right).then(|| {
                    format!(
                        "{} {door}{path} as {who:?} ({}): {status} {body}, expected {}",
                        rule.verb.method(),
                        rule.policy.describe(),
                        want.unwrap_or("to be let in")
                    )
                })
            }
        })
        .buffer_unordered(16)
        .filter_map(|wrong| async move { wrong })
        .collect()
        .await;
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    app.stop().await;
}

async fn a_revoked_key_is_refused_within_a_second(backend: Backend) {
    let app = spawn_app_with(backend, &["gateway", "inventory", "users"], |_| {}).await;
    let key = support::key_in(&app.settings, Role::Kiosk, "lobby").await;
    let stock = |door: String| {
        let key = key.clone();
        let client = app.anon.clone();
        async move {
            client
                .get(format!("{door}/api/inventory"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let doors = [app.gateway.clone(), app.url_of("inventory")];
    for door in &doors {
        assert_eq!(
            stock(door.clone()).await,
            200,
            "the kiosk reads stock at {door}"
        );
    }
    revoke(&app, "lobby").await;
    let revoked = Instant::now();
    for door in &doors {
        while stock(door.clone()).await != 401 {
            assert!(
                revoked.elapsed() < Duration::from_millis(1500),
                "the revoked key still works at {door} after {:?}",
                revoked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    app.stop().await;
}

async fn an_open_group_lets_anonymous_callers_in_to_what_no_one_owns(backend: Backend) {
    let app = spawn_app_with(backend, &["gateway", "orders", "payments", "users"], |s| {
        s.http.open_routes = kassa_platform::access::OpenGroups(vec!["seed001".into()]);
        s.options.set("pos-order-rate-limit", "off");
    })
    .await;
    let gw = &app.gateway;
    let (token, _) = support::signed_up(&app.anon, gw).await;
    let create = async |token: Option<&str>| {
        let mut request = app
            .anon
            .post(format!("{gw}/orders/CreateOrder"))
            .json(&serde_json::json!({"totalAmount": 10}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 201);
        answer.json::<Value>().await.unwrap()["orderID"]
            .as_i64()
            .unwrap()
    };
    let theirs = create(Some(&token)).await;
    let nobodys = create(None).await;
    let read = async |path: String| {
        let answer = app.anon.get(format!("{gw}{path}")).send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json::<Value>().await.unwrap_or(Value::Null))
    };
    // Seed 001's routes are open: an anonymous caller reads what no one owns, and the
    // customer's order is not there for them.
    assert_eq!(read(format!("/orders/GetOrderById/{nobodys}")).await.0, 200);
    assert_eq!(read(format!("/orders/GetOrderById/{theirs}")).await.0, 404);
    let (status, all) = read("/orders/GetAllOrders".into()).await;
    assert_eq!(status, 200);
    let numbers: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["orderID"].as_i64())
        .collect();
    assert!(
        numbers.contains(&nobodys) && !numbers.contains(&theirs),
        "{all}"
    );
    let payments = support::eventually(
        "both orders' payments are made",
        Duration::from_secs(10),
        async || {
            app.client
                .get(format!("{gw}/payments/GetAllPayments"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        },
        |p| p.as_array().is_some_and(|p| p.len() >= 2),
    )
    .await;
    let (_, anonymous) = read("/payments/GetAllPayments".into()).await;
    let orders_of = |list: &Value| -> Vec<i64> {
        list.as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["orderID"].as_i64())
            .collect()
    };
    assert!(orders_of(&payments).contains(&theirs), "{payments}");
    assert_eq!(orders_of(&anonymous), vec![nobodys], "{anonymous}");
    // Other groups stay closed.
    assert_eq!(read("/api/orders".into()).await.0, 401);
    app.stop().await;
}
