//! A session outlives a broken connection: a client whose TCP connection
//! was reset (a network change, an outage) opens a new one and `resume`s
//! with its token, within the grace period, and is the same participant:
//! nobody saw it leave, and it gets every message it had not received, in
//! order (what was queued while it was away, and what was sent on the
//! broken connection but not read). A token works once. A new connection
//! can take a session over from one the server still thinks alive (it
//! closes that one). A session nobody resumes ends after the grace period.

mod common;

use std::time::Duration;

use common::*;
use conclave_protocol::{ClientMessage, ErrorCode, MediaState, ServerMessage};

/// Joins and waits for the `session` message; returns the client, its id,
/// its token, how many messages it read and those (after the welcome) it
/// was given meanwhile.
async fn join_with_session(
    server: &Server,
    room: &str,
    name: &str,
) -> (Client, u32, String, u64, Vec<ServerMessage>) {
    let (mut client, welcome) = Client::join(server, room, name).await;
    let ServerMessage::Welcome { you, .. } = welcome else {
        unreachable!()
    };
    let mut read = Vec::new();
    while client.session.is_none() {
        if let Some(m) = client.try_recv(Duration::from_millis(50)).await {
            read.push(m);
        }
    }
    let token = client.session.clone().expect("a token");
    let count = client.received;
    (client, you.id, token, count, read)
}

async fn resume(server: &Server, token: &str, received: u64) -> (Client, ServerMessage) {
    let mut client = Client::connect(server).await;
    client
        .send(&ClientMessage::Resume {
            token: token.into(),
            received,
        })
        .await;
    let answer = client.recv().await;
    if let ServerMessage::Resumed { resume } = &answer {
        client.session = Some(resume.clone());
    }
    (client, answer)
}

fn camera_off() -> MediaState {
    MediaState {
        microphone: true,
        camera: false,
        screen: false,
    }
}

#[tokio::test]
async fn a_broken_connection_is_resumed_as_the_same_participant_with_nothing_lost() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "resume", "Ada").await;
    let (bob, bob_id, token, read, before) = join_with_session(&server, "resume", "Bob").await;
    // Bob's offer (and whatever else) is on its way; Bob reads none of it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.break_connection();
    // Meanwhile something happens in the room.
    ada.send(&ClientMessage::MediaState {
        media: camera_off(),
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (mut bob, answer) = resume(&server, &token, read).await;
    let ServerMessage::Resumed { resume: next } = answer else {
        panic!("expected resumed, got {answer:?}");
    };
    assert_ne!(next, token, "a new token each time");
    // The offer sent on the broken connection, then Ada's change; the
    // offer was never answered, so it comes once more after them.
    let mut got = Vec::new();
    while let Some(m) = bob.try_recv(Duration::from_millis(700)).await {
        got.push(m);
    }
    let offers = |ms: &[ServerMessage]| {
        ms.iter()
            .filter(|m| matches!(m, ServerMessage::Offer { .. }))
            .count()
    };
    if offers(&before) == 0 {
        assert!(
            matches!(got.first(), Some(ServerMessage::Offer { .. })),
            "the offer lost with the connection comes first: {got:?}"
        );
    }
    assert_eq!(
        offers(&before) + offers(&got),
        2,
        "the offer once, and once more because it was never answered: {got:?}"
    );
    assert!(
        matches!(got.last(), Some(ServerMessage::Offer { .. })),
        "the unanswered offer again, last: {got:?}"
    );
    assert!(
        got.iter().any(|m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.media == camera_off())),
        "what happened while away: {got:?}"
    );
    assert!(
        !got.iter().any(|m| matches!(
            m,
            ServerMessage::Welcome { .. } | ServerMessage::Session { .. }
        )),
        "nothing read before the break comes again: {got:?}"
    );
    // Still Bob, still in the room: Ada saw no leave, and Bob's changes reach her.
    bob.send(&ClientMessage::MediaState {
        media: camera_off(),
    })
    .await;
    let updated = ada
        .recv_until("Bob's update", |m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id == bob_id))
        .await;
    assert!(matches!(updated, ServerMessage::ParticipantUpdated { .. }));
    while let Some(m) = ada.try_recv(Duration::from_millis(300)).await {
        assert!(
            !matches!(m, ServerMessage::ParticipantLeft { .. }),
            "Ada saw {m:?}"
        );
    }

    // The old token is spent.
    let (_, answer) = resume(&server, &token, read).await;
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::ResumeFailed),
        "{answer:?}"
    );
    // A client claiming more than was sent is refused too.
    let (_, answer) = resume(&server, &next, 10_000).await;
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::ResumeFailed),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_new_connection_takes_over_from_one_the_server_still_thinks_alive() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "takeover", "Ada").await;
    let (mut old, bob_id, token, _, _) = join_with_session(&server, "takeover", "Bob").await;
    // The client saw nothing arrive for a while and gave up on `old`, which
    // the server still holds open; it resumes having read only two.
    let (mut new, answer) = resume(&server, &token, 2).await;
    assert!(
        matches!(answer, ServerMessage::Resumed { .. }),
        "{answer:?}"
    );
    assert!(
        old.is_closed_within(Duration::from_secs(3)).await,
        "the old connection is closed"
    );
    new.send(&ClientMessage::MediaState {
        media: camera_off(),
    })
    .await;
    ada.recv_until("Bob's update on the new connection", |m| {
        matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id == bob_id)
    })
    .await;
    while let Some(m) = ada.try_recv(Duration::from_millis(300)).await {
        assert!(
            !matches!(m, ServerMessage::ParticipantLeft { .. }),
            "Ada saw {m:?}"
        );
    }
}

#[tokio::test]
async fn a_session_nobody_resumes_ends_after_the_grace_period() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "orphan", "Ada").await;
    let (bob, bob_id, _, _, _) = join_with_session(&server, "orphan", "Bob").await;
    let broke = std::time::Instant::now();
    bob.break_connection();
    // RESUME_GRACE is 20 s; the server checks every second.
    let mut left = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(ServerMessage::ParticipantLeft { id }) =
            ada.try_recv(Duration::from_secs(1)).await
        {
            left = Some((id, std::time::Instant::now()));
            break;
        }
    }
    let (id, at) = left.expect("Bob left within 30 s");
    assert_eq!(id, bob_id);
    let after = at - broke;
    assert!(
        after >= Duration::from_secs(19),
        "not before the grace period: {after:?}"
    );
}
