//! The desktop app's own preferences, changed from the tray: today whether notifications are shown.
//!
//! The config file's `notifications` is the starting value; once the tray checkbox is used, its choice is kept
//! in `desktop.json` in the state dir and wins. Start at login is not kept here: the autostart entry is the truth.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Saved {
    notifications: bool,
}

/// A cheap handle; clone freely.
#[derive(Clone)]
pub struct Prefs {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the tray's choices are kept.
    file: PathBuf,
    /// Read by the notifier for every notification, written by the tray checkbox.
    notifications: AtomicBool,
}

impl Prefs {
    /// Loads the saved choice, or takes the config's value.
    pub fn load(state_dir: PathBuf, configured: bool) -> Prefs {
        let file = state_dir.join("desktop.json");
        let notifications = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Saved>(&bytes).ok())
            .map_or(configured, |saved| saved.notifications);
        Prefs { inner: Arc::new(Inner { file, notifications: AtomicBool::new(notifications) }) }
    }

    /// Whether notifications are shown.
    pub fn notifications(&self) -> bool {
        self.inner.notifications.load(Ordering::Relaxed)
    }

    /// Turns notifications on or off and keeps the choice.
    pub fn set_notifications(&self, on: bool) {
        self.inner.notifications.store(on, Ordering::Relaxed);
        let saved = serde_json::to_vec(&Saved { notifications: on }).expect("serializes");
        let write = self.inner.file.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
            let tmp = self.inner.file.with_extension("json.tmp");
            std::fs::write(&tmp, saved)?;
            std::fs::rename(&tmp, &self.inner.file)
        });
        if let Err(e) = write {
            tracing::warn!(error = %e, file = %self.inner.file.display(), "could not keep the notifications choice");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tray_choice_outlives_the_config_value() {
        let dir = tempfile::tempdir().unwrap();
        let prefs = Prefs::load(dir.path().join("state"), true);
        assert!(prefs.notifications());
        prefs.set_notifications(false);
        assert!(!Prefs::load(dir.path().join("state"), true).notifications());
        assert!(Prefs::load(dir.path().join("elsewhere"), true).notifications());
    }
}
