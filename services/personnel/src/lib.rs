//! The personnel service of seed 000 (its PersonalService): a gym's staff, with
//! `personal.created|updated|deleted` events as the seed names them. Served under
//! `/api/personnel` and, as the seed's clients call it, `/Personal`.

use kassa_platform::{
    resource::{Field, Resource, ResourceSpec},
    validate::{Email, Phone, Text},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

kassa_platform::records_service! {
    name: "personnel", port: 5104, resource: Personnel,
    mounts: [kassa "/api/personnel", seed "/Personal"],
    // Staff records are the staff's (and admins') alone.
    access: {
        read: kassa_platform::access::Policy::STAFF,
        write: kassa_platform::access::Policy::STAFF,
        seed_group: "seed000",
    },
    migrations: [1 "0001_personnel"],
}

/// A member of staff (the seed's "personal"), as clients send and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Personal)]
pub struct Personal {
    pub name: Text<200>,
    pub email: Email,
    pub phone_number: Phone,
    pub department: Text<100>,
    pub position: Text<100>,
    /// The member this person also is, if any.
    #[serde(default)]
    pub member_id: Option<Uuid>,
}

pub struct Personnel;

const SPEC: ResourceSpec = ResourceSpec {
    kind: "personal",
    title: "Personal",
    table: "personnel",
    fields: &[
        Field::text("name", "name"),
        Field::text("email", "email").filtered(),
        Field::text("phoneNumber", "phone_number"),
        Field::text("department", "department").filtered(),
        Field::text("position", "position").filtered(),
        Field::uuid("memberId", "member_id").filtered(),
    ],
    unique: &[],
    not_found: "personal_not_found",
    conflicts: "",
    undeletable: "",
};

impl Resource for Personnel {
    type Fields = Personal;
    const SPEC: &'static ResourceSpec = &SPEC;
}
