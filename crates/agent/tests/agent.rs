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

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use conclave_agent::{
    spawn, AgentError, InviteSecret, Notice, ParticipantConfig, ParticipantHandle, RoomUrl, Tagged,
    VideoClass,
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

fn secret() -> InviteSecret {
    InviteSecret::from_bytes(b"the agent tests' invite secret..".to_vec()).expect("32 bytes")
}

/// A 180p participant holding the room's invite secret.
fn config(url: RoomUrl, name: &str, seed: u64) -> ParticipantConfig {
    let mut c = ParticipantConfig::new(url, name);
    c.video = Some(VideoClass::P180);
    c.seed = seed;
    c.invite_secret = Some(secret());
    c
}

/// Waits until every participant is in one MLS group of `n` members with
/// one security code, and returns that code.
async fn wait_in_one_group(handles: &[&ParticipantHandle], n: usize, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    loop {
        let snaps: Vec<_> = handles.iter().map(|h| h.snapshot()).collect();
        let codes: std::collections::BTreeSet<Option<String>> =
            snaps.iter().map(|s| s.security_code.clone()).collect();
        if snaps.iter().all(|s| s.in_group && s.members == n) && codes.len() == 1 {
            if let Some(Some(code)) = codes.into_iter().next() {
                return code;
            }
        }
        if let Some(h) = handles.iter().find(|h| h.is_finished()) {
            panic!("{} ended early", h.name);
        }
        assert!(
            Instant::now() < deadline,
            "not one group of {n} within {wait:?}: {:?}",
            snaps
                .iter()
                .map(|s| (s.name.clone(), s.in_group, s.members, s.epoch))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
async fn ten_agents_in_one_encrypted_group_decrypt_audio_and_video_from_the_nine_others() {
    let server = Server::start();
    let (tx, _rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut handles: Vec<ParticipantHandle> = (0..9)
        .map(|i| {
            spawn(
                config(server.room("ten"), &format!("p{i}"), i + 1),
                tx.clone(),
            )
        })
        .collect();
    // Nine join one MLS group at once (by invite proof, through members'
    // commits) and agree on its security code…
    let all: Vec<&ParticipantHandle> = handles.iter().collect();
    wait_in_one_group(&all, 9, Duration::from_secs(20)).await;
    let nine = started.elapsed();
    // …then a tenth joins the running call: the SFU asks the publishers
    // for keyframes for it, and it decrypts them with the new epoch's keys.
    handles.push(spawn(config(server.room("ten"), "p9", 10), tx.clone()));
    let all: Vec<&ParticipantHandle> = handles.iter().collect();
    let code = wait_in_one_group(&all, 10, Duration::from_secs(20)).await;
    let grouped = started.elapsed();
    assert_eq!(code.split(' ').count(), 6, "{code}");
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
                        r.audio.decrypted > 0
                            && r.video.frames_complete > 0
                            && r.video.decrypted > 0
                            && r.video.keyframes > 0
                    })
                    .count();
                (complete < 9).then(|| format!("{} has decrypted media from {complete}/9", s.name))
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
    let deadline = Instant::now() + Duration::from_secs(5);
    while !handles.iter().any(|h| h.snapshot().keyframe_requests > 0) {
        assert!(
            Instant::now() < deadline,
            "no participant was asked for a keyframe"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Our RFC 6464 audio levels drive the server's speaking indicator.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !handles.iter().any(|h| h.snapshot().speaking_updates > 0) {
        assert!(Instant::now() < deadline, "no speaking updates arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every frame that had its key decrypted and authenticated, from the
    // sender the server announced; one group, one code.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut total, mut no_key) = (0, 0);
    for h in &handles {
        let s = h.snapshot();
        let (decrypted, failed, _) = s.e2ee_totals();
        assert!(decrypted > 0, "{}", s.name);
        assert_eq!(failed, 0, "{}: decrypt failures {:?}", s.name, s.remotes);
        assert_eq!(s.wrong_sender(), 0, "{}", s.name);
        assert_eq!(
            s.security_code.as_deref(),
            Some(code.as_str()),
            "{}",
            s.name
        );
        total += decrypted;
        no_key += s.e2ee_totals().2;
    }
    eprintln!(
        "ten agents: nine in one group after {nine:?}, ten after {grouped:?}; \
         after {:?}: {total} frames decrypted, 0 failures, {no_key} without a key (sent before the receiver joined)",
        started.elapsed()
    );
    for h in handles {
        let name = h.name.clone();
        h.stop()
            .await
            .unwrap_or_else(|e| panic!("{name} ended with {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_chat_between_two_agents_arrives_decrypted_in_order_with_mls_names() {
    let server = Server::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let alice = spawn(config(server.room("chat"), "alice", 1), tx.clone());
    expect_notice(&mut rx, Duration::from_secs(5), "alice's group", |t| {
        matches!(t.notice, Notice::SecurityCode { .. })
    })
    .await;
    // Bob's --chat goes out once he is in the group.
    let mut cb = config(server.room("chat"), "bob", 2);
    cb.chat = vec!["hello from the command line".into()];
    let bob = spawn(cb, tx.clone());
    let t = expect_notice(
        &mut rx,
        Duration::from_secs(10),
        "bob's --chat at alice",
        |t| t.participant == "alice" && matches!(t.notice, Notice::Chat { .. }),
    )
    .await;
    assert!(
        matches!(&t.notice, Notice::Chat { name, text, .. } if name == "bob" && text == "hello from the command line"),
        "{}",
        t.notice
    );
    wait_in_one_group(&[&alice, &bob], 2, Duration::from_secs(5)).await;
    let texts = ["one", "two", "three — ünïcödé"];
    for text in texts {
        alice.send_chat(text);
    }
    bob.send_chat("back to you");
    let mut at_bob = Vec::new();
    while at_bob.len() < 4 {
        let t = expect_notice(&mut rx, Duration::from_secs(5), "chat at bob", |t| {
            t.participant == "bob" && matches!(&t.notice, Notice::Chat { seq, .. } if *seq > 0)
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
        // A real external sender: the agent creates its group with it.
        let ds = conclave_e2ee::server::DeliveryServiceSigner::generate("fake").expect("signer");
        let external_sender = B64.encode(ds.external_sender().expect("external sender"));
        let welcome = format!(
            r#"{{"type":"welcome","you":{{"id":1,"name":"x","media":{{"microphone":true,"camera":true,"screen":false}},"key":null}},"participants":[],"e2ee":{{"create":true,"external_sender":"{external_sender}"}}}}"#
        );
        for text in [
            "{this is not json",
            r#"{"type":"surprise","x":1}"#,
            r#"{"type":"welcome","you":{"id":1},"participants":[]}"#,
            welcome.as_str(),
            r#"{"type":"offer","sdp":"v=0\r\ngarbage\r\n","tracks":[]}"#,
            // Slots moved before any offer was accepted: a map for m-lines
            // that do not exist (taken, harmless), then one that is no map.
            r#"{"type":"tracks","tracks":[{"mid":"9","direction":"subscribe","participant":2,"source":"camera"}]}"#,
            r#"{"type":"tracks","tracks":"all of them"}"#,
            r#"{"type":"chat","seq":"zero"}"#,
            r#"{"type":"mls","from":2,"data":"%%% not base64"}"#,
            r#"{"type":"mls","from":2,"data":"AAAAAAAA"}"#,
            r#"{"type":"chat","seq":0,"from":2,"data":"AAAAAAAA","sent_at":0}"#,
            r#"{"type":"commit_rejected","reason":"made up"}"#,
            r#"{"type":"create_group","e2ee":{"create":true,"external_sender":"AAAA"}}"#,
        ] {
            ws.send(Message::text(text)).await.expect("send");
        }
        ws.send(Message::binary(vec![1u8, 2, 3]))
            .await
            .expect("send");
        // What the agent sent meanwhile: its new group's GroupInfo.
        let mut sent = vec![join];
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, ws.next()).await {
            if let Ok(text) = m.into_text() {
                sent.push(text.to_string());
            }
        }
        let _ = ws.close(None).await;
        sent
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let url = RoomUrl::parse(&format!("http://{addr}/fake")).expect("url");
    let agent = spawn(config(url, "victim", 1), tx);
    let wait = Duration::from_secs(5);
    for needle in [
        "malformed JSON",
        "unknown message type",
        "unreadable \"welcome\"",
        "unreadable SDP",
        "unreadable \"tracks\"",
        "unreadable \"chat\"",
        "not base64",
        "ignored an MLS message",
        "could not decrypt chat #0",
        "rejected our commit: made up",
        "start encryption again",
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
    let sent = fake.await.expect("fake server task");
    assert!(
        sent[0].contains(r#""type":"join""#) && sent[0].contains("victim"),
        "{sent:?}"
    );
    assert!(
        sent.iter().any(|m| m.contains(r#""type":"group_created""#)),
        "{sent:?}"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_creating_without_a_secret_prints_an_invite_link_that_lets_others_in() {
    let server = Server::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut ca = config(server.room("invite"), "alice", 1);
    ca.invite_secret = None;
    let alice = spawn(ca, tx.clone());
    let t = expect_notice(&mut rx, Duration::from_secs(5), "an invite link", |t| {
        matches!(t.notice, Notice::InviteLink(_))
    })
    .await;
    let Notice::InviteLink(link) = t.notice else {
        unreachable!()
    };
    let url = RoomUrl::parse(&link).expect("the invite link parses");
    assert_eq!(url.room, "invite");
    assert!(url.secret.is_some(), "{link}");
    let bob = spawn(config_with_url(url, "bob", 2), tx.clone());
    wait_in_one_group(&[&alice, &bob], 2, Duration::from_secs(10)).await;
    alice.stop().await.expect("alice leaves cleanly");
    bob.stop().await.expect("bob leaves cleanly");
}

fn config_with_url(url: RoomUrl, name: &str, seed: u64) -> ParticipantConfig {
    let mut c = ParticipantConfig::new(url, name);
    c.video = Some(VideoClass::P180);
    c.seed = seed;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knocker_sends_nothing_until_a_member_admits_it() {
    let server = Server::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Alice ignores knocks: Carol (no secret) stays out and sends no media.
    let alice = spawn(config(server.room("knock"), "alice", 1), tx.clone());
    expect_notice(&mut rx, Duration::from_secs(5), "alice's group", |t| {
        matches!(t.notice, Notice::SecurityCode { .. })
    })
    .await;
    let carol = spawn(
        config_with_url(server.room("knock"), "carol", 3),
        tx.clone(),
    );
    let t = expect_notice(&mut rx, Duration::from_secs(5), "carol's knock", |t| {
        t.participant == "alice" && matches!(t.notice, Notice::Knock { .. })
    })
    .await;
    assert!(
        matches!(&t.notice, Notice::Knock { name, admitted: false, .. } if name == "carol"),
        "{}",
        t.notice
    );
    wait_connected(std::slice::from_ref(&carol), Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = carol.snapshot();
    assert!(!c.in_group);
    assert_eq!(c.sent_packets, 0, "media went out without group keys");

    // Dave admits knocks: Erin (no secret) gets in.
    let mut cd = config(server.room("admit"), "dave", 4);
    cd.admit_knocks = true;
    let dave = spawn(cd, tx.clone());
    expect_notice(&mut rx, Duration::from_secs(5), "dave's group", |t| {
        t.participant == "dave" && matches!(t.notice, Notice::SecurityCode { .. })
    })
    .await;
    let erin = spawn(config_with_url(server.room("admit"), "erin", 5), tx.clone());
    wait_in_one_group(&[&dave, &erin], 2, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while erin
        .snapshot()
        .remotes
        .values()
        .all(|r| r.video.decrypted == 0)
    {
        assert!(
            Instant::now() < deadline,
            "erin decrypted no video from dave"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for h in [alice, carol, dave, erin] {
        h.stop().await.expect("leaves cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_an_agent_leaves_the_others_commit_its_removal_and_keep_decrypting() {
    let server = Server::start();
    let (tx, _rx) = mpsc::unbounded_channel();
    let handles: Vec<ParticipantHandle> = (0..3)
        .map(|i| {
            spawn(
                config(server.room("leave"), &format!("l{i}"), i + 1),
                tx.clone(),
            )
        })
        .collect();
    let all: Vec<&ParticipantHandle> = handles.iter().collect();
    let before = wait_in_one_group(&all, 3, Duration::from_secs(10)).await;
    let mut handles = handles.into_iter();
    let first = handles.next().expect("three");
    // The group's creator (lowest leaf, the usual committer) leaves.
    first.stop().await.expect("leaves cleanly");
    let rest: Vec<ParticipantHandle> = handles.collect();
    let all: Vec<&ParticipantHandle> = rest.iter().collect();
    let after = wait_in_one_group(&all, 2, Duration::from_secs(10)).await;
    assert_ne!(before, after, "a new epoch, a new code");
    // Media keeps flowing under the new epoch's keys.
    let counts = |h: &ParticipantHandle| h.snapshot().e2ee_totals();
    let then: Vec<_> = rest.iter().map(counts).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (h, (decrypted, failed, _)) in rest.iter().zip(then) {
        let (now_decrypted, now_failed, _) = counts(h);
        assert!(now_decrypted > decrypted, "{} stopped decrypting", h.name);
        assert_eq!((failed, now_failed), (0, 0), "{}", h.name);
    }
    for h in rest {
        h.stop().await.expect("leaves cleanly");
    }
}
