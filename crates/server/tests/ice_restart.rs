//! A participant whose network changes mid-call (new address, old one
//! gone) asks for an ICE restart and gets its media back, through the real
//! binary on three media threads: the restart's offer carries new ICE
//! credentials (a ufrag str0m picks, which every thread must route to the
//! owner, whichever socket of the port's group the new address hashes to),
//! the peer checks its new address, and audio flows both ways again, in
//! the same session (no rejoin). It moves three times, so an earlier
//! restart's ufrag is dropped along the way.

mod common;
mod media;

use std::time::{Duration, Instant};

use common::*;
use conclave_protocol::{ClientMessage, TrackDirection};
use media::{microphone, negotiate, Peer};
use str0m::media::Mid;

/// Steps both peers for up to `wait`, sending one audio packet each way
/// every 10 ms; returns how many packets each got from the other.
fn exchange(peers: &mut [Peer; 2], mics: [Mid; 2], seq: &mut u64, wait: Duration) -> [u64; 2] {
    let mut got = [0u64; 2];
    let deadline = Instant::now() + wait;
    let mut next_send = Instant::now();
    while Instant::now() < deadline {
        for (r, peer) in peers.iter_mut().enumerate() {
            got[r] += peer
                .step()
                .iter()
                .filter(|p| p.payload.first() == Some(&(1 - r as u8)))
                .count() as u64;
        }
        if Instant::now() >= next_send {
            for (s, peer) in peers.iter_mut().enumerate() {
                peer.write_audio(mics[s], *seq, &[s as u8, 0xAA]);
            }
            *seq += 1;
            next_send = Instant::now() + Duration::from_millis(10);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

fn ufrag_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("an ice-ufrag")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_participant_that_changes_address_gets_its_media_back_with_an_ice_restart() {
    let server = Server::start_with(&["--media-threads", "3"]);
    let (mut ada, _) = Client::join(&server, "moving", "Ada").await;
    let mut ada_peer = Peer::new();
    let ada_tracks = negotiate(&mut ada, &mut ada_peer).await;
    let (mut bob, _) = Client::join(&server, "moving", "Bob").await;
    let mut bob_peer = Peer::new();
    let bob_tracks = negotiate(&mut bob, &mut bob_peer).await;
    let mics = [
        microphone(&ada_tracks, TrackDirection::Publish),
        microphone(&bob_tracks, TrackDirection::Publish),
    ];
    let mut peers = [ada_peer, bob_peer];
    let mut seq = 0;
    let got = exchange(&mut peers, mics, &mut seq, Duration::from_secs(3));
    assert!(
        got.iter().all(|&n| n > 50),
        "audio flows both ways at first: {got:?}"
    );

    let mut ufrags = Vec::new();
    for round in 1..=3 {
        peers[0].move_to_new_address();
        let got = exchange(&mut peers, mics, &mut seq, Duration::from_millis(1500));
        assert!(
            got.iter().all(|&n| n < 10),
            "round {round}: the old path is gone and nothing repairs it by itself: {got:?}"
        );
        ada.send(&ClientMessage::IceRestart).await;
        let offer = ada
            .recv_until("the ICE restart offer", |m| {
                matches!(m, conclave_protocol::ServerMessage::Offer { .. })
            })
            .await;
        let conclave_protocol::ServerMessage::Offer { sdp, .. } = offer else {
            unreachable!()
        };
        ufrags.push(ufrag_of(&sdp));
        let answer = peers[0].answer(&sdp);
        ada.send(&ClientMessage::Answer { sdp: answer }).await;
        let got = exchange(&mut peers, mics, &mut seq, Duration::from_secs(4));
        assert!(
            got.iter().all(|&n| n > 50),
            "round {round}: audio flows both ways again after the restart: {got:?}"
        );
    }
    ufrags.dedup();
    assert_eq!(
        ufrags.len(),
        3,
        "each restart has new credentials: {ufrags:?}"
    );
    // Still the same session: Bob was never renegotiated or told of a leave.
    while let Some(m) = bob.try_recv(Duration::from_millis(100)).await {
        assert!(
            !matches!(
                m,
                conclave_protocol::ServerMessage::Offer { .. }
                    | conclave_protocol::ServerMessage::ParticipantLeft { .. }
            ),
            "Bob saw {m:?}"
        );
    }
}

#[tokio::test]
async fn ice_restart_requests_are_rate_limited() {
    let server = Server::start();
    let (mut ada, _) = Client::join(&server, "restless", "Ada").await;
    let mut peer = Peer::new();
    negotiate(&mut ada, &mut peer).await;
    for _ in 0..6 {
        ada.send(&ClientMessage::IceRestart).await;
    }
    let limited = ada
        .recv_until("rate_limited", |m| {
            error_code(m) == Some(conclave_protocol::ErrorCode::RateLimited)
        })
        .await;
    assert_eq!(
        error_code(&limited),
        Some(conclave_protocol::ErrorCode::RateLimited)
    );
}
