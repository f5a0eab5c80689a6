//! What every service's OpenAPI document says the same way because the platform enforces it:
//! the problem responses, the exact shape of the inputs the platform parses (ids, pages, amounts
//! and currencies, `Idempotency-Key`), and links kept only where their target is documented.
//!
//! utoipa's header type has no `required` field; it is written through the header's extension
//! map, which serializes flat into the object.

use std::{borrow::Cow, collections::BTreeMap, sync::OnceLock};

use kassa_contracts::{Currency, money::MAX_MAJOR_UNITS};
use serde_json::{Value, json};
use utoipa::{
    IntoParams, IntoResponses, Modify, PartialSchema, ToSchema,
    openapi::{
        Content, OpenApi, Ref, RefOr, Required, Response,
        extensions::Extensions,
        header::Header,
        path::{Operation, Parameter, ParameterIn, PathItem},
        schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type},
    },
};

use super::extract::{MAX_LIMIT, MAX_PAGE};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response, for `body = Problem` in a path's responses.
pub type Problem = super::problem::Problem<'static>;

/// The reusable problem responses (`components/responses`), by name: status and description.
const RESPONSES: &[(&str, u16, &str)] = &[
    (
        "BadRequest",
        400,
        "The request is malformed: a path or query parameter, header or body field is not what \
         this operation accepts. `code` says what is wrong and `param` names the input at fault. A \
         path with a dot segment or an encoded slash is refused before routing \
         (`invalid_path`).",
    ),
    (
        "Unauthorized",
        401,
        "No credential was shown where one is needed (`token_required`), or the one shown is \
         not valid: a token forged, expired, or not kassa's (`invalid_token`), an API key \
         unknown or revoked (`invalid_key`). Sign in (`POST /api/auth/signin`) and send the \
         token as `Authorization: Bearer …` or in the `token` cookie, or send an API key \
         (`X-Api-Key` or `Authorization: Bearer`).",
    ),
    (
        "Forbidden",
        403,
        "The credential is valid but its role may not call this route (`role_not_allowed`), \
         or its holder may not do this (`forbidden`; `not_a_person`: an API key on a person's \
         own routes), or a change was sent with the `token` \
         cookie from another site's page (`cross_site_request`: send the token as \
         `Authorization: Bearer …`).",
    ),
    (
        "PayloadTooLarge",
        413,
        "The body is larger than this service accepts (`body_too_large`).",
    ),
    (
        "UnsupportedMediaType",
        415,
        "The body is not sent as `application/json` (`unsupported_media_type`), or is sent with a \
         `Content-Encoding` other than identity (`unsupported_content_encoding`).",
    ),
    (
        "InternalError",
        500,
        "Something went wrong on the service's side; the request was not applied \
         (`internal_error`). Quote `requestId` when reporting it.",
    ),
    (
        "ServiceUnavailable",
        503,
        "The service cannot take the request now: its database is unreachable \
         (`service_unavailable`), its queue is full, or the request outlived the time limit \
         (`request_timeout`, in which case it may or may not have taken effect). `Retry-After` \
         says when to try again.",
    ),
];

/// Registers the `Problem` schema and the reusable problem responses in a document; name it in
/// `#[openapi(modifiers(&ProblemResponses))]`.
pub struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("Problem".into(), Problem::schema());
        for (name, status, description) in RESPONSES {
            components.responses.insert(
                (*name).into(),
                RefOr::T(problem_response(*status, description)),
            );
        }
    }
}

/// A response whose body is a `Problem`; a 503 also carries `Retry-After`.
pub fn problem_response(status: u16, description: &str) -> Response {
    let mut response = Response::builder()
        .description(description)
        .content(
            PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build();
    if status == 503 || status == 429 {
        let mut retry_after = Header::new(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .build(),
        );
        retry_after.description = Some("Seconds to wait before trying again.".into());
        retry_after.extensions = Some(required());
        response
            .headers
            .insert("Retry-After".into(), RefOr::T(retry_after));
    }
    response
}

/// `"required": true`, for the object types utoipa gives no such field.
fn required() -> Extensions {
    [("required", json!(true))].into_iter().collect()
}

fn reused(pairs: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    pairs
        .iter()
        .map(|(status, name)| {
            (
                (*status).to_owned(),
                RefOr::Ref(Ref::from_response_name(*name)),
            )
        })
        .collect()
}

const FAILURES: [(&str, &str); 2] = [("500", "InternalError"), ("503", "ServiceUnavailable")];

/// 500 and 503: any request can meet a bug or an unreachable database.
pub struct Failures;

impl IntoResponses for Failures {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        reused(&FAILURES)
    }
}

/// 401: the operation needs a valid token ([`crate::auth::Caller::known`]).
pub struct SignedIn;

impl IntoResponses for SignedIn {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        reused(&[("401", "Unauthorized")])
    }
}

/// 401 and 403: the operation needs a token of a given role.
pub struct RoleRequired;

impl IntoResponses for RoleRequired {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        reused(&[("401", "Unauthorized"), ("403", "Forbidden")])
    }
}

/// Registers how a caller shows its token (`bearer`: `Authorization: Bearer …`; `cookie`: the
/// `token` cookie seed 004's browser clients send), for `security(("bearer" = []), ("cookie" =
/// []))` on the operations that read it.
pub struct TokenSecurity;

/// Registers the ways a caller shows who it is: `bearer` (a token, or an API key),
/// `cookie` (the token in the `token` cookie), `apiKey` (`X-Api-Key`).
pub fn security_schemes(doc: &mut OpenApi) {
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        utoipa::openapi::security::SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The token `POST /api/auth/signin` answers (HS256, 1 h), or an API key \
                     (`kassa_…`, made by `kassa keys create`).",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "cookie",
        utoipa::openapi::security::SecurityScheme::ApiKey(ApiKey::Cookie(
            ApiKeyValue::with_description(
                "token",
                "The same token, in the cookie `POST /api/auth/signin` sets.",
            ),
        )),
    );
    components.add_security_scheme(
        "apiKey",
        utoipa::openapi::security::SecurityScheme::ApiKey(ApiKey::Header(
            ApiKeyValue::with_description(
                "X-Api-Key",
                "An API key with a role (kiosk, device, desk, staff, monitor, service, admin), \
                 made by `kassa keys create`.",
            ),
        )),
    );
}

impl Modify for TokenSecurity {
    fn modify(&self, doc: &mut OpenApi) {
        security_schemes(doc);
        // A change sent with the cookie from another site's page is refused with 403
        // (`crate::auth`): every such operation that takes the cookie says so.
        for item in doc.paths.paths.values_mut() {
            for operation in [
                item.post.as_mut(),
                item.put.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                let takes_cookie = operation.security.iter().flatten().any(|requirement| {
                    serde_json::to_value(requirement)
                        .ok()
                        .and_then(|v| v.as_object().map(|o| o.contains_key("cookie")))
                        .unwrap_or(false)
                });
                if takes_cookie {
                    operation
                        .responses
                        .responses
                        .entry("403".into())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Forbidden")));
                }
            }
        }
    }
}

/// 400 for a malformed path or query parameter or header, then [`Failures`].
pub struct InvalidParams;

impl IntoResponses for InvalidParams {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = reused(&[("400", "BadRequest")]);
        responses.append(&mut Failures::responses());
        responses
    }
}

/// 400, 413 and 415 for a JSON body (and any parameter), then [`Failures`].
pub struct InvalidBody;

impl IntoResponses for InvalidBody {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = reused(&[
            ("400", "BadRequest"),
            ("413", "PayloadTooLarge"),
            ("415", "UnsupportedMediaType"),
        ]);
        responses.append(&mut Failures::responses());
        responses
    }
}

/// A resource id as [`parse_uuid`](super::parse_uuid) reads it: 36 characters, hex digits in
/// groups of 8-4-4-4-12 separated by hyphens, any letter case, never the nil UUID.
pub struct Id;

impl PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Uuid,
            )))
            // The lookahead refuses the nil UUID.
            .pattern(Some(
                "^(?!0{8}-0{4}-0{4}-0{4}-0{12}$)\
                 [0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
            ))
            .description(Some(
                "A UUID in its canonical form: 36 characters, hex digits (either case) in groups \
                 of 8-4-4-4-12 separated by hyphens; never the nil UUID.",
            ))
            .examples([json!("476f5730-aa83-4ff0-ab9f-d6e19836e195")])
            .into()
    }
}

impl ToSchema for Id {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Id")
    }
}

/// A path parameter holding an [`Id`].
pub fn id_parameter(name: &str, description: &str) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(Id::schema()))
        .build()
}

fn bounded_integer(min: u32, max: u32, default: u32) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
        .default(Some(json!(default)))
}

impl IntoParams for super::Pagination {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name: &str, description: &str, schema: ObjectBuilder| {
            Parameter::builder()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema.build()))
                .build()
        };
        vec![
            query(
                "page",
                "The page to return, counting from 1; written as plain decimal digits.",
                bounded_integer(1, MAX_PAGE, 1),
            ),
            query(
                "limit",
                "How many items a page holds; written as plain decimal digits.",
                bounded_integer(1, MAX_LIMIT, 10),
            ),
        ]
    }
}

/// The optional `Idempotency-Key` request header (see `idempotency::IdempotencyKey`).
pub struct IdempotencyKeyHeader;

impl IntoParams for IdempotencyKeyHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            Parameter::builder()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "1 to 255 printable ASCII characters (spaces only inside). The first response \
                     to a key is stored with the work it describes and replayed for every repeat \
                     of the same request; the same key with a different request is refused with \
                     422 `idempotency_key_reused`, and a repeat that arrives while the first is \
                     still being processed gets 409 `idempotency_key_in_use`.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[!-~](?:[ -~]{0,253}[!-~])?$"))
                        .examples([json!("checkout-42")])
                        .build(),
                ))
                .build(),
        ]
    }
}

/// Every currency kassa supports.
pub fn currencies() -> &'static [Currency] {
    static ALL: OnceLock<Vec<Currency>> = OnceLock::new();
    ALL.get_or_init(|| Currency::all().collect())
}

/// A text field that takes one of `values` (ASCII) in any letter case and nothing else, as the
/// status and currency parsers read them. JSON Schema has no case-insensitive `enum`, so this is
/// a pattern such as `^(?:[Uu][Ss][Dd])$`.
pub fn any_case_text(values: &[&str], description: impl Into<String>) -> Schema {
    let alternatives: Vec<String> = values
        .iter()
        .map(|value| {
            value
                .chars()
                .map(|c| match (c.to_ascii_uppercase(), c.to_ascii_lowercase()) {
                    (upper, lower) if upper != lower => format!("[{upper}{lower}]"),
                    _ => c.to_string(),
                })
                .collect()
        })
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^(?:{})$", alternatives.join("|"))))
        .description(Some(description))
        .examples([json!(values.first().copied().unwrap_or_default())])
        .into()
}

/// A currency code as [`parse_currency`](super::parse_currency) reads it: one of `codes`, in any
/// letter case.
pub fn currency_input(codes: &[&str]) -> Schema {
    any_case_text(
        codes,
        format!(
            "An ISO 4217 code, in any letter case: {}.",
            codes.join(", ")
        ),
    )
}

/// A currency code as the API writes it: upper case.
pub struct CurrencyCode;

impl PartialSchema for CurrencyCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(currencies().iter().map(|c| c.code().to_owned())))
            .description(Some("An ISO 4217 currency code."))
            .examples([json!("USD")])
            .into()
    }
}

impl ToSchema for CurrencyCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CurrencyCode")
    }
}

/// An amount as [`parse_amount`](super::parse_amount) reads it in a currency with `exponent`
/// decimal places.
pub fn amount_input(exponent: u8) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .exclusive_minimum(Some(0))
        .exclusive_maximum(Some(MAX_MAJOR_UNITS as usize))
        .multiple_of(Some(10_f64.powi(-i32::from(exponent))))
        .description(Some(format!(
            "A JSON number (not a string) greater than 0 and below {MAX_MAJOR_UNITS}, with at \
             most {exponent} decimal place(s) as the currency allows; read exactly from its text."
        )))
        .into()
}

/// The schema of a JSON object body holding an amount and its currency, besides `properties`.
///
/// How many decimal places the amount may have depends on the currency, so the schema is one
/// object per precision, each naming its currencies; no other property is accepted.
pub struct PricedObject<'a> {
    pub description: &'a str,
    /// The other properties, and whether each is required.
    pub properties: Vec<(&'a str, RefOr<Schema>, bool)>,
    pub amount: &'a str,
    pub currency: &'a str,
    /// The currency an object without the currency field is in; `None` if the field is required.
    pub default_currency: Option<Currency>,
    pub example: Value,
}

impl PricedObject<'_> {
    pub fn schema(self) -> Schema {
        let mut exponents: Vec<u8> = currencies().iter().map(Currency::exponent).collect();
        exponents.sort_unstable();
        exponents.dedup();
        let mut one_of = OneOfBuilder::new()
            .description(Some(self.description))
            .examples([self.example]);
        for exponent in exponents {
            let codes: Vec<&str> = currencies()
                .iter()
                .filter(|c| c.exponent() == exponent)
                .map(Currency::code)
                .collect();
            let mut object = ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
            for (name, schema, required) in &self.properties {
                object = object.property(*name, schema.clone());
                if *required {
                    object = object.required(*name);
                }
            }
            let defaulted = self
                .default_currency
                .filter(|c| c.exponent() == exponent)
                .map(|c| c.code().to_owned());
            let mut currency = currency_input(&codes);
            if let (Some(code), Schema::Object(o)) = (&defaulted, &mut currency) {
                o.description = Some(format!(
                    "{} {code} when absent.",
                    o.description.as_deref().unwrap_or_default()
                ));
            }
            object = object
                .property(self.amount, amount_input(exponent))
                .required(self.amount)
                .property(self.currency, currency);
            if defaulted.is_none() {
                object = object.required(self.currency);
            }
            one_of = one_of.item(object.build());
        }
        Schema::OneOf(one_of.build())
    }
}

/// A text field that takes one of `values` (as the API writes them).
pub fn text_enum(values: impl IntoIterator<Item = &'static str>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

/// An amount as the API writes it: the shortest exact decimal.
pub fn amount_output() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .description(Some(
            "The amount as the shortest exact decimal (150.50 is written 150.5).",
        ))
        .examples([json!(150.5)])
        .into()
}

/// The operations of a path item.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
    .chain(item.additional_operations.values_mut())
}

/// Drops the response links whose target operation the document does not hold: a service
/// declares where its responses lead, including operations of other services, and only a
/// document holding both ends (the gateway's) keeps such a link.
pub fn prune_links(doc: &mut OpenApi) {
    let mut ids = std::collections::HashSet::new();
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            ids.extend(operation.operation_id.clone());
        }
    }
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.links.retain(|_, link| match link {
                        RefOr::T(link) => ids.contains(&link.operation_id),
                        RefOr::Ref(_) => true,
                    });
                }
            }
        }
    }
}

/// Documents the operations under `prefix` also under `alias` (a seed's gateway path such as
/// `/api/auth` for a service's `/auth`): the same operations, their ids suffixed with `suffix`
/// so that every id stays unique.
pub fn also_under(doc: &mut OpenApi, prefix: &str, alias: &str, suffix: &str) {
    let copies: Vec<(String, PathItem)> = doc
        .paths
        .paths
        .iter()
        .filter_map(|(path, item)| {
            let rest = path.strip_prefix(prefix)?;
            super::under(path, prefix).then(|| {
                let mut item = item.clone();
                for operation in operations_mut(&mut item) {
                    if let Some(id) = &mut operation.operation_id {
                        id.push_str(suffix);
                    }
                }
                (format!("{alias}{rest}"), item)
            })
        })
        .collect();
    doc.paths.paths.extend(copies);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_the_ones_money_parses() {
        let codes: Vec<&str> = currencies().iter().map(Currency::code).collect();
        assert!(codes.contains(&"USD") && codes.contains(&"JPY") && codes.contains(&"KWD"));
        assert!(!codes.contains(&"XYZ") && !codes.contains(&"usd"));
    }
}
