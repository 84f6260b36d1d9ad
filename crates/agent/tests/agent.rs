//! The agent against the real `conclave` binary (and a fake server for the
//! misbehaving cases), all on loopback, each test bounded in time.
//!
//! The binary is expected next to the test's `deps/` directory, i.e.
//! `target/release/conclave` when run by `cargo test --release --workspace`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conclave_agent::{
    spawn, AgentError, Notice, ParticipantConfig, ParticipantHandle, RoomUrl, Tagged, VideoClass,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

struct Server {
    child: Child,
    http: SocketAddr,
}

fn conclave_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let bin = dir.join("conclave");
    assert!(
        bin.exists(),
        "{} is missing: build the server first with `cargo build --release -p conclave-server` \
         (or run `cargo test --release --workspace`)",
        bin.display()
    );
    bin
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(conclave_binary())
            .args(["--listen", "127.0.0.1:0", "--udp-port", "0"])
            .env("CONCLAVE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the conclave binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let http = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|h| h.parse().ok());
        let Some(http) = http else {
            let _ = child.kill();
            panic!("unexpected ready line from the server: {line:?}");
        };
        Server { child, http }
    }

    fn room(&self, room: &str) -> RoomUrl {
        RoomUrl::parse(&format!("http://{}/{room}", self.http)).expect("a valid room link")
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A stopped server must be continued to die cleanly in every case.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(url: RoomUrl, name: &str, seed: u64) -> ParticipantConfig {
    let mut c = ParticipantConfig::new(url, name);
    c.video = Some(VideoClass::P180);
    c.seed = seed;
    c
}

/// Waits for a notice matching `want`, returning it; panics with everything
/// seen when `wait` passes.
async fn expect_notice(
    rx: &mut mpsc::UnboundedReceiver<Tagged>,
    wait: Duration,
    what: &str,
    mut want: impl FnMut(&Tagged) -> bool,
) -> Tagged {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(t)) if want(&t) => return t,
            Ok(Some(t)) => seen.push(format!("{}: {}", t.participant, t.notice)),
            _ => panic!("no {what} within {wait:?}; notices seen: {seen:#?}"),
        }
    }
}

async fn wait_connected(handles: &[ParticipantHandle], wait: Duration) {
    let deadline = Instant::now() + wait;
    while !handles.iter().all(|h| h.snapshot().connected) {
        assert!(
            Instant::now() < deadline,
            "not every participant connected media within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_agents_in_one_room_all_receive_audio_video_and_frames_from_the_nine_others() {
    let server = Server::start();
    let (tx, _rx) = mpsc::unbounded_channel();
    let handles: Vec<ParticipantHandle> = (0..10)
        .map(|i| {
            spawn(
                config(server.room("ten"), &format!("p{i}"), i + 1),
                tx.clone(),
            )
        })
        .collect();
    let wait = Duration::from_secs(20);
    let deadline = Instant::now() + wait;
    loop {
        let missing: Vec<String> = handles
            .iter()
            .flat_map(|h| {
                let s = h.snapshot();
                let complete = s
                    .remotes
                    .values()
                    .filter(|r| {
                        r.audio.packets > 0 && r.video.packets > 0 && r.video.frames_complete > 0
                    })
                    .count();
                (complete < 9).then(|| format!("{} has media from {complete}/9", s.name))
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        if let Some(h) = handles.iter().find(|h| h.is_finished()) {
            panic!("{} ended early", h.name);
        }
        assert!(Instant::now() < deadline, "after {wait:?}: {missing:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A late subscriber makes the SFU ask publishers for a keyframe (PLI/FIR).
    assert!(
        handles.iter().any(|h| h.snapshot().keyframe_requests > 0),
        "no participant was asked for a keyframe"
    );
    // Our RFC 6464 audio levels drive the server's speaking indicator.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !handles.iter().any(|h| h.snapshot().speaking_updates > 0) {
        assert!(Instant::now() < deadline, "no speaking updates arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in handles {
        let name = h.name.clone();
        h.stop()
            .await
            .unwrap_or_else(|e| panic!("{name} ended with {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_between_two_agents_arrives_in_order_with_names() {
    let server = Server::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let alice = spawn(config(server.room("chat"), "alice", 1), tx.clone());
    expect_notice(&mut rx, Duration::from_secs(5), "alice's welcome", |t| {
        matches!(t.notice, Notice::Joined { .. })
    })
    .await;
    let bob = spawn(config(server.room("chat"), "bob", 2), tx.clone());
    expect_notice(&mut rx, Duration::from_secs(5), "bob's welcome", |t| {
        t.participant == "bob" && matches!(t.notice, Notice::Joined { .. })
    })
    .await;
    let texts = ["one", "two", "three — ünïcödé"];
    for text in texts {
        alice.send_chat(text);
    }
    bob.send_chat("back to you");
    let mut at_bob = Vec::new();
    while at_bob.len() < 4 {
        let t = expect_notice(&mut rx, Duration::from_secs(5), "chat at bob", |t| {
            t.participant == "bob" && matches!(t.notice, Notice::Chat { .. })
        })
        .await;
        if let Notice::Chat {
            seq, name, text, ..
        } = t.notice
        {
            at_bob.push((seq, name, text));
        }
    }
    let from_alice: Vec<&str> = at_bob
        .iter()
        .filter(|(_, n, _)| n == "alice")
        .map(|(_, _, t)| t.as_str())
        .collect();
    assert_eq!(from_alice, texts, "alice's messages in order at bob");
    assert!(at_bob
        .iter()
        .any(|(_, n, t)| n == "bob" && t == "back to you"));
    let seqs: Vec<u32> = at_bob.iter().map(|(s, _, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "seq: {seqs:?}");
    alice.stop().await.expect("alice leaves cleanly");
    bob.stop().await.expect("bob leaves cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_ends_the_call_with_a_signaling_error_not_a_hang() {
    let mut server = Server::start();
    let (tx, _rx) = mpsc::unbounded_channel();
    let a = spawn(config(server.room("kill"), "a", 1), tx.clone());
    let b = spawn(config(server.room("kill"), "b", 2), tx.clone());
    let both = [a, b];
    wait_connected(&both, Duration::from_secs(10)).await;
    let _ = server.child.kill();
    let _ = server.child.wait();
    for h in both {
        let name = h.name.clone();
        let result = tokio::time::timeout(Duration::from_secs(5), h.finish())
            .await
            .unwrap_or_else(|_| panic!("{name} still running 5 s after the server died"));
        assert!(
            matches!(result, Err(AgentError::SignalingLost(_))),
            "{name}: {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_reported_as_no_media_within_seconds() {
    let server = Server::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut ca = config(server.room("frozen"), "a", 1);
    ca.no_media_after = Duration::from_secs(2);
    let a = spawn(ca, tx.clone());
    let b = spawn(config(server.room("frozen"), "b", 2), tx.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.snapshot().remotes.values().all(|r| r.video.packets == 0) {
        assert!(Instant::now() < deadline, "a never received media from b");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.signal("-STOP");
    let stopped = Instant::now();
    let t = expect_notice(&mut rx, Duration::from_secs(6), "a no-media warning", |t| {
        t.participant == "a" && matches!(t.notice, Notice::NoMedia { .. })
    })
    .await;
    assert!(
        t.notice.to_string().contains("no media from b"),
        "{}",
        t.notice
    );
    assert!(stopped.elapsed() < Duration::from_secs(5));
    server.signal("-CONT");
    // Whatever happens after the freeze, stopping is clean and bounded.
    for h in [a, b] {
        let _ = tokio::time::timeout(Duration::from_secs(5), h.stop())
            .await
            .expect("the agent stops within 5 s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_garbage_is_reported_message_by_message_and_ends_cleanly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fake = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("the agent connects");
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("websocket handshake");
        let join = ws.next().await.expect("a first message").expect("readable");
        let join = join.into_text().expect("text").to_string();
        for text in [
            "{this is not json",
            r#"{"type":"surprise","x":1}"#,
            r#"{"type":"welcome","you":{"id":1,"name":"x","media":{"microphone":true,"camera":true,"screen":false}},"participants":[]}"#,
            r#"{"type":"offer","sdp":"v=0\r\ngarbage\r\n","tracks":[]}"#,
            r#"{"type":"chat","seq":"zero"}"#,
        ] {
            ws.send(Message::text(text)).await.expect("send");
        }
        ws.send(Message::binary(vec![1u8, 2, 3]))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = ws.close(None).await;
        join
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let url = RoomUrl::parse(&format!("http://{addr}/fake")).expect("url");
    let agent = spawn(config(url, "victim", 1), tx);
    let wait = Duration::from_secs(5);
    for needle in [
        "malformed JSON",
        "unknown message type",
        "unreadable SDP",
        "unreadable \"chat\"",
        "binary",
    ] {
        expect_notice(
            &mut rx,
            wait,
            needle,
            |t| matches!(&t.notice, Notice::Warning(w) if w.contains(needle)),
        )
        .await;
    }
    let result = tokio::time::timeout(wait, agent.finish())
        .await
        .expect("the agent ends when the fake server closes");
    assert!(
        matches!(result, Err(AgentError::SignalingLost(_))),
        "{result:?}"
    );
    let join = fake.await.expect("fake server task");
    assert!(
        join.contains(r#""type":"join""#) && join.contains("victim"),
        "{join}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_join_is_an_error_naming_the_reason() {
    let server = Server::start();
    let (tx, _rx) = mpsc::unbounded_channel();
    let agent = spawn(config(server.room("refused"), "bad\u{7}name", 1), tx);
    let result = tokio::time::timeout(Duration::from_secs(5), agent.finish())
        .await
        .expect("the agent ends when refused");
    assert!(
        matches!(
            result,
            Err(AgentError::Refused {
                code: conclave_protocol::ErrorCode::InvalidName,
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_agent_connects_media_without_anyone_else_in_the_room() {
    let server = Server::start();
    let (tx, _rx) = mpsc::unbounded_channel();
    let alone = spawn(config(server.room("alone"), "solo", 1), tx);
    wait_connected(std::slice::from_ref(&alone), Duration::from_secs(5)).await;
    alone.stop().await.expect("leaves cleanly");
}
