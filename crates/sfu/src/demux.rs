//! O(1) routing of an incoming datagram to its participant.
//!
//! Once ICE has checked a participant's address, its packets are found by
//! source address. Before that, the only clue is the STUN USERNAME attribute
//! (`<our ufrag>:<their ufrag>`): each participant's `Rtc` gets a unique local
//! ufrag, so the first half names the participant. UDP and TCP (ICE-TCP,
//! where a remote address names one connection) have separate address maps:
//! the same address on both would be two different peers.

use std::collections::HashMap;
use std::net::SocketAddr;

use conclave_protocol::ParticipantId;

use crate::Transport;

#[derive(Debug, Default)]
pub struct Demux {
    by_addr: HashMap<SocketAddr, ParticipantId>,
    /// TCP connections, by remote address.
    by_tcp_addr: HashMap<SocketAddr, ParticipantId>,
    by_ufrag: HashMap<String, ParticipantId>,
}

impl Demux {
    pub fn add(&mut self, ufrag: String, id: ParticipantId) {
        self.by_ufrag.insert(ufrag, id);
    }

    /// Forgets one ufrag (an earlier ICE restart's), keeping the addresses.
    pub fn forget_ufrag(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
    }

    pub fn remove(&mut self, id: ParticipantId, ufrags: &[String]) {
        for ufrag in ufrags {
            self.by_ufrag.remove(ufrag);
        }
        self.by_addr.retain(|_, p| *p != id);
        self.by_tcp_addr.retain(|_, p| *p != id);
    }

    fn addrs(&self, transport: Transport) -> &HashMap<SocketAddr, ParticipantId> {
        match transport {
            Transport::Udp => &self.by_addr,
            Transport::Tcp => &self.by_tcp_addr,
        }
    }

    /// Remembers `source` as `id`'s address, after its `Rtc` accepted a packet from there.
    pub fn learn(&mut self, transport: Transport, source: SocketAddr, id: ParticipantId) {
        match transport {
            Transport::Udp => self.by_addr.insert(source, id),
            Transport::Tcp => self.by_tcp_addr.insert(source, id),
        };
    }

    pub fn knows(&self, source: SocketAddr) -> bool {
        self.by_addr.contains_key(&source)
    }

    pub fn knows_tcp(&self, source: SocketAddr) -> bool {
        self.by_tcp_addr.contains_key(&source)
    }

    pub fn lookup(
        &self,
        transport: Transport,
        source: SocketAddr,
        data: &[u8],
    ) -> Option<ParticipantId> {
        if let Some(ufrag) = stun_local_ufrag(data) {
            return self.by_ufrag.get(ufrag).copied();
        }
        self.addrs(transport).get(&source).copied()
    }
}

/// The participant a local ufrag was made for (`c<id>x<random>`, see
/// `Participant::new`). Only a routing hint: the owner's `Rtc` still checks
/// the whole ufrag and the message integrity.
pub fn participant_of_ufrag(ufrag: &str) -> Option<ParticipantId> {
    let (id, _) = ufrag.strip_prefix('c')?.split_once('x')?;
    id.parse().ok()
}

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_USERNAME: u16 = 0x0006;

/// The local (first) half of a STUN request's USERNAME, if `data` is a STUN
/// message carrying one. Bounds-checked throughout: any input is safe.
pub fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != STUN_MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let attributes = data.get(20..20 + length)?;
    let mut rest = attributes;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == STUN_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        let padded = (len + 3) & !3;
        rest = rest.get(4 + padded..)?;
    }
    None
}

/// A STUN binding request carrying `username` and no integrity: what
/// routing looks at, for tests of it (here, in the server and in fuzzing).
#[doc(hidden)]
pub fn stun_request_for_tests(username: &[u8]) -> Vec<u8> {
    let mut attr = STUN_USERNAME.to_be_bytes().to_vec();
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username);
    while !attr.len().is_multiple_of(4) {
        attr.push(0);
    }
    let mut msg = vec![0x00, 0x01];
    msg.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    msg.extend_from_slice(&STUN_MAGIC_COOKIE);
    msg.extend_from_slice(&[7; 12]);
    msg.extend_from_slice(&attr);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_ufrag_is_read_from_a_binding_request() {
        assert_eq!(
            stun_local_ufrag(&stun_request_for_tests(b"srv1:cli9")),
            Some("srv1")
        );
    }

    #[test]
    fn truncated_or_non_stun_datagrams_yield_nothing() {
        let msg = stun_request_for_tests(b"srv1:cli9");
        for cut in 0..msg.len() {
            let _ = stun_local_ufrag(&msg[..cut]);
        }
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        let mut lying = msg.clone();
        lying[2] = 0xff;
        assert_eq!(stun_local_ufrag(&lying), None);
    }

    #[test]
    fn the_participant_is_read_from_a_ufrag_and_nothing_else_parses() {
        assert_eq!(participant_of_ufrag("c42xAbCdEfGh"), Some(42));
        for other in [
            "",
            "c",
            "cx",
            "c42",
            "42xab",
            "cabxq",
            "c-1xq",
            "c99999999999999999999xq",
        ] {
            assert_eq!(participant_of_ufrag(other), None, "{other}");
        }
    }

    #[test]
    fn a_known_address_routes_without_stun() {
        let mut demux = Demux::default();
        let addr: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        demux.add("u1".into(), 4);
        let udp = Transport::Udp;
        assert_eq!(
            demux.lookup(udp, addr, &stun_request_for_tests(b"u1:x")),
            Some(4)
        );
        assert_eq!(demux.lookup(udp, addr, &[0x80, 0, 0, 0]), None);
        demux.learn(udp, addr, 4);
        assert_eq!(demux.lookup(udp, addr, &[0x80, 0, 0, 0]), Some(4));
        demux.remove(4, &["u1".to_owned()]);
        assert_eq!(demux.lookup(udp, addr, &[0x80, 0, 0, 0]), None);
    }

    #[test]
    fn a_tcp_connection_and_a_udp_address_alike_are_different_peers() {
        let mut demux = Demux::default();
        let addr: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        demux.add("u1".into(), 4);
        demux.learn(Transport::Tcp, addr, 4);
        assert_eq!(
            demux.lookup(Transport::Tcp, addr, &[0x80, 0, 0, 0]),
            Some(4)
        );
        assert_eq!(demux.lookup(Transport::Udp, addr, &[0x80, 0, 0, 0]), None);
        assert!(demux.knows_tcp(addr) && !demux.knows(addr));
        demux.remove(4, &["u1".to_owned()]);
        assert_eq!(demux.lookup(Transport::Tcp, addr, &[0x80, 0, 0, 0]), None);
    }
}
