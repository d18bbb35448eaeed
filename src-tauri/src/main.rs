//! `memtray-desktop`: the tray app, or with `--inspector URL` the inspector process the tray starts. Everything is
//! in the library, so tests can reach it.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use memtray_desktop::{inspector, window};

fn main() -> anyhow::Result<()> {
    memtray_core::config::private_files();
    let mut args = std::env::args().skip(1);
    match (args.next(), args.next()) {
        (Some(arg), Some(address)) if arg == inspector::ARG => window::run(&address),
        _ => memtray_desktop::run(),
    }
}
