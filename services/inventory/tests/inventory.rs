//! Stock through the inventory's routes and the events it follows, on both backends: the
//! seed's routes, movements, the low-stock alert once per crossing, the oversell race,
//! reservations kept, sold, released and expired (on a clock the test sets), and the refusals.

use std::sync::Arc;

use axum::{Router, http::Method, http::StatusCode};
use chrono::Duration;
use kassa_contracts::{
    Envelope, EventContext,
    events::{OrderCancelled, OrderCompleted, OrderItem, OrderReady},
};
use kassa_platform::{
    bus::Handler,
    db::Db,
    migrate,
    testing::{Answer, Throwaway, call, outbox_events},
};
use serde_json::{Value, json};
use uuid::Uuid;

struct Shop {
    app: Router,
    handler: Arc<dyn Handler>,
    db: Db,
}

async fn shop(db: &Db) -> Shop {
    migrate::run(db, &[&migrate::PLATFORM, &kassa_inventory::MIGRATIONS])
        .await
        .unwrap();
    let infra = kassa_platform::testing::infra(&kassa_inventory::SERVICE, db.clone());
    let parts = (kassa_inventory::SERVICE.build)(&infra).unwrap();
    Shop {
        app: parts.api,
        handler: parts.handler.unwrap(),
        db: db.clone(),
    }
}

impl Shop {
    async fn hear(&self, envelope: Envelope) {
        self.handler.handle(&envelope).await.unwrap();
    }

    /// A product the catalog announced, with `units` counted in; its inventory id.
    async fn product(&self, name: &str, units: i64) -> (Uuid, String) {
        let id = Uuid::now_v7();
        let ctx = EventContext::new("test");
        let data =
            json!({"id": id, "name": name, "price": 1.5, "isDispensable": true, "available": true});
        self.hear(Envelope::record(
            "catalog",
            id,
            "product.created".into(),
            data,
            &ctx,
        ))
        .await;
        let listed = self
            .call(Method::GET, &format!("/api/Inventory?productId={id}"), None)
            .await;
        assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.json);
        let item = listed.json[0]["id"]
            .as_str()
            .expect("an item for the product")
            .to_owned();
        let counted = self
            .call(
                Method::PUT,
                &format!("/api/Inventory/{item}"),
                Some(json!({"quantity": units, "note": "first count"})),
            )
            .await;
        assert_eq!(counted.status, StatusCode::OK, "{:?}", counted.json);
        (id, item)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        call(&self.app, method, path, &[], body).await
    }

    async fn item(&self, item: &str) -> Value {
        self.call(Method::GET, &format!("/api/inventory/{item}"), None)
            .await
            .json
    }

    async fn reserve(&self, order: Uuid, items: Value) -> Answer {
        self.call(
            Method::POST,
            "/api/reservations",
            Some(json!({"orderId": order, "items": items})),
        )
        .await
    }
}

fn counts(item: &Value) -> (i64, i64, i64) {
    (
        item["available"].as_i64().unwrap(),
        item["reserved"].as_i64().unwrap(),
        item["sold"].as_i64().unwrap(),
    )
}

fn event<E: kassa_contracts::events::Event>(subject: Uuid, e: &E) -> Envelope {
    Envelope::new("orders", subject, e, &EventContext::new("test"))
}

async fn stock_follows_orders(t: Throwaway) {
    let shop = shop(&t.db).await;
    let (cola, cola_item) = shop.product("Cola", 10).await;
    let (chips, chips_item) = shop.product("Chips", 5).await;
    let threshold = shop
        .call(
            Method::PUT,
            &format!("/api/Inventory/{cola_item}"),
            Some(json!({"lowStockThreshold": 3})),
        )
        .await;
    assert_eq!(
        threshold.json["lowStockThreshold"], 3,
        "{:?}",
        threshold.json
    );

    // An order holds both products; asking again is answered with the same hold.
    let order = Uuid::now_v7();
    let lines = json!([{"productId": cola, "quantity": 4}, {"productId": chips, "quantity": 1}, {"productId": cola, "quantity": 2}]);
    let held = shop.reserve(order, lines.clone()).await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.json);
    assert_eq!(held.json["items"].as_array().unwrap().len(), 2);
    let again = shop.reserve(order, lines).await;
    assert_eq!(again.status, StatusCode::OK);
    let other = shop
        .reserve(order, json!([{"productId": cola, "quantity": 1}]))
        .await;
    assert_eq!(other.json["code"], "reservation_exists");
    assert_eq!(counts(&shop.item(&cola_item).await), (4, 6, 0));

    // Short of stock: the whole order is refused, naming the product, and nothing is held.
    let greedy = Uuid::now_v7();
    let refused = shop
        .reserve(
            greedy,
            json!([{"productId": chips, "quantity": 1}, {"productId": cola, "quantity": 5}]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.json["code"], "insufficient_stock");
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap()
            .contains(&cola.to_string())
    );
    assert_eq!(counts(&shop.item(&chips_item).await), (4, 1, 0));
    let none = shop
        .call(Method::GET, &format!("/api/reservations/{greedy}"), None)
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);

    // Paid, then completed: what it held is sold; the counts add up to what came in.
    shop.hear(event(
        order,
        &OrderReady {
            order_id: order,
            lines: Vec::new(),
        },
    ))
    .await;
    let kept = shop
        .call(Method::GET, &format!("/api/reservations/{order}"), None)
        .await;
    assert_eq!(kept.json["items"][0]["status"], "KEPT");
    let completed = OrderCompleted {
        order_id: order,
        items: vec![
            OrderItem {
                product_id: cola,
                quantity: 6,
            },
            OrderItem {
                product_id: chips,
                quantity: 1,
            },
        ],
        timestamp: "2026-12-03T10:00:00Z".into(),
    };
    // Delivered twice: the inbox applies it once.
    let completed = event(order, &completed);
    shop.hear(completed.clone()).await;
    shop.hear(completed).await;
    assert_eq!(counts(&shop.item(&cola_item).await), (4, 0, 6));
    assert_eq!(counts(&shop.item(&chips_item).await), (4, 0, 1));

    // A cancelled order gives back what it held.
    let cancelled = Uuid::now_v7();
    assert_eq!(
        shop.reserve(cancelled, json!([{"productId": cola, "quantity": 2}]))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(counts(&shop.item(&cola_item).await), (2, 2, 6));
    shop.hear(event(
        cancelled,
        &OrderCancelled {
            order_id: cancelled,
        },
    ))
    .await;
    assert_eq!(counts(&shop.item(&cola_item).await), (4, 0, 6));

    // stock.low once when Cola first fell to 3 or below, again only after it rose above.
    let lows = |events: &[(String, Value)]| events.iter().filter(|(t, _)| t == "stock.low").count();
    assert_eq!(lows(&outbox_events(&t.db).await), 1);
    let restocked = shop
        .call(
            Method::POST,
            &format!("/api/inventory/{cola_item}/restock"),
            Some(json!({"quantity": 6, "note": "delivery"})),
        )
        .await;
    assert_eq!(restocked.status, StatusCode::OK, "{:?}", restocked.json);
    assert_eq!(restocked.json["available"], 10);
    let written_off = shop
        .call(
            Method::POST,
            &format!("/api/inventory/{cola_item}/write-off"),
            Some(json!({"quantity": 8})),
        )
        .await;
    assert_eq!(written_off.json["available"], 2);
    assert_eq!(lows(&outbox_events(&t.db).await), 2);

    // Every change is a movement, newest first, as the seed reads them.
    let movements = shop
        .call(
            Method::GET,
            &format!("/api/StockMovement/{cola_item}"),
            None,
        )
        .await;
    assert_eq!(movements.status, StatusCode::OK);
    let reasons: Vec<&str> = movements
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "WRITE_OFF",
            "RESTOCK",
            "RELEASED",
            "RESERVED",
            "SOLD",
            "RESERVED",
            "RESTOCK"
        ]
    );
    assert_eq!(movements.header("x-total-count"), Some("7"));
    assert_eq!(movements.json[6]["note"], "first count");
    assert_eq!(movements.json[4]["orderId"], order.to_string());
    assert_eq!(movements.json[4]["by"], "event:order.completed");
    let (available, reserved, sold) = counts(&shop.item(&cola_item).await);
    assert_eq!(available + reserved + sold, 10 + 6 - 8);

    // What is refused, changing nothing.
    for (method, path, body, status, code) in [
        (
            Method::PUT,
            format!("/api/Inventory/{cola_item}"),
            json!({"quantity": -1}),
            400,
            "number_out_of_range",
        ),
        (
            Method::PUT,
            format!("/api/Inventory/{cola_item}"),
            json!({"count": 1}),
            400,
            "unknown_field",
        ),
        (
            Method::PUT,
            format!("/api/Inventory/{}", Uuid::now_v7()),
            json!({"quantity": 1}),
            404,
            "inventory_not_found",
        ),
        (
            Method::POST,
            format!("/api/inventory/{cola_item}/write-off"),
            json!({"quantity": 3}),
            409,
            "insufficient_stock",
        ),
        (
            Method::POST,
            format!("/api/inventory/{cola_item}/restock"),
            json!({"quantity": 0}),
            400,
            "number_out_of_range",
        ),
        (
            Method::POST,
            "/api/reservations".into(),
            json!({"orderId": Uuid::now_v7(), "items": []}),
            422,
            "invalid_items",
        ),
        (
            Method::POST,
            "/api/reservations".into(),
            json!({"orderId": Uuid::now_v7(), "items": [{"productId": "x", "quantity": 1}]}),
            400,
            "invalid_uuid",
        ),
        (
            Method::GET,
            "/api/Inventory?sku=1".into(),
            Value::Null,
            400,
            "unknown_parameter",
        ),
        (
            Method::GET,
            format!("/api/StockMovement/{}", Uuid::now_v7()),
            Value::Null,
            404,
            "inventory_not_found",
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let answer = shop.call(method, &path, body).await;
        assert_eq!(
            (
                answer.status.as_u16(),
                answer.json["code"].as_str().unwrap_or("")
            ),
            (status, code),
            "{path}: {:?}",
            answer.json
        );
    }
    let held = Uuid::now_v7();
    shop.reserve(held, json!([{"productId": cola, "quantity": 2}]))
        .await;
    let below = shop
        .call(
            Method::PUT,
            &format!("/api/Inventory/{cola_item}"),
            Some(json!({"quantity": 1})),
        )
        .await;
    assert_eq!(below.json["code"], "below_reserved");
    assert_eq!(counts(&shop.item(&cola_item).await), (0, 2, 6));
    t.drop_now().await;
}

async fn holds_expire_unless_paid(t: Throwaway) {
    let shop = shop(&t.db).await;
    let (cola, item) = shop.product("Cola", 5).await;
    let (unpaid, paid) = (Uuid::now_v7(), Uuid::now_v7());
    for order in [unpaid, paid] {
        let held = shop
            .reserve(order, json!([{"productId": cola, "quantity": 2}]))
            .await;
        assert_eq!(held.status, StatusCode::CREATED);
    }
    shop.hear(event(
        paid,
        &OrderReady {
            order_id: paid,
            lines: Vec::new(),
        },
    ))
    .await;
    let now = kassa_contracts::now();
    // Before the 15 minutes are up nothing expires.
    assert_eq!(
        kassa_inventory::stock::expire(&shop.db, now + Duration::minutes(14), 100)
            .await
            .unwrap(),
        0
    );
    assert_eq!(counts(&shop.item(&item).await), (1, 4, 0));
    // After, the unpaid order's hold goes back, once, and orders hear of it.
    let later = now + Duration::minutes(16);
    assert_eq!(
        kassa_inventory::stock::expire(&shop.db, later, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        kassa_inventory::stock::expire(&shop.db, later, 100)
            .await
            .unwrap(),
        0
    );
    assert_eq!(counts(&shop.item(&item).await), (3, 2, 0));
    let expired: Vec<Value> = outbox_events(&t.db)
        .await
        .into_iter()
        .filter(|(t, _)| t == "reservation.expired")
        .map(|(_, data)| data)
        .collect();
    assert_eq!(expired, [json!({"orderId": unpaid})]);
    let hold = shop
        .call(Method::GET, &format!("/api/reservations/{unpaid}"), None)
        .await;
    assert_eq!(hold.json["items"][0]["status"], "EXPIRED");
    // Cancelled after it expired: nothing more goes back.
    shop.hear(event(unpaid, &OrderCancelled { order_id: unpaid }))
        .await;
    assert_eq!(counts(&shop.item(&item).await), (3, 2, 0));
    // Paid just as its hold ran out: held again, since the units are still there.
    let late = Uuid::now_v7();
    assert_eq!(
        shop.reserve(late, json!([{"productId": cola, "quantity": 1}]))
            .await
            .status,
        StatusCode::CREATED
    );
    let much_later = kassa_contracts::now() + Duration::minutes(16);
    assert_eq!(
        kassa_inventory::stock::expire(&shop.db, much_later, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(counts(&shop.item(&item).await), (3, 2, 0));
    shop.hear(event(
        late,
        &OrderReady {
            order_id: late,
            lines: Vec::new(),
        },
    ))
    .await;
    assert_eq!(counts(&shop.item(&item).await), (2, 3, 0));
    let hold = shop
        .call(Method::GET, &format!("/api/reservations/{late}"), None)
        .await;
    assert_eq!(hold.json["items"][0]["status"], "KEPT");
    t.drop_now().await;
}

/// 100 orders at once for the last 10 units: exactly 10 are held, the rest refused naming the
/// product, and the stock never goes below zero.
async fn no_overselling(t: Throwaway) {
    let shop = shop(&t.db).await;
    let (cola, item) = shop.product("Cola", 10).await;
    let attempts = (0..100).map(|_| {
        let shop = &shop;
        async move {
            shop.reserve(Uuid::now_v7(), json!([{"productId": cola, "quantity": 1}]))
                .await
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let held = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    assert_eq!(held, 10);
    for refused in answers.iter().filter(|a| a.status != StatusCode::CREATED) {
        assert_eq!(refused.status, StatusCode::CONFLICT, "{:?}", refused.json);
        assert_eq!(refused.json["code"], "insufficient_stock");
        assert!(
            refused.json["detail"]
                .as_str()
                .unwrap()
                .contains(&cola.to_string())
        );
    }
    assert_eq!(counts(&shop.item(&item).await), (0, 10, 0));
    t.drop_now().await;
}

kassa_platform::on_both_databases!(
    stock_follows_orders,
    holds_expire_unless_paid,
    no_overselling
);
