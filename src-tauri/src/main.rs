//! `memtray-desktop`: the tray app. Everything is in the library, so tests can reach it.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> anyhow::Result<()> {
    memtray_desktop::run()
}
