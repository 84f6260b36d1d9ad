//! ICE over TCP, sans IO: the SFU offers a passive TCP candidate when it has
//! one, a str0m peer whose only candidate is TCP connects through
//! `handle_tcp_frame`, and everything the SFU sends it is marked for TCP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_sfu::{DropReason, Output, Sfu, SfuConfig, Transport};
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Rtc};

const UDP: &str = "10.0.0.1:5000";
const TCP: &str = "10.0.0.1:5443";
const PEER: &str = "10.0.0.9:40000";

fn addr(a: &str) -> SocketAddr {
    a.parse().expect("addr")
}

fn sfu(tcp: Option<SocketAddr>) -> Sfu {
    Sfu::new(SfuConfig {
        candidate_addr: addr(UDP),
        tcp_candidate_addr: tcp,
    })
}

fn first_offer(sfu: &mut Sfu, now: Instant) -> String {
    sfu.add_participant(now, 1, "room").expect("added");
    while let Some(output) = sfu.poll_output() {
        if let Output::Offer { sdp, .. } = output {
            return sdp;
        }
    }
    panic!("no offer");
}

#[test]
fn without_a_tcp_address_nothing_is_offered_or_taken_over_tcp() {
    let now = Instant::now();
    let mut sfu = sfu(None);
    let sdp = first_offer(&mut sfu, now);
    assert!(!sdp.contains("tcptype"), "{sdp}");
    assert_eq!(
        sfu.handle_tcp_frame(now, addr(PEER), &[0x80, 96, 0, 1]),
        Err(DropReason::UnknownSender)
    );
}

#[test]
fn a_peer_with_only_a_tcp_candidate_connects_and_is_answered_over_tcp() {
    let mut now = Instant::now();
    let mut sfu = sfu(Some(addr(TCP)));
    let offer = first_offer(&mut sfu, now);
    assert!(
        offer.contains("10.0.0.1 5443 typ host tcptype passive"),
        "{offer}"
    );

    let mut peer = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(now);
    let local = Candidate::builder()
        .tcp()
        .host(addr(PEER))
        .tcptype(TcpType::Active)
        .build()
        .expect("candidate");
    peer.add_local_candidate(local);
    let answer = peer
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).expect("offer"))
        .expect("accepted");
    sfu.handle_answer(now, 1, &answer.to_sdp_string())
        .expect("answer");

    let mut connected = false;
    let mut to_peer = 0;
    let deadline = now + Duration::from_secs(10);
    while now < deadline && !connected {
        now += Duration::from_millis(5);
        // Peer → SFU: only TCP, to the passive candidate.
        peer.handle_input(Input::Timeout(now)).expect("timeout");
        loop {
            match peer.poll_output().expect("peer output") {
                str0m::Output::Timeout(_) => break,
                str0m::Output::Transmit(t) => {
                    assert_eq!(t.proto, Protocol::Tcp, "the peer has only TCP");
                    assert_eq!(t.destination, addr(TCP));
                    let _ = sfu.handle_tcp_frame(now, addr(PEER), &t.contents);
                }
                str0m::Output::Event(Event::Connected) => connected = true,
                str0m::Output::Event(_) => {}
            }
        }
        // SFU → peer.
        sfu.handle_timeout(now);
        while let Some(output) = sfu.poll_output() {
            if let Output::Transmit {
                transport,
                destination,
                contents,
            } = output
            {
                assert_eq!(transport, Transport::Tcp, "a TCP peer is answered over TCP");
                assert_eq!(destination, addr(PEER));
                to_peer += 1;
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Tcp,
                        source: addr(TCP),
                        destination: addr(PEER),
                        contents: contents.as_slice().try_into().expect("datagram"),
                    },
                );
                peer.handle_input(input).expect("input");
            }
        }
    }
    assert!(connected, "ICE and DTLS completed over TCP");
    assert!(to_peer > 0);
    assert!(sfu.knows_tcp_address(addr(PEER)));
    assert!(!sfu.knows_address(addr(PEER)), "not as a UDP address");
}
