//! Who besides customers may call kassa: people's roles (granted by an operator's command, kept
//! in the database and checked on each request) and API keys for machines and staff (made,
//! listed and revoked by commands, stored as hashes). Other services ask about both through
//! the internal routes here ([`kassa_platform::principals`]).

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use chrono::Utc;
use kassa_platform::{
    access::{Policy, Rule},
    auth::Role,
    db::{Db, DbError, sql},
    http::{ApiError, ApiResult, openapi, openapi::Problem, parse_uuid},
    principals::{self, KeptRole, KeyRecord},
    service::{BuildError, Task, TaskArg, TaskInput},
};
use uuid::Uuid;

use crate::Users;

/// Only kassa's own services ask who a key or a person is.
pub const RULES: &[Rule] = &[
    Rule::get(principals::KEY_PATH, Policy::SERVICE),
    Rule::get(principals::ROLE_PATH, Policy::SERVICE),
];

pub fn routes() -> Router<Users> {
    Router::new()
        .route(principals::KEY_PATH, get(key))
        .route(principals::ROLE_PATH, get(role))
}

fn role_of(text: &str) -> Result<Role, DbError> {
    text.parse().map_err(|e: String| DbError::column("role", e))
}

/// A live API key, for a service checking it.
#[utoipa::path(get, path = "/internal/keys/{id}", tag = "users",
    params(("id" = inline(openapi::Id), Path, description = "The key's id: the 32 hex digits after `kassa_`, as a UUID.")),
    responses(
        (status = 200, body = inline(KeyRecord), description = "The key: its name, role and the SHA-256 of its secret."),
        (status = 400, body = Problem, content_type = kassa_platform::http::openapi::PROBLEM_JSON, description = "The id is not a UUID (`invalid_id`)."),
        (status = 404, body = Problem, content_type = kassa_platform::http::openapi::PROBLEM_JSON, description = "No live key has this id (`key_not_found`)."),
    ))]
pub async fn key(State(users): State<Users>, Path(id): Path<String>) -> ApiResult<Json<KeyRecord>> {
    let id = parse_uuid("id", &id)?;
    let row = sql("SELECT name, role, secret_hash FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_optional(&users.db)
        .await?;
    let row =
        row.ok_or_else(|| ApiError::not_found("key_not_found", "No live key has this id."))?;
    Ok(Json(KeyRecord {
        name: row.get("name")?,
        role: role_of(&row.get::<String>("role")?)?,
        hash: row.get("secret_hash")?,
    }))
}

/// The role a person holds now, for a service checking a token that claims more than a
/// customer's.
#[utoipa::path(get, path = "/internal/users/{id}/role", tag = "users",
    params(("id" = inline(openapi::Id), Path, description = "The user's id.")),
    responses(
        (status = 200, body = inline(KeptRole), description = "Their role."),
        (status = 400, body = Problem, content_type = kassa_platform::http::openapi::PROBLEM_JSON, description = "The id is not a UUID (`invalid_id`)."),
        (status = 404, body = Problem, content_type = kassa_platform::http::openapi::PROBLEM_JSON, description = "No user has this id (`user_not_found`)."),
    ))]
pub async fn role(State(users): State<Users>, Path(id): Path<String>) -> ApiResult<Json<KeptRole>> {
    let id = parse_uuid("id", &id)?;
    let role = kept_role(&users.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user_not_found", "No user has this id."))?;
    Ok(Json(KeptRole { role }))
}

/// The role kept for user `id`.
pub(crate) async fn kept_role(db: &Db, id: Uuid) -> Result<Option<Role>, DbError> {
    let row = sql("SELECT role FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.map(|r| role_of(&r.get::<String>("role")?)).transpose()
}

const EMAIL: TaskArg = TaskArg {
    name: "email",
    help: "The account's email address",
    positional: true,
};

/// `kassa users grant-admin EMAIL`.
pub const GRANT_ADMIN: Task = Task {
    command: ["users", "grant-admin"],
    help: "Make the account with this address an admin (it takes effect within a second)",
    args: &[EMAIL],
    run: |input| Box::pin(async move { set_role(input, Role::Admin).await }),
};

/// `kassa users set-role EMAIL --role staff`.
pub const SET_ROLE: Task = Task {
    command: ["users", "set-role"],
    help: "Give the account with this address a role: customer, staff or admin",
    args: &[
        EMAIL,
        TaskArg {
            name: "role",
            help: "customer, staff or admin",
            positional: false,
        },
    ],
    run: |input| {
        Box::pin(async move {
            let role: Role = input.arg("role").parse().map_err(BuildError::Start)?;
            if !matches!(role, Role::Customer | Role::Staff | Role::Admin) {
                return Err(BuildError::Start(format!(
                    "a person is a customer, staff or an admin; `{}` is a role for a key \
                     (`kassa keys create --role {0}`)",
                    role.name()
                )));
            }
            set_role(input, role).await
        })
    },
};

async fn set_role(input: TaskInput, role: Role) -> Result<String, BuildError> {
    let email = input.arg("email").trim().to_ascii_lowercase();
    let changed = sql("UPDATE users SET role = $1, updated_at = $2 WHERE email = $3")
        .bind(role.name())
        .bind(Utc::now())
        .bind(email.as_str())
        .execute(&input.db)
        .await?;
    if changed == 0 {
        return Err(BuildError::Start(format!(
            "no account has the address {email}: it signs up first"
        )));
    }
    Ok(format!("users: {email} is now {}", role.name()))
}

/// `kassa keys create --role kiosk --name lobby`.
pub const CREATE_KEY: Task = Task {
    command: ["keys", "create"],
    help: "Make an API key with a role and a name; its text is shown once",
    args: &[
        TaskArg {
            name: "role",
            help: "staff, kiosk, device, desk, monitor, service or admin",
            positional: false,
        },
        TaskArg {
            name: "name",
            help: "What it is for, unique (lobby, dispenser-1, front-desk)",
            positional: false,
        },
    ],
    run: |input| Box::pin(async move { create_key(input).await }),
};

async fn create_key(input: TaskInput) -> Result<String, BuildError> {
    let role: Role = input.arg("role").parse().map_err(BuildError::Start)?;
    make_key(&input.db, role, input.arg("name")).await
}

/// Makes an API key named `name` with `role` in `db`: its text, which is kept nowhere.
pub async fn make_key(db: &Db, role: Role, name: &str) -> Result<String, BuildError> {
    if role == Role::Customer {
        return Err(BuildError::Start(
            "a customer is a person with an account, not a key".into(),
        ));
    }
    let name = name.trim().to_owned();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(BuildError::Start(
            "a key's name is 1 to 64 letters, digits, `-`, `_` or `.`".into(),
        ));
    }
    let (text, id, hash) = principals::new_key();
    sql(
        "INSERT INTO api_keys (id, name, role, secret_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(name.as_str())
    .bind(role.name())
    .bind(hash.as_str())
    .bind(Utc::now())
    .execute(db)
    .await
    .map_err(|e| match e {
        DbError::Constraint(c) if c.contains("api_keys_name") || c.contains("api_keys.name") => {
            BuildError::Start(format!(
                "a key named {name} exists: revoke it first, or choose another name"
            ))
        }
        e => e.into(),
    })?;
    // The only line that holds the key: it is not kept anywhere.
    Ok(text)
}

/// `kassa keys list`.
pub const LIST_KEYS: Task = Task {
    command: ["keys", "list"],
    help: "The live API keys: name, role, and when each was made (never their secrets)",
    args: &[],
    run: |input| {
        Box::pin(async move {
            let rows = sql("SELECT name, role, created_at FROM api_keys ORDER BY name")
                .fetch_all(&input.db)
                .await?;
            let mut out = format!("{:<32} {:<8} created", "name", "role");
            for row in rows {
                let created: chrono::DateTime<Utc> = row.get("created_at")?;
                out.push_str(&format!(
                    "\n{:<32} {:<8} {}",
                    row.get::<String>("name")?,
                    row.get::<String>("role")?,
                    created.format("%Y-%m-%d %H:%M UTC")
                ));
            }
            Ok(out)
        })
    },
};

/// `kassa keys revoke NAME`.
pub const REVOKE_KEY: Task = Task {
    command: ["keys", "revoke"],
    help: "Revoke the API key with this name: refused everywhere within a second",
    args: &[TaskArg {
        name: "name",
        help: "The key's name",
        positional: true,
    }],
    run: |input| {
        Box::pin(async move {
            let name = input.arg("name").trim().to_owned();
            let gone = sql("DELETE FROM api_keys WHERE name = $1")
                .bind(name.as_str())
                .execute(&input.db)
                .await?;
            if gone == 0 {
                return Err(BuildError::Start(format!("no key is named {name}")));
            }
            Ok(format!(
                "keys: {name} revoked; refused everywhere within {} s",
                principals::REVOCATION_DELAY.as_secs()
            ))
        })
    },
};

pub const TASKS: &[Task] = &[GRANT_ADMIN, SET_ROLE, CREATE_KEY, LIST_KEYS, REVOKE_KEY];
