//! Seed 002's kiosk through the gateway, on both backends, as far as it is served: products in
//! the catalog, stock counted in, orders for items priced by the catalog and held in inventory
//! (never beyond the stock), paid, and the hold of an order that is not placed given back.

use crate::support;

use serde_json::{Value, json};
use support::{Backend, spawn_app};

/// The services these scenarios exercise, and those they call or hear from.
const SERVICES: &[&str] = &[
    "gateway",
    "catalog",
    "inventory",
    "orders",
    "payments",
    "qr",
];

on_both_backends!(
    orders_for_items_are_priced_and_held,
    in_person_payments_are_confirmed_once,
    a_keyed_order_for_items_holds_its_stock_once
);

/// Counts `quantity` units of `product` in, once inventory has made its item from
/// `product.created`; the item's id.
async fn count_in(app: &support::TestApp, product: &str, quantity: i64) -> String {
    let listed = app
        .wait_for(&format!("/api/Inventory?productId={product}"), |items| {
            items.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let item = listed[0]["id"].as_str().unwrap().to_owned();
    let counted = app
        .client
        .put(format!("{}/api/Inventory/{item}", app.gateway))
        .json(&json!({"quantity": quantity}))
        .send()
        .await
        .unwrap();
    assert_eq!(counted.status(), 200);
    item
}

async fn orders_for_items_are_priced_and_held(backend: Backend) {
    let app = spawn_app(backend, SERVICES).await;
    let (status, cola) = app
        .post_json(
            "/api/Product",
            r#"{"name":"Cola","price":1.25,"isDispensable":true}"#,
            &[],
        )
        .await;
    assert_eq!(status, 201, "{cola}");
    let cola = cola["id"].as_str().unwrap().to_owned();
    let (status, off_sale) = app
        .post_json(
            "/api/products",
            r#"{"name":"Old stock","price":2,"available":false}"#,
            &[],
        )
        .await;
    assert_eq!(status, 201, "{off_sale}");
    let off_sale = off_sale["id"].as_str().unwrap().to_owned();

    // Inventory makes the product's item from `product.created`; three are counted in.
    let item = count_in(&app, &cola, 3).await;

    // An order for two: the catalog's price, whatever the client claims; a wrong claim is a 422.
    let user = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let order = |items: Value, total: Option<&str>| {
        let mut body = json!({"userId": user, "items": items});
        if let Some(t) = total {
            body["total"] = serde_json::from_str(t).unwrap();
        }
        body.to_string()
    };
    let two = json!([{"productId": cola, "quantity": 2}]);
    let (status, wrong) = app
        .post_json("/api/orders", &order(two.clone(), Some("2.00")), &[])
        .await;
    assert_eq!(
        (status, wrong["code"].as_str()),
        (422, Some("total_mismatch")),
        "{wrong}"
    );
    let (status, placed) = app
        .post_json("/api/orders", &order(two.clone(), Some("2.50")), &[])
        .await;
    assert_eq!(status, 202, "{placed}");
    let order_id = placed["orderId"].as_str().unwrap().to_owned();
    let paid = app.order_reaches(&order_id, &["PAID"]).await;
    assert_eq!(paid["total"].to_string(), "2.5");
    let (_, read) = app.get(&format!("/api/orders/{order_id}")).await;
    assert_eq!(read["items"][0]["name"], "Cola", "{read}");
    assert_eq!(read["items"][0]["unitPrice"].to_string(), "1.25");
    assert_eq!(read["items"][0]["quantity"], 2);

    // Paid: the hold is kept for the order until it completes.
    app.wait_for(&format!("/api/reservations/{order_id}"), |r| {
        r["items"][0]["status"] == "KEPT"
    })
    .await;
    let (_, stock) = app.get(&format!("/api/inventory/{item}")).await;
    assert_eq!(
        (stock["available"].as_i64(), stock["reserved"].as_i64()),
        (Some(1), Some(2))
    );

    // Two pickup codes, one for each Cola; a registered dispenser redeems them and the order
    // completes: inventory sells what it held.
    let (status, dispenser) = app
        .post_json("/api/QrCode/devices", r#"{"name":"Lobby"}"#, &[])
        .await;
    assert_eq!(status, 201, "{dispenser}");
    let generate = json!({"orderId": order_id}).to_string();
    let (_, codes) = kassa_platform::testing::eventually(
        "the pickup codes",
        std::time::Duration::from_secs(10),
        async || app.post_json("/api/QrCode/generate", &generate, &[]).await,
        |(status, _)| *status == 200,
    )
    .await;
    let codes: Vec<String> = codes["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 2);
    let device = dispenser["deviceId"].as_str().unwrap();
    let secret = dispenser["secret"].as_str().unwrap();
    for code in &codes {
        let at = kassa_contracts::now().timestamp();
        let signature = kassa_platform::signing::sign_hex(
            secret.as_bytes(),
            &[format!("{code}:{device}:{at}").as_bytes()],
        );
        let body =
            json!({"code": code, "deviceId": device, "timestamp": at, "signature": signature});
        let (status, handed) = app
            .post_json("/api/QrCode/validate", &body.to_string(), &[])
            .await;
        assert_eq!(status, 200, "{handed}");
        let (status, again) = app
            .post_json("/api/QrCode/validate", &body.to_string(), &[])
            .await;
        assert_eq!((status, again["code"].as_str()), (409, Some("code_used")));
    }
    app.order_reaches(&order_id, &["COMPLETED"]).await;
    app.wait_for(&format!("/api/inventory/{item}"), |s| s["sold"] == 2)
        .await;
    let (_, stock) = app.get(&format!("/api/inventory/{item}")).await;
    assert_eq!(
        (stock["available"].as_i64(), stock["reserved"].as_i64()),
        (Some(1), Some(0))
    );

    // Two more than there are: refused naming the product, nothing held, nothing stored.
    let orders_before = app.count_orders().await;
    let (status, short) = app.post_json("/api/orders", &order(two, None), &[]).await;
    assert_eq!(status, 409, "{short}");
    assert_eq!(short["code"], "insufficient_stock");
    assert!(short["detail"].as_str().unwrap().contains(&cola), "{short}");
    // Not on sale, not in the catalog, a bad line: each refused before anything is held.
    for (items, status, code) in [
        (
            json!([{"productId": off_sale, "quantity": 1}]),
            409,
            "product_unavailable",
        ),
        (
            json!([{"productId": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "quantity": 1}]),
            422,
            "unknown_product",
        ),
        (
            json!([{"productId": cola, "quantity": 0}]),
            400,
            "number_out_of_range",
        ),
        (json!([]), 422, "invalid_items"),
    ] {
        let (got, problem) = app.post_json("/api/orders", &order(items, None), &[]).await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{problem}"
        );
    }
    assert_eq!(app.count_orders().await, orders_before);
    let (_, stock) = app.get(&format!("/api/inventory/{item}")).await;
    assert_eq!(
        (stock["available"].as_i64(), stock["reserved"].as_i64()),
        (Some(1), Some(0))
    );

    // A new price in the catalog reaches orders at once (its `product.updated` clears the
    // cached price), not when the cache's five minutes run out.
    let repriced = app
        .client
        .put(format!("{}/api/products/{cola}", app.gateway))
        .json(&json!({"name": "Cola", "price": 1.75, "isDispensable": true, "available": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(repriced.status(), 200);
    let one = order(json!([{"productId": cola, "quantity": 1}]), Some("1.75"));
    kassa_platform::testing::eventually(
        "an order at the new price",
        std::time::Duration::from_secs(10),
        async || app.post_json("/api/orders", &one, &[]).await,
        |(status, _)| *status == 202,
    )
    .await;

    // The seed-003 shape keeps working beside it.
    let plain = app.place_order("9.99").await;
    app.order_reaches(&plain, &["PAID"]).await;
    app.stop().await;
}

/// The CRC-16/CCITT-FALSE of `text` as Python's standard library computes it
/// (`binascii.crc_hqx` with 0xFFFF to start): a check that shares no code with kassa's.
fn crc_by_python(text: &str) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import binascii, sys; print('%04X' % binascii.crc_hqx(sys.argv[1].encode(), 0xFFFF))",
            text,
        ])
        .output()
        .expect("python3 runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The EMVCo data objects of `payload`: ID, two-digit length, value.
fn objects(payload: &str) -> Vec<(String, String)> {
    let mut rest = payload;
    let mut found = Vec::new();
    while !rest.is_empty() {
        let (id, tail) = rest.split_at(2);
        let (len, tail) = tail.split_at(2);
        let (value, tail) = tail.split_at(len.parse::<usize>().unwrap());
        found.push((id.to_owned(), value.to_owned()));
        rest = tail;
    }
    found
}

async fn in_person_payments_are_confirmed_once(backend: Backend) {
    let app = spawn_app(backend, SERVICES).await;
    let (_, tea) = app
        .post_json("/api/products", r#"{"name":"Tea","price":3.5}"#, &[])
        .await;
    let tea = tea["id"].as_str().unwrap().to_owned();
    let item = count_in(&app, &tea, 10).await;
    let user = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let place = |method: &str| {
        json!({"userId": user, "items": [{"productId": tea, "quantity": 2}], "paymentMethod": method})
            .to_string()
    };

    // QRIS: the order waits, the provider is never asked.
    let (status, placed) = app.post_json("/api/orders", &place("qris"), &[]).await;
    assert_eq!(status, 202, "{placed}");
    let order = placed["orderId"].as_str().unwrap().to_owned();
    let pending = app
        .wait_for(&format!("/api/Payment/order/{order}"), |p| {
            p["status"] == "PENDING"
        })
        .await;
    assert_eq!(pending["method"], "QRIS");
    let payment = pending["id"].as_str().unwrap().to_owned();
    let (status, chosen) = app
        .post_json(
            "/api/Payment",
            &json!({"orderId": order, "method": "QRIS"}).to_string(),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{chosen}");
    let payload = chosen["qris"]["payload"].as_str().unwrap().to_owned();
    let parts = objects(&payload);
    let value = |id: &str| parts.iter().find(|(i, _)| i == id).map(|(_, v)| v.as_str());
    assert_eq!(value("00"), Some("01"));
    assert_eq!(value("01"), Some("12"), "dynamic: it carries the amount");
    assert_eq!(value("54"), Some("7.00"));
    assert_eq!(value("53"), Some("840"));
    assert_eq!(value("59"), Some("Kassa Kiosk"));
    assert_eq!(value("60"), Some("Jakarta"));
    let (body, crc) = payload.split_at(payload.len() - 4);
    assert!(body.ends_with("6304"), "{payload}");
    assert_eq!(crc, crc_by_python(body), "{payload}");
    for (suffix, kind) in [("svg", "image/svg+xml"), ("png", "image/png")] {
        let image = app
            .client
            .get(format!(
                "{}/api/Payment/{payment}/qris.{suffix}",
                app.gateway
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(image.status(), 200);
        assert_eq!(image.headers()["content-type"], kind);
        let bytes = image.bytes().await.unwrap();
        if suffix == "png" {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        } else {
            assert!(String::from_utf8_lossy(&bytes).contains("<svg"));
        }
    }

    // Confirmed twice (with one key, then with none): approved once, the same answer each time.
    let confirm = format!("/api/Payment/{payment}/confirm");
    let (status, first) = app
        .post_json(&confirm, "", &[("Idempotency-Key", "kiosk-1")])
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "APPROVED");
    assert!(first.get("qris").is_none());
    let (status, again) = app
        .post_json(&confirm, "", &[("Idempotency-Key", "kiosk-1")])
        .await;
    assert_eq!((status, &again), (200, &first));
    let (status, third) = app.post_json(&confirm, "", &[]).await;
    assert_eq!((status, third["status"].as_str()), (200, Some("APPROVED")));
    // Nothing of it is handed out by a dispenser: paid, it completes, and its stock is sold.
    app.order_reaches(&order, &["COMPLETED"]).await;
    app.wait_for(&format!("/api/reservations/{order}"), |r| {
        r["items"][0]["status"] == "SOLD"
    })
    .await;

    // A paid order is not deleted.
    let deleted = app
        .client
        .delete(format!("{}/api/orders/{order}", app.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 409);
    let problem: Value = deleted.json().await.unwrap();
    assert_eq!(problem["code"], "order_paid");

    // Cash, then cancelled before it was paid: the payment is cancelled and cannot be confirmed.
    let (_, placed) = app.post_json("/api/orders", &place("Cash"), &[]).await;
    let cash_order = placed["orderId"].as_str().unwrap().to_owned();
    let cash = app
        .wait_for(&format!("/api/Payment/order/{cash_order}"), |p| {
            p["status"] == "PENDING"
        })
        .await;
    assert_eq!(cash["method"], "Cash");
    assert!(cash.get("qris").is_none());
    let cash = cash["id"].as_str().unwrap().to_owned();
    // Deleting an unpaid order cancels it (and keeps it on record).
    let deleted = app
        .client
        .delete(format!("{}/api/orders/{cash_order}", app.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    app.order_reaches(&cash_order, &["CANCELLED"]).await;
    app.wait_for(&format!("/api/Payment/order/{cash_order}"), |p| {
        p["status"] == "CANCELLED"
    })
    .await;
    let (status, refused) = app
        .post_json(&format!("/api/Payment/{cash}/confirm"), "", &[])
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("payment_cancelled")),
        "{refused}"
    );
    // Its stock is back on sale: 10 counted, 2 kept for the paid order.
    let (_, stock) = app.get(&format!("/api/inventory/{item}")).await;
    app.wait_for(&format!("/api/inventory/{item}"), |s| s["available"] == 8)
        .await;
    let _ = stock;

    // What the kiosk gets wrong is refused.
    for (body, status, code) in [
        (
            json!({"orderId": cash_order, "method": "card"}),
            422,
            "invalid_method",
        ),
        (
            json!({"orderId": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "method": "Cash"}),
            404,
            "payment_not_found",
        ),
    ] {
        let (got, problem) = app.post_json("/api/Payment", &body.to_string(), &[]).await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{problem}"
        );
    }
    let (status, bad) = app.post_json("/api/orders", &place("bitcoin"), &[]).await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (422, Some("invalid_payment_method"))
    );
    let (status, all) = app.get("/api/all").await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    app.stop().await;
}

/// Eight copies of one order for items sent at once with one `Idempotency-Key`: one order, its
/// stock held once (the copies that lost the race gave back what they held), the same answer
/// for each; the key with another order is a 422 and holds nothing.
async fn a_keyed_order_for_items_holds_its_stock_once(backend: Backend) {
    let app = spawn_app(backend, SERVICES).await;
    let (status, tea) = app
        .post_json("/api/products", r#"{"name":"Tea","price":2}"#, &[])
        .await;
    assert_eq!(status, 201, "{tea}");
    let tea = tea["id"].as_str().unwrap().to_owned();
    let item = count_in(&app, &tea, 5).await;
    let user = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let order = |quantity: i64| {
        json!({"userId": user, "items": [{"productId": tea, "quantity": quantity}], "paymentMethod": "Cash"})
            .to_string()
    };
    let two = order(2);
    let answers = futures_util::future::join_all(
        (0..8).map(|_| app.post_json("/api/orders", &two, &[("Idempotency-Key", "till-7")])),
    )
    .await;
    let (status, first) = &answers[0];
    assert_eq!(*status, 202, "{first}");
    for answer in &answers {
        assert_eq!(answer, &answers[0]);
    }
    let order_id = first["orderId"].as_str().unwrap();
    // One order, and two units held for it: three still on sale.
    let held_once = async || {
        assert_eq!(app.count_orders().await, 1);
        let (_, stock) = app.get(&format!("/api/inventory/{item}")).await;
        assert_eq!(
            (stock["available"].as_i64(), stock["reserved"].as_i64()),
            (Some(3), Some(2)),
            "{stock}"
        );
        let (_, held) = app.get(&format!("/api/reservations/{order_id}")).await;
        assert_eq!(held["items"][0]["quantity"], 2, "{held}");
    };
    held_once().await;

    // Later: the same answer, and nothing more held.
    let (status, again) = app
        .post_json("/api/orders", &two, &[("Idempotency-Key", "till-7")])
        .await;
    assert_eq!((status, &again), (202, first));
    let (status, reused) = app
        .post_json("/api/orders", &order(1), &[("Idempotency-Key", "till-7")])
        .await;
    assert_eq!(
        (status, reused["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{reused}"
    );
    held_once().await;
    app.stop().await;
}
