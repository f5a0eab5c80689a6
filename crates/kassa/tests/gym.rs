//! Seed 000's gym through the gateway, on both backends: members, staff and classes hear of each
//! other through their events, as the seed's services subscribe to each other.

mod support;

use std::time::Duration;

use kassa_platform::testing::eventually;
use serde_json::{Value, json};
use support::{Backend, spawn_app};

on_both_backends!(the_gym_services_follow_each_other);

async fn the_gym_services_follow_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    // A member and a coach, created through the seed's routes.
    let (status, ada) = app
        .post_json(
            "/Member",
            r#"{"name":"Ada","email":"ada@example.com","phoneNumber":"+4915112345678"}"#,
            &[],
        )
        .await;
    assert_eq!(status, 201, "{ada}");
    let member = ada["id"].as_str().unwrap().to_owned();
    let (status, coach) = app
        .post_json(
            "/Personal",
            r#"{"name":"Grace","email":"grace@example.com","phoneNumber":"+12025550123","department":"Fitness","position":"Coach"}"#,
            &[],
        )
        .await;
    assert_eq!(status, 201, "{coach}");
    let coach = coach["id"].as_str().unwrap().to_owned();
    let (status, class) = app
        .post_json(
            "/Class/member",
            r#"{"name":"Yoga","description":"Slow flow","capacity":1}"#,
            &[],
        )
        .await;
    assert_eq!(status, 201, "{class}");
    let class = class["id"].as_str().unwrap().to_owned();

    // Classes learns of the member from `member.created`: enrolment waits for nothing else.
    let enrol = format!(r#"{{"memberId":"{member}"}}"#);
    let (_, enrolled) = eventually(
        "the member enrolled",
        Duration::from_secs(10),
        async || {
            app.post_json(&format!("/api/classes/{class}/enrollments"), &enrol, &[])
                .await
        },
        |(status, _)| *status == 201,
    )
    .await;
    assert_eq!(enrolled["classId"], class.as_str());
    // ... and members learns of the enrolment from `enrollment.created`.
    app.wait_for(&format!("/Member/{member}"), |m| {
        m["classId"] == class.as_str()
    })
    .await;

    // The coach teaches the class; deleting the coach clears it.
    eventually(
        "the coach teaching the class",
        Duration::from_secs(10),
        async || {
            app.patch(
                &format!("/api/classes/{class}"),
                Some(json!({"instructorId": coach})),
            )
            .await
        },
        |(status, _)| *status == 200,
    )
    .await;
    let response = app
        .client
        .delete(format!("{}/Personal/{coach}", app.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    app.wait_for(&format!("/api/classes/{class}"), |c| {
        c["instructorId"] == Value::Null
    })
    .await;

    // Deleting the member frees their place, and the class says so.
    let response = app
        .client
        .delete(format!("{}/api/members/{member}", app.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    app.wait_for(&format!("/api/classes/{class}/enrollments"), |p| {
        p["meta"]["total"] == 0
    })
    .await;
    app.stop().await;
}
