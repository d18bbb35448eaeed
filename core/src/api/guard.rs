//! What every request passes before a route sees it: a `Host` that names this loopback server (a page served
//! from another name that resolves to 127.0.0.1 — DNS rebinding — gets 403), no state change from another
//! origin (`Origin`, `Sec-Fetch-Site`; hooks send neither), and this user's secret for anything but intake,
//! health and the inspector's static files.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::secret::{self, Secret};

/// The guard's settings.
#[derive(Clone)]
pub struct Guard(Arc<Inner>);

struct Inner {
    /// The port served: a `Host` naming another port is not this server.
    port: u16,
    secret: Secret,
    /// Intake needs the secret too (`intake_requires_secret`); off by default, for claude-mem's hooks.
    intake_needs_secret: bool,
}

impl Guard {
    /// The guard of the server on `port` for the user whose secret is `secret`.
    pub fn new(port: u16, secret: Secret, intake_needs_secret: bool) -> Guard {
        Guard(Arc::new(Inner { port, secret, intake_needs_secret }))
    }

    pub(super) fn secret(&self) -> &Secret {
        &self.0.secret
    }

    /// Whether `host` (a `Host` header) names this server: `127.0.0.1`, `localhost` or `[::1]`, with this
    /// server's port or none.
    fn host_ok(&self, host: &str) -> bool {
        let (name, port) = match host.rsplit_once(':') {
            // `[::1]` alone has colons inside its brackets.
            Some((name, port)) if !port.ends_with(']') => (name, Some(port)),
            _ => (host, None),
        };
        let name_ok = name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost") || name == "[::1]";
        name_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p == self.0.port))
    }

    /// Whether `origin` (an `Origin` header) is this server's own.
    fn origin_ok(&self, origin: &str) -> bool {
        origin.strip_prefix("http://").is_some_and(|host| self.host_ok(host))
    }

    /// Whether the request carries this user's secret: the header, `Authorization: Bearer`, or the cookie.
    pub(super) fn has_secret(&self, headers: &HeaderMap) -> bool {
        let text = |name| headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok());
        let secret = &self.0.secret;
        text(secret::HEADER).any(|v| secret.matches(v.trim()))
            || text(header::AUTHORIZATION.as_str())
                .any(|v| v.strip_prefix("Bearer ").is_some_and(|t| secret.matches(t.trim())))
            || text(header::COOKIE.as_str())
                .flat_map(|v| v.split(';'))
                .any(|pair| pair.trim().split_once('=').is_some_and(|(k, v)| k == secret::COOKIE && secret.matches(v)))
    }
}

/// What a route asks of a request.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// Health and the inspector's own files: nothing.
    Nothing,
    /// Hook intake: the secret only when configured so.
    Intake,
    /// Memory, the queue, administration: the secret.
    Secret,
}

fn need(method: &Method, path: &str) -> Need {
    match path {
        "/" | "/api/health" | "/api/readiness" | "/api/version" | "/api/processing-status" | "/api/whoami" => {
            Need::Nothing
        }
        _ if path.starts_with("/ui/") => Need::Nothing,
        "/hooks/claude-code"
        | "/api/sessions/init"
        | "/api/sessions/observations"
        | "/api/sessions/summarize"
        | "/api/sessions/complete"
            if method == Method::POST =>
        {
            Need::Intake
        }
        _ => Need::Secret,
    }
}

/// The middleware.
pub(super) async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if !guard.host_ok(host) {
        return ApiError::Forbidden("forbidden_host", "memtray answers only to 127.0.0.1, localhost and [::1]")
            .into_response();
    }
    let method = request.method();
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state {
        let foreign_origin =
            headers.get(header::ORIGIN).is_some_and(|o| o.to_str().map_or(true, |o| !guard.origin_ok(o)));
        let cross_site =
            headers.get("sec-fetch-site").is_some_and(|s| !matches!(s.to_str(), Ok("same-origin" | "none")));
        if foreign_origin || cross_site {
            return ApiError::Forbidden("cross_origin", "memtray takes no changes from other web pages")
                .into_response();
        }
    }
    let allowed = match need(method, request.uri().path()) {
        Need::Nothing => true,
        Need::Intake => !guard.0.intake_needs_secret || guard.has_secret(headers),
        Need::Secret => guard.has_secret(headers),
    };
    if !allowed {
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        let dir = tempfile::tempdir().unwrap();
        Guard::new(4417, Secret::load_or_create(dir.path()).unwrap(), false)
    }

    #[test]
    fn only_loopback_names_on_this_port_are_this_server() {
        let g = guard();
        for ok in ["127.0.0.1:4417", "127.0.0.1", "localhost:4417", "LOCALHOST", "[::1]:4417", "[::1]"] {
            assert!(g.host_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example.com",
            "evil.example.com:4417",
            "127.0.0.1.nip.io:4417",
            "attacker.localhost.evil.com",
            "localhost.evil.com:4417",
            "127.0.0.1:4418",
            "127.0.0.1:",
            "127.0.0.2:4417",
            "[::2]:4417",
            "0.0.0.0:4417",
        ] {
            assert!(!g.host_ok(bad), "{bad}");
        }
        assert!(g.origin_ok("http://127.0.0.1:4417") && g.origin_ok("http://localhost:4417"));
        assert!(
            !g.origin_ok("https://127.0.0.1:4417") && !g.origin_ok("http://evil.example.com") && !g.origin_ok("null")
        );
    }

    #[test]
    fn routes_need_what_they_expose() {
        assert_eq!(need(&Method::POST, "/hooks/claude-code"), Need::Intake);
        assert_eq!(need(&Method::POST, "/api/sessions/observations"), Need::Intake);
        assert_eq!(need(&Method::GET, "/api/health"), Need::Nothing);
        assert_eq!(need(&Method::GET, "/ui/app.js"), Need::Nothing);
        for (method, path) in [
            (Method::GET, "/api/sessions"),
            (Method::GET, "/api/sessions/1"),
            (Method::DELETE, "/api/sessions/1"),
            (Method::GET, "/api/stats"),
            (Method::POST, "/api/processing"),
            (Method::POST, "/api/queue/1/abort"),
            (Method::GET, "/stream"),
            (Method::GET, "/api/nonexistent"),
        ] {
            assert_eq!(need(&method, path), Need::Secret, "{method} {path}");
        }
    }
}
