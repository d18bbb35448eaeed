//! The inspector window: the same web UI the server serves at `/`, loaded from the core's address.
//!
//! Created on demand and destroyed when closed, so an idle app holds no webview; closing it never quits.

use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

const LABEL: &str = "inspector";

/// Shows the inspector, at a session when one is given: focuses the open window or creates one.
pub fn open(app: &AppHandle, base_url: &str, session_id: Option<i64>) {
    let address = match session_id {
        Some(id) => format!("{base_url}/#/sessions/{id}"),
        None => format!("{base_url}/"),
    };
    let url = match address.parse::<tauri::Url>() {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(error = %e, %address, "not an inspector address");
            return;
        }
    };
    if let Some(window) = app.get_webview_window(LABEL) {
        if session_id.is_some()
            && let Err(e) = window.navigate(url)
        {
            tracing::warn!(error = %e, "could not show the session");
        }
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        return;
    }
    let built = WebviewWindowBuilder::new(app, LABEL, WebviewUrl::External(url))
        .title("memtray")
        .inner_size(1100.0, 760.0)
        .min_inner_size(560.0, 400.0)
        .build();
    if let Err(e) = built {
        tracing::error!(error = %e, "could not open the inspector window");
    }
}
