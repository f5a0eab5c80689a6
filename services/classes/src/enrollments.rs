//! Enrolling members in classes. An enrolment locks its class for its transaction, so requests
//! that arrive together are decided one after the other: exactly `capacity` of them get in,
//! the rest get 409. A member is in one class at a time (a unique member column decides a race
//! between two classes), and only members this service knows from `member.*` events can enrol.

use std::borrow::Cow;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get},
};
use chrono::{DateTime, Utc};
use kassa_contracts::{
    Envelope,
    events::{EnrollmentCreated, EnrollmentDeleted, Event},
};
use kassa_platform::{
    access::{Policy, Rule},
    db::{Db, DbError, DbResult, Row, Tx, sql, sql_assembled},
    http::{
        ApiError, ApiJson, ApiResult, Page, Pagination, PathId, RequestIds,
        openapi::{self, InvalidBody, InvalidParams, ProblemResponses},
        parse_uuid,
    },
    known,
    listing::{Filters, Listing},
    outbox,
};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::{NAME, known::MEMBER};

/// What enrols a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Enrol {
    /// A member the gym knows.
    #[schema(value_type = openapi::Id)]
    pub member_id: String,
}

/// A member's place in a class.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub class_id: Uuid,
    pub member_id: Uuid,
    #[serde(serialize_with = "kassa_contracts::json::timestamp")]
    pub enrolled_at: DateTime<Utc>,
}

fn enrollment_from(row: &Row) -> DbResult<Enrollment> {
    Ok(Enrollment {
        class_id: row.get("class_id")?,
        member_id: row.get("member_id")?,
        enrolled_at: row.get("enrolled_at")?,
    })
}

/// How many members are enrolled in `class_id`, read in `tx`.
pub async fn count(tx: &mut Tx, class_id: Uuid) -> DbResult<i64> {
    sql("SELECT COUNT(*) AS n FROM enrollments WHERE class_id = $1")
        .bind(class_id)
        .fetch_one(tx)
        .await?
        .get("n")
}

/// Removes every enrolment of `member_id` in `tx`, returning the classes they were in.
pub async fn remove_member(tx: &mut Tx, member_id: Uuid) -> DbResult<Vec<Uuid>> {
    let rows = sql("SELECT class_id FROM enrollments WHERE member_id = $1")
        .bind(member_id)
        .fetch_all(&mut *tx)
        .await?;
    let classes = rows
        .iter()
        .map(|r| r.get("class_id"))
        .collect::<DbResult<Vec<Uuid>>>()?;
    sql("DELETE FROM enrollments WHERE member_id = $1")
        .bind(member_id)
        .execute(tx)
        .await?;
    Ok(classes)
}

/// Writes the class's `event` to the outbox and commits `tx`.
async fn commit_announcing<E: Event>(
    mut tx: Tx,
    class_id: Uuid,
    event: &E,
    ids: &RequestIds,
) -> ApiResult<()> {
    let envelope = Envelope::new(NAME, class_id, event, &ids.event_context());
    outbox::add(&mut tx, &envelope).await?;
    tx.commit().await?;
    Ok(())
}

fn class_not_found() -> ApiError {
    ApiError::not_found("class_not_found", "No class has this id.")
}

/// Locks the class `id` for the rest of `tx` and reads its capacity.
async fn lock_class(db: &Db, tx: &mut Tx, id: Uuid) -> ApiResult<i64> {
    let row = sql_assembled(format!(
        "SELECT capacity FROM classes WHERE id = $1{}",
        db.for_update()
    ))
    .bind(id)
    .fetch_optional(tx)
    .await?
    .ok_or_else(class_not_found)?;
    Ok(row.get("capacity")?)
}

fn in_another_class() -> ApiError {
    ApiError::conflict(
        "member_in_another_class",
        "The member is enrolled in another class; leave it first.",
    )
    .with_param("memberId")
}

/// Enrol a member in a class.
#[utoipa::path(post, path = "/api/classes/{id}/enrollments", tag = "Class", request_body = Enrol,
    params(("id" = inline(openapi::Id), Path, description = "The class's id.")),
    responses(
        (status = 201, body = Enrollment, description = "Enrolled; `enrollment.created` is published."),
        (status = 200, body = Enrollment, description = "Already enrolled in this class: nothing changed."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No class has this id (`class_not_found`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The class is full (`class_full`), the member is in another class (`member_in_another_class`), or no member with this id is known here (yet), or it was deleted (`unknown_member`)."),
        InvalidBody,
    ))]
pub async fn enrol(
    State(db): State<Db>,
    ids: RequestIds,
    PathId(class_id): PathId,
    ApiJson(body): ApiJson<Enrol>,
) -> ApiResult<(StatusCode, Json<Enrollment>)> {
    let member_id = parse_uuid("memberId", &body.member_id)?;
    let mut tx = db.begin().await?;
    let capacity = lock_class(&db, &mut tx, class_id).await?;
    if !known::exists(&mut tx, MEMBER, member_id).await? {
        return Err(ApiError::conflict(
            "unknown_member",
            "No member with this id is known here (yet), or it was deleted.",
        )
        .with_param("memberId"));
    }
    let current =
        sql("SELECT class_id, member_id, enrolled_at FROM enrollments WHERE member_id = $1")
            .bind(member_id)
            .fetch_optional(&mut tx)
            .await?;
    if let Some(row) = current {
        let enrollment = enrollment_from(&row)?;
        tx.rollback().await?;
        return if enrollment.class_id == class_id {
            Ok((StatusCode::OK, Json(enrollment)))
        } else {
            Err(in_another_class())
        };
    }
    let enrolled = count(&mut tx, class_id).await?;
    if enrolled >= capacity {
        return Err(ApiError::conflict(
            "class_full",
            format!("The class holds {capacity} members and is full."),
        ));
    }
    let enrollment = Enrollment {
        class_id,
        member_id,
        enrolled_at: kassa_contracts::now(),
    };
    sql("INSERT INTO enrollments (class_id, member_id, enrolled_at) VALUES ($1, $2, $3)")
        .bind(class_id)
        .bind(member_id)
        .bind(enrollment.enrolled_at)
        .execute(&mut tx)
        .await
        .map_err(|e| match e {
            // Enrolled in another class by a request that committed first.
            DbError::Constraint(_) => in_another_class(),
            other => other.into(),
        })?;
    let event = EnrollmentCreated {
        class_id,
        member_id,
    };
    commit_announcing(tx, class_id, &event, &ids).await?;
    Ok((StatusCode::CREATED, Json(enrollment)))
}

/// Take a member out of a class.
#[utoipa::path(delete, path = "/api/classes/{id}/enrollments/{memberId}", tag = "Class",
    params(
        ("id" = inline(openapi::Id), Path, description = "The class's id."),
        ("memberId" = inline(openapi::Id), Path, description = "The member's id."),
    ),
    responses(
        (status = 204, description = "No longer enrolled; `enrollment.deleted` is published."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No class has this id (`class_not_found`), or the member is not enrolled in it (`enrollment_not_found`)."),
        InvalidParams,
    ))]
pub async fn leave(
    State(db): State<Db>,
    ids: RequestIds,
    Path((class_id, member_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let class_id = parse_uuid("id", &class_id)?;
    let member_id = parse_uuid("memberId", &member_id)?;
    let mut tx = db.begin().await?;
    lock_class(&db, &mut tx, class_id).await?;
    let removed = sql("DELETE FROM enrollments WHERE class_id = $1 AND member_id = $2")
        .bind(class_id)
        .bind(member_id)
        .execute(&mut tx)
        .await?;
    if removed == 0 {
        return Err(ApiError::not_found(
            "enrollment_not_found",
            "The member is not enrolled in this class.",
        ));
    }
    let event = EnrollmentDeleted {
        class_id,
        member_id,
    };
    commit_announcing(tx, class_id, &event, &ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who is enrolled in a class, most recent first.
#[utoipa::path(get, path = "/api/classes/{id}/enrollments", tag = "Class",
    params(("id" = inline(openapi::Id), Path, description = "The class's id."), Pagination),
    responses(
        (status = 200, body = Page<Enrollment>, description = "One page of the class's enrolments."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No class has this id (`class_not_found`)."),
        InvalidParams,
    ))]
pub async fn list(
    State(db): State<Db>,
    PathId(class_id): PathId,
    pagination: Pagination,
) -> ApiResult<Json<Page<Enrollment>>> {
    let exists = sql("SELECT 1 AS one FROM classes WHERE id = $1")
        .bind(class_id)
        .fetch_optional(&db)
        .await?;
    if exists.is_none() {
        return Err(class_not_found());
    }
    const LISTING: Listing = Listing {
        table: "enrollments",
        columns: Cow::Borrowed("class_id, member_id, enrolled_at"),
        order_by: "enrolled_at DESC, member_id DESC",
    };
    let filters = Filters::new().equal("class_id", Some(class_id));
    Ok(Json(
        LISTING
            .page(&db, pagination, &filters, enrollment_from)
            .await?,
    ))
}

/// Who is enrolled is the front desk's and the staff's to see and change.
pub const RULES: &[Rule] = &[
    Rule::get("/api/classes/{id}/enrollments", DESK),
    Rule::post("/api/classes/{id}/enrollments", DESK),
    Rule::delete("/api/classes/{id}/enrollments/{memberId}", DESK),
];

const DESK: Policy = Policy::STAFF.and(&[kassa_platform::auth::Role::Desk]);

pub fn router(db: Db) -> Router {
    Router::new()
        .route("/api/classes/{id}/enrollments", get(list).post(enrol))
        .route("/api/classes/{id}/enrollments/{memberId}", delete(leave))
        .with_state(db)
}

#[derive(OpenApi)]
#[openapi(
    paths(enrol, leave, list),
    components(schemas(Enrol, Enrollment)),
    modifiers(&ProblemResponses)
)]
struct EnrollmentsApi;

pub fn document() -> utoipa::openapi::OpenApi {
    EnrollmentsApi::openapi()
}
