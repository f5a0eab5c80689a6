//! The kit on both backends, through its routes, with a small kind of record.

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use super::*;
use crate::{db::Db, migrate, outbox, sql, testing::Throwaway};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Widget {
    name: String,
    code: String,
    #[serde(default)]
    owner_id: Option<Uuid>,
    #[serde(default)]
    size: Option<i64>,
    /// Kept by the service, never set by a client.
    #[serde(default)]
    badge: Option<String>,
}

struct Widgets;

const SPEC: ResourceSpec = ResourceSpec {
    kind: "widget",
    title: "Widget",
    table: "widgets",
    fields: &[
        Field::text("name", "name"),
        Field::text("code", "code").filtered(),
        Field::uuid("ownerId", "owner_id").filtered(),
        Field::integer("size", "size"),
        Field::text("badge", "badge").kept(),
    ],
    unique: &[Unique {
        constraint: "widgets_code",
        field: "code",
        code: "code_taken",
        detail: "Another widget has this code.",
    }],
    not_found: "widget_not_found",
    conflicts: "",
    undeletable: "",
};

impl Resource for Widgets {
    type Fields = Widget;
    const SPEC: &'static ResourceSpec = &SPEC;

    fn validate(fields: &mut Widget) -> Result<(), ApiError> {
        fields.name = fields.name.trim().to_owned();
        if fields.name.is_empty() {
            return Err(ApiError::invalid(
                "name",
                "blank_name",
                "`name` must not be blank.",
            ));
        }
        if let Some(size) = fields.size
            && !(1..=1000).contains(&size)
        {
            return Err(ApiError::invalid(
                "size",
                "invalid_size",
                "`size` must be 1 to 1000.",
            ));
        }
        Ok(())
    }
}

const TABLE_PG: &str = "CREATE TABLE widgets (id UUID PRIMARY KEY, version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, name TEXT NOT NULL,
    code TEXT NOT NULL CONSTRAINT widgets_code UNIQUE, owner_id UUID, size BIGINT, badge TEXT)";
const TABLE_SQLITE: &str = "CREATE TABLE widgets (id BLOB PRIMARY KEY, version INTEGER NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, name TEXT NOT NULL,
    code TEXT NOT NULL CONSTRAINT widgets_code UNIQUE, owner_id BLOB, size INTEGER, badge TEXT)";

fn app(db: &Db) -> Router {
    router(
        Records::<Widgets>::new(db.clone(), "test"),
        &[Mount::kassa("/api/widgets"), Mount::seed("/Widget")],
    )
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let answer = crate::testing::call(app, method, uri, headers, body).await;
    let etag = answer.header("etag").map(str::to_owned);
    (answer.status, answer.json, etag)
}

async fn events(db: &Db) -> Vec<(String, Value)> {
    crate::testing::outbox_events(db).await
}

async fn scenario(db: &Db) {
    let app = app(db);
    // Create, with its event.
    let (status, a, etag) = call(
        &app,
        Method::POST,
        "/api/widgets",
        &[],
        Some(json!({"name": "  Bolt ", "code": "B-1", "size": 3})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_eq!(a["name"], "Bolt", "validate normalises");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let id = a["id"].as_str().unwrap().to_owned();
    assert!(a["createdAt"].is_string() && a["ownerId"].is_null());
    // Bad input changes nothing.
    for (body, code) in [
        (json!({"name": " ", "code": "X"}), "blank_name"),
        (json!({"name": "x", "code": "X", "size": 0}), "invalid_size"),
        (
            json!({"name": "x", "code": "X", "colour": "red"}),
            "unknown_field",
        ),
        (json!({"name": "x"}), "missing_field"),
    ] {
        let (status, p, _) = call(&app, Method::POST, "/api/widgets", &[], Some(body)).await;
        assert_eq!(
            (status, p["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{p}"
        );
    }
    // Unique fields answer 409 naming the field.
    let (status, p, _) = call(
        &app,
        Method::POST,
        "/Widget",
        &[],
        Some(json!({"name": "Nut", "code": "B-1"})),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str(), p["param"].as_str()),
        (StatusCode::CONFLICT, Some("code_taken"), Some("code"))
    );
    // Read under both prefixes.
    let (status, got, etag) = call(&app, Method::GET, &format!("/Widget/{id}"), &[], None).await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"1\"")));
    assert_eq!(got, a);
    let (status, p, _) = call(
        &app,
        Method::GET,
        &format!("/api/widgets/{}", Uuid::now_v7()),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("widget_not_found"))
    );
    // Merge patch with If-Match; a stale ETag is refused.
    let owner = Uuid::now_v7().to_string();
    let (status, b, etag) = call(
        &app,
        Method::PATCH,
        &format!("/api/widgets/{id}"),
        &[("if-match", "\"1\"")],
        Some(json!({"ownerId": owner, "size": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        (b["ownerId"].as_str(), &b["size"], b["name"].as_str()),
        (Some(owner.as_str()), &Value::Null, Some("Bolt"))
    );
    assert_eq!(etag.as_deref(), Some("\"2\""));
    let (status, p, _) = call(
        &app,
        Method::PUT,
        &format!("/api/widgets/{id}"),
        &[("if-match", "\"1\"")],
        Some(json!({"name": "Late", "code": "B-1"})),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::PRECONDITION_FAILED, Some("precondition_failed"))
    );
    let (status, p, _) = call(
        &app,
        Method::PATCH,
        &format!("/api/widgets/{id}"),
        &[],
        Some(json!({"size": 5000})),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_size"))
    );
    // Full replace.
    let (status, c, etag) = call(
        &app,
        Method::PUT,
        &format!("/api/widgets/{id}"),
        &[("if-match", "\"2\"")],
        Some(json!({"name": "Bolt M8", "code": "B-8"})),
    )
    .await;
    assert_eq!(
        (status, etag.as_deref()),
        (StatusCode::OK, Some("\"3\"")),
        "{c}"
    );
    assert!(c["ownerId"].is_null(), "a replace sets every field");
    // Lists: paging and filters.
    for i in 0..12 {
        let (status, _, _) = call(&app, Method::POST, "/api/widgets", &[], Some(json!({"name": format!("W{i}"), "code": format!("W-{i}"), "ownerId": if i % 2 == 0 { Some(owner.clone()) } else { None }}))).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, page, _) = call(&app, Method::GET, "/api/widgets?page=2&limit=5", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page["meta"],
        json!({"page": 2, "limit": 5, "total": 13, "totalPages": 3})
    );
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    let (_, page, _) = call(
        &app,
        Method::GET,
        &format!("/api/widgets?ownerId={owner}&limit=100"),
        &[],
        None,
    )
    .await;
    assert_eq!(page["meta"]["total"], 6);
    let (_, page, _) = call(&app, Method::GET, "/api/widgets?code=B-8", &[], None).await;
    assert_eq!(page["data"][0]["id"].as_str(), Some(id.as_str()));
    for bad in [
        "/api/widgets?colour=red",
        "/api/widgets?name=Bolt",
        "/api/widgets?ownerId=nope",
        "/api/widgets?limit=101",
    ] {
        let (status, p, _) = call(&app, Method::GET, bad, &[], None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {p}");
    }
    // Delete with a stale ETag is refused; then deleted, with its event.
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/widgets/{id}"),
        &[("if-match", "\"2\"")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/widgets/{id}"),
        &[("if-match", "\"3\"")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(&app, Method::GET, &format!("/api/widgets/{id}"), &[], None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Events: each change once, with the record as it is after the change.
    let mine: Vec<(String, Value)> = events(db)
        .await
        .into_iter()
        .filter(|(_, data)| data["id"] == json!(id))
        .collect();
    let topics: Vec<&str> = mine.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "widget.created",
            "widget.updated",
            "widget.updated",
            "widget.deleted"
        ]
    );
    assert_eq!(mine[1].1["ownerId"].as_str(), Some(owner.as_str()));
    assert_eq!(mine[3].1["name"], "Bolt M8");
    // 13 created, 2 updated, 1 deleted; nothing for what was refused.
    assert_eq!(outbox::pending(db).await.unwrap(), 16);
}

async fn keyed_create(db: &Db) {
    let app = app(db);
    let body = json!({"name": "Key", "code": "K-1"});
    let (s1, a, _) = call(
        &app,
        Method::POST,
        "/api/widgets",
        &[("idempotency-key", "k1")],
        Some(body.clone()),
    )
    .await;
    let (s2, b, _) = call(
        &app,
        Method::POST,
        "/api/widgets",
        &[("idempotency-key", "k1")],
        Some(body),
    )
    .await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(a, b, "the answer is replayed");
    let (s3, p, _) = call(
        &app,
        Method::POST,
        "/api/widgets",
        &[("idempotency-key", "k1")],
        Some(json!({"name": "Other", "code": "K-2"})),
    )
    .await;
    assert_eq!(
        (s3, p["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        )
    );
}

async fn prepared(db: &Db, table: &'static str) {
    migrate::run(db, &[&migrate::PLATFORM]).await.unwrap();
    sql(table).execute(db).await.unwrap();
}

async fn all_of_it(t: Throwaway, table: &'static str) {
    prepared(&t.db, table).await;
    scenario(&t.db).await;
    keyed_create(&t.db).await;
    seed_style_and_kept_fields(&t.db).await;
    racing(&t.db).await;
    t.drop_now().await;
}

#[tokio::test]
async fn records_on_sqlite() {
    all_of_it(Throwaway::sqlite().await, TABLE_SQLITE).await;
}

#[tokio::test]
async fn records_on_postgres() {
    all_of_it(Throwaway::postgres().await, TABLE_PG).await;
}

/// The seed's prefix answers as its clients expect, and a field the service keeps is never set
/// through the API under either prefix.
async fn seed_style_and_kept_fields(db: &Db) {
    let app = app(db);
    // A seed's body carries an id and timestamps of its own: ignored on create.
    let (status, a, _) = call(
        &app,
        Method::POST,
        "/Widget",
        &[],
        Some(json!({"id": "476f5730-aa83-4ff0-ab9f-d6e19836e195", "createdAt": "2020-01-01T00:00:00Z", "name": "Seed", "code": "S-1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_ne!(a["createdAt"], "2020-01-01T00:00:00Z");
    assert_ne!(a["id"], "476f5730-aa83-4ff0-ab9f-d6e19836e195");
    // ... but only when they are what they say they are.
    for (body, param) in [
        (json!({"id": 0, "name": "Seed", "code": "S-9"}), "id"),
        (
            json!({"updatedAt": {}, "name": "Seed", "code": "S-9"}),
            "updatedAt",
        ),
    ] {
        let (status, p, _) = call(&app, Method::POST, "/Widget", &[], Some(body)).await;
        assert_eq!(
            (status, p["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some(param)),
            "{p}"
        );
    }
    let id = a["id"].as_str().unwrap().to_owned();
    // Kassa's prefix stays strict about them.
    let (status, p, _) = call(
        &app,
        Method::POST,
        "/api/widgets",
        &[],
        Some(json!({"id": id, "name": "Strict", "code": "S-2"})),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_field"))
    );
    // A kept field cannot be set on create: kassa's route refuses it, the seed's ignores it.
    let (status, p, _) = call(
        &app,
        Method::POST,
        "/api/widgets",
        &[],
        Some(json!({"name": "Badge", "code": "S-3", "badge": "gold"})),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str(), p["param"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("read_only_field"),
            Some("badge")
        )
    );
    let (status, b, _) = call(
        &app,
        Method::POST,
        "/Widget",
        &[],
        Some(json!({"name": "Badge", "code": "S-3", "badge": "gold"})),
    )
    .await;
    assert_eq!(
        (status, &b["badge"]),
        (StatusCode::CREATED, &Value::Null),
        "{b}"
    );
    let (status, p, _) = call(
        &app,
        Method::POST,
        "/Widget",
        &[],
        Some(json!({"name": "Badge", "code": "S-4", "badge": 7})),
    )
    .await;
    assert_eq!(
        (status, p["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("badge")),
        "{p}"
    );
    // The list is a plain array with the count in a header; a short page links the next.
    let req = Request::builder()
        .uri("/Widget?limit=1")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let total: i64 = res.headers()["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(total >= 2, "{total}");
    let link = res.headers()[header::LINK].to_str().unwrap().to_owned();
    assert_eq!(link, "</Widget?page=2&limit=1>; rel=\"next\"");
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    // The service sets the kept field (as a consumer would).
    let records = Records::<Widgets>::new(db.clone(), "test");
    let mut tx = db.begin().await.unwrap();
    let current = records
        .find_for_update(&mut tx, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut fields = current.fields.clone();
    fields.badge = Some("gold".into());
    let ctx = kassa_contracts::EventContext::new("test");
    records
        .replace_in(&mut tx, current, fields, &ctx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // A seed replace: the body's id must be the path's; 204; the kept field stays when left
    // out or sent as it is, and another value is refused.
    let uri = format!("/Widget/{id}");
    let (status, p, _) = call(
        &app,
        Method::PUT,
        &uri,
        &[],
        Some(json!({"id": Uuid::now_v7(), "name": "Seed 2", "code": "S-1"})),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id_mismatch"))
    );
    let (status, _, _) = call(
        &app,
        Method::PUT,
        &uri,
        &[],
        Some(
            json!({"id": id, "name": "Seed 2", "code": "S-1", "createdAt": "2020-01-01T00:00:00Z"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, got, etag) = call(&app, Method::GET, &uri, &[], None).await;
    assert_eq!(
        (got["name"].as_str(), got["badge"].as_str()),
        (Some("Seed 2"), Some("gold"))
    );
    assert_eq!(got["createdAt"], a["createdAt"]);
    assert_eq!(etag.as_deref(), Some("\"3\""));
    let (status, _, _) = call(
        &app,
        Method::PUT,
        &uri,
        &[],
        Some(json!({"name": "Seed 3", "code": "S-1", "badge": "gold"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The seed's clients send back what they read: a kept field's value there is ignored.
    let (status, _, _) = call(
        &app,
        Method::PUT,
        &uri,
        &[],
        Some(json!({"name": "Seed 3", "code": "S-1", "badge": "silver"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (method, body) in [
        (
            Method::PUT,
            json!({"name": "Seed 4", "code": "S-1", "badge": "silver"}),
        ),
        (Method::PATCH, json!({"badge": null})),
    ] {
        let (status, p, _) = call(
            &app,
            method.clone(),
            &format!("/api/widgets/{id}"),
            &[],
            Some(body),
        )
        .await;
        assert_eq!(
            (status, p["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("read_only_field")),
            "{method}"
        );
    }
    let (_, got, etag) = call(&app, Method::GET, &uri, &[], None).await;
    assert_eq!(
        (got["name"].as_str(), got["badge"].as_str()),
        (Some("Seed 3"), Some("gold"))
    );
    // If-Match is read as RFC 9110 writes it: a weak tag or a value that is no tag never matches.
    let current = etag.unwrap();
    for (if_match, status) in [
        ("0".to_owned(), StatusCode::PRECONDITION_FAILED),
        ("\"4".to_owned(), StatusCode::PRECONDITION_FAILED),
        (String::new(), StatusCode::PRECONDITION_FAILED),
        (format!("W/{current}"), StatusCode::PRECONDITION_FAILED),
        (format!("\"9\", {current}"), StatusCode::OK),
    ] {
        let (got, p, _) = call(
            &app,
            Method::PATCH,
            &format!("/api/widgets/{id}"),
            &[("if-match", &if_match)],
            Some(json!({})),
        )
        .await;
        assert_eq!(got, status, "{if_match}: {p}");
    }
}

/// Twenty changes sent at once with the same `If-Match`: exactly one goes through.
async fn racing(db: &Db) {
    let app = app(db);
    let (_, a, _) = call(
        &app,
        Method::POST,
        "/api/widgets",
        &[],
        Some(json!({"name": "Race", "code": "R-1"})),
    )
    .await;
    let uri = format!("/api/widgets/{}", a["id"].as_str().unwrap());
    let tries = (0..20).map(|i| {
        let (app, uri) = (app.clone(), uri.clone());
        tokio::spawn(async move {
            call(
                &app,
                Method::PATCH,
                &uri,
                &[("if-match", "\"1\"")],
                Some(json!({"size": i + 1})),
            )
            .await
            .0
        })
    });
    let mut ok = 0;
    for t in tries {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
}

#[test]
fn the_document_names_every_route_and_error() {
    let doc = serde_json::to_value(document::<Widgets>(&[
        Mount::kassa("/api/widgets"),
        Mount::seed("/Widget"),
    ]))
    .unwrap();
    let item = &doc["paths"]["/api/widgets/{id}"];
    for method in ["get", "put", "patch", "delete"] {
        assert!(item[method]["responses"]["404"].is_object(), "{method}");
        assert_eq!(
            item[method]["responses"]["503"]["$ref"],
            "#/components/responses/ServiceUnavailable"
        );
    }
    assert!(item["put"]["responses"]["412"].is_object());
    let list = &doc["paths"]["/api/widgets"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["page", "limit", "code", "ownerId"]);
    assert!(
        doc["components"]["responses"]["ServiceUnavailable"]["headers"]["Retry-After"].is_object()
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["WidgetRecord"].is_object());
    assert!(doc["components"]["schemas"]["Widget"].is_object());
    // The seed's prefix: an array, a 204 replace, bodies that may carry the record's id.
    let seed = &doc["paths"]["/Widget"]["get"]["responses"]["200"];
    assert_eq!(
        seed["content"]["application/json"]["schema"]["type"],
        "array"
    );
    assert!(seed["headers"]["X-Total-Count"].is_object());
    let put = &doc["paths"]["/Widget/{id}"]["put"]["responses"];
    assert!(put["204"].is_object() && put["200"].is_null());
    assert!(
        put["422"].is_null()
            && doc["paths"]["/api/widgets/{id}"]["put"]["responses"]["422"].is_object(),
        "a kept field's refusal is documented where it is refused"
    );
    assert!(doc["components"]["schemas"]["WidgetSeedBody"]["properties"]["id"].is_object());
    let badge = |schema: &str| {
        doc["components"]["schemas"][schema]["properties"]["badge"]["readOnly"].clone()
    };
    assert_eq!(
        (badge("Widget"), badge("WidgetSeedBody")),
        (json!(true), Value::Null)
    );
    assert!(doc["components"]["schemas"]["Widget"]["properties"]["id"].is_null());
}
