//! Seed 001's order and payment API (orders by number, integer statuses) through the gateway
//! (`/orders/…`, `/payments/…`) and on the services' own ports (`/api/Order/…`,
//! `/api/Payment/…`), on every backend: the flow order NOT_PAID → payment → CONFIRMED/PAID or
//! FAILED works over the in-process bus, RabbitMQ and Kafka alike, as a view of kassa's own
//! orders and payments.

use crate::support;

use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app, spawn_app_with};

/// The services these scenarios exercise, and those they call or hear from.
const SERVICES: &[&str] = &["gateway", "orders", "payments"];

on_both_backends!(
    an_order_by_number_is_paid_or_failed,
    bad_input_is_refused_and_changes_nothing,
    deleting_an_order_cancels_it,
);

/// `method path` with an optional JSON body against `base`: the status, the headers and the body.
async fn call(
    app: &TestApp,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.request(method.parse().unwrap(), url.to_owned());
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("answered");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Places an order of `total` through the gateway and answers its number.
async fn create(app: &TestApp, total: Value) -> i64 {
    let (status, headers, body) = call(
        app,
        "POST",
        &format!("{}/orders/CreateOrder", app.gateway),
        Some(json!({ "totalAmount": total })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let number = body["orderID"].as_i64().expect("orderID");
    assert!(number >= 1);
    assert_eq!(body["totalAmount"], total);
    assert_eq!(body["status"], 0, "PENDING");
    assert_eq!(body["paymentStatus"], 0, "NOT_PAID");
    assert_eq!(
        headers["location"],
        format!("/api/Order/GetOrderById/{number}").as_str()
    );
    number
}

/// Waits until order `number` leaves PENDING, read through the gateway; answers it.
async fn settled(app: &TestApp, number: i64) -> Value {
    app.wait_for(&format!("/orders/GetOrderById/{number}"), |o| {
        o["status"] != 0
    })
    .await
}

async fn an_order_by_number_is_paid_or_failed(backend: Backend) {
    let app = spawn_app(backend, SERVICES).await;
    let paid = create(&app, json!(150.5)).await;
    let declined = create(&app, json!(10.01)).await;
    assert!(
        declined > paid,
        "numbers follow the order orders are placed in"
    );

    let order = settled(&app, paid).await;
    assert_eq!(
        order,
        json!({"orderID": paid, "totalAmount": 150.5, "status": 1, "paymentStatus": 1})
    );
    let order = settled(&app, declined).await;
    assert_eq!(order["status"], 2, "FAILED");
    assert_eq!(order["paymentStatus"], 2, "FAILED");

    // The same order on the orders service's own port.
    let (status, _, own) = call(
        &app,
        "GET",
        &format!("{}/api/Order/GetOrderById/{paid}", app.orders),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(own["orderID"], paid);

    // Its payment, by the order's number, and as kassa's own API shows the same payment.
    let (status, headers, payments) = call(
        &app,
        "GET",
        &format!("{}/payments/GetAllPayments", app.gateway),
        None,
    )
    .await;
    assert_eq!(status, 200, "{payments}");
    assert_eq!(headers["x-total-count"], "2");
    let payments = payments.as_array().expect("an array").clone();
    let of = |number: i64| {
        payments
            .iter()
            .find(|p| p["orderID"] == number)
            .unwrap_or_else(|| panic!("a payment of order {number}: {payments:?}"))
            .clone()
    };
    assert_eq!(of(paid)["paymentStatus"], 1, "COMPLETED");
    assert_eq!(of(declined)["paymentStatus"], 2, "FAILED");
    let payment_id = of(paid)["paymentID"].as_str().unwrap().to_owned();
    let (status, _, one) = call(
        &app,
        "GET",
        &format!("{}/api/Payment/GetPaymentById/{payment_id}", app.payments),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one, of(paid));
    // kassa's own lookup reads through the cache, which the processor brings up to date beside
    // its loop after the commit: it may show PROCESSING a moment longer than the database does.
    let own = app
        .wait_for(&format!("/api/payments/{payment_id}"), |p| {
            p["status"] != "PROCESSING"
        })
        .await;
    assert_eq!(own["status"], "APPROVED");
    assert_eq!(own["amount"], 150.5);
    let order_id = own["orderId"].as_str().unwrap().to_owned();
    let (_, own_order) = app.get(&format!("/api/orders/{order_id}")).await;
    assert_eq!(own_order["status"], "PAID", "one order, seen two ways");

    // The list, newest first, a page at a time.
    let (status, headers, list) = call(
        &app,
        "GET",
        &format!("{}/orders/GetAllOrders?limit=1", app.gateway),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!([{"orderID": declined, "totalAmount": 10.01, "status": 2, "paymentStatus": 2}])
    );
    assert_eq!(headers["x-total-count"], "2");
    assert_eq!(
        headers["link"],
        "</api/Order/GetAllOrders?page=2&limit=1>; rel=\"next\""
    );

    // The total a payment was asked for stands; sending it again is answered with the order.
    let url = format!("{}/orders/UpdateOrderById/{paid}", app.gateway);
    let (status, _, same) = call(
        &app,
        "PUT",
        &url,
        Some(json!({"orderID": paid, "totalAmount": 150.50})),
    )
    .await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["totalAmount"], 150.5);
    let (status, _, problem) = call(&app, "PUT", &url, Some(json!({"totalAmount": 99}))).await;
    assert_eq!(status, 409);
    assert_eq!(problem["code"], "order_total_fixed");
    assert_eq!(settled(&app, paid).await["totalAmount"], 150.5);

    // A paid order is not deleted.
    let (status, _, problem) = call(
        &app,
        "DELETE",
        &format!("{}/orders/DeleteOrderById/{paid}", app.gateway),
        None,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(problem["code"], "order_paid");
    app.stop().await;
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend, SERVICES).await;
    let gw = app.gateway.clone();
    let create_url = format!("{gw}/orders/CreateOrder");
    for (body, param) in [
        (json!({}), "totalAmount"),
        (json!({"totalAmount": -5}), "totalAmount"),
        (json!({"totalAmount": 1.001}), "totalAmount"),
        (json!({"totalAmount": "ten"}), "totalAmount"),
        (json!({"totalAmount": 5, "orderID": 7}), "orderID"),
        (json!({"totalAmount": 5, "status": 1}), "status"),
        (
            json!({"totalAmount": 5, "paymentStatus": 2}),
            "paymentStatus",
        ),
        (json!({"totalAmount": 5, "status": null}), "status"),
        (json!({"totalAmount": 5, "extra": true}), ""),
    ] {
        let (status, headers, problem) = call(&app, "POST", &create_url, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {problem}");
        assert_eq!(headers["content-type"], "application/problem+json");
        if !param.is_empty() {
            assert_eq!(problem["param"], param, "{body} → {problem}");
        }
    }
    for path in [
        "GetOrderById/0",
        "GetOrderById/abc",
        "GetOrderById/-1",
        "GetOrderById/+3",
    ] {
        let (status, _, problem) = call(&app, "GET", &format!("{gw}/orders/{path}"), None).await;
        assert_eq!(status, 400, "{path} → {problem}");
    }
    let (status, _, problem) = call(
        &app,
        "GET",
        &format!("{gw}/orders/GetOrderById/424242"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(problem["detail"], "Order with such ID is not found!");
    let (status, _, _) = call(
        &app,
        "GET",
        &format!("{gw}/payments/GetPaymentById/42"),
        None,
    )
    .await;
    assert_eq!(status, 400, "a payment's id is its UUID");
    let (status, _, problem) = call(
        &app,
        "GET",
        &format!("{gw}/payments/GetPaymentById/476f5730-aa83-4ff0-ab9f-d6e19836e195"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        problem["detail"],
        "Payment not found with id: 476f5730-aa83-4ff0-ab9f-d6e19836e195"
    );
    let (status, _, _) = call(
        &app,
        "GET",
        &format!("{gw}/orders/GetAllOrders?limit=0"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    // Nothing was placed.
    let (_, headers, list) = call(&app, "GET", &format!("{gw}/orders/GetAllOrders"), None).await;
    assert_eq!(list, json!([]));
    assert_eq!(headers["x-total-count"], "0");
    assert_eq!(app.count_orders().await, 0);

    let number = create(&app, json!(20)).await;
    let url = format!("{gw}/orders/UpdateOrderById/{number}");
    // The path names the order; the body's orderID is not read.
    let (status, _, same) = call(
        &app,
        "PUT",
        &url,
        Some(json!({"orderID": number + 1, "totalAmount": 20})),
    )
    .await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["orderID"], number);
    let (status, _, _) = call(
        &app,
        "PUT",
        &url,
        Some(json!({"totalAmount": 20, "status": 7})),
    )
    .await;
    assert_eq!(status, 400);
    app.stop().await;
}

async fn deleting_an_order_cancels_it(backend: Backend) {
    // A slow provider keeps the payment PROCESSING long enough to delete the order first.
    let app = spawn_app_with(backend, SERVICES, |s| {
        s.options
            .set(kassa_payments::PROVIDER_LATENCY_MS.name, "1500");
    })
    .await;
    let number = create(&app, json!(30)).await;
    let url = format!("{}/orders/DeleteOrderById/{number}", app.gateway);
    let (status, _, body) = call(&app, "DELETE", &url, None).await;
    assert_eq!(status, 204, "{body}");
    // Gone from this view, as the seed's delete removes it; on record in kassa's own.
    let (status, _, _) = call(&app, "DELETE", &url, None).await;
    assert_eq!(status, 404);
    let (status, _, _) = call(
        &app,
        "GET",
        &format!("{}/orders/GetOrderById/{number}", app.gateway),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, _, list) = call(
        &app,
        "GET",
        &format!("{}/orders/GetAllOrders", app.gateway),
        None,
    )
    .await;
    assert_eq!(list, json!([]));
    let (_, page) = app.get("/api/orders?limit=1").await;
    let order_id = page["data"][0]["id"].as_str().unwrap().to_owned();
    app.order_reaches(&order_id, &["CANCELLED"]).await;
    let payment = app.payment_of(&order_id, &["CANCELLED"]).await;
    // Its payment is listed as FAILED: no money kept.
    let (_, _, one) = call(
        &app,
        "GET",
        &format!(
            "{}/payments/GetPaymentById/{}",
            app.gateway,
            payment["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(one["orderID"], number);
    assert_eq!(one["paymentStatus"], 2);
    app.stop().await;
}
