//! The server's view of a group (`RoomDelivery`): it follows commits without
//! any secret, orders them, refuses bad ones and knows who holds which leaf.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use conclave_e2ee::server::RoomDelivery;
use conclave_e2ee::{Error, Event, Member};

fn delivery(m: &Meeting) -> RoomDelivery {
    let gi = m.members[0].group_info().unwrap();
    RoomDelivery::from_group_info(&gi, ROOM, &m.ds.external_sender().unwrap()).unwrap()
}

#[test]
fn the_server_follows_joins_and_routes_welcomes_by_signature_key() {
    let mut m = Meeting::new("Alice");
    let mut ds = delivery(&m);
    assert_eq!(ds.epoch(), 0);
    assert_eq!(ds.leaf_of(m.members[0].signature_key()), Some(0));
    let mut bob = Member::new("Bob", ROOM, Some(SECRET)).unwrap();
    let req = bob.join_request().unwrap();
    m.members[0].process_incoming(&req, 0).unwrap();
    let out = m.members[0].commit_pending().unwrap().unwrap();
    let applied = ds.handle_commit(&out.commit).unwrap();
    assert_eq!(applied.epoch, 1);
    assert_eq!(applied.committer, 0);
    assert_eq!(applied.added.len(), 1);
    assert_eq!(applied.added[0].signature_key, bob.signature_key());
    assert_eq!(applied.added[0].display_name, "Bob");
    m.apply(out, bob);
    assert_eq!(ds.roster(), m.members[0].roster().unwrap());
}

#[test]
fn only_the_first_commit_of_an_epoch_is_accepted() {
    let mut m = Meeting::new("Alice");
    let mut ds = delivery(&m);
    m.join("Bob", 0);
    // A delivery state that started after Bob joined, and the old one (now stale).
    let mut ds2 = delivery(&m);
    assert_eq!(ds2.epoch(), 1);
    let mut c = Member::new("Carol", ROOM, Some(SECRET)).unwrap();
    let mut d = Member::new("Dave", ROOM, Some(SECRET)).unwrap();
    m.members[0]
        .process_incoming(&c.join_request().unwrap(), 0)
        .unwrap();
    m.members[1]
        .process_incoming(&d.join_request().unwrap(), 0)
        .unwrap();
    let first = m.members[0].commit_pending().unwrap().unwrap();
    let second = m.members[1].commit_pending().unwrap().unwrap();
    ds2.handle_commit(&first.commit).unwrap();
    assert!(matches!(
        ds2.handle_commit(&second.commit),
        Err(Error::EpochMismatch {
            local: 2,
            message: 1
        })
    ));
    // A stale commit on the old delivery state is refused as well (wrong epoch).
    assert!(ds.handle_commit(&first.commit).is_err());
}

#[test]
fn the_server_removes_a_vanished_member_by_external_proposal() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    m.join("Carol", 0);
    let mut ds = delivery(&m);
    let carol_leaf = ds.leaf_of(m.members[2].signature_key()).unwrap();
    let proposal = m.ds.remove_proposal(ROOM, ds.epoch(), carol_leaf).unwrap();
    ds.handle_proposal(&proposal).unwrap();
    for x in &mut m.members[..2] {
        let ev = x.process_incoming(&proposal, 0).unwrap();
        assert!(matches!(
            ev[0],
            Event::RemoveProposed {
                by_server: true,
                ..
            }
        ));
    }
    let out = m.members[1].commit_pending().unwrap().unwrap();
    let applied = ds.handle_commit(&out.commit).unwrap();
    assert_eq!(applied.removed.len(), 1);
    assert_eq!(applied.removed[0].display_name, "Carol");
    assert_eq!(applied.committer, 1);
    m.fan_out(&out.commit, &[2]);
    assert_eq!(ds.roster(), m.members[0].roster().unwrap());
    assert_eq!(ds.roster().len(), 2);
}

#[test]
fn malformed_foreign_and_non_handshake_messages_are_refused_without_changing_state() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    let mut ds = delivery(&m);
    let before = ds.roster();
    assert!(ds.handle_commit(b"").is_err());
    assert!(ds.handle_commit(&[0u8; 300]).is_err());
    let chat = m.members[0].encrypt_chat("secret words").unwrap();
    assert!(ds.handle_commit(&chat).is_err());
    assert!(ds.check_application(&chat).is_ok());
    assert!(ds.handle_proposal(&chat).is_err());
    // A commit from another group with the same server.
    let mut other = Member::new("Mallory", b"other-room", Some(SECRET)).unwrap();
    other
        .create_group(&[m.ds.external_sender().unwrap()], 0)
        .unwrap();
    other.request_self_update().unwrap();
    let foreign = other.commit_pending().unwrap().unwrap();
    assert!(matches!(
        ds.handle_commit(&foreign.commit),
        Err(Error::WrongGroup)
    ));
    // A truncated real commit.
    m.members[0].request_self_update().unwrap();
    let real = m.members[0].commit_pending().unwrap().unwrap();
    assert!(ds
        .handle_commit(&real.commit[..real.commit.len() - 5])
        .is_err());
    assert_eq!(ds.roster(), before);
    assert_eq!(ds.epoch(), 1);
    // The intact commit still goes through afterwards.
    ds.handle_commit(&real.commit).unwrap();
    assert_eq!(ds.epoch(), 2);
}

#[test]
fn a_group_without_this_server_as_external_sender_or_for_another_room_is_refused() {
    let mut alone = Member::new("Alice", ROOM, Some(SECRET)).unwrap();
    alone.create_group(&[], 0).unwrap();
    let server = conclave_e2ee::server::DeliveryServiceSigner::generate("s").unwrap();
    let es = server.external_sender().unwrap();
    let gi = alone.group_info().unwrap();
    assert!(RoomDelivery::from_group_info(&gi, ROOM, &es).is_err());
    let m = Meeting::new("Alice");
    let gi = m.members[0].group_info().unwrap();
    assert!(matches!(
        RoomDelivery::from_group_info(&gi, b"another", &m.ds.external_sender().unwrap()),
        Err(Error::WrongGroup)
    ));
    assert!(RoomDelivery::from_group_info(&gi, ROOM, &es).is_err());
    assert!(RoomDelivery::from_group_info(b"junk", ROOM, &es).is_err());
}
