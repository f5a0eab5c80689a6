//! Classes, enrolments and the copy of members and staff, on both backends, through the routes
//! and the consumer the service runs.

use axum::http::{Method, StatusCode};
use kassa_classes::{enrollments, known::Known};
use kassa_contracts::{Envelope, EventContext};
use kassa_platform::{
    bus::Handler,
    consumer::Inboxed,
    http::Router,
    migrate,
    testing::{Answer, Throwaway, call, outbox_events},
};
use serde_json::{Value, json};
use uuid::Uuid;

struct Gym {
    app: Router,
    consumer: Inboxed<Known>,
}

impl Gym {
    async fn new(t: &Throwaway) -> Self {
        migrate::run(&t.db, &[&migrate::PLATFORM, &kassa_classes::MIGRATIONS])
            .await
            .unwrap();
        let records = kassa_classes::records(t.db.clone());
        let app = kassa_classes::api(records.clone()).merge(enrollments::router(t.db.clone()));
        let consumer = Inboxed::new(kassa_classes::NAME, t.db.clone(), Known { records });
        Gym { app, consumer }
    }

    /// Delivers what another service announced of one of its records.
    async fn hears(&self, source: &str, event_type: &str, record: Value) {
        let id = record["id"].as_str().unwrap().to_owned();
        let event = Envelope::record(
            source,
            id,
            event_type.to_owned(),
            record,
            &EventContext::new("test"),
        );
        self.consumer.handle(&event).await.unwrap();
    }

    async fn new_member(&self) -> Uuid {
        let id = Uuid::now_v7();
        self.hears("members", "member.created", json!({"id": id, "name": "M"}))
            .await;
        id
    }

    /// One request to the service's routes.
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        call(&self.app, method, path, &[], body).await
    }

    async fn enrol(&self, class: &str, member: Uuid) -> Answer {
        self.send(
            Method::POST,
            &format!("/api/classes/{class}/enrollments"),
            Some(json!({"memberId": member})),
        )
        .await
    }
}

async fn classes(t: Throwaway) {
    let gym = Gym::new(&t).await;
    // The seed's route creates a class; a capacity out of 1..1000 is refused.
    // 10.0 is the number 10, as JSON Schema's `integer` reads it.
    let yoga = gym
        .send(
            Method::POST,
            "/Class/member",
            Some(json!({"name": "Yoga", "description": "Slow flow", "capacity": 10.0})),
        )
        .await;
    assert_eq!(yoga.status, StatusCode::CREATED, "{:?}", yoga.json);
    let class = yoga.json["id"].as_str().unwrap().to_owned();
    for capacity in [json!(0), json!(1001), json!(20.5)] {
        let refused = gym
            .send(
                Method::POST,
                "/api/classes",
                Some(json!({"name": "X", "description": "Y", "capacity": capacity})),
            )
            .await;
        assert_eq!(refused.json["code"], "number_out_of_range", "{capacity}");
        assert_eq!(refused.json["param"], "capacity");
    }

    // Only members this service has heard of may enrol.
    let stranger = gym.enrol(&class, Uuid::now_v7()).await;
    assert_eq!(
        (stranger.status, stranger.json["code"].as_str()),
        (StatusCode::CONFLICT, Some("unknown_member"))
    );

    // A hundred enrolments at once for ten places: exactly ten get in.
    let mut members = Vec::new();
    for _ in 0..100 {
        members.push(gym.new_member().await);
    }
    let tries = members.iter().map(|&member| {
        let (app, class) = (gym.app.clone(), class.clone());
        tokio::spawn(async move {
            let gym_app = app;
            call(
                &gym_app,
                Method::POST,
                &format!("/api/classes/{class}/enrollments"),
                &[],
                Some(json!({"memberId": member})),
            )
            .await
        })
    });
    let (mut enrolled, mut full) = (Vec::new(), 0);
    for (member, attempt) in members.iter().zip(tries) {
        let answer = attempt.await.unwrap();
        match answer.status {
            StatusCode::CREATED => enrolled.push(*member),
            StatusCode::CONFLICT => {
                assert_eq!(answer.json["code"], "class_full");
                full += 1;
            }
            other => panic!("{other}: {:?}", answer.json),
        }
    }
    assert_eq!((enrolled.len(), full), (10, 90));
    let page = gym
        .send(
            Method::GET,
            &format!("/api/classes/{class}/enrollments?limit=100"),
            None,
        )
        .await;
    assert_eq!(page.json["meta"]["total"], 10);

    // Enrolling again changes nothing; another class is refused while enrolled here.
    let again = gym.enrol(&class, enrolled[0]).await;
    assert_eq!(again.status, StatusCode::OK);
    let pilates = gym
        .send(
            Method::POST,
            "/api/classes",
            Some(json!({"name": "Pilates", "description": "Core", "capacity": 5})),
        )
        .await;
    let other = pilates.json["id"].as_str().unwrap().to_owned();
    let elsewhere = gym.enrol(&other, enrolled[0]).await;
    assert_eq!(elsewhere.json["code"], "member_in_another_class");

    // The capacity cannot go below those enrolled.
    let shrink = gym
        .send(
            Method::PATCH,
            &format!("/api/classes/{class}"),
            Some(json!({"capacity": 9})),
        )
        .await;
    assert_eq!(
        (shrink.status, shrink.json["code"].as_str()),
        (StatusCode::CONFLICT, Some("capacity_below_enrolled"))
    );

    // Leaving frees a place; a deleted member leaves too, announced either way.
    let left = gym
        .send(
            Method::DELETE,
            &format!("/api/classes/{class}/enrollments/{}", enrolled[0]),
            None,
        )
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    gym.hears(
        "members",
        "member.deleted",
        json!({"id": enrolled[1], "name": "M"}),
    )
    .await;
    let page = gym
        .send(
            Method::GET,
            &format!("/api/classes/{class}/enrollments?limit=100"),
            None,
        )
        .await;
    assert_eq!(page.json["meta"]["total"], 8);
    // A deleted member cannot come back, even if an older event arrives late.
    gym.hears(
        "members",
        "member.updated",
        json!({"id": enrolled[1], "name": "M"}),
    )
    .await;
    assert_eq!(
        gym.enrol(&class, enrolled[1]).await.json["code"],
        "unknown_member"
    );

    // An instructor must be known staff; when they are deleted, their classes lose them.
    let coach = Uuid::now_v7();
    let unknown = gym
        .send(
            Method::PATCH,
            &format!("/api/classes/{class}"),
            Some(json!({"instructorId": coach})),
        )
        .await;
    assert_eq!(unknown.json["code"], "unknown_instructor");
    gym.hears("personnel", "personal.created", json!({"id": coach}))
        .await;
    let taught = gym
        .send(
            Method::PATCH,
            &format!("/api/classes/{class}"),
            Some(json!({"instructorId": coach})),
        )
        .await;
    assert_eq!(taught.status, StatusCode::OK, "{:?}", taught.json);
    gym.hears("personnel", "personal.deleted", json!({"id": coach}))
        .await;
    let read = gym
        .send(Method::GET, &format!("/Class/member/{class}"), None)
        .await;
    assert_eq!(read.json["instructorId"], Value::Null);

    // Deleting a class takes its enrolments with it.
    let deleted = gym
        .send(Method::DELETE, &format!("/api/classes/{class}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = gym
        .send(
            Method::GET,
            &format!("/api/classes/{class}/enrollments"),
            None,
        )
        .await;
    assert_eq!(gone.json["code"], "class_not_found");

    let events = outbox_events(&t.db).await;
    let count = |kind: &str| events.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(count("enrollment.created"), 10);
    assert_eq!(
        count("enrollment.deleted"),
        2,
        "the one who left and the deleted member"
    );
    assert_eq!(count("class.created"), 2);
    // The instructor set, then cleared by the consumer; the class as it is after each change.
    assert_eq!(count("class.updated"), 2);
    let (_, last_update) = events
        .iter()
        .rev()
        .find(|(k, _)| k == "class.updated")
        .unwrap();
    assert_eq!(last_update["instructorId"], Value::Null);
    assert_eq!(count("class.deleted"), 1);
    t.drop_now().await;
}

kassa_platform::on_both_databases!(classes);

/// An enrolment in flight when the member's deletion arrives: the deletion waits for it and
/// then removes it, so no enrolment of a deleted member is left behind (PostgreSQL, where
/// transactions run side by side; SQLite runs one writer at a time).
#[tokio::test]
async fn a_deletion_racing_an_enrolment_removes_it() {
    use kassa_platform::{sql, testing::eventually};
    use std::time::Duration;
    let t = Throwaway::postgres().await;
    let gym = std::sync::Arc::new(Gym::new(&t).await);
    let class = gym
        .send(
            Method::POST,
            "/api/classes",
            Some(json!({"name": "Spin", "description": "Fast", "capacity": 5})),
        )
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    let member = gym.new_member().await;

    // The enrolment's transaction, as the route runs it, held open.
    let mut enrolling = t.db.begin().await.unwrap();
    assert!(
        kassa_platform::known::exists(&mut enrolling, "member", member)
            .await
            .unwrap()
    );
    sql("INSERT INTO enrollments (class_id, member_id, enrolled_at) VALUES ($1, $2, $3)")
        .bind(class)
        .bind(member)
        .bind(kassa_contracts::now())
        .execute(&mut enrolling)
        .await
        .unwrap();
    // The deletion arrives meanwhile, and waits on the member's row.
    let deleting = {
        let gym = gym.clone();
        tokio::spawn(async move {
            gym.hears("members", "member.deleted", json!({"id": member}))
                .await
        })
    };
    eventually(
        "the deletion waiting for the enrolment",
        Duration::from_secs(10),
        async || {
            sql("SELECT COUNT(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'")
            .fetch_one(&t.db)
            .await
            .unwrap()
            .get::<i64>("n")
            .unwrap()
        },
        |waiting| *waiting == 1,
    )
    .await;
    enrolling.commit().await.unwrap();
    deleting.await.unwrap();
    let left = sql("SELECT COUNT(*) AS n FROM enrollments WHERE member_id = $1")
        .bind(member)
        .fetch_one(&t.db)
        .await
        .unwrap()
        .get::<i64>("n")
        .unwrap();
    assert_eq!(left, 0, "the deleted member's enrolment is gone");
    t.drop_now().await;
}
