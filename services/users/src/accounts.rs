//! Accounts: sign-up and sign-in as seed 004 serves them, and the signed-in user's own profile
//! (`/api/users/me`).
//!
//! Sign-in answers one 401 for an unknown address and for a wrong password, after the same
//! work, so that neither the answer nor its timing tells whether an account exists (seed 004's
//! implementation answers 404 for the one and 401 for the other).

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use kassa_contracts::{
    Envelope,
    events::{UserCreated, UserProfile, UserUpdated},
    json::timestamp,
};
use kassa_platform::{
    access::{Policy, Rule},
    auth::{self, Caller, Claims, Role},
    db::{DbError, Row, sql},
    http::{
        ApiError, ApiJson, ApiResult, RequestIds, not_null,
        openapi::{self, InvalidBody, InvalidParams, SignedIn},
    },
    outbox, password,
    validate::{self, Email},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{NAME, Users};

/// How long a token (and the cookie that holds it) is good for.
pub const TOKEN_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// The longest password taken, in characters (at most [`password::MAX_BYTES`] bytes).
const PASSWORD_MAX: usize = 256;

pub fn seed_routes(prefix: &str) -> Router<Users> {
    Router::new()
        .route(&format!("{prefix}/auth/signup"), post(signup))
        .route(&format!("{prefix}/auth/signin"), post(signin))
}

/// Anyone signs up and in; a person reads and changes their own account.
pub const RULES: &[Rule] = &[
    Rule::post("/auth/signup", Policy::PUBLIC),
    Rule::post("/api/auth/signup", Policy::PUBLIC),
    Rule::post("/auth/signin", Policy::PUBLIC),
    Rule::post("/api/auth/signin", Policy::PUBLIC),
    Rule::get("/api/users/me", Policy::CUSTOMER),
    Rule::patch("/api/users/me", Policy::CUSTOMER),
];

pub fn routes() -> Router<Users> {
    Router::new().route("/api/users/me", get(read_me).patch(update_me))
}

/// `POST /auth/signup` body, with seed 004's rules.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signup {
    /// At least 3 characters, not all white space (kept trimmed).
    #[schema(min_length = 3, max_length = 200, pattern = r"\S")]
    name: String,
    email: Email,
    #[schema(min_length = 6, max_length = 256, format = Password)]
    password: String,
    /// Digits with an optional leading plus, the first digit not zero, 10 to 16 characters.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, min_length = 10, pattern = r"^\+?[1-9][0-9]{1,14}$")]
    phone_number: Option<String>,
}

/// `POST /auth/signin` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signin {
    email: String,
    #[schema(format = Password)]
    password: String,
}

/// `PATCH /api/users/me` body: the fields to change.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileChange {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, min_length = 3, max_length = 200, pattern = r"\S")]
    name: Option<String>,
    /// As at sign-up; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(min_length = 10, pattern = r"^\+?[1-9][0-9]{1,14}$")]
    phone_number: Option<Option<String>>,
}

/// A field that may be left out (`None`), sent as `null` (`Some(None)`) or given.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `{success, data, message}`, as seed 004 answers.
#[derive(Serialize, ToSchema)]
pub struct Answer<T: ToSchema> {
    /// Always `true` (errors answer `success: false`).
    success: bool,
    data: T,
    message: &'static str,
}

pub(crate) fn answer<T: ToSchema>(data: T, message: &'static str) -> Answer<T> {
    Answer {
        success: true,
        data,
        message,
    }
}

/// A new account.
#[derive(Serialize, ToSchema)]
pub struct SignedUp {
    id: Uuid,
    email: String,
}

/// A signed-in user and their token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedInUser {
    user_id: Uuid,
    email: String,
    /// A JWT (HS256) with `userId`, `email` and `role`, good for one hour: send it as
    /// `Authorization: Bearer …` (or let the `token` cookie carry it).
    token: String,
}

/// A user as they read themselves.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    id: Uuid,
    name: String,
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    phone_number: Option<String>,
    /// The role of the token this was read with.
    #[schema(schema_with = roles)]
    role: &'static str,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: DateTime<Utc>,
}

fn roles() -> utoipa::openapi::schema::Schema {
    openapi::text_enum(Role::ALL.map(Role::name))
}

/// A user as stored.
pub(crate) struct User {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub password_hash: String,
    pub phone_number: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(User {
            id: row.get("id")?,
            name: row.get("name")?,
            email: row.get("email")?,
            password_hash: row.get("password_hash")?,
            phone_number: row.get("phone_number")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }

    fn profile(&self) -> UserProfile {
        UserProfile {
            user_id: self.id,
            name: self.name.clone(),
            email: self.email.clone(),
            phone_number: self.phone_number.clone(),
        }
    }
}

const COLUMNS: &str = "id, name, email, password_hash, phone_number, created_at, updated_at";

pub(crate) async fn find(users: &Users, id: Uuid) -> Result<Option<User>, DbError> {
    let row =
        kassa_platform::db::sql_assembled(format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&users.db)
            .await?;
    row.as_ref().map(User::from_row).transpose()
}

async fn find_by_email(users: &Users, email: &str) -> Result<Option<User>, DbError> {
    let row =
        kassa_platform::db::sql_assembled(format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(&users.db)
            .await?;
    row.as_ref().map(User::from_row).transpose()
}

/// The account a token names; a token whose account is gone is no longer valid.
pub(crate) async fn signed_in(users: &Users, claims: &Claims) -> Result<User, ApiError> {
    if let Some(key) = &claims.key {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_a_person",
            format!("The API key `{key}` is no person's account: sign in as the person."),
        ));
    }
    find(users, claims.user_id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The account this token was issued for no longer exists.",
        )
    })
}

fn name(param: &str, mut value: String) -> Result<String, ApiError> {
    if value.chars().count() < 3 {
        return Err(ApiError::invalid(
            param,
            "field_too_short",
            format!("`{param}` must be at least 3 characters."),
        ));
    }
    validate::text(param, &mut value, 200)?;
    Ok(value)
}

/// Seed 004's phone rule: `^\+?[1-9]\d{1,14}$`, at least 10 characters.
fn phone(param: &str, value: String) -> Result<String, ApiError> {
    let digits = value.strip_prefix('+').unwrap_or(&value);
    let ok = value.len() >= 10
        && (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(value)
    } else {
        Err(ApiError::invalid(
            param,
            "invalid_phone_number",
            format!(
                "`{param}` must be 10 to 16 characters: digits, the first not zero, with an \
                 optional leading plus (+4915112345678)."
            ),
        ))
    }
}

fn duplicate_email(e: DbError) -> ApiError {
    match &e {
        DbError::Constraint(name)
            if name.contains("users_email") || name.contains("users.email") =>
        {
            email_taken()
        }
        _ => e.into(),
    }
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "Email is already in use.").with_param("email")
}

/// Sign up: a new account, and `user.created`.
#[utoipa::path(post, path = "/auth/signup", tag = "users", request_body(content = inline(Signup), content_type = "application/json"),
    responses(
        (status = 201, body = inline(Answer<SignedUp>), description = "The account exists; sign in to get a token."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "Another account has this email address (`email_taken`)."),
        InvalidBody,
    ))]
pub async fn signup(
    State(users): State<Users>,
    ids: RequestIds,
    ApiJson(body): ApiJson<Signup>,
) -> ApiResult<Response> {
    let name = name("name", body.name)?;
    let phone_number = body
        .phone_number
        .map(|p| phone("phone_number", p))
        .transpose()?;
    let secret = body.password;
    if secret.chars().count() < 6 || secret.chars().count() > PASSWORD_MAX {
        return Err(ApiError::invalid(
            "password",
            "invalid_password",
            format!("`password` must be 6 to {PASSWORD_MAX} characters."),
        ));
    }
    let email = body.email.to_string();
    // Refused before the hashing work when it can be; the constraint decides a race.
    if find_by_email(&users, &email).await?.is_some() {
        return Err(email_taken());
    }
    let password_hash = users
        .hashing(move || password::hash(&secret))
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::internal()
        })?;
    let now = Utc::now();
    let user = User {
        id: Uuid::now_v7(),
        name,
        email,
        password_hash,
        phone_number,
        created_at: now,
        updated_at: now,
    };
    let event = Envelope::new(
        NAME,
        user.id,
        &UserCreated(user.profile()),
        &ids.event_context(),
    );
    let mut tx = users.db.begin().await?;
    sql(
        "INSERT INTO users (id, name, email, password_hash, phone_number, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(user.id)
    .bind(user.name.as_str())
    .bind(user.email.as_str())
    .bind(user.password_hash.as_str())
    .bind(user.phone_number.clone())
    .bind(now)
    .bind(now)
    .execute(&mut tx)
    .await
    .map_err(duplicate_email)?;
    outbox::add(&mut tx, &event).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "user signed up");
    let data = SignedUp {
        id: user.id,
        email: user.email,
    };
    Ok((
        StatusCode::CREATED,
        Json(answer(data, "User created successfully")),
    )
        .into_response())
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "Invalid credentials.",
    )
}

/// Sign in: a token, also set as the `token` cookie.
#[utoipa::path(post, path = "/auth/signin", tag = "users", request_body(content = inline(Signin), content_type = "application/json"),
    responses(
        (status = 200, body = inline(Answer<SignedInUser>), description = "Signed in. The token \
            is also set as the `token` cookie (HttpOnly, Secure, SameSite=Lax, one hour); a change \
            sent with that cookie from another site's page is refused (`cross_site_request`).",
            headers(("Set-Cookie" = String, description = "`token=<the token>; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax`"))),
        (status = 401, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No account has this address, or the password is not its password: one answer for both (`invalid_credentials`)."),
        InvalidBody,
    ))]
pub async fn signin(
    State(users): State<Users>,
    ApiJson(body): ApiJson<Signin>,
) -> ApiResult<Response> {
    let email = body.email.trim().to_ascii_lowercase();
    let secret = body.password;
    let user = find_by_email(&users, &email).await?;
    let Some(user) = user else {
        users
            .hashing(move || password::verify_nothing(&secret))
            .await?;
        return Err(invalid_credentials());
    };
    let hash = user.password_hash.clone();
    if !users
        .hashing(move || password::verify(&secret, &hash))
        .await?
    {
        return Err(invalid_credentials());
    }
    // The role an operator granted (`kassa users grant-admin`), kept with the account.
    let role = crate::principals::kept_role(&users.db, user.id)
        .await?
        .unwrap_or(Role::Customer);
    let claims = Claims::new(user.id, &user.email, role, Utc::now(), TOKEN_LIFETIME);
    let token = auth::issue(&users.secret, &claims);
    let cookie = format!(
        "token={token}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        TOKEN_LIFETIME.num_seconds()
    );
    let data = SignedInUser {
        user_id: user.id,
        email: user.email,
        token,
    };
    let mut response = Json(answer(data, "Signed in successfully")).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal())?,
    );
    Ok(response)
}

fn profile_of(user: User, role: Role) -> Profile {
    Profile {
        id: user.id,
        name: user.name,
        email: user.email,
        phone_number: user.phone_number,
        role: role.name(),
        created_at: user.created_at,
        updated_at: user.updated_at,
    }
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/users/me", tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = Profile, description = "The user the token names."),
        SignedIn, InvalidParams,
    ))]
pub async fn read_me(State(users): State<Users>, caller: Caller) -> ApiResult<Json<Profile>> {
    let claims = caller.known()?;
    let user = signed_in(&users, claims).await?;
    Ok(Json(profile_of(user, claims.role)))
}

/// Change the signed-in user's name or phone number; publishes `user.updated`.
#[utoipa::path(patch, path = "/api/users/me", tag = "users", request_body = ProfileChange,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = Profile, description = "The user as changed."),
        SignedIn, InvalidBody,
    ))]
pub async fn update_me(
    State(users): State<Users>,
    caller: Caller,
    ids: RequestIds,
    ApiJson(body): ApiJson<ProfileChange>,
) -> ApiResult<Json<Profile>> {
    let claims = caller.known()?;
    let name = body.name.map(|n| name("name", n)).transpose()?;
    let phone_number = body
        .phone_number
        .map(|p| p.map(|p| phone("phoneNumber", p)).transpose())
        .transpose()?;
    if name.is_none() && phone_number.is_none() {
        let user = signed_in(&users, claims).await?;
        return Ok(Json(profile_of(user, claims.role)));
    }
    // Read and changed under the row's lock, so that two changes at once both take effect.
    let mut tx = users.db.begin().await?;
    let row = kassa_platform::db::sql_assembled(format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1{}",
        users.db.for_update()
    ))
    .bind(claims.user_id)
    .fetch_optional(&mut tx)
    .await?;
    let Some(mut user) = row.as_ref().map(User::from_row).transpose()? else {
        return Err(signed_in(&users, claims)
            .await
            .err()
            .unwrap_or_else(ApiError::internal));
    };
    if let Some(name) = name {
        user.name = name;
    }
    if let Some(phone_number) = phone_number {
        user.phone_number = phone_number;
    }
    user.updated_at = Utc::now();
    let event = Envelope::new(
        NAME,
        user.id,
        &UserUpdated(user.profile()),
        &ids.event_context(),
    );
    sql("UPDATE users SET name = $1, phone_number = $2, updated_at = $3 WHERE id = $4")
        .bind(user.name.as_str())
        .bind(user.phone_number.clone())
        .bind(user.updated_at)
        .bind(user.id)
        .execute(&mut tx)
        .await?;
    outbox::add(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(Json(profile_of(user, claims.role)))
}
