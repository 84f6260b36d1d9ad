//! A browser-like media peer for the integration tests that look at RTP:
//! str0m in RTP mode, so a test chooses every outgoing sequence number and
//! sees every incoming packet (after SRTP authentication) with its extended
//! sequence number.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::Mid;
use str0m::net::{Protocol, Receive, TcpType};
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

/// How a peer reaches the server.
enum Link {
    Udp(UdpSocket),
    /// ICE-TCP: one connection to the server's passive candidate, RFC 4571
    /// frames, and what was read of an incomplete one.
    Tcp {
        stream: TcpStream,
        server: SocketAddr,
        pending: Vec<u8>,
    },
}

pub struct Peer {
    pub rtc: Rtc,
    link: Link,
    local: SocketAddr,
    pub connected: bool,
}

fn rtc() -> Rtc {
    str0m::crypto::from_feature_flags().install_process_default();
    Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now())
}

impl Peer {
    pub fn new() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        socket.set_nonblocking(true).expect("non-blocking");
        let local = socket.local_addr().expect("local addr");
        let mut rtc = rtc();
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        Peer {
            rtc,
            link: Link::Udp(socket),
            local,
            connected: false,
        }
    }

    /// A peer whose only way to the server is TCP (as a browser whose UDP
    /// is blocked): an active TCP candidate, connected to `server_tcp`.
    pub fn new_tcp(server_tcp: SocketAddr) -> Peer {
        let stream = TcpStream::connect(server_tcp).expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_nonblocking(true).expect("non-blocking");
        let local = stream.local_addr().expect("local addr");
        let mut rtc = rtc();
        let candidate = Candidate::builder()
            .tcp()
            .host(local)
            .tcptype(TcpType::Active)
            .build()
            .expect("tcp candidate");
        rtc.add_local_candidate(candidate);
        Peer {
            rtc,
            link: Link::Tcp {
                stream,
                server: server_tcp,
                pending: Vec::new(),
            },
            local,
            connected: false,
        }
    }

    /// The peer's network changes (Wi-Fi to mobile data): it has a new
    /// address, a new UDP socket, and the old one is gone. Its `Rtc` learns
    /// the new candidate but, like a browser, only checks it after an ICE
    /// restart; what it still sends from the old address is lost.
    pub fn move_to_new_address(&mut self) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        socket.set_nonblocking(true).expect("non-blocking");
        let local = socket.local_addr().expect("local addr");
        self.rtc
            .add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        self.link = Link::Udp(socket);
        self.local = local;
    }

    /// Datagrams that arrived, with their source and protocol.
    fn receive(&mut self) -> Vec<(Protocol, SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        match &mut self.link {
            Link::Udp(socket) => {
                while let Ok((n, source)) = socket.recv_from(&mut buf) {
                    got.push((Protocol::Udp, source, buf[..n].to_vec()));
                }
            }
            Link::Tcp {
                stream,
                server,
                pending,
            } => {
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
                while pending.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
                    if pending.len() < 2 + len {
                        break;
                    }
                    got.push((Protocol::Tcp, *server, pending[2..2 + len].to_vec()));
                    pending.drain(..2 + len);
                }
            }
        }
        got
    }

    fn transmit(&mut self, destination: SocketAddr, contents: &[u8]) {
        match &mut self.link {
            Link::Udp(socket) => {
                let _ = socket.send_to(contents, destination);
            }
            Link::Tcp { stream, server, .. } => {
                assert_eq!(
                    destination, *server,
                    "a TCP peer only talks to the server's TCP port"
                );
                let mut frame = (contents.len() as u16).to_be_bytes().to_vec();
                frame.extend_from_slice(contents);
                write_all_nonblocking(stream, &frame);
            }
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
        for (proto, source, data) in self.receive() {
            let Ok(contents) = data.as_slice().try_into() else {
                continue;
            };
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto,
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
                // From an address the peer no longer has: lost.
                Output::Transmit(t) if t.proto == Protocol::Udp && t.source != self.local => {}
                Output::Transmit(t) => self.transmit(t.destination, &t.contents),
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

/// Writes all of `data` on a non-blocking stream (tests send little).
fn write_all_nonblocking(stream: &mut TcpStream, mut data: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !data.is_empty() && Instant::now() < deadline {
        match stream.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return,
        }
    }
}
