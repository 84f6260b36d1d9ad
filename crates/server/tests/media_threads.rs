//! One room spread over several media threads, through the real binary:
//! with `--media-threads 3`, four participants are owned by three threads
//! (control gives each joiner to the thread with the fewest), and the kernel
//! hands each one's datagrams to whichever socket of the port's group its
//! address hashes to. Everyone must still hear everyone: STUN and DTLS
//! passed on to the owner, published packets relayed to the other threads'
//! subscribers.

mod common;
mod media;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use conclave_protocol::TrackDirection;
use media::{microphone, negotiate, Peer};

const PARTICIPANTS: usize = 4;
/// Packets each participant sends once everyone is connected.
const SENT: u64 = 100;

#[tokio::test]
async fn everyone_hears_everyone_when_a_room_spans_three_media_threads() {
    let server = Server::start_with(&["--media-threads", "3"]);
    let mut clients = Vec::new();
    let mut peers = Vec::new();
    let mut mics = Vec::new();
    for i in 0..PARTICIPANTS {
        let (mut client, _) = Client::join(&server, "spread", &format!("P{i}")).await;
        let mut peer = Peer::new();
        let tracks = negotiate(&mut client, &mut peer).await;
        mics.push(microphone(&tracks, TrackDirection::Publish));
        clients.push(client);
        peers.push(peer);
    }

    // received[r][s]: packets participant r got from participant s, known
    // by the payload's first byte (the SFU never reads payloads).
    let mut received = vec![HashMap::<u8, u64>::new(); PARTICIPANTS];
    let mut seq = 0u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next_send = Instant::now();
    while Instant::now() < deadline {
        for (r, peer) in peers.iter_mut().enumerate() {
            for packet in peer.step() {
                if let Some(&sender) = packet.payload.first() {
                    *received[r].entry(sender).or_default() += 1;
                }
            }
        }
        let all_connected = peers.iter().all(|p| p.connected);
        if all_connected && seq < SENT && Instant::now() >= next_send {
            for (s, peer) in peers.iter_mut().enumerate() {
                let payload = [s as u8, (seq >> 8) as u8, seq as u8, 0xAA];
                peer.write_audio(mics[s], seq, &payload);
            }
            seq += 1;
            next_send = Instant::now() + Duration::from_millis(10);
        }
        let done = (0..PARTICIPANTS).all(|r| {
            (0..PARTICIPANTS)
                .filter(|&s| s != r)
                .all(|s| received[r].get(&(s as u8)).copied().unwrap_or(0) >= SENT * 9 / 10)
        });
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for r in 0..PARTICIPANTS {
        assert!(peers[r].connected, "participant {r} completed ICE and DTLS");
        for s in 0..PARTICIPANTS {
            let got = received[r].get(&(s as u8)).copied().unwrap_or(0);
            if s == r {
                assert_eq!(got, 0, "participant {r} got its own audio back");
            } else {
                assert!(
                    got >= SENT * 9 / 10,
                    "participant {r} got {got} of {SENT} packets from {s} (all: {received:?})"
                );
            }
        }
    }
    drop(clients);
}
