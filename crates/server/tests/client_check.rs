//! `conclave check-client`: the web client a server serves is compared with
//! this release's, so a server that serves a modified client (one that could
//! read the invite secret) is caught.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn conclave(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A server in the middle that serves the real client with one changed byte
/// in the main script (the same length, so only the hash can tell).
async fn tampering_proxy(target: std::net::SocketAddr) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = inbound.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let mut upstream = TcpStream::connect(target).await.unwrap();
                upstream.write_all(&request).await.unwrap();
                let mut response = Vec::new();
                upstream.read_to_end(&mut response).await.unwrap();
                let line = String::from_utf8_lossy(&request[..request.len().min(200)]).into_owned();
                if line.starts_with("GET /assets/index-") && line.contains(".js ") {
                    let at = response.windows(8).rposition(|w| w == b"conclave").unwrap();
                    response[at] = b'C';
                }
                let _ = inbound.write_all(&response).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_client_is_checked_against_this_release() {
    let server = Server::start();

    let (code, hashes) = conclave(&["client-hashes"]);
    assert_eq!(code, 0, "{hashes}");
    assert!(
        hashes.lines().any(|l| l.ends_with("  index.html")),
        "{hashes}"
    );
    assert!(hashes.contains("# client digest "), "{hashes}");

    // The honest server: every file matches (a room page is the same page).
    let url = format!("http://{}/team-room#s=not-sent", server.http);
    let (code, report) = conclave(&["check-client", &url]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("exactly this release's"), "{report}");
    for kind in ["index.html", ".js", ".css", ".wasm"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok ") && l.ends_with(kind)),
            "{kind} checked: {report}"
        );
    }

    // Against a published manifest (here: this binary's, from a file).
    let dir = std::env::temp_dir().join(format!("conclave-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("client.sha256");
    std::fs::write(&manifest, &hashes).unwrap();
    let (code, report) = conclave(&[
        "check-client",
        &url,
        "--expected",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{report}");

    // A manifest of another release: the difference is named.
    let other: String = hashes
        .lines()
        .map(|l| {
            if l.ends_with("  index.html") {
                format!("{}{}\n", "0".repeat(64), &l[64..])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&manifest, other).unwrap();
    let (code, report) = conclave(&[
        "check-client",
        &url,
        "--expected",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("DIFFERENT") && l.ends_with("index.html")),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // A server that serves a modified script is caught.
    let proxy = tampering_proxy(server.http).await;
    let (code, report) = tokio::task::spawn_blocking(move || {
        conclave(&["check-client", &format!("http://{proxy}/team-room")])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("DIFFERENT") && l.contains("assets/index-")),
        "{report}"
    );
    assert!(report.contains("NOT this release's"), "{report}");

    // Nothing listening: a clear error, not a verdict.
    let (code, report) = conclave(&["check-client", "http://127.0.0.1:9/"]);
    assert_eq!(code, 2, "{report}");
    assert!(report.contains("cannot connect"), "{report}");
}
