//! Builds the web client (web/ → web/dist) so that `cargo build` alone gives a
//! complete binary. Set CONCLAVE_SKIP_WEB_BUILD=1 to use web/dist as it is.
//!
//! `npm run build` first builds the E2EE core's WebAssembly module
//! (web/scripts/ensure-wasm.mjs → scripts/build-wasm.sh → a nested cargo with
//! its own target directory), so the E2EE sources are inputs here too, and
//! this build's cargo settings are removed from npm's environment.

use std::path::Path;
use std::process::Command;

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    for input in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "public",
        "scripts",
    ] {
        // A path that does not exist (web/public, today) would make cargo
        // rerun this script, and so recompile the server, on every build.
        if web.join(input).exists() {
            println!("cargo:rerun-if-changed={}", web.join(input).display());
        }
    }
    let root = web.join("..");
    for input in [
        "crates/e2ee/src",
        "crates/e2ee/Cargo.toml",
        "crates/e2ee-wasm/src",
        "crates/e2ee-wasm/Cargo.toml",
        "scripts/build-wasm.sh",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=CONCLAVE_SKIP_WEB_BUILD");
    let dist = web.join("dist");
    if std::env::var_os("CONCLAVE_SKIP_WEB_BUILD").is_none() && web.join("package.json").exists() {
        if let Err(e) = build_web(&web) {
            println!("cargo:warning=web client not rebuilt: {e}");
        }
    }
    if !dist.join("index.html").exists() {
        // Keep the crate compiling; the server then explains what is missing.
        std::fs::create_dir_all(&dist).expect("web/dist can be created");
        println!(
            "cargo:warning=web/dist/index.html is missing: the binary will serve no web client"
        );
    }
}

fn build_web(web: &Path) -> Result<(), String> {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    if !web.join("node_modules").exists() {
        run(clean_env(Command::new(npm).args(["ci", "--no-audit", "--no-fund"])).current_dir(web))?;
    }
    run(clean_env(Command::new(npm).args(["run", "build"])).current_dir(web))
}

/// Removes what cargo sets for build scripts (and what a jobserver passes
/// down) so the wasm build's nested cargo starts from the user's own settings
/// instead of this build's flags, target directory, wrapper or compiler.
fn clean_env(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_set = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("DEP_")
            || matches!(
                key,
                "CARGO"
                    | "RUSTFLAGS"
                    | "RUSTDOC"
                    | "RUSTDOCFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "PROFILE"
                    | "NUM_JOBS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
            );
        if cargo_set {
            command.env_remove(key);
        }
    }
    command
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}
