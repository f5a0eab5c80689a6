//! The personnel service of seed 000 (its PersonalService): a gym's staff, with
//! `personal.created|updated|deleted` events as the seed names them. Served under
//! `/api/personnel` and, as the seed's clients call it, `/Personal`.

use kassa_platform::{
    http::ApiError,
    resource::{Field, Resource, ResourceSpec},
    validate,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

kassa_platform::records_service! {
    name: "personnel", port: 5104, resource: Personnel,
    mounts: [kassa "/api/personnel", seed "/Personal"],
    migrations: [1 "0001_personnel"],
}

/// A member of staff (the seed's "personal"), as clients send and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Personal)]
pub struct Personal {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "Grace Hopper"
    )]
    pub name: String,
    /// Stored in lower case.
    #[schema(format = Email, max_length = 254, example = "grace@example.com")]
    pub email: String,
    /// E.164.
    #[schema(pattern = r"^\+[1-9][0-9]{6,14}$", example = "+12025550123")]
    pub phone_number: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S", example = "Fitness")]
    pub department: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"\S",
        example = "Instructor"
    )]
    pub position: String,
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
};

impl Resource for Personnel {
    type Fields = Personal;
    const SPEC: &'static ResourceSpec = &SPEC;

    fn validate(person: &mut Personal) -> Result<(), ApiError> {
        validate::text("name", &mut person.name, 200)?;
        validate::email("email", &mut person.email)?;
        validate::phone("phoneNumber", &person.phone_number)?;
        validate::text("department", &mut person.department, 100)?;
        validate::text("position", &mut person.position, 100)
    }
}
