//! The benchmark still measures: a short, light run of each mode against the
//! real binaries (`target/release/conclave`, built beforehand) counts the
//! packets it forwards, with little loss.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn server() -> PathBuf {
    let path = std::env::var_os("CONCLAVE_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/conclave"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --release -p conclave-server` \
         (or point CONCLAVE_BIN at a conclave binary)",
        path.display()
    );
    path
}

fn run(mode: &str, seconds: &str, server: &Path) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_conclave-bench"))
        .args([mode, "--fanout", "2", "--pps", "600", "--seconds", seconds])
        .args(["--warmup", "0.5", "--json", "--server"])
        .arg(server)
        .output()
        .expect("conclave-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{mode} run failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one line of JSON")
}

#[test]
fn both_pipelines_forward_and_measure_with_little_loss() {
    let server = server();
    for (mode, seconds) in [("conclave", "2"), ("relay", "1")] {
        let result = run(mode, seconds, &server);
        let number = |key: &str| result[key].as_f64().expect(key);
        assert!(
            (280.0..=320.0).contains(&number("sent_pps")),
            "{mode}: the publisher keeps its rate: {result}"
        );
        assert!(
            number("forwarded_pps") > 500.0,
            "{mode}: packets arrive: {result}"
        );
        assert!(number("loss") < 0.05, "{mode}: under 5% loss: {result}");
        assert!(
            (1150.0..=1250.0).contains(&number("datagram_bytes")),
            "{mode}: datagrams of about 1200 bytes: {result}"
        );
        if mode == "conclave" {
            assert!(
                result["cipher"]
                    .as_str()
                    .is_some_and(|c| c.contains("SRTP")),
                "the negotiated SRTP profile is reported: {result}"
            );
        }
    }
}
