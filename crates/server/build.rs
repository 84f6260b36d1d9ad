//! Builds the web client (web/ → web/dist) so that `cargo build` alone gives a
//! complete binary. Set CONCLAVE_SKIP_WEB_BUILD=1 to use web/dist as it is.

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
    ] {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
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
        run(Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(web))?;
    }
    run(Command::new(npm).args(["run", "build"]).current_dir(web))
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
