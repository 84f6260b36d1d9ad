//! ICE over TCP through the real binary: a peer whose only candidate is
//! TCP (as a browser whose UDP is blocked) joins a room with a UDP peer and
//! both hear each other; and connections that misbehave on the TCP port are
//! closed while the meeting goes on.

mod common;
mod media;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use conclave_protocol::{ServerMessage, TrackDirection};
use media::{microphone, negotiate, Peer};

/// Packets each side sends once both are connected.
const SENT: u64 = 100;

/// A UDP peer and a TCP-only peer in one room: each must get at least 90 %
/// of the other's audio packets (payload marked with the sender).
async fn tcp_and_udp_peers_hear_each_other(server: &Server) {
    let room = format!("tcp-{}", rand_suffix());
    let (mut udp_client, _) = Client::join(server, &room, "Udp").await;
    let mut udp_peer = Peer::new();
    let udp_tracks = negotiate(&mut udp_client, &mut udp_peer).await;

    let (mut tcp_client, _) = Client::join(server, &room, "Tcp").await;
    let ServerMessage::Offer { sdp, tracks } = tcp_client
        .recv_until("offer", |m| matches!(m, ServerMessage::Offer { .. }))
        .await
    else {
        unreachable!()
    };
    let passive = format!(
        "{} {} typ host tcptype passive",
        server.tcp.ip(),
        server.tcp.port()
    );
    assert!(
        sdp.lines()
            .any(|l| l.starts_with("a=candidate:") && l.contains(&passive)),
        "the offer has a passive TCP host candidate on {}:\n{sdp}",
        server.tcp
    );
    let mut tcp_peer = Peer::new_tcp(server.tcp);
    tcp_client
        .send(&conclave_protocol::ClientMessage::Answer {
            sdp: tcp_peer.answer(&sdp),
        })
        .await;

    let mics = [
        microphone(&udp_tracks, TrackDirection::Publish),
        microphone(&tracks, TrackDirection::Publish),
    ];
    let mut peers = [udp_peer, tcp_peer];
    let mut received = [0u64; 2];
    let mut seq = 0u64;
    let mut next_send = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && received.iter().any(|&n| n < SENT * 9 / 10) {
        for (r, peer) in peers.iter_mut().enumerate() {
            for packet in peer.step() {
                if packet.payload.first() == Some(&(1 - r as u8)) {
                    received[r] += 1;
                }
            }
        }
        if peers.iter().all(|p| p.connected) && seq < SENT && Instant::now() >= next_send {
            for (s, peer) in peers.iter_mut().enumerate() {
                peer.write_audio(mics[s], seq, &[s as u8, seq as u8, 0xAA]);
            }
            seq += 1;
            next_send = Instant::now() + Duration::from_millis(10);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(peers[0].connected, "the UDP peer connected");
    assert!(
        peers[1].connected,
        "the TCP-only peer connected over ICE-TCP"
    );
    assert!(
        received[0] >= SENT * 9 / 10,
        "the UDP peer got {} of {SENT} packets from the TCP peer",
        received[0]
    );
    assert!(
        received[1] >= SENT * 9 / 10,
        "the TCP peer got {} of {SENT} packets from the UDP peer",
        received[1]
    );
    drop((udp_client, tcp_client));
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[tokio::test]
async fn a_tcp_only_peer_and_a_udp_peer_exchange_media() {
    let server = Server::start_with(&["--media-threads", "1"]);
    tcp_and_udp_peers_hear_each_other(&server).await;
}

/// With two media threads the two peers are owned by different threads:
/// the TCP thread must route the TCP peer's frames to its owner, and media
/// is relayed between the threads.
#[tokio::test]
async fn a_tcp_only_peer_owned_by_another_media_thread_exchanges_media() {
    let server = Server::start_with(&["--media-threads", "2"]);
    tcp_and_udp_peers_hear_each_other(&server).await;
}

/// Whether the server closed `stream` within `within` (reads EOF or an
/// error; whatever it sent before is ignored).
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

fn connect(addr: SocketAddr, first: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.write_all(first).expect("writes");
    stream
}

/// A STUN binding request (with a USERNAME, no integrity) for `ufrag`.
fn stun_request(username: &str) -> Vec<u8> {
    conclave_sfu::stun_request_for_tests(username.as_bytes())
}

fn framed(data: &[u8]) -> Vec<u8> {
    let mut frame = (data.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(data);
    frame
}

#[tokio::test]
async fn connections_that_misbehave_on_the_tcp_port_are_closed_and_media_goes_on() {
    let server = Server::start_with(&["--media-threads", "2"]);
    // Someone present, whose ufrag's shape a connection can name.
    let (present, welcome) = Client::join(&server, "present", "Present").await;
    let ServerMessage::Welcome { you, .. } = welcome else {
        unreachable!()
    };
    let opened = Instant::now();
    // Garbage: an HTTP request (its first bytes read as a length over the
    // largest frame), and a frame of something that is not STUN, DTLS, RTP
    // or RTCP.
    let mut http = connect(server.tcp, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut garbage = connect(server.tcp, &framed(b"hello"));
    // A length prefix over the largest frame.
    let mut oversized = connect(server.tcp, &[0xff, 0xff, 1, 2, 3]);
    // An empty frame.
    let mut empty = connect(server.tcp, &[0, 0]);
    // DTLS before any STUN request (RFC 6544: ICE checks come first).
    let mut dtls_first = connect(server.tcp, &framed(&[22, 254, 253, 0, 0]));
    // A STUN request for nobody.
    let mut nobody = connect(server.tcp, &framed(&stun_request("c999999xabc:q")));
    // Silent: never sends anything (closed after the pre-STUN timeout).
    let mut silent = TcpStream::connect(server.tcp).expect("connects");
    // A STUN request with the right shape for a participant but no
    // integrity: routed, never accepted, so closed like a silent one.
    let ufrag = format!("c{}xabcdefgh:q", you.id);
    let mut unchecked = connect(server.tcp, &framed(&stun_request(&ufrag)));
    // The same, then a frame that is no WebRTC datagram.
    let mut stun_then_garbage = framed(&stun_request(&ufrag));
    stun_then_garbage.extend(framed(b"hello"));
    let mut garbage_later = connect(server.tcp, &stun_then_garbage);
    // Half a frame, then gone.
    drop(connect(server.tcp, &[0x05, 0x00, 0x00, 0x01]));

    let mut not_closed = Vec::new();
    for (name, stream) in [
        ("HTTP", &mut http),
        ("garbage frame", &mut garbage),
        ("oversized length", &mut oversized),
        ("empty frame", &mut empty),
        ("DTLS first", &mut dtls_first),
        ("STUN for nobody", &mut nobody),
        ("garbage after a STUN request", &mut garbage_later),
    ] {
        if !closed_within(stream, Duration::from_secs(3)) {
            not_closed.push(name);
        }
    }

    // Meanwhile the TCP port and the server serve everyone else.
    tcp_and_udp_peers_hear_each_other(&server).await;

    // The pre-STUN timeout is 10 s.
    let left = Duration::from_secs(15).saturating_sub(opened.elapsed());
    if !closed_within(&mut silent, left) {
        not_closed.push("silent (never sends STUN)");
    }
    if !closed_within(&mut unchecked, Duration::from_secs(2)) {
        not_closed.push("a STUN request never accepted");
    }
    assert!(
        not_closed.is_empty(),
        "connections not closed by the server: {not_closed:?}"
    );
    let mut server = server;
    assert!(server.is_running());
    drop(present);
}
