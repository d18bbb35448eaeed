//! Start at login, through Tauri's autostart plugin: an XDG autostart entry on Linux, a LaunchAgent on macOS,
//! a registry value on Windows. The entry itself is the truth the tray shows; nothing else remembers it.
//!
//! On Linux the plugin writes `Exec=` unquoted and needs `~/.config` to exist; both are put right here.

use tauri::AppHandle;
use tauri_plugin_autostart::ManagerExt;

/// The argument the entry starts the app with: tray only, no window.
pub const ARG: &str = "--autostart";

/// Whether the app starts at login.
pub fn is_enabled(app: &AppHandle) -> bool {
    app.autolaunch().is_enabled().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the start-at-login state");
        false
    })
}

/// Turns start at login on or off.
pub fn set(app: &AppHandle, on: bool) -> Result<(), tauri_plugin_autostart::Error> {
    if !on {
        return app.autolaunch().disable();
    }
    #[cfg(target_os = "linux")]
    let entry = std::env::home_dir().map(|home| home.join(".config/autostart/memtray.desktop"));
    #[cfg(target_os = "linux")]
    if let Some(dir) = entry.as_ref().and_then(|e| e.parent()) {
        std::fs::create_dir_all(dir)?;
    }
    app.autolaunch().enable()?;
    #[cfg(target_os = "linux")]
    if let (Some(entry), Ok(exe)) = (entry, std::env::current_exe()) {
        quote_exec_line(&entry, &exe.to_string_lossy())?;
    }
    Ok(())
}

/// Rewrites the entry's `Exec=` line with the program quoted as the Desktop Entry spec asks.
#[cfg(target_os = "linux")]
fn quote_exec_line(entry: &std::path::Path, exe: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(entry)?;
    let exec = format!("Exec={} {}", desktop_exec_arg(exe), ARG);
    let fixed: Vec<String> =
        text.lines().map(|line| if line.starts_with("Exec=") { exec.clone() } else { line.to_string() }).collect();
    std::fs::write(entry, fixed.join("\n") + "\n")
}

/// One argument of a Desktop Entry `Exec` key: quoted when it holds a reserved character, with `"`, `` ` ``,
/// `$` and `\` escaped inside the quotes, then every `\` doubled for the string-value level and `%` doubled
/// for the field-code level.
pub fn desktop_exec_arg(arg: &str) -> String {
    const RESERVED: &[char] =
        &[' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')', '`'];
    let arg = arg.replace('%', "%%");
    if !arg.contains(RESERVED) {
        return arg;
    }
    let mut quoted = String::from("\"");
    for c in arg.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted.replace('\\', "\\\\")
}

#[cfg(test)]
mod tests {
    use super::desktop_exec_arg;

    #[test]
    fn exec_arguments_are_quoted_only_when_needed() {
        assert_eq!(desktop_exec_arg("/usr/bin/memtray-desktop"), "/usr/bin/memtray-desktop");
        assert_eq!(desktop_exec_arg("/opt/My Apps/memtray"), "\"/opt/My Apps/memtray\"");
        assert_eq!(desktop_exec_arg("/a/100%/m"), "/a/100%%/m");
        // `$` is escaped inside the quotes, and that backslash is doubled at the string level.
        assert_eq!(desktop_exec_arg("/tmp/$x y"), "\"/tmp/\\\\$x y\"");
        assert_eq!(desktop_exec_arg("/tmp/a\"b"), "\"/tmp/a\\\\\"b\"");
    }
}
