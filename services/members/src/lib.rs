//! The members service of seed 000: a gym's members, with `member.created|updated|deleted`
//! events. Served under `/api/members` and, as the seed's clients call it, `/Member`.
//!
//! A member's `classId` is not set through this API: it follows the member's enrolment, which
//! the classes service decides and announces.

use kassa_platform::{
    resource::{Field, Resource, ResourceSpec, Unique},
    validate::{Email, Phone, Text},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

kassa_platform::records_service! {
    name: "members", port: 5062, resource: Members,
    mounts: [kassa "/api/members", seed "/Member"],
    access: { read: DESK, write: DESK, seed_group: "seed000" },
    migrations: [1 "0001_members"],
    consumes: &enrolment::TOPICS, extend: follow_enrolments,
}

pub mod enrolment;

/// Members' names, addresses and phone numbers are the front desk's and the staff's alone.
const DESK: kassa_platform::access::Policy =
    kassa_platform::access::Policy::STAFF.and(&[kassa_platform::auth::Role::Desk]);

/// Members follow their enrolment from the classes service's events.
fn follow_enrolments(
    infra: &kassa_platform::service::Infra,
    parts: kassa_platform::service::ServiceParts,
    records: kassa_platform::resource::Records<Members>,
) -> Result<kassa_platform::service::ServiceParts, kassa_platform::service::BuildError> {
    let handler = enrolment::Enrolments { records };
    Ok(parts.with_handler(kassa_platform::consumer::Inboxed::new(
        NAME,
        infra.db()?,
        handler,
    )))
}

/// A member, as clients send and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    pub name: Text<200>,
    /// Unique among members, in any letter case.
    pub email: Email,
    pub phone_number: Phone,
    /// The class the member is enrolled in (`POST /api/classes/{id}/enrollments`); kept by the
    /// service.
    #[serde(default)]
    #[schema(read_only)]
    pub class_id: Option<Uuid>,
}

pub struct Members;

const SPEC: ResourceSpec = ResourceSpec {
    kind: "member",
    title: "Member",
    table: "members",
    fields: &[
        Field::text("name", "name"),
        Field::text("email", "email").filtered(),
        Field::text("phoneNumber", "phone_number"),
        Field::uuid("classId", "class_id").filtered().kept(),
    ],
    unique: &[Unique {
        constraint: "members_email",
        field: "email",
        code: "email_taken",
        detail: "Another member has this email address.",
    }],
    not_found: "member_not_found",
    conflicts: "",
    undeletable: "",
};

impl Resource for Members {
    type Fields = Member;
    const SPEC: &'static ResourceSpec = &SPEC;
}
