//! Seed 000's gym through the gateway, on both backends: members, staff, classes and payments
//! hear of each other through their events, as the seed's services subscribe to each other.

use crate::support;

use std::time::Duration;

use kassa_platform::testing::eventually;
use serde_json::{Value, json};
use support::{Backend, spawn_app};

/// The services these scenarios exercise, and those they call or hear from.
const SERVICES: &[&str] = &["gateway", "members", "classes", "personnel", "payments"];

on_both_backends!(the_gym_services_follow_each_other);

async fn the_gym_services_follow_each_other(backend: Backend) {
    let app = spawn_app(backend, SERVICES).await;
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

    // Payments learns of the member from `member.created` too: a payment for them is taken,
    // one for a member it never heard of is refused.
    let (status, refused) = app
        .post_json(
            "/Payment",
            &format!(
                r#"{{"memberId":"{}","amount":150.50,"paymentMethod":"CreditCard","status":"Pending"}}"#,
                uuid::Uuid::now_v7()
            ),
            &[],
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("unknown_member"))
    );
    let pay = format!(
        r#"{{"memberId":"{member}","amount":150.50,"paymentMethod":"CreditCard","status":"Pending"}}"#
    );
    let (_, payment) = eventually(
        "a payment for the member",
        Duration::from_secs(10),
        async || app.post_json("/Payment", &pay, &[]).await,
        |(status, _)| *status == 201,
    )
    .await;
    let payment = payment["id"].as_str().unwrap().to_owned();
    let (status, paid) = app
        .patch(
            &format!("/api/payments/manual/{payment}"),
            Some(json!({"status": "Completed"})),
        )
        .await;
    assert_eq!(
        (status, &paid["status"]),
        (200, &json!("Completed")),
        "{paid}"
    );
    let (status, read) = app.get(&format!("/Payment/{payment}")).await;
    assert_eq!((status, &read["paidAt"]), (200, &paid["paidAt"]));
    let (_, all) = app.get("/api/payments").await;
    assert!(
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == payment.as_str() && p["kind"] == "manual"),
        "{all}"
    );

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
    // ... and payments takes no more payments for them.
    eventually(
        "payments refusing the deleted member",
        Duration::from_secs(10),
        async || app.post_json("/Payment", &pay, &[]).await,
        |(status, _)| *status == 409,
    )
    .await;
    app.stop().await;
}
