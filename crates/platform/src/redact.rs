//! Secrets kept out of what kassa prints: logs, errors and `--help`.

/// `url` as it may be shown: the password of its user information and the value of any query
/// parameter that names a secret (`password`, `secret`, `token`, `key`) replaced by `***`.
/// Text that is not a URL is returned as it is.
pub fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = url[..scheme_end].to_owned();
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                // A lone user part may be the secret itself (`redis://token@host`).
                None if !userinfo.is_empty() => out.push_str("***"),
                None => {}
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    out.push_str(path);
    if let Some(query) = query {
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if names_a_secret(name) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
    }
    out
}

fn names_a_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "key"]
        .iter()
        .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_and_secret_parameters_are_hidden() {
        for (given, shown) in [
            (
                "postgres://kassa:s3cr%40t@db:5432/kassa?sslmode=require",
                "postgres://kassa:***@db:5432/kassa?sslmode=require",
            ),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("redis://:hunter2@cache:6379", "redis://:***@cache:6379"),
            ("redis://tokenonly@cache", "redis://***@cache"),
            ("smtps://mail.example.com", "smtps://mail.example.com"),
            (
                "smtp://u:p@mail?tls=required&password=x&api_key=y#f",
                "smtp://u:***@mail?tls=required&password=***&api_key=***#f",
            ),
            ("http://ch:8123/kassa", "http://ch:8123/kassa"),
            ("not a url", "not a url"),
            // An `@` in the path is not user information.
            ("http://host/a@b", "http://host/a@b"),
        ] {
            assert_eq!(super::url(given), shown, "{given}");
        }
    }
}
