//! Error pages through the real binary: in the app's design (its own
//! stylesheet, allowed by the CSP), with a way forward, and never echoing
//! what a visitor typed unescaped.

mod common;

use std::time::Duration;

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request; returns the status, the head and the body.
async fn request(server: &Server, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(server.http).await.expect("connect");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn assert_styled_with_a_way_forward(head: &str, body: &str) {
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy:"), "{head}");
    assert!(
        body.contains(r#"<link rel="stylesheet" href="/conclave-error.css">"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<a class="btn" href="/">Go to the start page</a>"#),
        "{body}"
    );
    assert!(
        !body.contains("style="),
        "inline styles are refused by the CSP"
    );
}

#[tokio::test]
async fn a_bad_room_link_gets_a_styled_page_that_says_why_and_leads_back() {
    let server = Server::start();
    let (status, head, body) = request(&server, "GET", "/team%20%3Cb%3Emeeting").await;
    assert_eq!(status, 400);
    assert_styled_with_a_way_forward(&head, &body);
    assert!(body.contains("This is not a meeting link"), "{body}");
    // What the visitor typed is shown back, escaped.
    assert!(body.contains("team &lt;b&gt;meeting"), "{body}");
    assert!(!body.contains("<b>"), "{body}");
}

#[tokio::test]
async fn missing_files_and_wrong_methods_get_styled_pages_too() {
    let server = Server::start();
    for path in ["/assets/missing-1234.js", "/a/b"] {
        let (status, head, body) = request(&server, "GET", path).await;
        assert_eq!(status, 404, "{path}");
        assert_styled_with_a_way_forward(&head, &body);
    }
    let (status, head, body) = request(&server, "POST", "/").await;
    assert_eq!(status, 405);
    assert_styled_with_a_way_forward(&head, &body);
    // A valid room name is the app itself.
    let (status, _, body) = request(&server, "GET", "/weekly-sync").await;
    assert_eq!(status, 200);
    assert!(!body.contains("Go to the start page"));
}

#[tokio::test]
async fn the_error_stylesheet_is_served_from_this_origin() {
    let server = Server::start();
    let (status, head, body) = request(&server, "GET", "/conclave-error.css").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/css"), "{head}");
    assert!(body.contains(".btn"), "{body}");
}
