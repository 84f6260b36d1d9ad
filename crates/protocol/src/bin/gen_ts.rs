//! Writes the web client's protocol types: `cargo run -p conclave-protocol --bin gen-ts`.
use std::path::PathBuf;

fn main() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web/src/protocol.gen.ts");
    std::fs::write(&path, conclave_protocol::typescript_bindings())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("wrote {}", path.display());
}
