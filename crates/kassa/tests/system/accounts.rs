//! Seed 004's accounts through the gateway, on both backends: sign-up, sign-in, the token as a
//! bearer and as the cookie, a saved card; and the gateway's rate limit on `/api/auth`.

use crate::support;

use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use support::{Backend, post_with as post, spawn_app_with};

/// The services these scenarios exercise, and those they call or hear from.
const SERVICES: &[&str] = &["gateway", "users", "orders", "payments"];

on_both_backends!(
    an_account_signs_in_and_saves_a_card,
    sign_ins_are_rate_limited_per_client,
    orders_placed_at_a_till_are_rate_limited_per_client,
    sign_ins_to_one_account_are_limited_from_any_client,
    orders_are_charged_to_the_saved_card,
);

async fn an_account_signs_in_and_saves_a_card(backend: Backend) {
    let app = spawn_app_with(backend, SERVICES, |_| {}).await;
    let gw = &app.gateway;
    let c = &app.client;
    let email = format!("{}@example.com", support::unique("ada"));
    let signup = post(
        c,
        &format!("{gw}/api/auth/signup"),
        &[],
        json!({"name": "Ada Lovelace", "email": email, "password": "analytical engine"}),
    )
    .await;
    assert_eq!(signup.status(), StatusCode::CREATED);
    let signin = post(
        c,
        &format!("{gw}/api/auth/signin"),
        &[],
        json!({"email": email, "password": "analytical engine"}),
    )
    .await;
    assert_eq!(signin.status(), StatusCode::OK);
    let cookie = signin.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = signin.json().await.unwrap();
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("token={token};")), "{cookie}");

    // The browser's way: only the cookie.
    let card = post(
        c,
        &format!("{gw}/api/payment-methods/add"),
        &[("cookie", &format!("token={token}"))],
        json!({"card_number": "4242424242424242", "expiry_date": "12/34", "cardholder_name": "Ada Lovelace"}),
    )
    .await;
    assert_eq!(card.status(), StatusCode::CREATED);
    let me: Value = c
        .get(format!("{gw}/api/users/me/payment-methods"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"][0]["last4"], "4242");
    // Anonymous: refused at every signed-in route.
    let anonymous = app
        .anon
        .get(format!("{gw}/api/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn sign_ins_are_rate_limited_per_client(backend: Backend) {
    let app = spawn_app_with(backend, SERVICES, |s| {
        s.options.set("auth-rate-limit", "3/1m");
        s.options.set("client-ip-header", "X-Forwarded-For");
    })
    .await;
    let c = &app.client;
    let signin_at = |base: String, path: &'static str, client: &'static str| {
        let c = c.clone();
        async move {
            post(
                &c,
                &format!("{base}{path}"),
                &[("x-forwarded-for", client)],
                json!({"email": "nobody@example.com", "password": "guess"}),
            )
            .await
        }
    };
    let signin = |base: String, client: &'static str| signin_at(base, "/api/auth/signin", client);
    // Paths that resolve to sign-in through dot segments or an encoded slash (which an HTTP
    // client or a proxy would resolve after the gateway matched the raw path): refused before
    // routing, uncounted and unforwarded, whatever the limit.
    for path in [
        "/api/users/%2e%2e/auth/signin",
        "/api/users/%2E%2E/auth/signin",
        "/api/users/../auth/signin",
        "/api/users/.%2e/auth/signin",
        "/api/users%2f..%2fauth/signin",
        "/api/orders/%2e%2e/%2e%2e/auth/signin",
    ] {
        for _ in 0..4 {
            let (status, body) = raw_post(&app.gateway, path, "203.0.113.7").await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(body.contains("invalid_path"), "{path}: {body}");
        }
    }
    // The proxy appends the address it saw: what a client writes before it changes nothing.
    for spoofed in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        let header = Box::leak(format!("{spoofed}, 203.0.113.7").into_boxed_str());
        let answer = signin(app.gateway.clone(), header).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    // The service's own path, forwarded by the gateway too, is counted with the gateway's.
    let through_service_path = signin_at(app.gateway.clone(), "/auth/signin", "203.0.113.7").await;
    assert_eq!(through_service_path.status(), StatusCode::TOO_MANY_REQUESTS);
    let limited = signin(app.gateway.clone(), "203.0.113.7").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["success"].as_bool()),
        (Some("rate_limited"), Some(false))
    );
    // Another client has its own count; the users service's own port has no gateway limit.
    let other = signin(app.gateway.clone(), "198.51.100.2").await;
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    let direct = signin(app.url_of("users"), "203.0.113.7").await;
    assert_eq!(direct.status(), StatusCode::UNAUTHORIZED);
    // Other routes are not counted.
    let (status, _) = app.get("/api/orders?limit=1").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// Seed 003's and seed 001's order routes count against one limit per client, creations only;
/// the proxy's word for the client is taken from a trusted proxy (loopback, by default) only.
async fn orders_placed_at_a_till_are_rate_limited_per_client(backend: Backend) {
    let app = spawn_app_with(backend, SERVICES, |s| {
        s.options.set("pos-order-rate-limit", "3/1m");
        s.options.set("client-ip-header", "X-Forwarded-For");
    })
    .await;
    let c = &app.client;
    let place = |path: &'static str, body: Value, client: &'static str| {
        let (c, gw) = (c.clone(), app.gateway.clone());
        async move {
            post(
                &c,
                &format!("{gw}{path}"),
                &[("x-forwarded-for", client)],
                body,
            )
            .await
            .status()
        }
    };
    let seed003 = || json!({"userId": support::USER, "total": 10});
    let seed001 = || json!({"totalAmount": 10});
    assert_eq!(
        place("/api/orders", seed003(), "203.0.113.9").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        place("/orders/CreateOrder", seed001(), "203.0.113.9").await,
        StatusCode::CREATED
    );
    assert_eq!(
        place("/api/orders", seed003(), "203.0.113.9").await,
        StatusCode::ACCEPTED
    );
    // Reading orders is not placing them.
    let (status, _) = app.get("/api/orders?limit=1").await;
    assert_eq!(status, 200);
    for (path, body) in [
        ("/api/orders", seed003()),
        ("/api/Order/CreateOrder", seed001()),
    ] {
        let limited = place(path, body, "203.0.113.9").await;
        assert_eq!(limited, StatusCode::TOO_MANY_REQUESTS, "{path}");
    }
    // Another till has its own count; an IPv6 client is counted by its /64.
    assert_eq!(
        place("/api/orders", seed003(), "198.51.100.4").await,
        StatusCode::ACCEPTED
    );
    for client in [
        "2001:db8:7:1::1",
        "2001:db8:7:1::2",
        "[2001:db8:7:1::3]:5555",
    ] {
        assert_eq!(
            place("/api/orders", seed003(), client).await,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        place("/api/orders", seed003(), "2001:db8:7:1:ffff::9").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.stop().await;
}

/// Guessing one account's password from many addresses: each address is under its own limit, the
/// account's sign-ins are counted together, whatever the letter case of its address.
async fn sign_ins_to_one_account_are_limited_from_any_client(backend: Backend) {
    let app = spawn_app_with(backend, SERVICES, |s| {
        s.options.set("auth-rate-limit", "off");
        s.options.set("signin-account-limit", "3/1m");
        s.options.set("client-ip-header", "X-Forwarded-For");
    })
    .await;
    let c = &app.client;
    let email = format!("{}@example.com", support::unique("target"));
    let signup = post(
        c,
        &format!("{}/api/auth/signup", app.gateway),
        &[],
        json!({"name": "Target", "email": email, "password": "the right one"}),
    )
    .await;
    assert_eq!(signup.status(), StatusCode::CREATED);
    let signin = |email: String, password: &'static str, client: &'static str| {
        let (c, gw) = (c.clone(), app.gateway.clone());
        async move {
            post(
                &c,
                &format!("{gw}/api/auth/signin"),
                &[("x-forwarded-for", client)],
                json!({"email": email, "password": password}),
            )
            .await
            .status()
        }
    };
    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(
            signin(email.clone(), "a guess", client).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // A fourth address, and the right password: the account's window is used up.
    let shouted = email.to_ascii_uppercase();
    assert_eq!(
        signin(shouted, "the right one", "192.0.2.4").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another account is not held back.
    assert_eq!(
        signin("someone-else@example.com".into(), "a guess", "192.0.2.4").await,
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

/// POSTs a sign-in to `path` as written, over a connection of its own: HTTP clients resolve dot
/// segments before sending (as the URL standard says), an attacker's client does not.
async fn raw_post(base: &str, path: &str, client: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"email":"nobody@example.com","password":"guess"}"#;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         X-Forwarded-For: {client}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

async fn orders_are_charged_to_the_saved_card(backend: Backend) {
    let app = spawn_app_with(backend, SERVICES, |_| {}).await;
    let approving = app.customer_with_card("4242424242424242").await;
    let (paid, status) = app.order_settles(&approving).await;
    assert_eq!(status, "success");
    let declining = app.customer_with_card("4000000000000002").await;
    let (failed, status) = app.order_settles(&declining).await;
    assert_eq!(status, "failed");
    let (_, payment) = app.get(&format!("/api/payments/order/{failed}")).await;
    assert!(
        payment["reason"].as_str().unwrap().contains("declined"),
        "{payment}"
    );
    // Each customer reads only their own orders; anonymous callers none.
    let gw = &app.gateway;
    let theirs = app
        .client
        .get(format!("{gw}/api/order/status/{paid}"))
        .bearer_auth(&declining)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    // A retried order (same Idempotency-Key) is the same order; the key with another body is
    // refused.
    let keyed = |amount: f64| {
        app.client
            .post(format!("{gw}/api/order/create"))
            .bearer_auth(&approving)
            .header("idempotency-key", "retry-after-a-timeout")
            .json(&json!({"item": "Margherita", "amount": amount}))
            .send()
    };
    let first: Value = keyed(9.5).await.unwrap().json().await.unwrap();
    let again = keyed(9.5).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["data"]["orderId"], first["data"]["orderId"]);
    assert_eq!(
        keyed(10.5).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Keys are each customer's own: another using the same one places an order of theirs.
    let theirs: Value = app
        .client
        .post(format!("{gw}/api/order/create"))
        .bearer_auth(&declining)
        .header("idempotency-key", "retry-after-a-timeout")
        .json(&json!({"item": "Margherita", "amount": 9.5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(theirs["data"]["orderId"].is_string(), "{theirs}");
    assert_ne!(theirs["data"]["orderId"], first["data"]["orderId"]);
    let anonymous = app
        .anon
        .get(format!("{gw}/api/order/status/{paid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}
