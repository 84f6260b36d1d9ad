//! The real binary as MLS delivery service, driven by native MLS members
//! (the same core the browser runs as wasm): group creation, joins by
//! invite proof, ordered commits, encrypted chat, knock denial and the
//! removal of members whose connection is gone.

#![allow(clippy::unwrap_used)]

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::*;
use conclave_e2ee::{Event, Member};
use conclave_protocol::{ClientMessage, ErrorCode, ServerMessage};

const SECRET: &[u8] = b"an invite secret of 32 bytes....";

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    B64.decode(text).expect("server sends base64")
}

/// A signaling client with its MLS state.
struct Peer {
    client: Client,
    member: Member,
    id: u32,
}

impl Peer {
    async fn join(server: &Server, room: &str, name: &str, secret: Option<&[u8]>) -> Peer {
        let (mut client, welcome) = Client::join(server, room, name).await;
        let ServerMessage::Welcome { you, e2ee, .. } = welcome else {
            unreachable!()
        };
        let mut member = Member::new(name, room.as_bytes(), secret).expect("member");
        if e2ee.create {
            member
                .create_group(&[unb64(&e2ee.external_sender)], 0)
                .expect("group");
            client
                .send(&ClientMessage::GroupCreated {
                    group_info: b64(&member.group_info().expect("group info")),
                })
                .await;
        } else {
            let req = member.join_request().expect("join request");
            client
                .send(&ClientMessage::JoinRequest { data: b64(&req) })
                .await;
        }
        Peer {
            client,
            member,
            id: you.id,
        }
    }

    /// Next `mls` message, processed; returns its events.
    async fn process_next_mls(&mut self) -> (Option<u32>, Vec<Event>) {
        let ServerMessage::Mls { from, data } = self
            .client
            .recv_until("mls", |m| matches!(m, ServerMessage::Mls { .. }))
            .await
        else {
            unreachable!()
        };
        let events = self
            .member
            .process_incoming(&unb64(&data), 0)
            .expect("valid MLS from the server");
        (from, events)
    }

    async fn commit(&mut self) -> Vec<u8> {
        let out = self
            .member
            .commit_pending()
            .expect("commit")
            .expect("pending");
        self.client
            .send(&ClientMessage::Commit {
                commit: b64(&out.commit),
                welcome: out.welcome.as_deref().map(b64),
            })
            .await;
        out.commit
    }
}

/// Alice creates; Bob joins with the invite secret through Alice's commit.
async fn two_members(server: &Server, room: &str) -> (Peer, Peer) {
    let mut alice = Peer::join(server, room, "Alice", Some(SECRET)).await;
    let mut bob = Peer::join(server, room, "Bob", Some(SECRET)).await;
    let (from, events) = alice.process_next_mls().await;
    assert_eq!(from, Some(bob.id));
    assert!(
        matches!(events[0], Event::JoinVerified { .. }),
        "{events:?}"
    );
    alice.commit().await;
    let (_, events) = alice.process_next_mls().await;
    assert!(
        matches!(events[0], Event::EpochChanged { .. }),
        "{events:?}"
    );
    let (_, events) = bob.process_next_mls().await;
    assert!(matches!(events[0], Event::Joined { .. }), "{events:?}");
    (alice, bob)
}

#[tokio::test]
async fn members_join_by_invite_proof_and_agree_on_the_security_code() {
    let server = Server::start();
    let (alice, bob) = two_members(&server, "mls-join").await;
    assert_eq!(alice.member.epoch().unwrap(), 1);
    assert_eq!(
        alice.member.security_code().unwrap(),
        bob.member.security_code().unwrap()
    );
    assert_eq!(bob.member.roster().unwrap().len(), 2);
}

#[tokio::test]
async fn the_server_announces_each_participants_signature_key() {
    let server = Server::start();
    let (mut alice, bob) = two_members(&server, "mls-keys").await;
    let want: String = bob
        .member
        .signature_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Bob's key was announced when his join request arrived (before the commit).
    let _ = &mut alice;
    let mut carol = Client::join(&server, "mls-keys", "Carol").await;
    let ServerMessage::Welcome { participants, .. } = carol.1 else {
        unreachable!()
    };
    let bob_info = participants.iter().find(|p| p.id == bob.id).unwrap();
    assert_eq!(bob_info.key.as_deref(), Some(want.as_str()));
    let _ = &mut carol.0;
}

#[tokio::test]
async fn chat_is_relayed_as_ciphertext_in_room_order() {
    let server = Server::start();
    let (mut alice, mut bob) = two_members(&server, "mls-chat").await;
    let secret_words = "the launch code is 0000";
    let ct = alice.member.encrypt_chat(secret_words).unwrap();
    alice
        .client
        .send(&ClientMessage::Chat { data: b64(&ct) })
        .await;
    for peer in [&mut alice, &mut bob] {
        let ServerMessage::Chat {
            seq, from, data, ..
        } = peer
            .client
            .recv_until("chat", |m| matches!(m, ServerMessage::Chat { .. }))
            .await
        else {
            unreachable!()
        };
        assert_eq!(seq, 0);
        assert!(!data.contains("launch"));
        assert!(!String::from_utf8_lossy(&unb64(&data)).contains("launch"));
        if peer.id != from {
            let events = peer.member.process_incoming(&unb64(&data), 0).unwrap();
            assert!(
                matches!(&events[0], Event::Chat { text, sender, .. } if text == secret_words && sender.display_name == "Alice")
            );
        }
    }
    // Garbage in place of chat is refused to the sender only.
    alice
        .client
        .send(&ClientMessage::Chat {
            data: b64(b"not mls"),
        })
        .await;
    let reply = alice
        .client
        .recv_until("error", |m| matches!(m, ServerMessage::Error { .. }))
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::BadMls));
}

#[tokio::test]
async fn the_second_commit_of_an_epoch_is_rejected_and_the_first_reaches_everyone() {
    let server = Server::start();
    let (mut alice, mut bob) = two_members(&server, "mls-race").await;
    alice.member.request_self_update().unwrap();
    bob.member.request_self_update().unwrap();
    alice.commit().await;
    // Make sure Alice's commit is ordered first.
    let (_, events) = alice.process_next_mls().await;
    assert!(matches!(events[0], Event::EpochChanged { .. }));
    bob.commit().await;
    let reply = bob
        .client
        .recv_until("commit_rejected or mls", |m| {
            matches!(
                m,
                ServerMessage::CommitRejected { .. } | ServerMessage::Mls { .. }
            )
        })
        .await;
    // Alice's commit came before the rejection; Bob applies it and drops his own.
    let ServerMessage::Mls { data, .. } = reply else {
        panic!("expected Alice's commit first, got {reply:?}")
    };
    let events = bob.member.process_incoming(&unb64(&data), 0).unwrap();
    assert!(events.contains(&Event::CommitDiscarded));
    let reply = bob
        .client
        .recv_until("commit_rejected", |m| {
            matches!(m, ServerMessage::CommitRejected { .. })
        })
        .await;
    assert!(matches!(reply, ServerMessage::CommitRejected { reason } if reason == "epoch_moved"));
    assert_eq!(
        alice.member.security_code().unwrap(),
        bob.member.security_code().unwrap()
    );
}

#[tokio::test]
async fn a_member_whose_connection_is_gone_is_removed_by_a_server_proposal() {
    let server = Server::start();
    let (mut alice, bob) = two_members(&server, "mls-leave").await;
    bob.client.hang_up().await;
    let (from, events) = alice.process_next_mls().await;
    assert_eq!(from, None, "the proposal comes from the server");
    assert!(matches!(
        events[0],
        Event::RemoveProposed {
            by_server: true,
            leaf_index: 1
        }
    ));
    alice.commit().await;
    let (_, events) = alice.process_next_mls().await;
    let Event::EpochChanged {
        removed, roster, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(removed[0].display_name, "Bob");
    assert_eq!(roster.len(), 1);
}

#[tokio::test]
async fn a_knock_can_be_denied_and_the_knocker_is_told_and_disconnected() {
    let server = Server::start();
    let mut alice = Peer::join(&server, "mls-knock", "Alice", Some(SECRET)).await;
    let mut eve = Peer::join(&server, "mls-knock", "Eve", None).await;
    let (from, events) = alice.process_next_mls().await;
    assert_eq!(from, Some(eve.id));
    let Event::Knock { knock_id, joiner } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(joiner.display_name, "Eve");
    alice.member.reject(*knock_id).unwrap();
    alice
        .client
        .send(&ClientMessage::DenyKnock { id: eve.id })
        .await;
    let reply = eve
        .client
        .recv_until("error", |m| matches!(m, ServerMessage::Error { .. }))
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::KnockDenied));
    assert!(eve.client.is_closed_within(WAIT).await);
}

#[tokio::test]
async fn non_members_cannot_commit_chat_or_deny_and_bad_mls_is_refused() {
    let server = Server::start();
    let (mut alice, _bob) = two_members(&server, "mls-bad").await;
    let mut eve = Peer::join(&server, "mls-bad", "Eve", None).await;
    // Eve (not a member) tries a self-made group's commit and chat.
    let mut fake = Member::new("Eve", b"mls-bad", None).unwrap();
    fake.create_group(&[], 0).unwrap();
    fake.request_self_update().unwrap();
    let c = fake.commit_pending().unwrap().unwrap();
    for message in [
        ClientMessage::Commit {
            commit: b64(&c.commit),
            welcome: None,
        },
        ClientMessage::Chat {
            data: b64(&fake.encrypt_chat("hi").unwrap_or_default()),
        },
        ClientMessage::DenyKnock { id: alice.id },
        ClientMessage::GroupCreated {
            group_info: b64(&fake.group_info().unwrap()),
        },
    ] {
        eve.client.send(&message).await;
        let reply = eve
            .client
            .recv_until("error", |m| matches!(m, ServerMessage::Error { .. }))
            .await;
        assert!(
            matches!(
                error_code(&reply),
                Some(ErrorCode::BadMls | ErrorCode::NotJoined)
            ),
            "{reply:?}"
        );
    }
    // A member's malformed commit is rejected; the group goes on.
    alice
        .client
        .send(&ClientMessage::Commit {
            commit: b64(&[0u8; 64]),
            welcome: None,
        })
        .await;
    let reply = alice
        .client
        .recv_until("commit_rejected", |m| {
            matches!(m, ServerMessage::CommitRejected { .. })
        })
        .await;
    assert!(
        matches!(reply, ServerMessage::CommitRejected { reason } if reason.starts_with("invalid"))
    );
    for junk in ["%%%", "AAAA"] {
        alice
            .client
            .send(&ClientMessage::JoinRequest { data: junk.into() })
            .await;
        let reply = alice
            .client
            .recv_until("error", |m| matches!(m, ServerMessage::Error { .. }))
            .await;
        assert_eq!(error_code(&reply), Some(ErrorCode::BadMls));
    }
    alice.member.request_self_update().unwrap();
    alice.commit().await;
    let (_, events) = alice.process_next_mls().await;
    assert!(matches!(events[0], Event::EpochChanged { .. }));
}

#[tokio::test]
async fn when_the_creator_leaves_before_creating_the_next_participant_creates() {
    let server = Server::start();
    let (first, welcome) = Client::join(&server, "mls-handover", "First").await;
    assert!(matches!(welcome, ServerMessage::Welcome { ref e2ee, .. } if e2ee.create));
    let mut second = Peer::join(&server, "mls-handover", "Second", Some(SECRET)).await;
    // Leaves (a reset connection would keep its session for a resume).
    let mut first = first;
    first.send(&ClientMessage::Leave).await;
    drop(first);
    let message = second
        .client
        .recv_until("create_group", |m| {
            matches!(m, ServerMessage::CreateGroup { .. })
        })
        .await;
    let ServerMessage::CreateGroup { e2ee } = message else {
        unreachable!()
    };
    assert!(e2ee.create);
    second.member = Member::new("Second", b"mls-handover", Some(SECRET)).unwrap();
    second
        .member
        .create_group(&[unb64(&e2ee.external_sender)], 0)
        .unwrap();
    second
        .client
        .send(&ClientMessage::GroupCreated {
            group_info: b64(&second.member.group_info().unwrap()),
        })
        .await;
    // The group now exists: a third participant's request reaches Second.
    let third = Peer::join(&server, "mls-handover", "Third", Some(SECRET)).await;
    let (from, events) = second.process_next_mls().await;
    assert_eq!(from, Some(third.id), "{events:?}");
    assert!(matches!(events[0], Event::JoinVerified { .. }));
}
