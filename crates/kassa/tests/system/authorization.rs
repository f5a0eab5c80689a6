//! Whose things each caller sees: every route that reads or changes a customer's things, called
//! through the gateway by each kind of caller (anonymous, customer A, customer B, an admin, a
//! service), with the installation's defaults. A caller the route's rule does not let in is
//! refused (401 anonymous, 403 otherwise: `access.rs` tests that for every route and role);
//! one it lets in gets the status of its case, and no answer to one customer holds anything of
//! the other's (ids, address, orders, payments, saved cards) unless the request itself named
//! it, and no answer to an anonymous caller holds anything of either's. The routes come from the
//! gateway's own OpenAPI document, so a route added without a line here fails the test.

use crate::support;

use std::collections::BTreeSet;

use kassa_platform::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app_with, unique};
use uuid::Uuid;

/// These scenarios exercise every service.
const SERVICES: &[&str] = support::ALL;

on_both_backends!(every_route_answers_each_caller_as_it_should);

/// The callers, in the order of each case's expected statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    A,
    B,
    Admin,
    Service,
}

const CALLERS: [Who; 5] = [Who::Anonymous, Who::A, Who::B, Who::Admin, Who::Service];

/// A signed-in customer and what they own.
struct Customer {
    token: String,
    id: Uuid,
    email: String,
    /// Their saved card's id.
    card: String,
    /// An order placed through seed 004's route, paid.
    order: String,
    /// Its number (seed 001's `orderID`).
    number: i64,
    /// Its payment.
    payment: String,
}

impl Customer {
    /// What the customer owns, as text an answer could show.
    fn secrets(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.email.clone(),
            self.card.clone(),
            self.order.clone(),
            self.payment.clone(),
        ]
    }
}

struct World {
    a: Customer,
    b: Customer,
    admin: String,
    admin_email: String,
    service: String,
}

impl World {
    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Anonymous => None,
            Who::A => Some(&self.a.token),
            Who::B => Some(&self.b.token),
            Who::Admin => Some(&self.admin),
            Who::Service => Some(&self.service),
        }
    }
}

/// `method path` with `body`, and the status each caller (in [`CALLERS`] order) gets.
struct Case {
    method: Method,
    path: String,
    body: Option<Value>,
    expect: [u16; 5],
}

fn case(method: Method, path: impl Into<String>, body: Option<Value>, expect: [u16; 5]) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        expect,
    }
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    send_to(app, &app.gateway, method, path, token, body).await
}

/// [`send`] to the listener at `base`.
async fn send_to(
    app: &TestApp,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app.anon.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let answer = req.send().await.unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A customer with a saved card and one paid order.
async fn customer(app: &TestApp) -> Customer {
    let (token, email) = app.customer_with_card_as("4242424242424242").await;
    let (_, me) = send(app, Method::GET, "/api/users/me", Some(&token), None).await;
    let id: Uuid = me["id"].as_str().unwrap().parse().unwrap();
    let (_, cards) = send(
        app,
        Method::GET,
        "/api/users/me/payment-methods",
        Some(&token),
        None,
    )
    .await;
    let card = cards["data"][0]["id"].as_str().unwrap().to_owned();
    let (order, status) = app.order_settles(&token).await;
    assert_eq!(status, "success");
    let path = format!("/api/payments/order/{order}");
    let payment = support::eventually(
        "the order's payment is readable",
        std::time::Duration::from_secs(10),
        async || send(app, Method::GET, &path, Some(&token), None).await,
        |(status, _)| *status == 200,
    )
    .await
    .1;
    // Seed 001's view lists the customer's own orders: this one.
    let (_, own) = send(app, Method::GET, "/orders/GetAllOrders", Some(&token), None).await;
    let number = own[0]["orderID"].as_i64().expect("the order's number");
    Customer {
        token,
        id,
        email,
        card,
        order,
        number,
        payment: payment["id"].as_str().unwrap().to_owned(),
    }
}

async fn world(app: &TestApp) -> World {
    let a = customer(app).await;
    let b = customer(app).await;
    // An admin is an account the operator made one (`kassa users grant-admin`); the token is
    // what matters here, minted with the installation's secret as users would.
    let admin_email = format!("{}@example.com", unique("boss"));
    let (status, signed) = send(
        app,
        Method::POST,
        "/api/auth/signup",
        None,
        Some(&json!({"name": "The Boss", "email": admin_email, "password": "a long password"})),
    )
    .await;
    assert_eq!(status, 201, "{signed}");
    let admin_id: Uuid = signed["data"]["id"].as_str().unwrap().parse().unwrap();
    support::grant(&app.settings, &admin_email, Role::Admin).await;
    World {
        a,
        b,
        admin: support::token(admin_id, &admin_email, Role::Admin),
        admin_email,
        service: support::token(Uuid::now_v7(), "payments@kassa.internal", Role::Service),
    }
}

/// Every case, with the status of each caller its rule lets in (`anon(…)`: what an anonymous
/// caller would get where the operator opened the route's group).
fn cases(w: &World) -> Vec<Case> {
    use Method as M;
    let a = &w.a;
    let anon = |ok: u16| ok;
    let mut cases = Vec::new();

    // Accounts: anyone signs up and in; a token changes nothing there. A token whose subject
    // is no account (a service's) is refused where an account is needed.
    for (prefix, card) in [("", "5555555555554444"), ("/api", "4000056655665556")] {
        cases.push(case(
            M::POST,
            format!("{prefix}/auth/signup"),
            None, // a new address per call, see `body_for`
            [201; 5],
        ));
        cases.push(case(
            M::POST,
            format!("{prefix}/auth/signin"),
            Some(json!({"email": w.admin_email, "password": "a long password"})),
            [200; 5],
        ));
        // Saving a card: a signed-in user saves one of their own; a service has no account.
        cases.push(case(
            M::POST,
            format!("{prefix}/payment-methods/add"),
            Some(json!({"card_number": card, "expiry_date": "12/34", "cardholder_name": "A Customer"})),
            [401, 201, 201, 201, 401],
        ));
        // The card lookup is the payments service's alone.
        cases.push(case(
            M::GET,
            format!("{prefix}/payment-methods/get/{}", a.id),
            None,
            [401, 403, 403, 403, 200],
        ));
    }
    cases.extend([
        case(M::GET, "/api/users/me", None, [401, 200, 200, 200, 401]),
        case(
            M::PATCH,
            "/api/users/me",
            Some(json!({"name": "Renamed"})),
            [401, 200, 200, 200, 401],
        ),
        case(
            M::GET,
            "/api/users/me/payment-methods",
            None,
            [401, 200, 200, 200, 401],
        ),
        // A's card: only A removes it (B and the others are told it does not exist); last, so
        // the cases before still find it.
        case(
            M::DELETE,
            format!("/api/users/me/payment-methods/{}", a.card),
            None,
            [401, 204, 404, 404, 401],
        ),
    ]);

    // Seed 004's orders: placed by signed-in customers, read by their owner or an admin.
    for prefix in ["", "/api"] {
        cases.push(case(
            M::POST,
            format!("{prefix}/order/create"),
            Some(json!({"item": "Margherita", "amount": 12.5})),
            [401, 201, 201, 201, 201],
        ));
        cases.push(case(
            M::GET,
            format!("{prefix}/order/status/{}", a.order),
            None,
            [401, 200, 404, 200, 200],
        ));
    }

    // Seed 003's orders: open unless a token is required; a customer sees and changes their
    // own only, and places orders for themselves only.
    cases.extend([
        case(
            M::POST,
            "/api/orders",
            Some(json!({"userId": a.id, "total": 10.0})),
            [anon(202), 202, 403, 202, 202],
        ),
        case(M::GET, "/api/orders", None, [anon(200), 200, 200, 200, 200]),
        case(
            M::GET,
            format!("/api/orders/{}", a.order),
            None,
            [anon(200), 200, 404, 200, 200],
        ),
        case(
            M::GET,
            "/api/payments",
            None,
            [anon(200), 200, 200, 200, 200],
        ),
        case(
            M::GET,
            format!("/api/payments/{}", a.payment),
            None,
            [anon(200), 200, 404, 200, 200],
        ),
        case(
            M::GET,
            format!("/api/payments/order/{}", a.order),
            None,
            [anon(200), 200, 404, 200, 200],
        ),
        case(
            M::GET,
            "/api/payments/stats",
            None,
            [anon(200), 403, 403, 200, 200],
        ),
    ]);
    // Seed 001's routes, through the gateway's paths and the services' own: the same rules
    // as seed 003's. A's order is paid: its total stands and it is not deleted.
    for (orders, payments) in [("/orders", "/payments"), ("/api/Order", "/api/Payment")] {
        cases.extend([
            case(
                M::POST,
                format!("{orders}/CreateOrder"),
                Some(json!({"totalAmount": 10})),
                [anon(201), 201, 201, 201, 201],
            ),
            case(
                M::GET,
                format!("{orders}/GetAllOrders"),
                None,
                [anon(200), 200, 200, 200, 200],
            ),
            case(
                M::GET,
                format!("{orders}/GetOrderById/{}", a.number),
                None,
                [anon(200), 200, 404, 200, 200],
            ),
            case(
                M::PUT,
                format!("{orders}/UpdateOrderById/{}", a.number),
                Some(json!({"totalAmount": 12.5})),
                [anon(200), 200, 404, 200, 200],
            ),
            case(
                M::DELETE,
                format!("{orders}/DeleteOrderById/{}", a.number),
                None,
                [anon(409), 409, 404, 409, 409],
            ),
            case(
                M::GET,
                format!("{payments}/GetAllPayments"),
                None,
                [anon(200), 200, 200, 200, 200],
            ),
            case(
                M::GET,
                format!("{payments}/GetPaymentById/{}", a.payment),
                None,
                [anon(200), 200, 404, 200, 200],
            ),
        ]);
    }
    cases.extend([
        // Cancelling is idempotent, so each caller that may cancels the same order; B first,
        // who may not.
        case(
            M::PATCH,
            format!("/api/orders/{}", a.order),
            Some(json!({"status": "CANCELLED"})),
            [anon(202), 202, 404, 202, 202],
        ),
        case(
            M::PATCH,
            format!("/api/orders/{}/cancel", a.order),
            None,
            [anon(202), 202, 404, 202, 202],
        ),
        // Deleting an unpaid order cancels it (it is cancelled by now: nothing changes).
        case(
            M::DELETE,
            format!("/api/orders/{}", a.order),
            None,
            [anon(204), 204, 404, 204, 204],
        ),
        // Seed 002's in-person payment routes, on A's payment (charged through the provider,
        // so not one to pay in person): a customer reads their own; only the kiosk (open), an
        // admin or a service confirms.
        case(M::GET, "/api/all", None, [anon(200), 200, 200, 200, 200]),
        case(
            M::GET,
            format!("/api/Payment/order/{}", a.order),
            None,
            [anon(200), 200, 404, 200, 200],
        ),
        case(
            M::POST,
            "/api/Payment",
            Some(json!({"orderId": a.order, "method": "Cash"})),
            [anon(409), 409, 404, 409, 409],
        ),
        case(
            M::POST,
            format!("/api/Payment/{}/confirm", a.payment),
            None,
            [anon(409), 403, 403, 409, 409],
        ),
        case(
            M::GET,
            format!("/api/Payment/{}/qris.svg", a.payment),
            None,
            [anon(404), 404, 404, 404, 404],
        ),
        case(
            M::GET,
            format!("/api/Payment/{}/qris.png", a.payment),
            None,
            [anon(404), 404, 404, 404, 404],
        ),
        // Reports and the dashboard: figures over everyone's orders, for the shop (open where
        // the installation is), an admin or a service; never a customer.
        case(
            M::GET,
            "/api/v1/reports/reports/summary",
            None,
            [anon(200), 403, 403, 200, 200],
        ),
        case(
            M::GET,
            "/api/v1/reports/reports/favorites",
            None,
            [anon(200), 403, 403, 200, 200],
        ),
        case(
            M::GET,
            "/api/v1/reports/reports/sales-trend",
            None,
            [anon(200), 403, 403, 200, 200],
        ),
        case(
            M::GET,
            "/api/v1/reports/reports/recent-orders",
            None,
            [anon(200), 403, 403, 200, 200],
        ),
        case(M::GET, "/dashboard", None, [anon(200), 403, 403, 200, 200]),
        // Its sign-in form is anyone's, and shows no one's figures.
        case(M::GET, "/dashboard/signin", None, [200; 5]),
        // Pickup codes: the kiosk (open), an admin or a service makes them and registers
        // dispensers; a dispenser's signature, never a token, redeems one.
        case(
            M::POST,
            "/api/QrCode/generate",
            Some(json!({"orderId": a.order})),
            [anon(404), 403, 403, 404, 404],
        ),
        case(
            M::POST,
            "/api/QrCode/devices",
            Some(json!({"name": "Lobby dispenser"})),
            [anon(201), 403, 403, 201, 201],
        ),
        case(
            M::GET,
            format!("/api/QrCode/{}/qr.svg", a.order),
            None,
            [anon(404), 403, 403, 404, 404],
        ),
        case(
            M::POST,
            "/api/QrCode/validate",
            Some(json!({"code": a.order, "deviceId": a.order, "timestamp": 0, "signature": "00"})),
            [403; 5],
        ),
        // Stripe's webhook answers a signature, never a token.
        case(
            M::POST,
            "/api/payments/webhooks/stripe",
            Some(json!({"type": "payment_intent.succeeded"})),
            [401; 5],
        ),
    ]);
    cases
}

/// The request body of `case` for one call: sign-ups get an address of their own.
fn body_for(case: &Case) -> Option<Value> {
    if case.path.ends_with("/auth/signup") {
        return Some(json!({
            "name": "New Customer",
            "email": format!("{}@example.com", unique("n")),
            "password": "a long password",
        }));
    }
    case.body.clone()
}

/// Calls every case as every caller (B before A, so what A may change is still there for B to
/// be refused), checking each status and that no customer is shown the other's things.
async fn check(app: &TestApp, w: &World, cases: &[Case]) {
    let order = [Who::Anonymous, Who::B, Who::A, Who::Admin, Who::Service];
    let mut wrong = Vec::new();
    // An anonymous caller also knocks on the door of the route's own service.
    let doors = |who: Who, case: &Case| {
        let mut doors = vec![app.gateway.clone()];
        if who == Who::Anonymous {
            let (service, _) = support::route_of(&case.method, &case.path)
                .unwrap_or_else(|| panic!("no rule for {} {}", case.method, case.path));
            doors.push(app.url_of(service.name));
        }
        doors
    };
    let calls = cases.iter().flat_map(|case| {
        order.into_iter().flat_map(move |who| {
            doors(who, case)
                .into_iter()
                .map(move |door| (case, who, door))
        })
    });
    for (case, who, door) in calls {
        {
            let body = body_for(case);
            let (status, answer) = send_to(
                app,
                &door,
                case.method.clone(),
                &case.path,
                w.token(who),
                body.as_ref(),
            )
            .await;
            let expected = match (admitted(case, who), who) {
                (true, _) => case.expect[CALLERS.iter().position(|c| *c == who).unwrap()],
                (false, Who::Anonymous) => 401,
                (false, _) => 403,
            };
            if status != expected {
                wrong.push(format!(
                    "{} {door}{} as {who:?}: {status}, expected {expected}: {answer}",
                    case.method, case.path
                ));
            }
            let others: Vec<&Customer> = match who {
                Who::A => vec![&w.b],
                Who::B => vec![&w.a],
                Who::Anonymous => vec![&w.a, &w.b],
                _ => continue,
            };
            let asked = format!(
                "{}{}",
                case.path,
                body.map(|b| b.to_string()).unwrap_or_default()
            );
            let shown = answer.to_string();
            for secret in others.iter().flat_map(|o| o.secrets()) {
                if !asked.contains(&secret) && shown.contains(&secret) {
                    wrong.push(format!(
                        "{} {} as {who:?} shows the other customer's {secret}: {shown}",
                        case.method, case.path
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A customer's lists hold their own things only; an admin's hold both customers'.
async fn check_lists(app: &TestApp, w: &World) {
    for (who, me, other) in [(Who::A, &w.a, &w.b), (Who::B, &w.b, &w.a)] {
        let (_, orders) = send(
            app,
            Method::GET,
            "/api/orders?limit=100",
            w.token(who),
            None,
        )
        .await;
        let rows = orders["data"].as_array().unwrap();
        assert!(!rows.is_empty(), "{who:?} lists their orders");
        assert!(
            rows.iter().all(|o| o["userId"] == json!(me.id)),
            "{who:?}'s list: {orders}"
        );
        assert_eq!(orders["meta"]["total"], json!(rows.len()), "{orders}");
        let (_, payments) = send(
            app,
            Method::GET,
            "/api/payments?limit=100",
            w.token(who),
            None,
        )
        .await;
        let ids: BTreeSet<&str> = payments["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["id"].as_str())
            .collect();
        assert!(ids.contains(me.payment.as_str()), "{payments}");
        assert!(!ids.contains(other.payment.as_str()), "{payments}");
    }
    let (_, all) = send(
        app,
        Method::GET,
        "/api/orders?limit=100",
        Some(&w.admin),
        None,
    )
    .await;
    let shown = all.to_string();
    assert!(
        shown.contains(&w.a.order) && shown.contains(&w.b.order),
        "{all}"
    );
}

/// Routes that hold no customer's things: seed 000's gym, whose members, classes, staff and
/// payments recorded by hand are the gym's records, not accounts; seed 002's catalog and
/// stock, the shop's own.
const NOT_A_CUSTOMERS: &[&str] = &[
    "/api/Product",
    "/api/products",
    "/api/categories",
    "/api/Inventory",
    "/api/StockMovement",
    "/api/inventory",
    "/api/reservations",
    "/Class/",
    "/Member",
    "/Payment",
    "/Personal",
    "/api/classes",
    "/api/members",
    "/api/personnel",
    "/api/payments/manual",
];

/// Every operation of the gateway's document is a case here, or holds no customer's things.
async fn check_coverage(app: &TestApp, cases: &[Case]) {
    let (_, doc) = send(app, Method::GET, "/openapi.json", None, None).await;
    let covered: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.method.as_str().to_ascii_lowercase(), template(&c.path)))
        .collect();
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let theirs = NOT_A_CUSTOMERS.iter().any(|p| path.starts_with(p));
            if !theirs && !covered.contains(&(method.clone(), template(path))) {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "routes without a case: {missing:?}");
}

/// A path by its shape: each id (a UUID or a number) or `{parameter}` segment becomes `{}`.
fn template(path: &str) -> String {
    path.split('/')
        .map(|s| {
            let number = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if Uuid::parse_str(s).is_ok() || s.starts_with('{') || number {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn every_route_answers_each_caller_as_it_should(backend: Backend) {
    let app = spawn_app_with(backend, SERVICES, |s| {
        // Every call comes from this one address: the limits are not what is tested here.
        s.options.set("auth-rate-limit", "off");
        s.options.set("order-rate-limit", "off");
    })
    .await;
    let w = world(&app).await;
    let cases = cases(&w);
    check_coverage(&app, &cases).await;
    check(&app, &w, &cases).await;
    check_lists(&app, &w).await;
    app.stop().await;
}

/// Whether the rule of `case`'s route lets `who` in.
fn admitted(case: &Case, who: Who) -> bool {
    let rule = support::rule_for(&case.method, &case.path)
        .unwrap_or_else(|| panic!("no rule for {} {}", case.method, case.path));
    match who {
        Who::Anonymous => rule.policy.admits_anonymous(),
        Who::A | Who::B => rule.policy.admits(Role::Customer),
        Who::Admin => rule.policy.admits(Role::Admin),
        Who::Service => rule.policy.admits(Role::Service),
    }
}
