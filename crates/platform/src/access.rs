//! Who may call each route. A service declares, beside its routes, one [`Rule`] per operation:
//! its method, its path as the router names it, and the [`Policy`] of who may call it. The HTTP
//! layer ([`crate::http::service_app`]) looks each request's matched route up in that table and
//! refuses the caller it does not let in before any handler runs; a route the table does not
//! name is refused to everyone, so no route is open by omission. The same table states each
//! operation's security and its 401 and 403 answers in the OpenAPI document ([`document`]).
//!
//! A policy lets in roles, never persons: which of a customer's things they see is the
//! handler's question ([`crate::auth::Access`]). Anonymous callers are let in where a route is
//! public by nature, or where the operator opened its route group ([`OpenGroups`],
//! `KASSA_OPEN_ROUTES`) for a seed's clients that send no credentials; even there they see only
//! what no one owns.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use utoipa::openapi::path::{Operation, PathItem};

use crate::{
    auth::{Caller, Role},
    http::ApiError,
};

/// The methods kassa's routes answer to (`HEAD` is answered as `GET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub const ALL: [Verb; 5] = [Verb::Get, Verb::Post, Verb::Put, Verb::Patch, Verb::Delete];

    pub fn of(method: &Method) -> Option<Verb> {
        Some(match *method {
            Method::GET | Method::HEAD => Verb::Get,
            Method::POST => Verb::Post,
            Method::PUT => Verb::Put,
            Method::PATCH => Verb::Patch,
            Method::DELETE => Verb::Delete,
            _ => return None,
        })
    }

    /// The operation of a document's path item for this method, if it has one.
    pub fn operation(self, item: &PathItem) -> Option<&Operation> {
        match self {
            Verb::Get => item.get.as_ref(),
            Verb::Post => item.post.as_ref(),
            Verb::Put => item.put.as_ref(),
            Verb::Patch => item.patch.as_ref(),
            Verb::Delete => item.delete.as_ref(),
        }
    }

    fn operation_mut(self, item: &mut PathItem) -> Option<&mut Operation> {
        match self {
            Verb::Get => item.get.as_mut(),
            Verb::Post => item.post.as_mut(),
            Verb::Put => item.put.as_mut(),
            Verb::Patch => item.patch.as_mut(),
            Verb::Delete => item.delete.as_mut(),
        }
    }

    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }
}

const ANONYMOUS: u16 = 1 << 15;

/// Who may call a route: anonymous callers, and which roles. An admin is let in wherever any
/// role is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Policy(u16);

impl Policy {
    /// Anyone, signed in or not: what is public by nature.
    pub const PUBLIC: Policy = Policy(u16::MAX);
    /// Admins only.
    pub const ADMIN: Policy = Policy::of(&[]);
    /// Anyone signed in as a customer (the handler shows them their own things only), and
    /// staff.
    pub const CUSTOMER: Policy = Policy::of(&[Role::Customer, Role::Staff]);
    /// The shop's staff.
    pub const STAFF: Policy = Policy::of(&[Role::Staff]);
    /// Kassa's services calling each other.
    pub const SERVICE: Policy = Policy::of(&[Role::Service]);

    /// The roles named, and admins.
    pub const fn of(roles: &[Role]) -> Policy {
        let mut bits = 1 << Role::Admin as u16;
        let mut i = 0;
        while i < roles.len() {
            bits |= 1 << roles[i] as u16;
            i += 1;
        }
        Policy(bits)
    }

    /// This policy and `roles`.
    pub const fn and(self, roles: &[Role]) -> Policy {
        Policy(self.0 | Policy::of(roles).0)
    }

    pub const fn admits_anonymous(self) -> bool {
        self.0 & ANONYMOUS != 0
    }

    pub const fn admits(self, role: Role) -> bool {
        self.0 & (1 << role as u16) != 0
    }

    /// The roles let in, in [`Role::ALL`]'s order.
    pub fn roles(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.admits(*r))
    }

    /// How `docs/security.md` and the OpenAPI document say it: `anyone`, or the roles.
    pub fn describe(self) -> String {
        if self.admits_anonymous() {
            return "anyone".into();
        }
        self.roles().map(Role::name).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Policy({})", self.describe())
    }
}

/// One route's policy: `verb path` (the path as the router declares it, `/api/orders/{id}`).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub verb: Verb,
    pub path: &'static str,
    pub policy: Policy,
    /// The route group (`seed003`) an operator may open to anonymous callers, for a seed's
    /// clients that send no credentials.
    pub group: Option<&'static str>,
}

impl Rule {
    pub const fn new(verb: Verb, path: &'static str, policy: Policy) -> Rule {
        Rule {
            verb,
            path,
            policy,
            group: None,
        }
    }

    pub const fn get(path: &'static str, policy: Policy) -> Rule {
        Rule::new(Verb::Get, path, policy)
    }

    pub const fn post(path: &'static str, policy: Policy) -> Rule {
        Rule::new(Verb::Post, path, policy)
    }

    pub const fn put(path: &'static str, policy: Policy) -> Rule {
        Rule::new(Verb::Put, path, policy)
    }

    pub const fn patch(path: &'static str, policy: Policy) -> Rule {
        Rule::new(Verb::Patch, path, policy)
    }

    pub const fn delete(path: &'static str, policy: Policy) -> Rule {
        Rule::new(Verb::Delete, path, policy)
    }

    /// In route group `group`, which an operator may open to anonymous callers.
    pub const fn opens_with(mut self, group: &'static str) -> Rule {
        self.group = Some(group);
        self
    }

    /// In route group `group` if `style` is `seed` (the records kit's mounts: a seed's
    /// prefix may be opened for its clients, kassa's own never).
    pub const fn opens_with_if_seed(mut self, style: &str, group: Option<&'static str>) -> Rule {
        let seed = style.as_bytes();
        if seed.len() == 4
            && seed[0] == b's'
            && seed[1] == b'e'
            && seed[2] == b'e'
            && seed[3] == b'd'
        {
            self.group = group;
        }
        self
    }
}

/// A service's rules: the lists of the files that declare its routes.
pub type Rules = &'static [&'static [Rule]];

fn each(rules: Rules) -> impl Iterator<Item = &'static Rule> {
    rules.iter().flat_map(|r| r.iter()).chain(PLATFORM)
}

/// The six rules of a kind of record's routes under `prefix` (see [`crate::resource`]): reads
/// (`GET prefix`, `GET prefix/{id}`) by `read`, changes by `write`; with `style` `seed` and a
/// group, anonymous callers may be let in where the operator opens it.
#[macro_export]
macro_rules! record_rules {
    ($prefix:literal, $read:expr, $write:expr) => {
        $crate::record_rules!($prefix, $read, $write, kassa, ::std::option::Option::None)
    };
    ($prefix:literal, $read:expr, $write:expr, $style:ident, $group:expr) => {
        &[
            $crate::access::Rule::get($prefix, $read)
                .opens_with_if_seed(stringify!($style), $group),
            $crate::access::Rule::post($prefix, $write)
                .opens_with_if_seed(stringify!($style), $group),
            $crate::access::Rule::get(concat!($prefix, "/{id}"), $read)
                .opens_with_if_seed(stringify!($style), $group),
            $crate::access::Rule::put(concat!($prefix, "/{id}"), $write)
                .opens_with_if_seed(stringify!($style), $group),
            $crate::access::Rule::patch(concat!($prefix, "/{id}"), $write)
                .opens_with_if_seed(stringify!($style), $group),
            $crate::access::Rule::delete(concat!($prefix, "/{id}"), $write)
                .opens_with_if_seed(stringify!($style), $group),
        ]
    };
}

/// The path of the gateway's rule: every route it forwards, whose service decides.
pub const FORWARDED: &str = "*";

/// The rules of the routes every service serves beside its own ([`crate::http::service_app`]).
pub const PLATFORM: &[Rule] = &[
    Rule::get("/openapi.json", Policy::PUBLIC),
    Rule::get("/swagger", Policy::PUBLIC),
    Rule::get("/swagger/", Policy::PUBLIC),
    Rule::get("/swagger/{*rest}", Policy::PUBLIC),
    Rule::get("/health/live", Policy::PUBLIC),
    Rule::get("/health/ready", Policy::PUBLIC),
    // What the process does and how much it holds: for the operator's monitoring.
    Rule::get("/metrics", Policy::of(&[Role::Monitor])),
];

/// The route groups the operator opened to anonymous callers (`KASSA_OPEN_ROUTES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenGroups(pub Vec<String>);

impl OpenGroups {
    pub fn opens(&self, group: Option<&str>) -> bool {
        group.is_some_and(|g| self.0.iter().any(|open| open == g))
    }
}

/// A service's rules, looked up by route.
#[derive(Debug)]
pub struct Table {
    rules: HashMap<(Verb, &'static str), Rule>,
    forwards: Option<Policy>,
    open: OpenGroups,
}

impl Table {
    pub fn new(rules: Rules, open: OpenGroups) -> Table {
        let mut table = Table {
            rules: HashMap::new(),
            forwards: None,
            open,
        };
        for rule in each(rules) {
            if rule.path == FORWARDED {
                table.forwards = Some(rule.policy);
            } else {
                table.rules.insert((rule.verb, rule.path), *rule);
            }
        }
        table
    }

    /// Whether some method of route `path` has a rule.
    fn knows(&self, path: &str) -> bool {
        self.rules.keys().any(|(_, p)| *p == path)
    }

    fn find(&self, verb: Verb, path: &str) -> Option<(Policy, Option<&'static str>)> {
        self.rules
            .get(&(verb, path))
            .map(|r| (r.policy, r.group))
            .or(self.forwards.map(|p| (p, None)))
    }

    /// Whether `caller` may call a route of `policy` in `group`.
    pub fn admits(&self, policy: Policy, group: Option<&str>, caller: &Caller) -> bool {
        match caller.role() {
            None => policy.admits_anonymous() || self.open.opens(group),
            Some(role) => policy.admits(role),
        }
    }
}

/// Lets a request through to its route only if the route's rule admits its caller, who is
/// then known to the handler ([`Caller`] is kept in the request's extensions).
pub async fn enforce(State(table): State<Arc<Table>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let found = Verb::of(req.method())
        .zip(route.as_ref())
        .and_then(|(verb, path)| table.find(verb, path.as_str()));
    let Some((policy, group)) = found else {
        if let Some(path) = &route
            && table.knows(path.as_str())
        {
            // The route answers other methods: this one is not allowed, to anyone.
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This endpoint does not accept that HTTP method.",
            )
            .into_response();
        }
        tracing::error!(route = ?route.as_ref().map(MatchedPath::as_str), method = %req.method(), "a route without an access policy was called");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "route_closed",
            "This route declares no access policy, so it answers no one.",
        )
        .into_response();
    };
    if policy.admits_anonymous() {
        // Anyone may: a credential shown here is the handler's to read if it wants it, so a
        // public route (sign-in, health) does not wait on the users service to check one.
        return next.run(req).await;
    }
    // Resolving keeps the caller in the request's extensions, for the handler.
    let (mut parts, body) = req.into_parts();
    let caller = match Caller::resolve(&mut parts).await {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    if !table.admits(policy, group, &caller) {
        return refusal(&caller, policy).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Why `caller` is not let in: anonymous callers are asked to sign in (401), others told which
/// roles are (403).
fn refusal(caller: &Caller, policy: Policy) -> ApiError {
    match caller.role() {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_required",
            "Sign in and send the token (`Authorization: Bearer …` or the `token` cookie), or an \
             API key (`X-Api-Key`).",
        ),
        Some(role) => ApiError::new(
            StatusCode::FORBIDDEN,
            "role_not_allowed",
            format!(
                "A caller with the role `{}` may not call this route; it is for: {}.",
                role.name(),
                policy.describe()
            ),
        ),
    }
}

/// States each operation's rule in `doc`: who may call it (in its description and as its
/// security requirements) and the 401 and 403 it answers the others.
pub fn document(doc: &mut utoipa::openapi::OpenApi, rules: Rules) {
    use utoipa::openapi::{Ref, RefOr, security::SecurityRequirement};
    let forwards = each(rules).any(|r| r.path == FORWARDED);
    crate::http::openapi::security_schemes(doc);
    utoipa::Modify::modify(&crate::http::openapi::ProblemResponses, doc);
    for (path, item) in doc.paths.paths.iter_mut() {
        for verb in Verb::ALL {
            let Some(operation) = verb.operation_mut(item) else {
                continue;
            };
            let Some(rule) = each(rules).find(|r| r.verb == verb && same_route(r.path, path))
            else {
                if !forwards {
                    // Such a route is refused to everyone (`route_closed`): its document says
                    // so (and `undeclared` lists it, for the test over every service).
                    operation.description = Some(format!(
                        "NO ACCESS POLICY: this operation answers no one. {}",
                        operation.description.clone().unwrap_or_default()
                    ));
                }
                continue;
            };
            let who = match (rule.policy.admits_anonymous(), rule.group) {
                (true, _) => "Anyone may call it.".to_owned(),
                (false, Some(group)) => format!(
                    "Who may call it: {}; and anonymous callers where the operator opens the \
                     route group `{group}` (`KASSA_OPEN_ROUTES`).",
                    rule.policy.describe()
                ),
                (false, None) => format!("Who may call it: {}.", rule.policy.describe()),
            };
            operation.description = Some(match operation.description.take() {
                Some(text) if !text.is_empty() => format!("{text}\n\n{who}"),
                _ => who,
            });
            if rule.policy.admits_anonymous() {
                continue;
            }
            let mut schemes = vec![
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::new("apiKey", Vec::<String>::new()),
            ];
            if rule.policy.admits(Role::Customer) {
                schemes.push(SecurityRequirement::new("cookie", Vec::<String>::new()));
            }
            if rule.group.is_some() {
                // Anonymous where the group is open: no credential at all.
                schemes.push(SecurityRequirement::default());
            }
            operation.security = Some(schemes);
            let responses = &mut operation.responses.responses;
            responses
                .entry("401".into())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Unauthorized")));
            responses
                .entry("403".into())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Forbidden")));
        }
    }
}

/// Whether two route paths are one route: the same segments, a parameter matching a parameter
/// whatever its name (a document may call `{id}` `{orderId}`).
pub fn same_route(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('/'), b.split('/'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y || (x.starts_with('{') && y.starts_with('{')) => {}
            _ => return false,
        }
    }
}

/// The operations of `doc` that no rule of `rules` names: empty for a service whose every
/// route declares who may call it.
pub fn undeclared(doc: &utoipa::openapi::OpenApi, rules: Rules) -> Vec<String> {
    let mut missing = Vec::new();
    for (path, item) in &doc.paths.paths {
        for verb in Verb::ALL {
            if verb.operation(item).is_some()
                && !each(rules)
                    .any(|r| r.verb == verb && (same_route(r.path, path) || r.path == FORWARDED))
            {
                missing.push(format!("{} {path}", verb.method()));
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_lets_in_its_roles_and_admins() {
        let kiosk = Policy::of(&[Role::Kiosk]);
        assert!(kiosk.admits(Role::Kiosk) && kiosk.admits(Role::Admin));
        assert!(!kiosk.admits(Role::Customer) && !kiosk.admits_anonymous());
        assert!(Policy::PUBLIC.admits_anonymous() && Policy::PUBLIC.admits(Role::Device));
        assert_eq!(Policy::ADMIN.roles().collect::<Vec<_>>(), vec![Role::Admin]);
        assert_eq!(
            Policy::STAFF.and(&[Role::Desk]).describe(),
            "staff, desk, admin"
        );
    }

    #[test]
    fn the_records_kit_names_six_routes_a_mount_and_opens_seed_mounts_only() {
        const SEED: &[Rule] = crate::record_rules!(
            "/Member",
            Policy::STAFF,
            Policy::STAFF,
            seed,
            Some("seed002")
        );
        const KASSA: &[Rule] = crate::record_rules!("/api/members", Policy::STAFF, Policy::STAFF);
        assert_eq!(SEED.len(), 6);
        assert!(SEED.iter().all(|r| r.group == Some("seed002")));
        assert!(KASSA.iter().all(|r| r.group.is_none()));
        assert_eq!(SEED[2].path, "/Member/{id}");
    }

    #[test]
    fn anonymous_callers_pass_only_public_routes_and_opened_groups() {
        const RULES: &[Rule] = &[
            Rule::get("/open", Policy::PUBLIC),
            Rule::get("/orders", Policy::CUSTOMER).opens_with("seed003"),
            Rule::get("/stock", Policy::STAFF).opens_with("seed001"),
        ];
        let table = Table::new(&[RULES], OpenGroups(vec!["seed003".into()]));
        let admitted = |path: &str| {
            let (policy, group) = table.find(Verb::Get, path).unwrap();
            table.admits(policy, group, &Caller::Anonymous)
        };
        assert!(admitted("/open") && admitted("/orders") && !admitted("/stock"));
        assert!(table.find(Verb::Post, "/open").is_none(), "no rule: closed");
        assert!(table.find(Verb::Get, "/health/live").is_some());
    }
}
