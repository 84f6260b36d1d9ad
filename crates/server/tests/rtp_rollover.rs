//! RTP sequence numbers wrapping (65535 → 0) through the real binary. SRTP
//! authenticates each packet under its 48-bit index (rollover counter and
//! sequence number), so a leg whose rollover counter did not advance with
//! the wrap drops every packet after it. The SFU renumbers each subscriber's
//! stream (`conclave_sfu::seq`), so the publisher's leg and the subscriber's
//! leg wrap at different packets, and both must be crossed.

mod common;
mod media;

use std::time::{Duration, Instant};

use common::*;
use conclave_protocol::TrackDirection;
use media::{microphone, negotiate, Peer};

const WRAP: u64 = 1 << 16;
/// Packets each leg carries on either side of its wrap.
const AROUND: u64 = 60;
/// Largest jump in the publisher's numbering: well under 2^15, so both
/// SRTP receivers still place the next packet after the previous one (a
/// burst of loss, as far as they can tell).
const MAX_JUMP: u64 = 8_000;

/// A received packet: the publisher's sequence number (carried in the
/// payload, which the SFU never reads) and the subscriber leg's extended one.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    sent_as: u64,
    received_as: u64,
}

#[tokio::test]
async fn a_subscriber_keeps_receiving_across_the_sequence_number_wrap_on_both_legs() {
    let server = Server::start();
    let (mut publisher, _) = Client::join(&server, "wrap", "Pub").await;
    let mut pub_peer = Peer::new();
    let pub_tracks = negotiate(&mut publisher, &mut pub_peer).await;
    let (mut subscriber, _) = Client::join(&server, "wrap", "Sub").await;
    let mut sub_peer = Peer::new();
    let sub_tracks = negotiate(&mut subscriber, &mut sub_peer).await;
    // The publisher learns of the subscriber by a track map, not an offer.
    let mic = microphone(&pub_tracks, TrackDirection::Publish);
    let mic_at_sub = microphone(&sub_tracks, TrackDirection::Subscribe);

    // The publisher starts AROUND packets before its own wrap.
    let mut next = WRAP - AROUND;
    let mut sent = Vec::new();
    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut elsewhere = 0;
    // The subscriber leg's number minus the publisher's, once known.
    let mut offset: Option<i64> = None;
    let mut stepped_past_sub_wrap = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next_send = Instant::now();
    while Instant::now() < deadline {
        pub_peer.step();
        for packet in sub_peer.step() {
            if sub_peer.mid_of(&packet) != Some(mic_at_sub) || packet.payload.len() < 8 {
                elsewhere += 1;
                continue;
            }
            let mut sent_as = [0u8; 8];
            sent_as.copy_from_slice(&packet.payload[..8]);
            arrivals.push(Arrival {
                sent_as: u64::from_be_bytes(sent_as),
                received_as: *packet.seq_no,
            });
        }
        if offset.is_none() {
            offset = arrivals
                .iter()
                .find(|a| a.sent_as >= WRAP)
                .map(|a| a.received_as as i64 - a.sent_as as i64);
        }
        if !(pub_peer.connected && sub_peer.connected) || Instant::now() < next_send {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if stepped_past_sub_wrap > AROUND {
            // Let the last packets arrive.
            if Instant::now() > next_send + Duration::from_millis(500) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let mut payload = vec![0x5a; 80];
        payload[..8].copy_from_slice(&next.to_be_bytes());
        assert!(
            pub_peer.write_audio(mic, next, &payload),
            "publisher writes"
        );
        sent.push(next);
        next_send += Duration::from_millis(4);
        // Step by one across the publisher's wrap, and AROUND past it; once
        // the subscriber's numbering is known (from a packet sent after that
        // wrap), jump
        // towards the point where the subscriber's leg wraps and step by one
        // across it too.
        next = match offset {
            Some(offset) if next >= WRAP + AROUND => {
                let sub_next = (next as i64 + offset) as u64;
                if sub_next + AROUND < WRAP {
                    next + (WRAP - AROUND - sub_next).min(MAX_JUMP)
                } else {
                    if sub_next >= WRAP {
                        stepped_past_sub_wrap += 1;
                    }
                    next + 1
                }
            }
            _ => next + 1,
        };
    }
    drop((publisher, subscriber));

    assert!(
        pub_peer.connected && sub_peer.connected,
        "media never connected"
    );
    let offset = offset.expect("packets sent after the publisher's wrap reached the subscriber");
    let count = |what: &dyn Fn(u64) -> bool| sent.iter().filter(|&&s| what(s)).count();
    let got = |what: &dyn Fn(&Arrival) -> bool| arrivals.iter().filter(|a| what(a)).count();

    // Every arrival has the number the SFU's rebasing gives it.
    let renumbered: Vec<_> = arrivals
        .iter()
        .filter(|a| a.received_as as i64 - a.sent_as as i64 != offset)
        .collect();
    assert!(
        renumbered.is_empty(),
        "inconsistent numbering: {renumbered:?}"
    );
    assert_eq!(elsewhere, 0, "packets on other m-lines");

    // The publisher's leg wrapped, and what followed still reached the subscriber.
    let pub_before = count(&|s| s < WRAP);
    let pub_after = count(&|s| (WRAP..WRAP + AROUND).contains(&s));
    assert_eq!(pub_before as u64, AROUND);
    assert_eq!(pub_after as u64, AROUND);
    let got_pub_after = got(&|a| (WRAP..WRAP + AROUND).contains(&a.sent_as));
    assert!(
        got_pub_after + 5 >= pub_after,
        "after the publisher's wrap {got_pub_after} of {pub_after} packets arrived"
    );

    // The subscriber's leg wrapped too: count what was sent for its last
    // AROUND numbers before 65536 and its first after, and what arrived.
    let sub_of = |s: u64| (s as i64 + offset) as u64;
    let sent_before = count(&|s| (WRAP - AROUND..WRAP).contains(&sub_of(s)));
    let sent_after = count(&|s| sub_of(s) >= WRAP);
    let got_before = got(&|a| (WRAP - AROUND..WRAP).contains(&a.received_as));
    let got_after = got(&|a| a.received_as >= WRAP);
    assert!(
        sent_before as u64 == AROUND && sent_after as u64 > AROUND,
        "the subscriber's leg was not driven across its wrap: {sent_before} before, {sent_after} after"
    );
    assert!(
        got_before + 5 >= sent_before,
        "before the subscriber's wrap {got_before} of {sent_before} packets arrived"
    );
    assert!(
        got_after + 5 >= sent_after,
        "after the subscriber's wrap {got_after} of {sent_after} packets arrived \
         (its rollover counter must advance)"
    );
}
