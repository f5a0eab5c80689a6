//! The OpenAPI document of a kind of record's routes: what each accepts (fields, filters, paging,
//! `If-Match`, `Idempotency-Key`) and every answer it gives, errors as problem+json.

use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        AllOfBuilder, ArrayBuilder, ComponentsBuilder, ContentBuilder, HttpMethod, KnownFormat,
        ObjectBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required,
        ResponseBuilder, Schema, SchemaFormat, Type,
        header::HeaderBuilder,
        path::{OperationBuilder, ParameterBuilder, ParameterIn},
        request_body::RequestBodyBuilder,
    },
};

use super::{FieldKind, Resource};

const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn uuid() -> Schema {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .pattern(Some(UUID_PATTERN))
        .into()
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

fn problem_schema() -> Schema {
    ObjectBuilder::new()
        .property("type", string())
        .required("type")
        .property("title", string())
        .required("title")
        .property("status", ObjectBuilder::new().schema_type(Type::Integer))
        .required("status")
        .property("detail", string())
        .required("detail")
        .property("code", string())
        .required("code")
        .property("param", string())
        .property("requestId", string())
        .description(Some(
            "An error (RFC 9457), with a stable `code` and the `param` at fault.",
        ))
        .into()
}

fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

fn unavailable() -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description("The database is unreachable or the service is stopping; retry after `Retry-After` seconds.")
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(integer(0, 86_400)))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        )
        .build()
        .into()
}

fn record(name: &str, description: &str) -> RefOr<utoipa::openapi::Response> {
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

fn id_parameter() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The record's id (a canonical UUID, not nil)."))
        .schema(Some(uuid()))
        .build()
}

fn if_match() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("If-Match")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Change only if the record is still at this ETag (or `*`); otherwise 412.",
        ))
        .schema(Some(string().max_length(Some(256))))
        .build()
}

fn idempotency_key() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some("Replays the first answer for a repeat of the same request; the same key with another request is a 422."))
        .schema(Some(
            string()
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[\\x20-\\x7E]*[\\x21-\\x7E][\\x20-\\x7E]*$")),
        ))
        .build()
}

fn query(name: &str, description: &str, schema: Schema) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn filter_schema(kind: FieldKind) -> Schema {
    match kind {
        FieldKind::Text => string().into(),
        FieldKind::Integer => ObjectBuilder::new().schema_type(Type::Integer).into(),
        FieldKind::Uuid => uuid(),
        FieldKind::Bool => ObjectBuilder::new().schema_type(Type::Boolean).into(),
        FieldKind::Timestamp => time(),
    }
}

fn body(name: &str, content_type: &str) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            content_type,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(name)))
                .build(),
        )
        .build()
}

/// The document of `R`'s routes under each of `prefixes`.
pub fn document<R: Resource>(prefixes: &[&str]) -> OpenApi {
    let spec = R::SPEC;
    let fields = R::Fields::name().into_owned();
    let record_name = format!("{}Record", spec.title);
    let page_name = format!("{}Page", spec.title);
    let tag = spec.title;
    let body_errors = |op: OperationBuilder| {
        op.response("400", problem("The body is not JSON, not an object, or a field is missing, unknown or invalid (`param` names it)."))
            .response("413", problem("The body is larger than the service accepts."))
            .response("415", problem("The body is not `application/json`, or it is compressed."))
            .response("503", unavailable())
    };
    let mut paths = PathsBuilder::new();
    for prefix in prefixes {
        let create = body_errors(
            OperationBuilder::new()
                .tag(tag)
                .summary(Some(format!("Create a {}", spec.kind)))
                .operation_id(Some(format!("create_{}_{}", spec.kind, op_suffix(prefix))))
                .parameter(idempotency_key())
                .request_body(Some(body(&fields, "application/json")))
                .response("201", record(&record_name, "Created; `Location` names it.")),
        )
        .response(
            "409",
            problem("A field that must be unique is taken (`param` names it)."),
        )
        .response(
            "422",
            problem("The Idempotency-Key was used with another request."),
        );
        let mut list = OperationBuilder::new()
            .tag(tag)
            .summary(Some(format!("List {} records, newest first", spec.kind)))
            .operation_id(Some(format!("list_{}_{}", spec.kind, op_suffix(prefix))))
            .parameter(query(
                "page",
                "1-based page (default 1).",
                integer(1, 1_000_000),
            ))
            .parameter(query(
                "limit",
                "Records per page (default 10).",
                integer(1, 100),
            ));
        for f in spec.fields.iter().filter(|f| f.filter) {
            list = list.parameter(query(
                f.name,
                &format!("Only records whose `{}` equals this.", f.name),
                filter_schema(f.kind),
            ));
        }
        let list = list
            .response(
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
            .response(
                "400",
                problem("A paging value or filter is out of range, or the parameter is unknown."),
            )
            .response("503", unavailable());
        paths = paths.path(
            prefix.to_string(),
            PathItem::builder()
                .operation(HttpMethod::Post, create)
                .operation(HttpMethod::Get, list)
                .build(),
        );

        let by_id = |op: OperationBuilder| {
            op.tag(tag)
                .parameter(id_parameter())
                .response(
                    "400",
                    problem("The id is not a canonical UUID, or the input is invalid."),
                )
                .response("404", problem("No record has this id."))
                .response("503", unavailable())
        };
        let changes = |op: OperationBuilder| {
            op.parameter(if_match()).response(
                "412",
                problem("The record changed since the ETag in `If-Match`."),
            )
        };
        let read = by_id(
            OperationBuilder::new()
                .summary(Some(format!("Read a {}", spec.kind)))
                .operation_id(Some(format!("read_{}_{}", spec.kind, op_suffix(prefix))))
                .response("200", record(&record_name, "The record.")),
        );
        let replace = changes(body_errors(by_id(
            OperationBuilder::new()
                .summary(Some(format!("Replace every field of a {}", spec.kind)))
                .operation_id(Some(format!("replace_{}_{}", spec.kind, op_suffix(prefix))))
                .request_body(Some(body(&fields, "application/json")))
                .response("200", record(&record_name, "The record as changed.")),
        )))
        .response(
            "409",
            problem("A field that must be unique is taken (`param` names it)."),
        );
        let patch = changes(body_errors(by_id(
            OperationBuilder::new()
                .summary(Some(format!("Change some fields of a {} (JSON merge patch)", spec.kind)))
                .description(Some("Each member replaces that field; `null` clears an optional one. The result must be valid as a whole."))
                .operation_id(Some(format!("patch_{}_{}", spec.kind, op_suffix(prefix))))
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(ObjectBuilder::new()))
                                .build(),
                        )
                        .build(),
                ))
                .response("200", record(&record_name, "The record as changed.")),
        )))
        .response("409", problem("A field that must be unique is taken (`param` names it)."));
        let delete = changes(by_id(
            OperationBuilder::new()
                .summary(Some(format!("Delete a {}", spec.kind)))
                .operation_id(Some(format!("delete_{}_{}", spec.kind, op_suffix(prefix))))
                .response(
                    "204",
                    ResponseBuilder::new().description("Deleted.").build(),
                ),
        ));
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

    let record_schema = AllOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property("id", uuid())
                .required("id")
                .property("createdAt", time())
                .required("createdAt")
                .property("updatedAt", time())
                .required("updatedAt"),
        )
        .item(Ref::from_schema_name(&fields));
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
    let mut components = ComponentsBuilder::new()
        .schema(fields.clone(), R::Fields::schema())
        .schema(record_name, record_schema)
        .schema(page_name, page_schema)
        .schema("Problem", problem_schema());
    for (name, schema) in nested {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// A distinct operation id per prefix: `api_members`, `Member`.
fn op_suffix(prefix: &str) -> String {
    prefix.trim_matches('/').replace('/', "_")
}
