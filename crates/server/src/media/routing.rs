//! Which media thread a datagram read on this thread's socket belongs to.
//!
//! The kernel spreads remote addresses over the threads' sockets by hash
//! (see `udp`), not by who owns the participant, so a thread passes a
//! datagram of another thread's participant on to it. A STUN request names
//! its participant (the ufrag, see `conclave_sfu::participant_of_ufrag`);
//! other datagrams are known by their source address, which the owner
//! confirms once its `Rtc` has checked a STUN request from there (message
//! integrity, with the participant's ICE password). Until then a STUN
//! request's address is a provisional route, so that DTLS following at once
//! is not dropped. An address this thread's own SFU has checked stays here,
//! and a confirmed route is never replaced by a provisional one, so a
//! request with a spoofed source cannot divert a participant's media.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use conclave_protocol::ParticipantId;
use conclave_sfu::{participant_of_ufrag, stun_local_ufrag};

/// ICE restart ufrags, which str0m picks at random (a participant's first
/// one names it: `c<id>x…`), shared by every media thread and the ICE-TCP
/// thread. Only a STUN request whose ufrag names nobody by itself looks
/// here, and those are rare (after a restart, then a check every few
/// seconds), so a lock costs nothing on the media path. The owner adds a
/// ufrag before its offer leaves, and drops the one it makes obsolete.
#[derive(Debug, Clone, Default)]
pub struct UfragAliases(Arc<RwLock<HashMap<String, ParticipantId>>>);

impl UfragAliases {
    pub fn add(&self, ufrag: String, id: ParticipantId, dropped: Option<&str>) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = dropped {
            map.remove(old);
        }
        map.insert(ufrag, id);
    }

    pub fn forget(&self, id: ParticipantId) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, p| *p != id);
    }

    /// The participant a local ufrag belongs to.
    pub fn participant(&self, ufrag: &str) -> Option<ParticipantId> {
        participant_of_ufrag(ufrag).or_else(|| {
            let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
            map.get(ufrag).copied()
        })
    }

    /// The participant a STUN request is for, if `data` is one.
    pub fn stun_participant(&self, data: &[u8]) -> Option<ParticipantId> {
        self.participant(stun_local_ufrag(data)?)
    }
}

/// Provisional routes kept at most; past it they are all forgotten (they
/// only matter for the moment between a STUN request and its confirmation).
const MAX_PROVISIONAL: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This thread's SFU takes it (its own participant, or nobody's: the
    /// SFU drops and counts what it does not know).
    Here,
    /// Another thread's participant.
    Thread(usize),
}

#[derive(Debug)]
pub struct Routing {
    me: usize,
    aliases: UfragAliases,
    /// Every participant's thread.
    owners: HashMap<ParticipantId, usize>,
    /// Other threads' participants' addresses, as their owner confirmed.
    confirmed: HashMap<SocketAddr, ParticipantId>,
    provisional: HashMap<SocketAddr, ParticipantId>,
}

impl Routing {
    pub fn new(me: usize, aliases: UfragAliases) -> Self {
        Routing {
            me,
            aliases,
            owners: HashMap::new(),
            confirmed: HashMap::new(),
            provisional: HashMap::new(),
        }
    }

    /// The ufrags of ICE restarts, every thread's.
    pub fn aliases(&self) -> &UfragAliases {
        &self.aliases
    }

    pub fn join(&mut self, id: ParticipantId, owner: usize) {
        self.owners.insert(id, owner);
    }

    pub fn leave(&mut self, id: ParticipantId) {
        self.owners.remove(&id);
        self.confirmed.retain(|_, p| *p != id);
        self.provisional.retain(|_, p| *p != id);
    }

    /// Where a datagram from `source` goes; `checked_here` says whether this
    /// thread's SFU has checked that address for one of its participants.
    pub fn route(
        &mut self,
        source: SocketAddr,
        data: &[u8],
        checked_here: impl FnOnce(SocketAddr) -> bool,
    ) -> Route {
        if let Some(ufrag) = stun_local_ufrag(data) {
            let Some(id) = self.aliases.participant(ufrag) else {
                return Route::Here;
            };
            let route = self.route_of(id);
            if route != Route::Here && !self.confirmed.contains_key(&source) {
                if self.provisional.len() >= MAX_PROVISIONAL {
                    self.provisional.clear();
                }
                self.provisional.insert(source, id);
            }
            return route;
        }
        if checked_here(source) {
            return Route::Here;
        }
        match self
            .confirmed
            .get(&source)
            .or_else(|| self.provisional.get(&source))
        {
            Some(&id) => self.route_of(id),
            None => Route::Here,
        }
    }

    /// The owner of `id` checked a STUN request from `source` (which this
    /// thread passed on): route that address's datagrams to it.
    pub fn confirm(&mut self, source: SocketAddr, id: ParticipantId) {
        self.provisional.remove(&source);
        if self.route_of(id) != Route::Here {
            self.confirmed.insert(source, id);
        }
    }

    fn route_of(&self, id: ParticipantId) -> Route {
        match self.owners.get(&id) {
            Some(&owner) if owner != self.me => Route::Thread(owner),
            _ => Route::Here,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(username: &str) -> Vec<u8> {
        conclave_sfu::stun_request_for_tests(username.as_bytes())
    }

    const RTP: [u8; 12] = [0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];

    /// Routes with nothing checked by this thread's SFU.
    fn route(routing: &mut Routing, source: SocketAddr, data: &[u8]) -> Route {
        routing.route(source, data, |_| false)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn stun_goes_to_the_owner_and_its_address_follows_until_confirmed() {
        let mut routing = Routing::new(0, UfragAliases::default());
        routing.join(5, 1);
        routing.join(6, 0);
        assert_eq!(
            route(&mut routing, addr(1), &RTP),
            Route::Here,
            "unknown address"
        );
        assert_eq!(
            route(&mut routing, addr(1), &stun("c5xabc:q")),
            Route::Thread(1)
        );
        assert_eq!(
            route(&mut routing, addr(1), &RTP),
            Route::Thread(1),
            "provisional"
        );
        assert_eq!(
            route(&mut routing, addr(2), &stun("c6xabc:q")),
            Route::Here,
            "own"
        );
        assert_eq!(route(&mut routing, addr(2), &RTP), Route::Here);
        routing.confirm(addr(1), 5);
        assert_eq!(route(&mut routing, addr(1), &RTP), Route::Thread(1));
        routing.leave(5);
        assert_eq!(route(&mut routing, addr(1), &RTP), Route::Here);
        assert_eq!(route(&mut routing, addr(1), &stun("c5xabc:q")), Route::Here);
    }

    #[test]
    fn a_spoofed_stun_request_cannot_divert_a_confirmed_address() {
        let mut routing = Routing::new(0, UfragAliases::default());
        routing.join(5, 1);
        routing.join(7, 2);
        route(&mut routing, addr(1), &stun("c5xabc:q"));
        routing.confirm(addr(1), 5);
        // From 5's address, naming 7: the request itself goes to 7's
        // thread (whose Rtc will refuse it), 5's media stays with 5.
        assert_eq!(
            route(&mut routing, addr(1), &stun("c7xzzz:q")),
            Route::Thread(2)
        );
        assert_eq!(route(&mut routing, addr(1), &RTP), Route::Thread(1));
    }

    #[test]
    fn an_address_this_threads_sfu_checked_stays_here_whatever_stun_claims() {
        let mut routing = Routing::new(0, UfragAliases::default());
        routing.join(5, 1);
        routing.join(8, 0);
        // A request spoofing 8's address, naming 5: goes to 5's thread…
        assert_eq!(
            route(&mut routing, addr(8), &stun("c5xabc:q")),
            Route::Thread(1)
        );
        // …but 8's media, from the address our SFU checked, stays here.
        assert_eq!(routing.route(addr(8), &RTP, |a| a == addr(8)), Route::Here);
    }

    #[test]
    fn an_ice_restart_ufrag_routes_to_its_owner_on_every_thread_until_dropped() {
        let aliases = UfragAliases::default();
        let mut here = Routing::new(0, aliases.clone());
        let mut there = Routing::new(1, aliases.clone());
        for r in [&mut here, &mut there] {
            r.join(5, 1);
        }
        // str0m's random ufrag names nobody by itself: this thread's SFU
        // would get it (and drop it) until the owner registers it.
        assert_eq!(route(&mut here, addr(1), &stun("Zq3kRt:q")), Route::Here);
        aliases.add("Zq3kRt".into(), 5, None);
        assert_eq!(
            route(&mut here, addr(1), &stun("Zq3kRt:q")),
            Route::Thread(1)
        );
        assert_eq!(
            route(&mut there, addr(2), &stun("Zq3kRt:q")),
            Route::Here,
            "own"
        );
        assert_eq!(aliases.stun_participant(&stun("Zq3kRt:q")), Some(5));
        // The next restart makes it obsolete; leaving forgets the rest.
        aliases.add("Yy7pLm".into(), 5, Some("Zq3kRt"));
        assert_eq!(aliases.stun_participant(&stun("Zq3kRt:q")), None);
        assert_eq!(aliases.stun_participant(&stun("Yy7pLm:q")), Some(5));
        aliases.forget(5);
        assert_eq!(aliases.stun_participant(&stun("Yy7pLm:q")), None);
        assert_eq!(
            aliases.stun_participant(&stun("c5xabc:q")),
            Some(5),
            "the first ufrag names its participant"
        );
    }

    #[test]
    fn provisional_routes_are_bounded() {
        let mut routing = Routing::new(0, UfragAliases::default());
        routing.join(5, 1);
        for port in 0..(MAX_PROVISIONAL as u16 * 3) {
            route(&mut routing, addr(port), &stun("c5xabc:q"));
        }
        assert!(routing.provisional.len() <= MAX_PROVISIONAL);
    }
}
