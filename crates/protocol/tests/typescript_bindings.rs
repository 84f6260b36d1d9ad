//! The web client's generated protocol types must match the Rust definitions.

#[test]
fn checked_in_typescript_matches_the_rust_protocol() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/src/protocol.gen.ts");
    let on_disk = std::fs::read_to_string(path).expect("web/src/protocol.gen.ts exists");
    assert!(
        on_disk == conclave_protocol::typescript_bindings(),
        "web/src/protocol.gen.ts is stale: run `cargo run -p conclave-protocol --bin gen-ts`"
    );
}
