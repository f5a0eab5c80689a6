//! Seed 002's kiosk through the gateway, on both backends, as far as it is served: products in
//! the catalog, stock counted in, orders for items priced by the catalog and held in inventory
//! (never beyond the stock), paid, and the hold of an order that is not placed given back.

mod support;

use serde_json::{Value, json};
use support::{Backend, spawn_app};

on_both_backends!(orders_for_items_are_priced_and_held);

async fn orders_for_items_are_priced_and_held(backend: Backend) {
    let app = spawn_app(backend).await;
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
    let listed = app
        .wait_for(&format!("/api/Inventory?productId={cola}"), |items| {
            items.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let item = listed[0]["id"].as_str().unwrap().to_owned();
    let counted = app
        .client
        .put(format!("{}/api/Inventory/{item}", app.gateway))
        .json(&json!({"quantity": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(counted.status(), 200);

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
        (Some(1), Some(2))
    );

    // The seed-003 shape keeps working beside it.
    let plain = app.place_order("9.99").await;
    app.order_reaches(&plain, &["PAID"]).await;
    app.stop().await;
}
