//! A browser-like media peer for the integration tests that look at RTP:
//! str0m in RTP mode, so a test chooses every outgoing sequence number and
//! sees every incoming packet (after SRTP authentication) with its extended
//! sequence number.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use str0m::format::Codec;
use str0m::media::Mid;
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::common::Client;
use conclave_protocol::{ClientMessage, ServerMessage, TrackDirection, TrackMapping, TrackSource};

/// Answers the server's next offer with `peer`; returns the offer's tracks.
pub async fn negotiate(client: &mut Client, peer: &mut Peer) -> Vec<TrackMapping> {
    let ServerMessage::Offer { sdp, tracks } = client
        .recv_until("offer", |m| matches!(m, ServerMessage::Offer { .. }))
        .await
    else {
        unreachable!()
    };
    client
        .send(&ClientMessage::Answer {
            sdp: peer.answer(&sdp),
        })
        .await;
    tracks
}

/// The microphone m-line of `tracks` in `direction`.
pub fn microphone(tracks: &[TrackMapping], direction: TrackDirection) -> Mid {
    let track = tracks
        .iter()
        .find(|t| t.direction == direction && t.source == TrackSource::Microphone)
        .expect("a microphone m-line");
    Mid::from(track.mid.as_str())
}

pub struct Peer {
    pub rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pub connected: bool,
}

impl Peer {
    pub fn new() -> Peer {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        socket.set_nonblocking(true).expect("non-blocking");
        let local = socket.local_addr().expect("local addr");
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        Peer {
            rtc,
            socket,
            local,
            connected: false,
        }
    }

    /// The answer to a server offer.
    pub fn answer(&mut self, offer: &str) -> String {
        let offer = str0m::change::SdpOffer::from_sdp_string(offer).expect("valid offer");
        self.rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("the peer accepts the offer")
            .to_sdp_string()
    }

    /// Feeds every waiting datagram and the clock to the `Rtc`, sends what it
    /// wants sent, and returns the RTP packets that arrived.
    pub fn step(&mut self) -> Vec<RtpPacket> {
        let mut packets = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Ok((n, source)) = self.socket.recv_from(&mut buf) {
            let Ok(contents) = buf[..n].try_into() else {
                continue;
            };
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                },
            );
            if self.rtc.handle_input(input).is_ok() {
                self.drain(&mut packets);
            }
        }
        if self
            .rtc
            .handle_input(Input::Timeout(Instant::now()))
            .is_ok()
        {
            self.drain(&mut packets);
        }
        packets
    }

    fn drain(&mut self, packets: &mut Vec<RtpPacket>) {
        while let Ok(output) = self.rtc.poll_output() {
            match output {
                Output::Timeout(_) => return,
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::RtpPacket(packet)) => packets.push(packet),
                Output::Event(_) => {}
            }
        }
    }

    /// Writes one Opus-typed RTP packet with sequence number `seq` on `mid`.
    pub fn write_audio(&mut self, mid: Mid, seq: u64, payload: &[u8]) -> bool {
        let Some(pt) = self
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            return false;
        };
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        let rtp_time = (seq as u32).wrapping_mul(960);
        let write = RtpWrite::new(pt, seq.into(), rtp_time, Instant::now(), payload.to_vec())
            .marker(true)
            .nackable(false);
        stream.write_rtp(write);
        true
    }

    /// The m-line an incoming packet arrived on.
    pub fn mid_of(&mut self, packet: &RtpPacket) -> Option<Mid> {
        self.rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| s.mid())
    }
}
