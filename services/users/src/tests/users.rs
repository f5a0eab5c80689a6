//! Accounts and saved cards through their routes, seed 004's and kassa's, on both backends:
//! what each answers, who may call it, the events, and that no card number is kept anywhere.

use axum::{
    Extension, Router,
    http::{Method, StatusCode},
};
use chrono::Utc;
use kassa_platform::{
    auth::{self, Claims, Role, Secret, Tokens},
    db::Db,
    migrate,
    testing::{self, Throwaway, call, outbox_events},
};
use kassa_users::Users;
use serde_json::{Value, json};
use uuid::Uuid;

const SECRET: &str = "the users tests' secret, 32 bytes or more";

async fn app(db: &Db) -> Router {
    migrate::run(db, &[&migrate::PLATFORM, &kassa_users::MIGRATIONS])
        .await
        .unwrap();
    let secret = Secret::new(SECRET).unwrap();
    let users = Users::new(db.clone(), secret.clone());
    kassa_users::api(users).layer(Extension(Tokens(Some(secret))))
}

/// `kassa users grant-admin EMAIL` against `db`.
async fn grant_admin(db: &Db, email: &str) -> Result<String, String> {
    let task = kassa_users::principals::GRANT_ADMIN;
    (task.run)(kassa_platform::service::TaskInput {
        db: db.clone(),
        options: Default::default(),
        args: [("email".to_owned(), email.to_owned())].into(),
    })
    .await
    .map_err(|e| e.to_string())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token of kassa's payments service.
fn service_token() -> String {
    let claims = Claims::new(
        Uuid::nil(),
        "payments@kassa.invalid",
        Role::Service,
        Utc::now(),
        chrono::Duration::minutes(5),
    );
    auth::issue(&Secret::new(SECRET).unwrap(), &claims)
}

async fn signup(app: &Router, email: &str) -> Value {
    let created = call(
        app,
        Method::POST,
        "/api/auth/signup",
        &[],
        Some(json!({"name": "Ada Lovelace", "email": email, "password": "analytical engine"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    created.json
}

/// Signs in; the token from the body, checked against the cookie.
async fn signin(app: &Router, email: &str) -> String {
    let signed = call(
        app,
        Method::POST,
        "/auth/signin",
        &[],
        Some(json!({"email": email, "password": "analytical engine"})),
    )
    .await;
    assert_eq!(signed.status, StatusCode::OK, "{:?}", signed.json);
    let token = signed.json["data"]["token"].as_str().unwrap().to_owned();
    let cookie = signed.header("set-cookie").unwrap();
    assert_eq!(
        cookie,
        format!("token={token}; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax")
    );
    token
}

async fn accounts(t: Throwaway) {
    let app = app(&t.db).await;
    let created = signup(&app, "Ada@Example.com").await;
    assert_eq!(created["success"], true);
    assert_eq!(created["data"]["email"], "ada@example.com");
    assert_eq!(created["message"], "User created successfully");
    let id = created["data"]["id"].as_str().unwrap().to_owned();

    // Seed 004's rules, each a 400 naming its field, in the shape its clients read.
    for (body, code, param) in [
        (
            json!({"name": "Al", "email": "b@example.com", "password": "secret"}),
            "field_too_short",
            "name",
        ),
        (
            json!({"name": "   ", "email": "b@example.com", "password": "secret"}),
            "blank_field",
            "name",
        ),
        (
            json!({"name": "Bob", "email": "b@example", "password": "secret"}),
            "invalid_email",
            "email",
        ),
        (
            json!({"name": "Bob", "email": "b@example.com", "password": "12345"}),
            "invalid_password",
            "password",
        ),
        (
            json!({"name": "Bob", "email": "b@example.com", "password": "secret", "phone_number": "012345678901"}),
            "invalid_phone_number",
            "phone_number",
        ),
        (
            json!({"name": "Bob", "email": "b@example.com", "password": "secret", "phone_number": "+12345678"}),
            "invalid_phone_number",
            "phone_number",
        ),
        (
            json!({"name": "Bob", "email": "b@example.com"}),
            "missing_field",
            "password",
        ),
    ] {
        let refused = call(&app, Method::POST, "/auth/signup", &[], Some(body)).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            refused.json
        );
        assert_eq!(
            (
                refused.json["code"].as_str(),
                refused.json["param"].as_str()
            ),
            (Some(code), Some(param)),
            "{:?}",
            refused.json
        );
        assert_eq!(refused.json["success"], false);
        assert_eq!(refused.json["message"], refused.json["detail"]);
    }
    let taken = call(
        &app,
        Method::POST,
        "/api/auth/signup",
        &[],
        Some(json!({"name": "Another Ada", "email": "ADA@example.com", "password": "whatever"})),
    )
    .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert_eq!(taken.json["code"], "email_taken");
    assert_eq!(taken.json["message"], "Email is already in use.");
    let with_phone = call(
        &app,
        Method::POST,
        "/auth/signup",
        &[],
        Some(json!({"name": "Grace", "email": "grace@example.com", "password": "cobol!", "phone_number": "+4915112345678"})),
    )
    .await;
    assert_eq!(
        with_phone.status,
        StatusCode::CREATED,
        "{:?}",
        with_phone.json
    );

    // Sign-in: a token good for an hour, in the body and the cookie.
    let token = signin(&app, "ada@EXAMPLE.com").await;
    let claims = auth::verify(&Secret::new(SECRET).unwrap(), &token, Utc::now()).unwrap();
    assert_eq!(claims.user_id.to_string(), id);
    assert_eq!(claims.email, "ada@example.com");
    assert_eq!(claims.role, Role::Customer);
    assert_eq!(claims.exp - claims.iat, 3600);
    // One answer for an unknown address and a wrong password.
    for (email, password) in [
        ("nobody@example.com", "analytical engine"),
        ("ada@example.com", "difference engine"),
    ] {
        let refused = call(
            &app,
            Method::POST,
            "/api/auth/signin",
            &[],
            Some(json!({"email": email, "password": password})),
        )
        .await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{email}");
        assert_eq!(refused.json["code"], "invalid_credentials");
        assert_eq!(refused.json["message"], "Invalid credentials.");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        assert!(refused.header("set-cookie").is_none());
    }
    // An admin is made by the operator's command, once the account exists; signing up with
    // an address makes no one an admin.
    assert!(
        grant_admin(&t.db, "boss@example.com")
            .await
            .unwrap_err()
            .contains("signs up first")
    );
    signup(&app, "boss@example.com").await;
    let before = signin(&app, "boss@example.com").await;
    let me = call(
        &app,
        Method::GET,
        "/api/users/me",
        &[("authorization", &bearer(&before))],
        None,
    )
    .await;
    assert_eq!(me.json["role"], "customer");
    assert_eq!(
        grant_admin(&t.db, "Boss@Example.com").await.unwrap(),
        "users: boss@example.com is now admin"
    );
    let boss = signin(&app, "boss@example.com").await;
    let me = call(
        &app,
        Method::GET,
        "/api/users/me",
        &[("authorization", &bearer(&boss))],
        None,
    )
    .await;
    assert_eq!(me.json["role"], "admin");

    // Reading and changing oneself, with the token as a bearer or in the cookie.
    let me = call(
        &app,
        Method::GET,
        "/api/users/me",
        &[("cookie", &format!("theme=dark; token={token}"))],
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.json);
    assert_eq!(me.json["id"], id.as_str());
    assert_eq!(me.json["name"], "Ada Lovelace");
    assert_eq!(me.json["role"], "customer");
    assert!(me.json.get("passwordHash").is_none() && me.json.get("password_hash").is_none());
    let changed = call(
        &app,
        Method::PATCH,
        "/api/users/me",
        &[("authorization", &bearer(&token))],
        Some(json!({"name": "Augusta Ada King", "phoneNumber": "+441234567890"})),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.json);
    assert_eq!(changed.json["name"], "Augusta Ada King");
    assert_eq!(changed.json["phoneNumber"], "+441234567890");
    let cleared = call(
        &app,
        Method::PATCH,
        "/api/users/me",
        &[("authorization", &bearer(&token))],
        Some(json!({"phoneNumber": null})),
    )
    .await;
    assert_eq!(cleared.json.get("phoneNumber"), None, "{:?}", cleared.json);

    // Without a token, or with a forged one.
    let anonymous = call(&app, Method::GET, "/api/users/me", &[], None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.json["code"], "token_required");
    let forged = auth::issue(
        &Secret::new("some other secret of thirty-two bytes").unwrap(),
        &claims,
    );
    let refused = call(
        &app,
        Method::GET,
        "/api/users/me",
        &[("authorization", &bearer(&forged))],
        None,
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.json["code"], "invalid_token");

    // The events: who signed up and what changed, never a password or its hash.
    let events = outbox_events(&t.db).await;
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "user.created",
            "user.created",
            "user.created",
            "user.updated",
            "user.updated"
        ]
    );
    assert_eq!(
        events[0].1,
        json!({"userId": id, "name": "Ada Lovelace", "email": "ada@example.com"})
    );
    assert_eq!(events[1].1["phoneNumber"], "+4915112345678");
    assert_eq!(events[3].1["name"], "Augusta Ada King");
    assert_eq!(events[3].1["phoneNumber"], "+441234567890");
    assert_eq!(events[4].1.get("phoneNumber"), None);
    for (_, data) in &events {
        let text = data.to_string();
        assert!(
            !text.contains("analytical") && !text.contains("argon2"),
            "{text}"
        );
    }
    t.drop_now().await;
}

async fn saved_cards(t: Throwaway) {
    let app = app(&t.db).await;
    let ada = signup(&app, "ada@example.com").await["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = signin(&app, "ada@example.com").await;
    let auth = [("authorization", bearer(&token))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let card = |number: &str, expiry: &str| json!({"card_number": number, "expiry_date": expiry, "cardholder_name": "Ada Lovelace"});

    let added = call(
        &app,
        Method::POST,
        "/api/payment-methods/add",
        &auth,
        Some(card("4242424242424242", "12/30")),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.json);
    assert_eq!(added.json["success"], true);
    assert_eq!(added.json["message"], "Payment method added successfully");
    let data = &added.json["data"];
    assert_eq!(
        (
            &data["brand"],
            &data["last4"],
            &data["expiry_date"],
            &data["cardholder_name"]
        ),
        (
            &json!("visa"),
            &json!("4242"),
            &json!("12/30"),
            &json!("Ada Lovelace")
        )
    );
    assert!(data.get("card_number").is_none() && data.get("provider_token").is_none());
    let first = data["id"].as_str().unwrap().to_owned();

    // What is refused, and why.
    for (body, status, code) in [
        (
            card("4242424242424242", "12/30"),
            StatusCode::CONFLICT,
            "card_exists",
        ),
        (
            card("4242424242424241", "12/30"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_card_number",
        ),
        (
            card("4242-4242-4242-4242", "12/30"),
            StatusCode::BAD_REQUEST,
            "invalid_card_number",
        ),
        (
            card("4000000000000002", "13/30"),
            StatusCode::BAD_REQUEST,
            "invalid_expiry_date",
        ),
        (
            card("4000000000000002", "01/20"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "card_expired",
        ),
        (
            json!({"card_number": "4000000000000002", "expiry_date": "12/30", "cardholder_name": " "}),
            StatusCode::BAD_REQUEST,
            "blank_field",
        ),
    ] {
        let refused = call(
            &app,
            Method::POST,
            "/payment-methods/add",
            &auth,
            Some(body),
        )
        .await;
        assert_eq!(
            (refused.status, refused.json["code"].as_str()),
            (status, Some(code)),
            "{:?}",
            refused.json
        );
        assert_eq!(refused.json["success"], false);
    }
    let anonymous = call(
        &app,
        Method::POST,
        "/payment-methods/add",
        &[],
        Some(card("5555555555554444", "01/31")),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.json["success"], false);

    let declining = call(
        &app,
        Method::POST,
        "/payment-methods/add",
        &auth,
        Some(card("4000000000000002", "01/31")),
    )
    .await;
    assert_eq!(
        declining.status,
        StatusCode::CREATED,
        "{:?}",
        declining.json
    );
    let second = declining.json["data"]["id"].as_str().unwrap().to_owned();

    // Another user neither sees nor removes Ada's cards.
    signup(&app, "grace@example.com").await;
    let grace = signin(&app, "grace@example.com").await;
    let graces = call(
        &app,
        Method::GET,
        "/api/users/me/payment-methods",
        &[("authorization", &bearer(&grace))],
        None,
    )
    .await;
    assert_eq!(graces.json, json!({"data": []}));
    let not_hers = call(
        &app,
        Method::DELETE,
        &format!("/api/users/me/payment-methods/{first}"),
        &[("authorization", &bearer(&grace))],
        None,
    )
    .await;
    assert_eq!(not_hers.status, StatusCode::NOT_FOUND);

    let listed = call(
        &app,
        Method::GET,
        "/api/users/me/payment-methods",
        &auth,
        None,
    )
    .await;
    let ids: Vec<&str> = listed.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);

    // The lookup is the payments service's: not the public's, not a customer's, not an admin's.
    let lookup = format!("/api/payment-methods/get/{ada}");
    let anonymous = call(&app, Method::GET, &lookup, &[], None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let own = call(&app, Method::GET, &lookup, &auth, None).await;
    assert_eq!(
        (own.status, own.json["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let service = service_token();
    let found = call(
        &app,
        Method::GET,
        &lookup,
        &[("authorization", &bearer(&service))],
        None,
    )
    .await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.json);
    assert_eq!(found.json["email"], "ada@example.com");
    assert_eq!(found.json["data"]["id"], first.as_str());
    assert_eq!(found.json["data"]["provider"], "simulated");
    assert!(
        found.json["data"]["provider_token"]
            .as_str()
            .unwrap()
            .starts_with("pm_sim_card_")
    );
    let unknown = call(
        &app,
        Method::GET,
        &format!("/payment-methods/get/{}", Uuid::now_v7()),
        &[("authorization", &bearer(&service))],
        None,
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.json["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("user_not_found"))
    );

    // Removing the first makes the declining card the one orders are charged to.
    let removed = call(
        &app,
        Method::DELETE,
        &format!("/api/users/me/payment-methods/{first}"),
        &auth,
        None,
    )
    .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let found = call(
        &app,
        Method::GET,
        &lookup,
        &[("authorization", &bearer(&service))],
        None,
    )
    .await;
    assert!(
        found.json["data"]["provider_token"]
            .as_str()
            .unwrap()
            .starts_with("pm_sim_declines_")
    );
    call(
        &app,
        Method::DELETE,
        &format!("/api/users/me/payment-methods/{second}"),
        &auth,
        None,
    )
    .await;
    let none = call(
        &app,
        Method::GET,
        &lookup,
        &[("authorization", &bearer(&service))],
        None,
    )
    .await;
    assert_eq!(
        (none.status, none.json["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("payment_method_not_found"))
    );

    // No card number anywhere in the database: not in a table, not in an event.
    for number in ["4242424242424242", "4000000000000002"] {
        let rows = testing::every_row(&t.db).await;
        assert!(rows.len() > 5, "the tables were read: {rows:?}");
        for text in rows {
            assert!(
                !testing::mentions(&text, number),
                "a card number is stored: {text}"
            );
        }
    }
    t.drop_now().await;
}

kassa_platform::on_both_databases!(accounts, saved_cards);
