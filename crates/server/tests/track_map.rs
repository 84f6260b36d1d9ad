//! The track map against the real binary: a participant is offered every
//! m-line it will have once (its publish m-lines and its receive slots);
//! joins and leaves, even while that offer is unanswered, only change which
//! participant each slot carries (`tracks` messages, in order), and each
//! answer applies only to the offer it answers.

mod common;
mod media;

use std::time::{Duration, Instant};

use common::*;
use conclave_protocol::{
    ClientMessage, ErrorCode, ParticipantId, ServerMessage, TrackDirection, TrackMapping,
    TrackSource,
};
use media::Peer;
use str0m::media::Mid;

async fn next_offer(client: &mut Client) -> (String, Vec<TrackMapping>) {
    match client
        .recv_until("offer", |m| matches!(m, ServerMessage::Offer { .. }))
        .await
    {
        ServerMessage::Offer { sdp, tracks } => (sdp, tracks),
        _ => unreachable!(),
    }
}

async fn answer(client: &mut Client, sdp: String) {
    client.send(&ClientMessage::Answer { sdp }).await;
}

/// Everything the server says within `wait`.
async fn collect(client: &mut Client, wait: Duration) -> Vec<ServerMessage> {
    let deadline = Instant::now() + wait;
    let mut heard = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match client.try_recv(left).await {
            Some(message) => heard.push(message),
            None => break,
        }
    }
    heard
}

/// The latest track map among what was heard, if any.
fn latest_map(heard: &[ServerMessage]) -> Option<Vec<TrackMapping>> {
    heard.iter().rev().find_map(|m| match m {
        ServerMessage::Tracks { tracks } | ServerMessage::Offer { tracks, .. } => {
            Some(tracks.clone())
        }
        _ => None,
    })
}

async fn next_map(client: &mut Client) -> Vec<TrackMapping> {
    match client
        .recv_until("tracks", |m| matches!(m, ServerMessage::Tracks { .. }))
        .await
    {
        ServerMessage::Tracks { tracks } => tracks,
        _ => unreachable!(),
    }
}

/// Messages without their SDP, for failure output.
fn summary(heard: &[ServerMessage]) -> Vec<String> {
    heard
        .iter()
        .map(|m| match m {
            ServerMessage::Offer { tracks, .. } => {
                format!("Offer subscribing to {:?}", subscriptions(tracks))
            }
            other => format!("{other:?}"),
        })
        .collect()
}

fn id_of(welcome: &ServerMessage) -> ParticipantId {
    match welcome {
        ServerMessage::Welcome { you, .. } => you.id,
        other => panic!("expected a welcome, got {other:?}"),
    }
}

/// Whose tracks an offer subscribes to, in order.
fn subscriptions(tracks: &[TrackMapping]) -> Vec<(ParticipantId, TrackSource)> {
    tracks
        .iter()
        .filter(|t| t.direction == TrackDirection::Subscribe)
        .map(|t| (t.participant, t.source))
        .collect()
}

/// Microphone and camera of each, in that order (nobody shares a screen).
fn all_of(ids: &[ParticipantId]) -> Vec<(ParticipantId, TrackSource)> {
    let mut all: Vec<_> = [TrackSource::Microphone, TrackSource::Camera]
        .into_iter()
        .flat_map(|source| ids.iter().map(move |&id| (id, source)))
        .collect();
    all.sort_by_key(|&(id, source)| (source == TrackSource::Camera, id));
    all
}

/// Whose tracks a map carries, ordered like [`all_of`].
fn carried(tracks: &[TrackMapping]) -> Vec<(ParticipantId, TrackSource)> {
    let mut subs = subscriptions(tracks);
    subs.sort_by_key(|&(id, source)| (source == TrackSource::Camera, id));
    subs
}

fn mid(tracks: &[TrackMapping], direction: TrackDirection, who: ParticipantId) -> Mid {
    let track = tracks
        .iter()
        .find(|t| {
            t.direction == direction && t.participant == who && t.source == TrackSource::Microphone
        })
        .expect("the offer maps this microphone");
    Mid::from(track.mid.as_str())
}

fn publish_mids(tracks: &[TrackMapping]) -> Vec<&str> {
    tracks
        .iter()
        .filter(|t| t.direction == TrackDirection::Publish)
        .map(|t| t.mid.as_str())
        .collect()
}

#[tokio::test]
async fn joins_during_an_unanswered_offer_change_the_track_map_not_the_sdp() {
    let mut server = Server::start();
    let (mut ada, welcome) = Client::join(&server, "late", "Ada").await;
    let ada_id = id_of(&welcome);
    let mut ada_peer = Peer::new();
    let (first_sdp, first) = next_offer(&mut ada).await;
    assert_eq!(publish_count(&first), 3);
    assert!(subscriptions(&first).is_empty());
    let m_lines = first_sdp.matches("\r\nm=").count() + usize::from(first_sdp.starts_with("m="));
    assert!(m_lines > 3, "the first offer has the receive slots too");

    // Bob and Cy join, and negotiate, while Ada sits on her first offer.
    let (mut bob, welcome) = Client::join(&server, "late", "Bob").await;
    let bob_id = id_of(&welcome);
    let mut bob_peer = Peer::new();
    let (sdp, _) = next_offer(&mut bob).await;
    answer(&mut bob, bob_peer.answer(&sdp)).await;
    let (mut cy, welcome) = Client::join(&server, "late", "Cy").await;
    let cy_id = id_of(&welcome);
    let mut cy_peer = Peer::new();
    let (sdp, cy_tracks) = next_offer(&mut cy).await;
    assert_eq!(carried(&cy_tracks), all_of(&[ada_id, bob_id]));
    answer(&mut cy, cy_peer.answer(&sdp)).await;
    let bob_tracks = next_map(&mut bob).await;
    assert_eq!(carried(&bob_tracks), all_of(&[ada_id, cy_id]));

    // Ada hears of both joins and gets the new maps, but never another offer.
    let heard = collect(&mut ada, Duration::from_secs(2)).await;
    let joined: Vec<&str> = heard
        .iter()
        .filter_map(|m| match m {
            ServerMessage::ParticipantJoined { participant } => Some(participant.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(joined, ["Bob", "Cy"], "{:?}", summary(&heard));
    assert!(
        !heard
            .iter()
            .any(|m| matches!(m, ServerMessage::Offer { .. })),
        "a second offer: {:?}",
        summary(&heard)
    );
    let second = latest_map(&heard).expect("Ada got a track map");
    assert_eq!(publish_mids(&second), publish_mids(&first));
    assert_eq!(carried(&second), all_of(&[bob_id, cy_id]));

    // Her late answer is applied to the first offer. The same answer again
    // (a duplicate) has no offer to answer: it is refused.
    let late = ada_peer.answer(&first_sdp);
    answer(&mut ada, late.clone()).await;
    answer(&mut ada, late).await;
    let refused = ada
        .recv_until("error", |m| matches!(m, ServerMessage::Error { .. }))
        .await;
    assert_eq!(error_code(&refused), Some(ErrorCode::BadSdp), "{refused:?}");
    let heard = collect(&mut ada, Duration::from_secs(1)).await;
    assert!(
        !heard
            .iter()
            .any(|m| matches!(m, ServerMessage::Offer { .. } | ServerMessage::Error { .. })),
        "more than one refusal, or an offer: {:?}",
        summary(&heard)
    );

    // Media agrees with the latest maps: Bob's and Cy's microphones reach
    // Ada on the slots her map names, and each other likewise.
    let bob_mic = mid(&bob_tracks, TrackDirection::Publish, bob_id);
    let cy_mic = mid(&cy_tracks, TrackDirection::Publish, cy_id);
    let at_ada = [
        mid(&second, TrackDirection::Subscribe, bob_id),
        mid(&second, TrackDirection::Subscribe, cy_id),
    ];
    let cy_at_bob = mid(&bob_tracks, TrackDirection::Subscribe, cy_id);
    let bob_at_cy = mid(&cy_tracks, TrackDirection::Subscribe, bob_id);
    let mut received = [0usize; 4];
    let mut misrouted = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seq = 1u64;
    let mut next_send = Instant::now();
    while received.iter().any(|&n| n < 20) && Instant::now() < deadline {
        for packet in ada_peer.step() {
            match ada_peer.mid_of(&packet) {
                Some(m) if m == at_ada[0] => received[0] += 1,
                Some(m) if m == at_ada[1] => received[1] += 1,
                other => misrouted.push(("Ada", other)),
            }
        }
        for packet in bob_peer.step() {
            match bob_peer.mid_of(&packet) {
                Some(m) if m == cy_at_bob => received[2] += 1,
                other => misrouted.push(("Bob", other)),
            }
        }
        for packet in cy_peer.step() {
            match cy_peer.mid_of(&packet) {
                Some(m) if m == bob_at_cy => received[3] += 1,
                other => misrouted.push(("Cy", other)),
            }
        }
        if Instant::now() >= next_send && bob_peer.connected && cy_peer.connected {
            bob_peer.write_audio(bob_mic, seq, &[0xb0; 80]);
            cy_peer.write_audio(cy_mic, seq, &[0xc7; 80]);
            seq += 1;
            next_send += Duration::from_millis(20);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(ada_peer.connected, "Ada's media never connected");
    assert_eq!(
        received.map(|n| n >= 20),
        [true; 4],
        "packets at Ada from Bob, Cy; Bob from Cy; Cy from Bob: {received:?}"
    );
    assert!(misrouted.is_empty(), "{misrouted:?}");
    assert!(server.is_running(), "the server is still up");
}
