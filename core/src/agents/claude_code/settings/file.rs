//! The settings file on disk: reading and parsing it (a missing or blank file reads as `{}`), the backup
//! taken before each write, and the write itself: a new file beside the old one, with its permissions, synced
//! and renamed over it (through a symlink, onto its target), then the directory synced. What goes into the
//! file is decided elsewhere.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::SettingsError;

/// Appended to the settings file's name for the copy taken before each write.
const BACKUP_SUFFIX: &str = ".bak-memtray";

/// A settings file as read from disk.
pub(super) struct Loaded {
    /// The file to replace: `path` with symlinks resolved.
    pub(super) target: PathBuf,
    /// The file's bytes, `None` when it does not exist.
    pub(super) bytes: Option<Vec<u8>>,
    /// The file's text (empty when missing).
    pub(super) text: String,
    /// The parsed top level.
    pub(super) root: Map<String, Value>,
    /// The file's permissions, kept by the new file and the backup.
    pub(super) permissions: Option<Permissions>,
}

/// Reads and parses the settings file; a missing file or one holding only whitespace reads as `{}`.
pub(super) fn load(path: &Path) -> Result<Loaded, SettingsError> {
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let bytes = match fs::read(&target) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(SettingsError::Read { path: path.to_path_buf(), source }),
    };
    let content = bytes.as_deref().unwrap_or_default();
    let value = if content.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(content).map_err(|source| SettingsError::Invalid { path: path.to_path_buf(), source })?
    };
    let Value::Object(root) = value else { return Err(SettingsError::NotAnObject { path: path.to_path_buf() }) };
    // Valid JSON is valid UTF-8, so this is lossless.
    let text = String::from_utf8_lossy(content).into_owned();
    let permissions = bytes.as_ref().and_then(|_| fs::metadata(&target).ok()).map(|m| m.permissions());
    Ok(Loaded { target, bytes, text, root, permissions })
}

/// Backs up the old file (if any) next to `path`, then atomically replaces the file with `after`.
pub(super) fn save(path: &Path, loaded: &Loaded, after: &str) -> Result<(), SettingsError> {
    fn write_error(path: &Path) -> impl FnOnce(io::Error) -> SettingsError {
        let path = path.to_path_buf();
        move |source| SettingsError::Write { path, source }
    }
    if let Some(dir) = loaded.target.parent()
        && !dir.as_os_str().is_empty()
    {
        fs::create_dir_all(dir).map_err(write_error(dir))?;
    }
    if let Some(bytes) = &loaded.bytes {
        let backup = backup_path(path);
        write_atomic(&backup, bytes, loaded.permissions.as_ref()).map_err(write_error(&backup))?;
    }
    write_atomic(&loaded.target, after.as_bytes(), loaded.permissions.as_ref()).map_err(write_error(path))
}

/// Where the copy of `path` taken before a write goes: `<file name>.bak-memtray` in the same directory.
pub(super) fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or("settings.json".as_ref()).to_os_string();
    name.push(BACKUP_SUFFIX);
    path.with_file_name(name)
}

/// Writes `bytes` to a new file next to `dest`, syncs it and renames it over `dest`.
fn write_atomic(dest: &Path, bytes: &[u8], permissions: Option<&Permissions>) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dest.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut attempts = 0;
    let (temp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{}.memtray-tmp-{}-{n}", name.to_string_lossy(), std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    let result = fill_and_rename(&mut file, &temp, dest, bytes, permissions);
    if result.is_err() {
        drop(file);
        let _ = fs::remove_file(&temp);
    } else {
        sync_dir(dir);
    }
    result
}

/// The fallible middle of [`write_atomic`].
fn fill_and_rename(
    file: &mut File,
    temp: &Path,
    dest: &Path,
    bytes: &[u8],
    permissions: Option<&Permissions>,
) -> io::Result<()> {
    file.write_all(bytes)?;
    if let Some(permissions) = permissions {
        file.set_permissions(permissions.clone())?;
    }
    file.sync_all()?;
    fs::rename(temp, dest)
}

/// Makes a rename in `dir` durable, where the platform allows it (best effort).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{http, keys, memtray_hooks, read_json, settings_file};
    use super::super::{install, uninstall};
    use super::*;

    #[test]
    fn invalid_json_is_refused_and_left_untouched() {
        for content in [
            "{\n  // a comment\n  \"model\": \"opus\"\n}\n",
            "{\n  \"model\": \"opus\",\n}\n",
            "{\"hooks\": {",
            "not json",
        ] {
            let (_dir, path) = settings_file(content);
            for result in [install(&path, &http(4417), false), uninstall(&path, false)] {
                let err = result.unwrap_err();
                assert!(matches!(err, SettingsError::Invalid { .. }), "{err:?}");
                let message = err.to_string();
                assert!(message.contains("not valid JSON"), "{message}");
                assert!(message.contains("did not change"), "{message}");
                assert!(message.contains("line ") && message.contains("column "), "{message}");
                assert!(message.contains(&path.display().to_string()), "{message}");
            }
            assert_eq!(fs::read(&path).unwrap(), content.as_bytes());
            assert!(!backup_path(&path).exists());
        }
    }

    #[test]
    fn an_empty_or_blank_file_counts_as_an_empty_object() {
        for content in ["", "  \n\t\n"] {
            let (_dir, path) = settings_file(content);
            assert!(!uninstall(&path, false).unwrap().changed);
            let change = install(&path, &http(4417), false).unwrap();
            assert!(change.changed);
            assert_eq!(change.before, content);
            assert_eq!(keys(&read_json(&path)), ["hooks"]);
            assert_eq!(fs::read_to_string(backup_path(&path)).unwrap(), content);
        }
    }

    #[test]
    fn the_backup_holds_the_original_bytes() {
        let original = "{ \"model\":\"opus\" ,\n\n     \"env\" : {} }";
        let (dir, path) = settings_file(original);
        install(&path, &http(4417), false).unwrap();
        let backup = dir.path().join("settings.json.bak-memtray");
        assert_eq!(fs::read_to_string(&backup).unwrap(), original);
        let installed = fs::read_to_string(&path).unwrap();

        // Each write overwrites the backup with the file as it was just before.
        uninstall(&path, false).unwrap();
        assert_eq!(fs::read_to_string(&backup).unwrap(), installed);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.contains("memtray-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn uninstall_of_a_missing_file_is_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let change = uninstall(&path, false).unwrap();
        assert!(!change.changed);
        assert_eq!(change.before, "");
        assert!(!path.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_file_is_edited_through_the_link_and_permissions_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/claude.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        fs::write(&real, r#"{"model": "opus"}"#).unwrap();
        fs::set_permissions(&real, Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("settings.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        let change = install(&link, &http(4417), false).unwrap();
        assert_eq!(change.path, link);
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(read_json(&real)["model"], "opus");
        assert_eq!(memtray_hooks(&read_json(&real), "Stop").len(), 1);
        assert_eq!(fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600);
        let backup = dir.path().join("settings.json.bak-memtray");
        assert_eq!(fs::read_to_string(&backup).unwrap(), r#"{"model": "opus"}"#);
        assert_eq!(fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
