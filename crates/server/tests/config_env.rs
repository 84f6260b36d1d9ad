//! The binary takes its settings from its own environment (the unit tests in
//! `config.rs` resolve from explicit variables instead). Each child gets a
//! cleared environment, so what the developer has set cannot leak in.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts `conclave` with only `vars` set; its ready line, or its error
/// output if it exits.
fn start(args: &[&str], vars: &[(&str, &str)]) -> Result<String, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .env("CONCLAVE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the conclave binary starts");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    let _ = child.kill();
    let out = child.wait_with_output().expect("the child exits");
    if line.starts_with("Conclave is running") {
        Ok(line)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_binary_reads_its_environment_below_its_flags() {
    let ready = start(
        &[],
        &[
            ("CONCLAVE_LISTEN", "127.0.0.1:0"),
            ("CONCLAVE_UDP_PORT", "0"),
            ("CONCLAVE_PUBLIC_IP", "127.0.0.2"),
        ],
    )
    .expect("starts from the environment alone");
    assert!(ready.contains("http://127.0.0.1:"), "{ready}");
    assert!(ready.contains("media on UDP 127.0.0.2:"), "{ready}");

    let bad = [
        ("CONCLAVE_LISTEN", "not-an-address"),
        ("CONCLAVE_UDP_PORT", "0"),
    ];
    let err = start(&[], &bad).expect_err("a bad variable stops the binary");
    assert!(err.contains("CONCLAVE_LISTEN"), "{err}");
    let ready = start(&["--listen", "127.0.0.1:0"], &bad).expect("the flag wins");
    assert!(ready.contains("http://127.0.0.1:"), "{ready}");
}
