//! Tauri's build step, pointed at the one `tauri.conf.json` at the top of the repository.
//!
//! tauri-build reads the config from the build script's working directory, which Cargo sets to this crate;
//! moving to the repository root makes it read the top-level file and resolve `icons/` from there too.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::set_current_dir(&root).expect("the repository root");
    println!("cargo:rerun-if-changed={}", root.join("tauri.conf.json").display());
    tauri_build::build();
}
