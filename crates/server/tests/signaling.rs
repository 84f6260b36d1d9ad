//! Room lifecycle over the real binary's WebSocket: join, negotiate, chat, leave.

mod common;

use common::*;
use conclave_protocol::{ClientMessage, MediaState, ServerMessage, TrackDirection, TrackSource};

#[tokio::test]
async fn a_joiner_is_welcomed_and_offered_three_publish_tracks_by_an_ice_lite_server() {
    let server = Server::start();
    let (mut ada, welcome) = Client::join(&server, "standup", "Ada").await;
    let ServerMessage::Welcome {
        you, participants, ..
    } = welcome
    else {
        unreachable!()
    };
    assert_eq!(you.name, "Ada");
    assert!(participants.is_empty());
    let ServerMessage::Offer { sdp, tracks } = ada.recv().await else {
        panic!("an offer follows the welcome")
    };
    assert!(sdp.contains("a=ice-lite"), "the SFU is ICE-lite");
    assert!(
        sdp.contains(&format!(" {} typ host", server.udp.port())),
        "the candidate is the media port"
    );
    let sources: Vec<TrackSource> = tracks.iter().map(|t| t.source).collect();
    assert_eq!(
        sources,
        vec![
            TrackSource::Microphone,
            TrackSource::Camera,
            TrackSource::Screen
        ]
    );
    assert_eq!(publish_count(&tracks), 3);
}

#[tokio::test]
async fn a_second_joiner_is_mapped_onto_the_first_ones_slots_without_an_offer() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "r1", "Ada").await;
    let mut ada_peer = MediaPeer::new();
    ada.answer_next_offer(&mut ada_peer.rtc).await;

    let (mut bob, welcome) = Client::join(&server, "r1", "Bob").await;
    let ServerMessage::Welcome {
        you: bob_info,
        participants,
        ..
    } = welcome
    else {
        unreachable!()
    };
    assert_eq!(
        participants
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["Ada"]
    );
    let mut bob_peer = MediaPeer::new();
    let bob_tracks = bob.answer_next_offer(&mut bob_peer.rtc).await;
    // Ada's microphone and camera; a screen slot only carries a share.
    assert_eq!(
        bob_tracks
            .iter()
            .filter(|t| t.direction == TrackDirection::Subscribe)
            .count(),
        2
    );

    let joined = ada
        .recv_until("participant_joined", |m| {
            matches!(m, ServerMessage::ParticipantJoined { .. })
        })
        .await;
    assert!(
        matches!(joined, ServerMessage::ParticipantJoined { participant } if participant.name == "Bob")
    );
    let ServerMessage::Tracks { tracks: ada_tracks } = ada
        .recv_until("tracks", |m| {
            matches!(
                m,
                ServerMessage::Tracks { .. } | ServerMessage::Offer { .. }
            )
        })
        .await
    else {
        panic!("Ada was sent a second offer instead of a track map")
    };
    let subscribed: Vec<_> = ada_tracks
        .iter()
        .filter(|t| t.direction == TrackDirection::Subscribe)
        .collect();
    assert_eq!(subscribed.len(), 2);
    assert!(subscribed.iter().all(|t| t.participant == bob_info.id));
}

#[tokio::test]
async fn media_state_changes_and_leaving_are_announced_to_the_room() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "r2", "Ada").await;
    let (mut bob, welcome) = Client::join(&server, "r2", "Bob").await;
    let ServerMessage::Welcome { you: bob_info, .. } = welcome else {
        unreachable!()
    };
    let screen_on = MediaState {
        microphone: false,
        camera: true,
        screen: true,
    };
    bob.send(&ClientMessage::MediaState { media: screen_on })
        .await;
    let updated = ada
        .recv_until("participant_updated", |m| {
            matches!(m, ServerMessage::ParticipantUpdated { .. })
        })
        .await;
    assert!(
        matches!(updated, ServerMessage::ParticipantUpdated { participant } if participant.media == screen_on)
    );
    bob.send(&ClientMessage::Leave).await;
    let left = ada
        .recv_until("participant_left", |m| {
            matches!(m, ServerMessage::ParticipantLeft { .. })
        })
        .await;
    assert_eq!(left, ServerMessage::ParticipantLeft { id: bob_info.id });
}

#[tokio::test]
async fn a_str0m_peer_completes_ice_and_dtls_with_the_sfu() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "media", "Ada").await;
    let mut peer = MediaPeer::new();
    ada.answer_next_offer(&mut peer.rtc).await;
    let took = tokio::task::spawn_blocking(move || peer.connect(WAIT))
        .await
        .expect("joins");
    assert!(
        took.is_some(),
        "ICE + DTLS did not complete within {WAIT:?}"
    );
}
