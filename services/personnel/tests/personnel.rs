//! Staff through the seed's routes and kassa's, on both backends.

use axum::http::{Method, StatusCode};
use kassa_platform::{
    migrate,
    testing::{Throwaway, call, outbox_events},
};
use serde_json::{Value, json};

async fn personnel(t: Throwaway) {
    migrate::run(&t.db, &[&migrate::PLATFORM, &kassa_personnel::MIGRATIONS])
        .await
        .unwrap();
    let app = kassa_personnel::api(kassa_personnel::records(t.db.clone()));
    let grace = json!({
        "name": "Grace Hopper", "email": "Grace@Example.com", "phoneNumber": "+12025550123",
        "department": "Fitness", "position": "Instructor",
    });
    let created = call(&app, Method::POST, "/Personal", &[], Some(grace)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json["memberId"], Value::Null);
    assert_eq!(
        created.header("location"),
        Some(format!("/Personal/{id}").as_str())
    );

    // The department and position are required and not blank; the phone is E.164.
    let mut blank = created.json.clone();
    blank["department"] = json!(" ");
    let refused = call(
        &app,
        Method::PUT,
        &format!("/Personal/{id}"),
        &[],
        Some(blank),
    )
    .await;
    assert_eq!(
        (refused.status, refused.json["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("department"))
    );
    let refused = call(
        &app,
        Method::PATCH,
        &format!("/api/personnel/{id}"),
        &[],
        Some(json!({"phoneNumber": "+49 151"})),
    )
    .await;
    assert_eq!(refused.json["code"], "invalid_phone_number");

    // A member of staff who is also a member; listed by department on kassa's route.
    let member = "0190a5a8-52c4-7cc1-9d8b-3b7a4d1e2f30";
    let patched = call(
        &app,
        Method::PATCH,
        &format!("/api/personnel/{id}"),
        &[],
        Some(json!({"memberId": member, "position": "Head coach"})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.json);
    let by_department = call(
        &app,
        Method::GET,
        "/api/personnel?department=Fitness",
        &[],
        None,
    )
    .await;
    assert_eq!(by_department.json["data"][0]["position"], "Head coach");
    let none = call(
        &app,
        Method::GET,
        "/api/personnel?department=Sales",
        &[],
        None,
    )
    .await;
    assert_eq!(none.json["meta"]["total"], 0);

    let deleted = call(
        &app,
        Method::DELETE,
        &format!("/api/personnel/{id}"),
        &[],
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let events = outbox_events(&t.db).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["personal.created", "personal.updated", "personal.deleted"]
    );
    assert_eq!(events[1].1["memberId"], member);
    assert_eq!(events[2].1["email"], "grace@example.com");
    t.drop_now().await;
}

kassa_platform::on_both_databases!(personnel);
