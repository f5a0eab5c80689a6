//! The one list of services this binary runs. Everything that names services (ports and their
//! flags, `kassa serve <name>`, databases and migrations, queues, the gateway's routing table,
//! the merged OpenAPI document, dead-letter commands, test clean-up) is derived from it.

use kassa_platform::{bus::rabbit::QueueSpec, service::Service};

/// Every service, in the order `kassa up` lists them.
pub static SERVICES: &[&Service] = &[
    &kassa_gateway::SERVICE,
    &kassa_orders::SERVICE,
    &kassa_payments::SERVICE,
    &kassa_classes::SERVICE,
    &kassa_members::SERVICE,
    &kassa_personnel::SERVICE,
    &kassa_users::SERVICE,
    &kassa_notifications::SERVICE,
    &kassa_catalog::SERVICE,
    &kassa_inventory::SERVICE,
    &kassa_qr::SERVICE,
    &kassa_analytics::SERVICE,
];

/// The service named `name`.
pub fn find(name: &str) -> Option<&'static Service> {
    SERVICES.iter().copied().find(|s| s.name == name)
}

/// The services with a database of their own.
pub fn with_storage() -> impl Iterator<Item = &'static Service> {
    SERVICES.iter().copied().filter(|s| s.has_storage())
}

/// The services that consume events, each with a queue of its own.
pub fn consumers() -> impl Iterator<Item = &'static Service> {
    SERVICES.iter().copied().filter(|s| s.consumes_events())
}

/// The consumer queues of every service, whether it runs in this process or not, so that no
/// event is published before the queue that wants it exists.
pub fn queues() -> Vec<QueueSpec> {
    consumers()
        .map(|s| QueueSpec {
            consumer: s.name.into(),
            topics: s.consumes.iter().map(|t| t.to_string()).collect(),
        })
        .collect()
}

/// The names of every service, for the command line.
pub fn names() -> Vec<&'static str> {
    SERVICES.iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_ports_and_routes_are_each_taken_once() {
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        let mut prefixes: Vec<&str> = Vec::new();
        for s in SERVICES {
            assert!(names.insert(s.name), "two services are named {}", s.name);
            assert!(
                ports.insert(s.default_port),
                "two services default to {}",
                s.default_port
            );
            assert!(
                s.name.bytes().all(|b| b.is_ascii_lowercase()),
                "{}: a name is lower-case letters (it names databases, queues and flags)",
                s.name
            );
            for p in s.routes {
                assert!(
                    p.starts_with('/') && !p.ends_with('/'),
                    "{}: route {p}",
                    s.name
                );
                for q in &prefixes {
                    let nested = p.starts_with(&format!("{q}/")) || q.starts_with(&format!("{p}/"));
                    assert!(*q != *p && !nested, "{}: route {p} overlaps {q}", s.name);
                }
                prefixes.push(p);
            }
            assert!(
                s.consumes.is_empty() || s.has_storage(),
                "{}: a consumer needs a database for its inbox",
                s.name
            );
        }
    }

    #[test]
    fn settings_are_each_declared_once() {
        let mut seen = HashSet::new();
        for s in SERVICES {
            for setting in s.settings {
                assert!(seen.insert(setting.name), "setting {} twice", setting.name);
            }
        }
    }

    #[test]
    fn every_route_declares_who_may_call_it() {
        for service in SERVICES {
            let doc = service.document();
            let undeclared = kassa_platform::access::undeclared(&doc, service.access);
            assert!(
                undeclared.is_empty(),
                "{}: routes without an access rule: {undeclared:?}",
                service.name
            );
            // And no rule names a route the service does not document.
            for rule in service.access.iter().flat_map(|r| r.iter()) {
                if rule.path == kassa_platform::access::FORWARDED {
                    continue;
                }
                let item = doc
                    .paths
                    .paths
                    .iter()
                    .find(|(path, _)| kassa_platform::access::same_route(rule.path, path))
                    .map(|(_, item)| item);
                let documented = item.is_some_and(|item| rule.verb.operation(item).is_some());
                assert!(
                    documented,
                    "{}: a rule for {:?} {}, which its document does not hold",
                    service.name, rule.verb, rule.path
                );
            }
        }
    }

    #[test]
    fn operation_ids_are_each_taken_once_in_the_merged_document() {
        // A link names its target by operation id: two operations with one id would send a
        // client (or a fuzzer following the links) to the wrong one.
        let doc =
            kassa_gateway::openapi(SERVICES.iter().map(|s| s.document()).collect(), &[], None);
        let mut ids = HashSet::new();
        for (path, item) in &doc.paths.paths {
            for operation in kassa_platform::http::openapi::operations_mut(&mut item.clone()) {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(
                    ids.insert(id.clone()),
                    "operation id {id} twice (again at {path})"
                );
            }
        }
    }
}
