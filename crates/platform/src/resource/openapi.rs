//! The OpenAPI document of a kind of record's routes: what each accepts (fields, filters, paging,
//! `If-Match`, `Idempotency-Key`) and every answer it gives, errors as problem+json, on the
//! platform's shared pieces (`http::openapi`).

use std::collections::BTreeMap;

use utoipa::{
    IntoParams, IntoResponses, Modify, PartialSchema, ToSchema,
    openapi::{
        ArrayBuilder, ComponentsBuilder, ContentBuilder, HttpMethod, KnownFormat, ObjectBuilder,
        OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required, Response,
        ResponseBuilder, Schema, SchemaFormat, Type,
        header::HeaderBuilder,
        path::{OperationBuilder, Parameter, ParameterBuilder, ParameterIn},
        request_body::{RequestBody, RequestBodyBuilder},
    },
};

use super::{FieldKind, Mount, Resource, Style};
use crate::http::{
    Pagination,
    openapi::{
        Id, IdempotencyKeyHeader, InvalidBody, InvalidParams, ProblemResponses, id_parameter,
        problem_response,
    },
};

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn time() -> Schema {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .into()
}

fn integer(min: i64, max: i64) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
        .into()
}

fn problem(status: u16, description: &str) -> RefOr<Response> {
    RefOr::T(problem_response(status, description))
}

/// `op` with each response of a standard set.
fn with(
    mut op: OperationBuilder,
    responses: BTreeMap<String, RefOr<Response>>,
) -> OperationBuilder {
    for (status, response) in responses {
        op = op.response(status, response);
    }
    op
}

fn record(name: &str, description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(name)))
                .build(),
        )
        .header(
            "ETag",
            HeaderBuilder::new()
                .schema(Some(string()))
                .description(Some("The record's version; send it back in `If-Match`."))
                .build(),
        )
        .build()
        .into()
}

fn if_match() -> Parameter {
    ParameterBuilder::new()
        .name("If-Match")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Change only if the record is still at one of these entity tags (`\"3\"`, or \
             several separated by commas), or exists at all (`*`); otherwise 412, also for a \
             value that names no entity tag.",
        ))
        .schema(Some(string()))
        .build()
}

/// The fields' schema with more properties: `(name, schema, required)`.
fn widened(
    fields: RefOr<Schema>,
    extra: Vec<(&str, RefOr<Schema>, bool)>,
    keep_required: bool,
) -> RefOr<Schema> {
    let mut schema = fields;
    if let RefOr::T(Schema::Object(object)) = &mut schema {
        if !keep_required {
            object.required.clear();
        }
        for (name, property, required) in extra {
            object.properties.insert(name.to_owned(), property);
            if required {
                object.required.push(name.to_owned());
            }
        }
    }
    schema
}

/// The fields' schema with `mark` applied to each kept field's property.
fn kept_marked(
    schema: RefOr<Schema>,
    kept: &[&str],
    mark: impl Fn(&mut utoipa::openapi::schema::Object),
) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Object(mut object)) => {
            for name in kept {
                if let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut(*name) {
                    mark(property);
                }
            }
            RefOr::T(Schema::Object(object))
        }
        other => other,
    }
}

fn described(schema: RefOr<Schema>, description: &str) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Object(mut object)) => {
            object.description = Some(description.to_owned());
            RefOr::T(Schema::Object(object))
        }
        other => other,
    }
}

fn filter(name: &str, kind: FieldKind) -> Parameter {
    let schema: Schema = match kind {
        FieldKind::Text => string().into(),
        FieldKind::Integer => ObjectBuilder::new().schema_type(Type::Integer).into(),
        FieldKind::Uuid => Id::schema().into(),
        FieldKind::Bool => ObjectBuilder::new().schema_type(Type::Boolean).into(),
        FieldKind::Timestamp => time(),
        FieldKind::Amount(places) => crate::http::openapi::amount_input(places),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(format!("Only records whose `{name}` equals this.")))
        .schema(Some(schema))
        .build()
}

fn body(schema: impl Into<RefOr<Schema>>) -> RequestBody {
    RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

/// The document of `R`'s routes under each of `mounts`.
pub fn document<R: Resource>(mounts: &[Mount]) -> OpenApi {
    let spec = R::SPEC;
    let fields = R::Fields::name().into_owned();
    let record_name = format!("{}Record", spec.title);
    let page_name = format!("{}Page", spec.title);
    let seed_body_name = format!("{}SeedBody", spec.title);
    let patch_name = format!("{}Patch", spec.title);
    let taken = format!(
        "A field that must be unique is taken (`param` names it).{}{}",
        if spec.conflicts.is_empty() { "" } else { " " },
        spec.conflicts
    );
    let taken = taken.as_str();
    let read_only: Vec<&str> = spec
        .fields
        .iter()
        .filter(|f| !f.writable)
        .map(|f| f.name)
        .collect();
    let refused_read_only = format!(
        "A field the service keeps ({}) was sent (`read_only_field`).",
        read_only.join(", ")
    );
    // `lenient`: a seed's body, where a kept field's value is ignored rather than refused.
    let read_only_answer = |op: OperationBuilder, also: &str, lenient: bool| {
        let refused = (!read_only.is_empty() && !lenient).then_some(refused_read_only.as_str());
        let causes: Vec<&str> = [Some(also).filter(|a| !a.is_empty()), refused]
            .into_iter()
            .flatten()
            .collect();
        if causes.is_empty() {
            op
        } else {
            op.response("422", problem(422, &causes.join(" Or: ")))
        }
    };
    let mut paths = PathsBuilder::new();
    for mount in mounts {
        let prefix = mount.prefix;
        let seed = mount.style == Style::Seed;
        let body_schema = if seed { &seed_body_name } else { &fields };
        let op = |verb: &str, summary: String| {
            OperationBuilder::new()
                .tag(spec.title)
                .summary(Some(summary))
                .operation_id(Some(format!("{verb}_{}_{}", spec.kind, op_suffix(prefix))))
        };
        let create = with(
            op("create", format!("Create a {}", spec.kind)),
            InvalidBody::responses(),
        )
        .parameters(Some(IdempotencyKeyHeader::into_params(|| None)))
        .request_body(Some(body(Ref::from_schema_name(body_schema))))
        .response("201", record(&record_name, "Created; `Location` names it."))
        .response(
            "409",
            problem(
                409,
                &format!(
                    "{taken} Or a request with this Idempotency-Key is still being processed."
                ),
            ),
        );
        let create = read_only_answer(
            create,
            "The Idempotency-Key was used with another request.",
            seed,
        );
        let filters = spec
            .fields
            .iter()
            .filter(|f| f.filter)
            .map(|f| filter(f.name, f.kind));
        let list = with(
            op("list", format!("List {} records, newest first", spec.kind)),
            InvalidParams::responses(),
        )
        .parameters(Some(
            Pagination::into_params(|| None).into_iter().chain(filters),
        ));
        let list = if seed {
            list.description(Some(
                "A plain array, as the seed's clients read it: one page, 100 records unless \
                 `limit` says fewer.",
            ))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("One page of records.")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(
                                ArrayBuilder::new().items(Ref::from_schema_name(&record_name)),
                            ))
                            .build(),
                    )
                    .header(
                        "X-Total-Count",
                        HeaderBuilder::new()
                            .schema(Some(
                                ObjectBuilder::new()
                                    .schema_type(Type::Integer)
                                    .minimum(Some(0)),
                            ))
                            .description(Some("How many records pass the filters, in all."))
                            .build(),
                    )
                    .header(
                        "Link",
                        HeaderBuilder::new()
                            .schema(Some(string()))
                            .description(Some("`<…>; rel=\"next\"` when a next page exists."))
                            .build(),
                    )
                    .build(),
            )
        } else {
            list.response(
                "200",
                ResponseBuilder::new()
                    .description("One page and the paging facts.")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(&page_name)))
                            .build(),
                    )
                    .build(),
            )
        };
        paths = paths.path(
            prefix.to_string(),
            PathItem::builder()
                .operation(HttpMethod::Post, create)
                .operation(HttpMethod::Get, list)
                .build(),
        );

        let by_id = |verb: &str, summary: String, errors: BTreeMap<String, RefOr<Response>>| {
            with(op(verb, summary), errors)
                .parameter(id_parameter("id", "The record's id."))
                .response("404", problem(404, "No record has this id."))
        };
        let change = |verb: &str, summary: String, lenient: bool| {
            let op = by_id(verb, summary, InvalidBody::responses())
                .parameter(if_match())
                .response("409", problem(409, taken))
                .response(
                    "412",
                    problem(412, "The record changed since the ETag in `If-Match`."),
                );
            read_only_answer(op, "", lenient)
        };
        let changed = record(&record_name, "The record as changed.");
        let read = by_id(
            "read",
            format!("Read a {}", spec.kind),
            InvalidParams::responses(),
        )
        .response("200", record(&record_name, "The record."));
        let replace = change(
            "replace",
            format!("Replace every field of a {}", spec.kind),
            seed,
        )
        .request_body(Some(body(Ref::from_schema_name(body_schema))));
        let replace = if seed {
            replace.response(
                "204",
                ResponseBuilder::new()
                    .description("Replaced, as the seed answers: read it again for its new state.")
                    .build(),
            )
        } else {
            replace.response("200", changed.clone())
        };
        let patch = change(
            "patch",
            format!("Change some fields of a {} (JSON merge patch)", spec.kind),
            false,
        )
        .description(Some(
            "Each member replaces that field; `null` clears an optional one. The result must \
                 be valid as a whole.",
        ))
        .request_body(Some(body(Ref::from_schema_name(&patch_name))))
        .response("200", changed);
        let delete = by_id(
            "delete",
            format!("Delete a {}", spec.kind),
            InvalidParams::responses(),
        )
        .parameter(if_match())
        .response(
            "412",
            problem(412, "The record changed since the ETag in `If-Match`."),
        )
        .response(
            "204",
            ResponseBuilder::new().description("Deleted.").build(),
        );
        // The record's own rules may keep it (a settled payment).
        let delete = if spec.undeletable.is_empty() {
            delete
        } else {
            delete.response("409", problem(409, spec.undeletable))
        };
        paths = paths.path(
            format!("{prefix}/{{id}}"),
            PathItem::builder()
                .operation(HttpMethod::Get, read)
                .operation(HttpMethod::Put, replace)
                .operation(HttpMethod::Patch, patch)
                .operation(HttpMethod::Delete, delete)
                .build(),
        );
    }

    // The fields' schema admits no other member, so the record's is the fields' widened.
    let record_schema = widened(
        R::Fields::schema(),
        vec![
            ("id", Id::schema(), true),
            ("createdAt", time().into(), true),
            ("updatedAt", time().into(), true),
        ],
        true,
    );
    let page_schema = ObjectBuilder::new()
        .property(
            "data",
            ArrayBuilder::new().items(Ref::from_schema_name(&record_name)),
        )
        .required("data")
        .property(
            "meta",
            ObjectBuilder::new()
                .property("page", integer(1, 1_000_000))
                .required("page")
                .property("limit", integer(1, 100))
                .required("limit")
                .property("total", integer(0, i64::MAX))
                .required("total")
                .property("totalPages", integer(0, i64::MAX))
                .required("totalPages"),
        )
        .required("meta");
    let mut nested = Vec::new();
    R::Fields::schemas(&mut nested);
    // What a seed's clients send: the fields, and what they read back with them, which the
    // server does not take from them.
    let seed_body = widened(
        R::Fields::schema(),
        vec![
            (
                "id",
                described(
                    Id::schema(),
                    "The record's id, as read; on a replace it must be the id in the path.",
                ),
                false,
            ),
            (
                "createdAt",
                described(time().into(), "As read; ignored."),
                false,
            ),
            (
                "updatedAt",
                described(time().into(), "As read; ignored."),
                false,
            ),
        ],
        true,
    );
    // A kept field may come back with the rest of what was read: its value is ignored.
    let seed_body = kept_marked(seed_body, &read_only, |property| {
        property.read_only = None;
        property.description = Some(format!(
            "{} Kept by the service: a value sent here is ignored.",
            property.description.clone().unwrap_or_default()
        ));
    });
    // A merge patch: any of the fields, none required.
    let patch_schema = widened(R::Fields::schema(), Vec::new(), false);
    let mut components = ComponentsBuilder::new()
        .schema(
            fields.clone(),
            // Marked `readOnly` whatever the record declares.
            kept_marked(R::Fields::schema(), &read_only, |property| {
                property.read_only = Some(true)
            }),
        )
        .schema(seed_body_name, seed_body)
        .schema(patch_name, patch_schema)
        .schema(record_name, record_schema)
        .schema(page_name, page_schema);
    for (name, schema) in nested {
        components = components.schema(name, schema);
    }
    let mut doc = OpenApiBuilder::new()
        .paths(paths)
        .components(Some(components.build()))
        .build();
    ProblemResponses.modify(&mut doc);
    doc
}

/// A distinct operation id per prefix: `api_members`, `Member`.
fn op_suffix(prefix: &str) -> String {
    prefix.trim_matches('/').replace('/', "_")
}
