//! Test helpers: a tiny in-memory delivery service that fans messages out.
#![allow(dead_code, clippy::unwrap_used)]

use conclave_e2ee::server::DeliveryServiceSigner;
use conclave_e2ee::{CommitOutput, Event, Member};

pub const ROOM: &[u8] = b"room-42";
pub const SECRET: &[u8] = b"0123456789abcdef-invite-secret";

pub struct Meeting {
    pub ds: DeliveryServiceSigner,
    pub members: Vec<Member>,
    pub now: u64,
}

impl Meeting {
    pub fn new(creator: &str) -> Self {
        let ds = DeliveryServiceSigner::generate("conclave-server").unwrap();
        let mut m = Member::new(creator, ROOM, Some(SECRET)).unwrap();
        let ev = m.create_group(&[ds.external_sender().unwrap()], 0).unwrap();
        assert!(matches!(ev[0], Event::Joined { .. }));
        Meeting {
            ds,
            members: vec![m],
            now: 0,
        }
    }

    /// Deliver a commit to everyone (committer included, as the DS echoes it).
    pub fn fan_out(&mut self, bytes: &[u8], skip: &[usize]) -> Vec<Vec<Event>> {
        let now = self.now;
        self.members
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(_, m)| m.process_incoming(bytes, now).unwrap())
            .collect()
    }

    /// Members[adder] adds a new member via a join request with the secret.
    pub fn join(&mut self, name: &str, adder: usize) -> usize {
        let mut j = Member::new(name, ROOM, Some(SECRET)).unwrap();
        let req = j.join_request().unwrap();
        let ev = self.members[adder]
            .process_incoming(&req, self.now)
            .unwrap();
        assert!(matches!(ev[0], Event::JoinVerified { .. }), "{ev:?}");
        let out = self.members[adder].commit_pending().unwrap().unwrap();
        self.apply(out, j)
    }

    pub fn apply(&mut self, out: CommitOutput, mut joiner: Member) -> usize {
        self.fan_out(&out.commit, &[]);
        let ev = joiner
            .process_incoming(&out.welcome.unwrap(), self.now)
            .unwrap();
        assert!(matches!(ev[0], Event::Joined { .. }));
        self.members.push(joiner);
        self.members.len() - 1
    }
}
