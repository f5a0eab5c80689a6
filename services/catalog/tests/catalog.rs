//! Products and categories through their routes, kassa's and the seed's, on both backends: exact
//! prices, categories that must exist and are kept while in use, what is on sale, and the
//! events each change publishes.

use axum::{Router, http::Method, http::StatusCode};
use kassa_platform::{
    db::Db,
    migrate,
    testing::{Throwaway, call, outbox_events},
};
use serde_json::{Value, json};

async fn app(db: &Db) -> Router {
    migrate::run(db, &[&migrate::PLATFORM, &kassa_catalog::MIGRATIONS])
        .await
        .unwrap();
    let infra = kassa_platform::testing::infra(&kassa_catalog::SERVICE, db.clone());
    (kassa_catalog::SERVICE.build)(&infra).unwrap().api
}

fn refused(answer: &kassa_platform::testing::Answer) -> (u16, &str, Option<&str>) {
    (
        answer.status.as_u16(),
        answer.json["code"].as_str().unwrap_or(""),
        answer.json["param"].as_str(),
    )
}

async fn products_and_categories(t: Throwaway) {
    let app = app(&t.db).await;
    let drinks = call(
        &app,
        Method::POST,
        "/api/categories",
        &[],
        Some(json!({"name": "Drinks", "description": "Cold, from the machine"})),
    )
    .await;
    assert_eq!(drinks.status, StatusCode::CREATED, "{:?}", drinks.json);
    let drinks = drinks.json["id"].as_str().unwrap().to_owned();
    let again = call(
        &app,
        Method::POST,
        "/api/categories",
        &[],
        Some(json!({"name": "Drinks"})),
    )
    .await;
    assert_eq!(refused(&again), (409, "category_name_taken", Some("name")));

    // The seed's shape through the seed's route; the price is exact.
    let cola = call(
        &app,
        Method::POST,
        "/api/Product",
        &[],
        Some(json!({"name": "Cola 330 ml", "price": 1.1, "isDispensable": true, "categoryId": drinks})),
    )
    .await;
    assert_eq!(cola.status, StatusCode::CREATED, "{:?}", cola.json);
    assert_eq!(cola.json["price"].to_string(), "1.1");
    assert_eq!(cola.json["available"], true);
    assert_eq!(cola.json["isDispensable"], true);
    let cola_id = cola.json["id"].as_str().unwrap().to_owned();
    let sandwich = call(
        &app,
        Method::POST,
        "/api/products",
        &[],
        Some(json!({"name": "Sandwich", "price": 4.95, "available": false})),
    )
    .await;
    assert_eq!(sandwich.status, StatusCode::CREATED, "{:?}", sandwich.json);
    assert_eq!(sandwich.json["isDispensable"], false);
    assert_eq!(sandwich.json["categoryId"], Value::Null);
    let sandwich_id = sandwich.json["id"].as_str().unwrap().to_owned();

    // What a shop refuses, each naming the field.
    for (body, expected) in [
        (
            json!({"name": "Water", "price": 0}),
            (400, "invalid_amount", Some("price")),
        ),
        (
            json!({"name": "Water", "price": 0.995}),
            (400, "invalid_amount", Some("price")),
        ),
        (
            json!({"name": "Water", "price": "1.00"}),
            (400, "invalid_field", Some("price")),
        ),
        (
            json!({"name": "Water"}),
            (400, "missing_field", Some("price")),
        ),
        (
            json!({"name": "Water", "price": 1, "categoryId": "0190a0b0-0000-7000-8000-000000000001"}),
            (409, "unknown_category", Some("categoryId")),
        ),
        (
            json!({"name": "Water", "price": 1, "available": "yes"}),
            (400, "invalid_field", Some("available")),
        ),
        (
            json!({"name": "Water", "price": 1, "stock": 3}),
            (400, "unknown_field", Some("stock")),
        ),
    ] {
        let answer = call(&app, Method::POST, "/api/products", &[], Some(body.clone())).await;
        assert_eq!(refused(&answer), expected, "{body}: {:?}", answer.json);
    }

    // The seed's list is a plain array; what is on sale leaves the sandwich out.
    let all = call(&app, Method::GET, "/api/Product", &[], None).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.json.as_array().unwrap().len(), 2);
    assert_eq!(all.header("x-total-count"), Some("2"));
    let on_sale = call(&app, Method::GET, "/api/Product/availability", &[], None).await;
    assert_eq!(on_sale.status, StatusCode::OK, "{:?}", on_sale.json);
    let names: Vec<&str> = on_sale
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Cola 330 ml"]);
    assert_eq!(on_sale.header("x-total-count"), Some("1"));
    let filtered = call(
        &app,
        Method::GET,
        &format!("/api/products?categoryId={drinks}"),
        &[],
        None,
    )
    .await;
    assert_eq!(filtered.json["meta"]["total"], 1, "{:?}", filtered.json);
    let bad_filter = call(
        &app,
        Method::GET,
        "/api/Product/availability?available=maybe",
        &[],
        None,
    )
    .await;
    assert_eq!(
        refused(&bad_filter),
        (400, "invalid_filter", Some("available"))
    );

    // The seed's availability switch, with its event; switching to what it is changes nothing.
    let path = format!("/api/Product/{sandwich_id}/availability");
    let put_on = call(
        &app,
        Method::PUT,
        &path,
        &[],
        Some(json!({"available": true})),
    )
    .await;
    assert_eq!(put_on.status, StatusCode::NO_CONTENT, "{:?}", put_on.json);
    let again = call(
        &app,
        Method::PUT,
        &path,
        &[],
        Some(json!({"available": true})),
    )
    .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    let sandwich = call(
        &app,
        Method::GET,
        &format!("/api/products/{sandwich_id}"),
        &[],
        None,
    )
    .await;
    assert_eq!(sandwich.json["available"], true);
    assert_eq!(sandwich.header("etag"), Some("\"2\""));
    let on_sale = call(&app, Method::GET, "/api/Product/availability", &[], None).await;
    assert_eq!(on_sale.header("x-total-count"), Some("2"));
    for (path, body, expected) in [
        (
            "/api/Product/0190a0b0-0000-7000-8000-000000000001/availability".to_owned(),
            json!({"available": false}),
            (404, "product_not_found", None),
        ),
        (
            path.clone(),
            json!({"available": "no"}),
            (400, "invalid_field", Some("available")),
        ),
        (
            path.clone(),
            json!({}),
            (400, "missing_field", Some("available")),
        ),
        (
            "/api/Product/not-an-id/availability".to_owned(),
            json!({"available": false}),
            (400, "invalid_uuid", Some("id")),
        ),
    ] {
        let answer = call(&app, Method::PUT, &path, &[], Some(body)).await;
        assert_eq!(refused(&answer), expected, "{path}: {:?}", answer.json);
    }

    // A category in use is kept; once empty it goes.
    let category = format!("/api/categories/{drinks}");
    let in_use = call(&app, Method::DELETE, &category, &[], None).await;
    assert_eq!(refused(&in_use), (409, "category_in_use", None));
    let moved = call(
        &app,
        Method::PATCH,
        &format!("/api/products/{cola_id}"),
        &[],
        Some(json!({"categoryId": null, "price": 1.25})),
    )
    .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.json);
    assert_eq!(moved.json["price"].to_string(), "1.25");
    let gone = call(&app, Method::DELETE, &category, &[], None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);

    let events: Vec<String> = outbox_events(&t.db)
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(
        events,
        [
            "category.created",
            "product.created",
            "product.created",
            "product.updated",
            "product.updated",
            "category.deleted",
        ]
    );
    let (_, updated) = outbox_events(&t.db).await.swap_remove(4);
    assert_eq!(updated["price"].to_string(), "1.25");
    t.drop_now().await;
}

kassa_platform::on_both_databases!(products_and_categories);
