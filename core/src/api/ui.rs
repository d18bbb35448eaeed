//! The inspector web UI: plain HTML, CSS and ES modules from the top-level `ui/` folder, compiled into the
//! binary and served at `/` and `/ui/<file>`. Nothing is read from disk or built at run time; the page talks
//! to the JSON API and `/stream` like any other client and routes with the URL hash, so the server needs
//! only these two routes. Every answer carries a same-origin-only Content-Security-Policy (no inline
//! script) and `Cache-Control: no-cache`, so a new binary's UI is picked up on the next load.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::error::{ApiError, ApiPath};
use super::guard::Guard;
use crate::secret;

/// Same origin for everything, no inline script or style, no plugins, no framing, no form posts.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// The name under `/ui/`.
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset { name: $name, content_type: $content_type, body: include_str!(concat!("../../../ui/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the UI. A file missing here is a 404 in the browser; a unit test checks that every file
/// the page imports is listed.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("time.js", JS),
    asset!("live.js", JS),
    asset!("refresh.js", JS),
    asset!("confirm.js", JS),
    asset!("overview.js", JS),
    asset!("sessions.js", JS),
    asset!("session.js", JS),
    asset!("memory.js", JS),
    asset!("project.js", JS),
    asset!("queue.js", JS),
];

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

fn respond(asset: &'static Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The query of `GET /?token=…`, how the desktop window and `memtray open` hand the page this user's secret.
#[derive(serde::Deserialize)]
pub(super) struct Handover {
    token: Option<String>,
}

/// `GET /`: the page. With this user's secret in `?token=`, it is set as an HttpOnly, SameSite=Strict cookie
/// and the browser is sent to `/`, so the secret leaves the address bar and the history at once.
pub(super) async fn index(State(guard): State<Guard>, Query(handover): Query<Handover>) -> Response {
    if let Some(token) = handover.token.filter(|t| guard.secret().matches(t)) {
        let cookie = format!("{}={token}; HttpOnly; SameSite=Strict; Path=/", secret::COOKIE);
        let mut response = Redirect::to("/").into_response();
        let headers = response.headers_mut();
        headers.insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a hex secret is a header value"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        return response;
    }
    respond(find("index.html").expect("index.html is embedded"))
}

/// `GET /ui/{file}`: a script, the stylesheet or the icon.
pub(super) async fn asset(ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    find(&name).map(respond).ok_or(ApiError::NotFound("UI file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names a text refers to after `marker` up to the closing quote: `from './x.js'`, `src="/ui/x"`.
    fn references<'a>(text: &'a str, marker: &str, quote: char) -> Vec<&'a str> {
        text.match_indices(marker)
            .filter_map(|(at, _)| {
                let rest = &text[at + marker.len()..];
                rest.find(quote).map(|end| &rest[..end])
            })
            .collect()
    }

    #[test]
    fn every_file_the_page_loads_is_embedded() {
        let index = find("index.html").unwrap().body;
        let mut wanted: Vec<&str> = references(index, "=\"/ui/", '"');
        for script in ASSETS.iter().filter(|a| a.content_type == JS) {
            wanted.extend(references(script.body, "from './", '\''));
            wanted.extend(references(script.body, "import('./", '\''));
        }
        assert!(wanted.contains(&"app.js") && wanted.contains(&"app.css"), "{wanted:?}");
        for name in &wanted {
            assert!(find(name).is_some(), "{name} is referenced but not embedded");
        }
        for asset in ASSETS.iter().filter(|a| a.name != "index.html") {
            assert!(wanted.contains(&asset.name), "{} is embedded but nothing loads it", asset.name);
        }
    }

    #[test]
    fn every_module_is_preloaded_so_imports_do_not_load_one_level_at_a_time() {
        let index = find("index.html").unwrap().body;
        let preloaded = references(index, "<link rel=\"modulepreload\" href=\"/ui/", '"');
        for script in ASSETS.iter().filter(|a| a.content_type == JS && a.name != "app.js") {
            assert!(preloaded.contains(&script.name), "{} is not in index.html's modulepreload list", script.name);
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let index = find("index.html").unwrap().body;
        assert!(!index.contains("<script>") && !index.contains("style="), "the CSP forbids inline code");
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            assert!(!asset.body.contains("innerHTML"), "{}: build DOM nodes, never HTML strings", asset.name);
            assert!(asset.body.starts_with("//"), "{}: open with a header comment", asset.name);
        }
    }
}
