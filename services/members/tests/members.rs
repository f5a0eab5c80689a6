//! Members through their routes, kassa's and the seed's, on both backends: the gym's rules and
//! the events each change publishes.

use axum::{Router, http::Method, http::StatusCode};
use kassa_platform::{
    db::Db,
    migrate,
    testing::{Throwaway, call, outbox_events},
};
use serde_json::json;

async fn app(db: &Db) -> Router {
    migrate::run(db, &[&migrate::PLATFORM, &kassa_members::MIGRATIONS])
        .await
        .unwrap();
    kassa_members::api(kassa_members::records(db.clone()))
}

async fn members(t: Throwaway) {
    let app = app(&t.db).await;
    // The seed's shape, created through the seed's route.
    let created = call(
        &app,
        Method::POST,
        "/Member",
        &[],
        Some(json!({"name": " Ada Lovelace ", "email": "Ada@Example.com", "phoneNumber": "+4915112345678"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    let ada = created.json;
    assert_eq!(ada["name"], "Ada Lovelace");
    assert_eq!(ada["email"], "ada@example.com");
    assert_eq!(ada["classId"], serde_json::Value::Null);
    assert!(ada["createdAt"].is_string());
    let id = ada["id"].as_str().unwrap().to_owned();

    // What a gym refuses, each naming the field.
    for (body, code, param) in [
        (
            json!({"name": "B", "email": "ADA@example.com", "phoneNumber": "+4915112345679"}),
            "email_taken",
            "email",
        ),
        (
            json!({"name": "B", "email": "b@example", "phoneNumber": "+4915112345679"}),
            "invalid_email",
            "email",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "phoneNumber": "0151 1234567"}),
            "invalid_phone_number",
            "phoneNumber",
        ),
        (
            json!({"name": "  ", "email": "b@example.com", "phoneNumber": "+4915112345679"}),
            "blank_field",
            "name",
        ),
        (
            json!({"name": "B", "email": "b@example.com"}),
            "missing_field",
            "phoneNumber",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "phoneNumber": "+4915112345679", "classId": id}),
            "read_only_field",
            "classId",
        ),
    ] {
        let refused = call(&app, Method::POST, "/api/members", &[], Some(body)).await;
        assert!(refused.status.is_client_error(), "{:?}", refused.json);
        assert_eq!(
            (
                refused.json["code"].as_str(),
                refused.json["param"].as_str()
            ),
            (Some(code), Some(param)),
            "{:?}",
            refused.json
        );
    }
    let conflict = call(
        &app,
        Method::POST,
        "/api/members",
        &[],
        Some(json!({"name": "B", "email": "ada@EXAMPLE.com", "phoneNumber": "+4915112345679"})),
    )
    .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);

    // The seed's update: the whole record back, 204; kassa's answers the record.
    let mut changed = ada.clone();
    changed["phoneNumber"] = json!("+4915100000000");
    let put = call(
        &app,
        Method::PUT,
        &format!("/Member/{id}"),
        &[],
        Some(changed),
    )
    .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{:?}", put.json);
    let patched = call(
        &app,
        Method::PATCH,
        &format!("/api/members/{id}"),
        &[("if-match", "\"2\"")],
        Some(json!({"name": "Ada King"})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.json);
    assert_eq!(patched.json["phoneNumber"], "+4915100000000");

    // Lists: the seed's an array, kassa's a page; filtered by email.
    let seed_list = call(&app, Method::GET, "/Member", &[], None).await;
    assert_eq!(seed_list.json.as_array().map(Vec::len), Some(1));
    assert_eq!(seed_list.header("x-total-count"), Some("1"));
    let page = call(
        &app,
        Method::GET,
        "/api/members?email=ada%40example.com",
        &[],
        None,
    )
    .await;
    assert_eq!(page.json["meta"]["total"], 1, "{:?}", page.json);
    assert_eq!(page.json["data"][0]["name"], "Ada King");

    let deleted = call(&app, Method::DELETE, &format!("/Member/{id}"), &[], None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = call(&app, Method::GET, &format!("/Member/{id}"), &[], None).await;
    assert_eq!(
        (gone.status, gone.json["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("member_not_found"))
    );

    // Every change is an event carrying the record as it is after it (as it was, for a delete).
    let events = outbox_events(&t.db).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "member.created",
            "member.updated",
            "member.updated",
            "member.deleted"
        ]
    );
    assert_eq!(events[0].1, ada);
    assert_eq!(events[2].1["name"], "Ada King");
    assert_eq!(events[3].1["id"], id.as_str());
    t.drop_now().await;
}

kassa_platform::on_both_databases!(members);

/// A member's `classId` follows what the classes service announces.
async fn class_follows_enrolment(t: Throwaway) {
    use kassa_contracts::{
        Envelope, EventContext,
        events::{EnrollmentCreated, EnrollmentDeleted},
    };
    use kassa_platform::{bus::Handler, consumer::Inboxed};
    let app = app(&t.db).await;
    let consumer = Inboxed::new(
        kassa_members::NAME,
        t.db.clone(),
        kassa_members::enrolment::Enrolments {
            records: kassa_members::records(t.db.clone()),
        },
    );
    let ctx = EventContext::new("test");
    let created = call(
        &app,
        Method::POST,
        "/api/members",
        &[],
        Some(json!({"name": "Ada", "email": "ada@example.com", "phoneNumber": "+4915112345678"})),
    )
    .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let member: uuid::Uuid = id.parse().unwrap();
    let (yoga, pilates) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let read = async |app: &Router| {
        call(app, Method::GET, &format!("/Member/{id}"), &[], None)
            .await
            .json
    };

    let joined = EnrollmentCreated {
        class_id: yoga,
        member_id: member,
    };
    consumer
        .handle(&Envelope::new("classes", yoga, &joined, &ctx))
        .await
        .unwrap();
    assert_eq!(read(&app).await["classId"], yoga.to_string());
    // Leaving another class does not touch it; leaving this one clears it.
    let elsewhere = EnrollmentDeleted {
        class_id: pilates,
        member_id: member,
    };
    consumer
        .handle(&Envelope::new("classes", pilates, &elsewhere, &ctx))
        .await
        .unwrap();
    assert_eq!(read(&app).await["classId"], yoga.to_string());
    let left = EnrollmentDeleted {
        class_id: yoga,
        member_id: member,
    };
    consumer
        .handle(&Envelope::new("classes", yoga, &left, &ctx))
        .await
        .unwrap();
    assert_eq!(read(&app).await["classId"], serde_json::Value::Null);
    // A deleted class takes its members' classId with it.
    let joined = EnrollmentCreated {
        class_id: pilates,
        member_id: member,
    };
    consumer
        .handle(&Envelope::new("classes", pilates, &joined, &ctx))
        .await
        .unwrap();
    let gone = Envelope::record(
        "classes",
        pilates,
        "class.deleted".into(),
        json!({"id": pilates}),
        &ctx,
    );
    consumer.handle(&gone).await.unwrap();
    assert_eq!(read(&app).await["classId"], serde_json::Value::Null);
    // A seed client sending back what it read keeps the member as the service keeps it.
    let mut echoed = read(&app).await;
    echoed["classId"] = json!(yoga);
    let put = call(
        &app,
        Method::PUT,
        &format!("/Member/{id}"),
        &[],
        Some(echoed),
    )
    .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    assert_eq!(read(&app).await["classId"], serde_json::Value::Null);

    let updates: Vec<_> = outbox_events(&t.db)
        .await
        .into_iter()
        .filter(|(k, _)| k == "member.updated")
        .map(|(_, data)| data["classId"].clone())
        .collect();
    assert_eq!(
        updates,
        [
            json!(yoga),
            json!(null),
            json!(pilates),
            json!(null),
            json!(null)
        ]
    );
    t.drop_now().await;
}

kassa_platform::on_both_databases!(class_follows_enrolment);
