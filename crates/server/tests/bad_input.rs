//! Hostile and broken clients get an error or a clean drop; the room goes on.

mod common;

use std::time::Duration;

use common::*;
use conclave_protocol::{ClientMessage, ErrorCode, MediaState, ServerMessage, MAX_MESSAGE_BYTES};
use tokio_tungstenite::tungstenite::Message;

/// Ada's media-state change still reaches Bob: the room works for both.
/// `round` makes consecutive probes in one test differ (and differ from the
/// initial state, where the microphone is on).
async fn room_still_works(ada: &mut Client, bob: &mut Client, round: u8) {
    let media = MediaState {
        microphone: false,
        camera: round.is_multiple_of(2),
        screen: false,
    };
    ada.send(&ClientMessage::MediaState { media }).await;
    let got = bob
        .recv_until("participant_updated", |m| {
            matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.media == media)
        })
        .await;
    assert!(matches!(got, ServerMessage::ParticipantUpdated { .. }));
}

#[tokio::test]
async fn malformed_messages_get_error_replies_and_the_connection_stays_usable() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    let cases = [
        ("not json at all", ErrorCode::BadMessage),
        (r#"{"type":"launch_missiles"}"#, ErrorCode::BadMessage),
        (r#"{"type":"chat"}"#, ErrorCode::BadMessage),
        (
            r#"{"type":"join","room":"r","name":"x","media":{"microphone":true,"camera":true,"screen":false},"admin":1}"#,
            ErrorCode::BadMessage,
        ),
        (r#"{"type":"chat","data":"AAAA"}"#, ErrorCode::NotJoined),
        (
            r#"{"type":"join","room":"../etc","name":"x","media":{"microphone":true,"camera":true,"screen":false}}"#,
            ErrorCode::InvalidRoom,
        ),
        (
            r#"{"type":"join","room":"ok","name":"\u0007","media":{"microphone":true,"camera":true,"screen":false}}"#,
            ErrorCode::InvalidName,
        ),
    ];
    for (text, expected) in cases {
        client.send_text(text.to_owned()).await;
        let reply = client.recv().await;
        assert_eq!(error_code(&reply), Some(expected), "for {text}: {reply:?}");
    }
    client
        .send_raw(Message::binary(vec![1, 2, 3]))
        .await
        .expect("send");
    assert_eq!(
        error_code(&client.recv().await),
        Some(ErrorCode::BadMessage)
    );
    // After all that, the same connection can still join.
    client
        .send(&ClientMessage::Join {
            room: "ok".into(),
            name: "Ada".into(),
            media: media(),
        })
        .await;
    assert!(matches!(client.recv().await, ServerMessage::Welcome { .. }));
    client
        .send(&ClientMessage::Answer {
            sdp: "v=0 garbage".into(),
        })
        .await;
    let reply = client
        .recv_until("error", |m| error_code(m).is_some())
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::BadSdp));
}

/// The media thread parses every SDP answer it gets, so answers beyond what
/// the offers call for are refused before they reach it.
#[tokio::test]
async fn sdp_answers_beyond_what_the_offers_call_for_never_reach_media() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "answers", "Ada").await;
    ada.recv_until("offer", |m| matches!(m, ServerMessage::Offer { .. }))
        .await;
    let mut reasons = Vec::new();
    for _ in 0..6 {
        ada.send(&ClientMessage::Answer {
            sdp: "v=0 garbage".into(),
        })
        .await;
        match ada.recv_until("error", |m| error_code(m).is_some()).await {
            ServerMessage::Error { code, message } => {
                assert_eq!(code, ErrorCode::BadSdp);
                reasons.push(message);
            }
            other => unreachable!("{other:?}"),
        }
    }
    // The offer let three through (media refused them as garbage); no more.
    let (parsed, stopped) = reasons.split_at(3);
    assert!(
        parsed.iter().all(|r| r.contains("not accepted")),
        "{reasons:?}"
    );
    assert!(
        stopped.iter().all(|r| r.contains("no offer is waiting")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn oversized_messages_are_refused_without_disturbing_the_room() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "big", "Ada").await;
    let (mut bob, _) = Client::join(&server, "big", "Bob").await;

    // Over the protocol limit but under the frame limit: an error, still connected.
    let big = format!(
        r#"{{"type":"chat","data":"{}"}}"#,
        "a".repeat(MAX_MESSAGE_BYTES + 10)
    );
    ada.send_text(big).await;
    let reply = ada.recv_until("error", |m| error_code(m).is_some()).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::TooLarge));
    room_still_works(&mut ada, &mut bob, 0).await;

    // Encrypted chat over its size limit: refused for the sender only.
    ada.send(&ClientMessage::Chat {
        data: "A".repeat(conclave_protocol::MAX_CHAT_CIPHERTEXT_BYTES + 4),
    })
    .await;
    let reply = ada.recv_until("error", |m| error_code(m).is_some()).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::TooLarge));

    // A hidden_video list over its limit: refused; within it, even naming
    // nobody in the room, it only changes what the sender receives.
    ada.send(&ClientMessage::HiddenVideo {
        participants: (0..=conclave_protocol::MAX_HIDDEN_VIDEO as u32).collect(),
    })
    .await;
    let reply = ada.recv_until("error", |m| error_code(m).is_some()).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::TooLarge));
    ada.send(&ClientMessage::HiddenVideo {
        participants: (1_000_000..1_000_000 + conclave_protocol::MAX_HIDDEN_VIDEO as u32).collect(),
    })
    .await;
    room_still_works(&mut ada, &mut bob, 1).await;

    // Far over the frame limit: that connection is closed; Bob is unaffected.
    let (mut mallory, _) = Client::join(&server, "big", "Mallory").await;
    let _ = mallory
        .send_raw(Message::text("m".repeat(8 * MAX_MESSAGE_BYTES)))
        .await;
    assert!(
        mallory.is_closed_within(WAIT).await,
        "a huge frame closes its own connection"
    );
    room_still_works(&mut ada, &mut bob, 2).await;
}

#[tokio::test]
async fn a_client_that_vanishes_mid_handshake_is_removed_and_others_carry_on() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "vanish", "Ada").await;
    let (mut ghost, welcome) = Client::join(&server, "vanish", "Ghost").await;
    let ServerMessage::Welcome {
        you: ghost_info, ..
    } = welcome
    else {
        unreachable!()
    };
    // It got its offer but never answers, never does ICE: it just disappears.
    assert!(matches!(ghost.recv().await, ServerMessage::Offer { .. }));
    ghost.hang_up().await;
    let left = ada
        .recv_until("participant_left", |m| {
            matches!(m, ServerMessage::ParticipantLeft { .. })
        })
        .await;
    assert_eq!(left, ServerMessage::ParticipantLeft { id: ghost_info.id });
    let (mut bob, _) = Client::join(&server, "vanish", "Bob").await;
    room_still_works(&mut bob, &mut ada, 0).await;
}

#[tokio::test]
async fn a_connection_that_never_joins_is_closed() {
    let server = Server::start();
    let mut idle = Client::connect(&server).await;
    // The join timeout is 15 s; the connection must not outlive it by much.
    assert!(idle.is_closed_within(Duration::from_secs(20)).await);
}

#[tokio::test]
async fn garbage_datagrams_on_the_media_port_do_not_stop_a_real_peer_from_connecting() {
    // Several media threads, so garbage also takes the path between them.
    let mut server = Server::start_with(&["--media-threads", "3"]);
    let (mut ada, _) = Client::join(&server, "udp", "Ada").await;
    let mut peer = MediaPeer::new();
    ada.answer_next_offer(&mut peer.rtc).await;

    let target = server.udp;
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Random bytes, then shapes that look like each protocol on the port.
    let mut shapes: Vec<Vec<u8>> = Vec::new();
    for len in [0usize, 1, 2, 11, 12, 20, 100, 1500] {
        shapes.push((0..len).map(|_| next() as u8).collect());
    }
    let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend((0..200).map(|_| next() as u8));
    shapes.push(rtp);
    shapes.push(vec![0x80, 200, 0xff, 0xff, 0, 0, 0, 1]); // RTCP SR claiming a huge length
    shapes.push(vec![
        0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff,
    ]); // RTP extension overrun
    shapes.push(vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]); // DTLS record overrun
    let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([7u8; 12]);
    stun.extend([0x00, 0x06, 0xff, 0xf0, b'c', b'1', b'x', b':']); // USERNAME longer than the message
    shapes.push(stun);
    for round in 0..500 {
        let shape = &shapes[round % shapes.len()];
        let _ = attacker.send_to(shape, target);
    }
    // STUN requests naming participants by their ufrag's id (the routing
    // hint between media threads) without their password, from many
    // addresses: passed on to the owner, refused there, and no route to a
    // real participant may be diverted by them.
    let spoofers: Vec<_> = (0..16)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    for (i, socket) in spoofers.iter().enumerate() {
        for id in 0..8 {
            let forged =
                conclave_sfu::stun_request_for_tests(format!("c{id}xforged{i}:x").as_bytes());
            let _ = socket.send_to(&forged, target);
            let _ = socket.send_to(&[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9], target);
        }
    }

    let took = tokio::task::spawn_blocking(move || peer.connect(WAIT))
        .await
        .expect("joins");
    assert!(took.is_some(), "the real peer connects despite the garbage");
    assert!(server.is_running(), "the server survived");
    let (_bob, _) = Client::join(&server, "udp", "Bob").await;
}

#[tokio::test]
async fn a_chat_flood_is_rate_limited_for_the_flooder_only() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "flood", "Ada").await;
    let (mut bob, _) = Client::join(&server, "flood", "Bob").await;
    for i in 0..100 {
        bob.send(&ClientMessage::Chat {
            data: format!("spam{i}"),
        })
        .await;
    }
    let limited = bob
        .recv_until("rate_limited", |m| {
            error_code(m) == Some(ErrorCode::RateLimited)
        })
        .await;
    assert_eq!(error_code(&limited), Some(ErrorCode::RateLimited));
    room_still_works(&mut ada, &mut bob, 0).await;
}

#[tokio::test]
async fn join_request_floods_and_oversized_join_requests_stop_at_the_server() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "jrflood", "Ada").await;
    let (mut bob, _) = Client::join(&server, "jrflood", "Bob").await;
    // Far larger than any KeyPackage: refused before it is parsed or relayed.
    bob.send(&ClientMessage::JoinRequest {
        data: "A".repeat(conclave_protocol::MAX_JOIN_REQUEST_BYTES + 4),
    })
    .await;
    let big = bob
        .recv_until("too_large", |m| error_code(m) == Some(ErrorCode::TooLarge))
        .await;
    assert_eq!(error_code(&big), Some(ErrorCode::TooLarge));
    for _ in 0..50 {
        bob.send(&ClientMessage::JoinRequest {
            data: "Q0pSMQ==".into(),
        })
        .await;
    }
    let limited = bob
        .recv_until("rate_limited", |m| {
            error_code(m) == Some(ErrorCode::RateLimited)
        })
        .await;
    assert_eq!(error_code(&limited), Some(ErrorCode::RateLimited));
    room_still_works(&mut ada, &mut bob, 1).await;
}

/// Test modes (a server that misbehaves on purpose, for the browser tests)
/// exist only in a binary built with the `test-modes` feature: the normal
/// build refuses the flag, so it never reads CONCLAVE_TEST_GHOST_ADDS, and
/// holds none of that code.
#[cfg(not(feature = "test-modes"))]
#[test]
fn a_normal_build_has_no_test_modes() {
    let bin = env!("CARGO_BIN_EXE_conclave");
    let out = std::process::Command::new(bin)
        .args([
            "--test-ghost-adds",
            "--listen",
            "127.0.0.1:0",
            "--udp-port",
            "0",
        ])
        .output()
        .expect("the conclave binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unexpected argument '--test-ghost-adds'"),
        "{stderr}"
    );
    let binary = std::fs::read(bin).expect("the binary can be read");
    let needle = b"test mode: proposing to add";
    assert!(
        !binary.windows(needle.len()).any(|w| w == needle),
        "the ghost-add code is compiled in"
    );
}

/// Attack 8: one address cannot hold a server's worth of connections. The
/// one too many is told why and closed; the others carry on, and closing one
/// frees a place.
#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_told_why_and_closed() {
    let server = Server::start_with(&["--max-connections-per-address", "3"]);
    let (mut ada, _) = Client::join(&server, "limits", "Ada").await;
    let (mut bob, _) = Client::join(&server, "limits", "Bob").await;
    let idle = Client::connect(&server).await;

    let mut extra = Client::connect(&server).await;
    let refused = extra.recv().await;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::TooManyConnections),
        "{refused:?}"
    );
    assert!(
        matches!(&refused, ServerMessage::Error { message, .. } if message.contains('3')),
        "the limit is named: {refused:?}"
    );
    assert!(extra.is_closed_within(WAIT).await);
    room_still_works(&mut ada, &mut bob, 1).await;

    // A closed connection frees its place (the server notices the close).
    drop(idle);
    let mut carol = None;
    for _ in 0..50 {
        let mut c = Client::connect(&server).await;
        c.send(&ClientMessage::Join {
            room: "limits".into(),
            name: "Carol".into(),
            media: media(),
        })
        .await;
        match c.recv().await {
            ServerMessage::Welcome { .. } => {
                carol = Some(c);
                break;
            }
            m => assert_eq!(error_code(&m), Some(ErrorCode::TooManyConnections), "{m:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(carol.is_some(), "a place was freed");
    room_still_works(&mut ada, &mut bob, 2).await;
}
