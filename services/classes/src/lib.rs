//! The classes service of seed 000: a gym's classes (`class.created|updated|deleted`), who is
//! enrolled in each (`enrollment.created|deleted`), and its own copy of which members and staff
//! exist, kept from their events. Served under `/api/classes` and, as the seed's clients call
//! it, `/Class/member`.
//!
//! - `enrollments.rs`: enrolling and leaving, never beyond a class's capacity
//! - `known.rs`: what member and staff events change here

pub mod enrollments;
pub mod known;

use kassa_platform::{
    access::Policy,
    auth::Role,
    db::{Tx, sql},
    http::ApiError,
    resource::{Field, Resource, ResourceSpec, Stored},
    service::{BuildError, Infra, ServiceParts},
    validate::{Text, Whole},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

kassa_platform::records_service! {
    name: "classes", port: 5041, resource: Classes,
    mounts: [kassa "/api/classes", seed "/Class/member"],
    access: { read: Policy::PUBLIC, write: Policy::STAFF.and(&[Role::Desk]), seed_group: "seed000" },
    more_access: [enrollments::RULES],
    migrations: [1 "0001_classes"],
    document: document,
    consumes: &known::TOPICS, extend: extend,
}

/// The routes of classes and of their enrolments.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = kassa_platform::resource::document::<Classes>(MOUNTS);
    doc.merge(enrollments::document());
    doc
}

/// A class, as clients send and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Class)]
pub struct Class {
    pub name: Text<200>,
    pub description: Text<2000>,
    /// How many members it holds at most, 1 to 1000; never below those enrolled.
    pub capacity: Whole<1, 1000>,
    /// The member of staff who teaches it (personnel); cleared when they are deleted.
    #[serde(default)]
    pub instructor_id: Option<Uuid>,
}

pub struct Classes;

const SPEC: ResourceSpec = ResourceSpec {
    kind: "class",
    title: "Class",
    table: "classes",
    fields: &[
        Field::text("name", "name"),
        Field::text("description", "description"),
        Field::integer("capacity", "capacity"),
        Field::uuid("instructorId", "instructor_id").filtered(),
    ],
    unique: &[],
    not_found: "class_not_found",
    conflicts: "`capacity_below_enrolled`: more members are enrolled than the capacity asked for; `unknown_instructor`: `instructorId` names no member of staff known here (yet).",
    undeletable: "",
};

#[async_trait::async_trait]
impl Resource for Classes {
    type Fields = Class;
    const SPEC: &'static ResourceSpec = &SPEC;

    async fn in_write(
        tx: &mut Tx,
        current: Option<&Stored<Class>>,
        class: Option<&Class>,
    ) -> Result<(), ApiError> {
        match (current.map(|c| c.id), class) {
            // A new or changed class: a known instructor, room for who is enrolled.
            (id, Some(class)) => {
                if let Some(instructor) = class.instructor_id
                    && !kassa_platform::known::exists(tx, known::STAFF, instructor).await?
                {
                    // A conflict with what this service knows now: retry once the
                    // `personal.created` event has arrived.
                    return Err(ApiError::conflict(
                        "unknown_instructor",
                        "`instructorId` names no member of staff this service knows (yet).",
                    )
                    .with_param("instructorId"));
                }
                if let Some(id) = id {
                    let enrolled = enrollments::count(tx, id).await?;
                    if class.capacity.get() < enrolled {
                        return Err(ApiError::conflict(
                            "capacity_below_enrolled",
                            format!(
                                "{enrolled} members are enrolled; the capacity cannot go below that."
                            ),
                        )
                        .with_param("capacity"));
                    }
                }
                Ok(())
            }
            // A class deleted: its enrolments go with it (members hear `class.deleted`).
            (Some(id), None) => {
                sql("DELETE FROM enrollments WHERE class_id = $1")
                    .bind(id)
                    .execute(tx)
                    .await?;
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }
}

/// The enrolment routes beside the class routes, and the consumer that keeps the copy of
/// members and staff.
fn extend(
    infra: &Infra,
    mut parts: ServiceParts,
    records: kassa_platform::resource::Records<Classes>,
) -> Result<ServiceParts, BuildError> {
    let db = infra.db()?;
    parts.api = parts.api.merge(enrollments::router(db.clone()));
    Ok(parts.with_handler(kassa_platform::consumer::Inboxed::new(
        NAME,
        db,
        known::Known { records },
    )))
}
