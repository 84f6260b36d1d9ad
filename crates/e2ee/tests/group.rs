//! MLS group behaviour: roster, security code, membership gate, epochs.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use conclave_e2ee::{Codec, Error, Event, Member};

#[test]
fn three_members_agree_on_roster_and_security_code() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    m.join("Carol", 1);
    let r0 = m.members[0].roster().unwrap();
    assert_eq!(r0.len(), 3);
    let names: Vec<_> = r0.iter().map(|r| r.display_name.as_str()).collect();
    assert_eq!(names, ["Alice", "Bob", "Carol"]);
    let code = m.members[0].security_code().unwrap();
    assert_eq!(code.split(' ').count(), 6);
    for x in &m.members {
        assert_eq!(x.roster().unwrap(), r0);
        assert_eq!(x.security_code().unwrap(), code);
        assert_eq!(x.epoch().unwrap(), 2);
        assert_eq!(
            x.sframe_base_key().unwrap(),
            m.members[0].sframe_base_key().unwrap()
        );
    }
    // Each member's own roster entry carries its per-session signature key.
    for x in &m.members {
        assert_eq!(
            x.own_roster_entry().unwrap().signature_key,
            x.signature_key()
        );
    }
}

#[test]
fn chat_and_control_messages_travel_as_mls_application_messages() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    let c = m.members[0].encrypt_chat("hello").unwrap();
    assert!(!c.windows(5).any(|w| w == b"hello"));
    let ev = m.members[1].process_incoming(&c, 0).unwrap();
    match &ev[0] {
        Event::Chat { sender, text, .. } => {
            assert_eq!(sender.display_name, "Alice");
            assert_eq!(text, "hello");
        }
        e => panic!("{e:?}"),
    }
    let c = m.members[1].encrypt_control(b"\x01mute").unwrap();
    let ev = m.members[0].process_incoming(&c, 0).unwrap();
    assert!(matches!(&ev[0], Event::Control { payload, .. } if payload == b"\x01mute"));
}

#[test]
fn a_member_removed_at_epoch_n_cannot_decrypt_frames_of_epoch_n_plus_1() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    m.join("Carol", 0);
    // Server proposes removing Carol (external sender), Alice commits.
    let carol_leaf = m.members[2].own_leaf().unwrap();
    let epoch = m.members[0].epoch().unwrap();
    // What Carol keeps from epoch N: its real SFrame base key (the one everyone
    // shares), and a frame Alice sent under it.
    let carol_last_key = m.members[2].sframe_base_key().unwrap();
    assert_eq!(carol_last_key, m.members[0].sframe_base_key().unwrap());
    let mut ct_epoch_n = Vec::new();
    m.members[0]
        .sframe_encrypt(Codec::Opus, b"audio of epoch N", &mut ct_epoch_n)
        .unwrap();
    let prop = m.ds.remove_proposal(ROOM, epoch, carol_leaf).unwrap();
    for x in m.members.iter_mut() {
        let ev = x.process_incoming(&prop, 0).unwrap();
        assert!(matches!(
            ev[0],
            Event::RemoveProposed {
                by_server: true,
                ..
            }
        ));
    }
    let out = m.members[0].commit_pending().unwrap().unwrap();
    assert!(out.welcome.is_none());
    let evs = m.fan_out(&out.commit, &[]);
    assert!(matches!(evs[2][..], [Event::Removed { .. }]));
    assert!(!m.members[2].in_group());
    assert_eq!(m.members[0].roster().unwrap().len(), 2);

    // Alice sends a frame at epoch N+1: Bob decrypts it, Carol cannot.
    let mut ct = Vec::new();
    let mut pt = Vec::new();
    m.members[0]
        .sframe_encrypt(Codec::Opus, b"secret audio", &mut ct)
        .unwrap();
    m.members[1]
        .sframe_decrypt(Codec::Opus, &ct, &mut pt, 1)
        .unwrap();
    assert_eq!(pt, b"secret audio");
    assert!(m.members[2]
        .sframe_decrypt(Codec::Opus, &ct, &mut pt, 1)
        .is_err());
    // And even with her last epoch's real base key she cannot: it still opens
    // epoch N's frame, but not epoch N+1's, whichever epoch she files it under.
    assert_ne!(m.members[0].sframe_base_key().unwrap(), carol_last_key);
    let mut carol_old =
        conclave_e2ee::SframeContext::from_base_key(&carol_last_key, epoch, carol_leaf).unwrap();
    carol_old
        .decrypt(Codec::Opus, &ct_epoch_n, &mut pt, 1)
        .unwrap();
    assert_eq!(pt, b"audio of epoch N");
    assert!(carol_old.decrypt(Codec::Opus, &ct, &mut pt, 1).is_err());
    let mut carol_guess =
        conclave_e2ee::SframeContext::from_base_key(&carol_last_key, epoch + 1, carol_leaf)
            .unwrap();
    assert!(carol_guess.decrypt(Codec::Opus, &ct, &mut pt, 1).is_err());
}

#[test]
fn a_joiner_at_epoch_n_cannot_decrypt_frames_from_epoch_n_minus_1() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    let mut old = Vec::new();
    m.members[0]
        .sframe_encrypt(Codec::Vp8, &[0x11; 50], &mut old)
        .unwrap();
    let old_epoch = m.members[0].epoch().unwrap();
    let c = m.join("Carol", 1);
    assert_eq!(m.members[c].epoch().unwrap(), old_epoch + 1);
    let mut pt = Vec::new();
    assert_eq!(
        m.members[c].sframe_decrypt(Codec::Vp8, &old, &mut pt, 0),
        Err(Error::UnknownKey)
    );
    // Bob still can (previous epoch kept for a few seconds).
    m.members[1]
        .sframe_decrypt(Codec::Vp8, &old, &mut pt, 1000)
        .unwrap();
}

#[test]
fn a_join_attempt_without_the_invite_secret_is_refused_by_members() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    // 1. A knock (no proof) is not added automatically.
    let mut eve = Member::new("Eve", ROOM, None).unwrap();
    let req = eve.join_request().unwrap();
    let ev = m.members[0].process_incoming(&req, 0).unwrap();
    assert!(matches!(ev[0], Event::Knock { .. }));
    assert!(m.members[0].commit_pending().unwrap().is_none());
    assert!(m.members[0].add_with_secret_proof(&req).is_err());
    // 2. A wrong secret gives an invalid proof: also a knock.
    let mut mallory = Member::new("Mallory", ROOM, Some(b"wrong-secret-wrong-secret")).unwrap();
    let req = mallory.join_request().unwrap();
    let ev = m.members[0].process_incoming(&req, 0).unwrap();
    assert!(matches!(ev[0], Event::Knock { .. }));
    // 3. The server proposing Eve's KeyPackage as external Add: a knock too.
    let kp = eve.key_package().unwrap();
    let prop = m.ds.add_proposal(ROOM, 1, &kp).unwrap();
    let ev = m.members[0].process_incoming(&prop, 0).unwrap();
    assert!(matches!(ev[0], Event::Knock { .. }));
    assert!(m.members[0].commit_pending().unwrap().is_none());
    // 4. A commit whose Add carries a proof made with another secret (a
    //    compromised or misconfigured client) is refused by members holding
    //    the real secret, and leaves their state unchanged.
    let forged = forge_proof_commit();
    assert!(matches!(
        forged.1.process_incoming_bytes(&forged.0),
        Err(Error::CommitRefused(_))
    ));
    // 5. After a human admits the knock, the Add is accepted by others and
    //    flagged as admitted without the secret.
    let mut rogue = Meeting::new("Alice");
    rogue.join("Bob", 0);
    let req = Member::new("Eve", ROOM, None)
        .unwrap()
        .join_request()
        .unwrap();
    let ev = rogue.members[0].process_incoming(&req, 0).unwrap();
    let Event::Knock { knock_id, .. } = ev[0] else {
        panic!()
    };
    rogue.members[0].admit(knock_id).unwrap();
    let out = rogue.members[0].commit_pending().unwrap().unwrap();
    let evs = rogue.fan_out(&out.commit, &[]);
    match &evs[1][0] {
        Event::EpochChanged {
            admitted_without_secret,
            ..
        } => {
            assert_eq!(admitted_without_secret[0].display_name, "Eve")
        }
        e => panic!("{e:?}"),
    }
}

/// Builds a commit whose Add carries a proof made with a wrong secret and a
/// member (Bob, holding the real secret) who must refuse it.
fn forge_proof_commit() -> (Vec<u8>, Receiver) {
    // Alice2 believes a different secret (e.g. a compromised client); Bob has the real one.
    let ds = conclave_e2ee::server::DeliveryServiceSigner::generate("s").unwrap();
    let mut alice = Member::new("Alice", ROOM, Some(b"another-secret-another-secret")).unwrap();
    alice
        .create_group(&[ds.external_sender().unwrap()], 0)
        .unwrap();
    let mut bob = Member::new("Bob", ROOM, Some(SECRET)).unwrap();
    // Alice knock-admits Bob so he is in the group.
    let ev = alice
        .process_incoming(&bob.join_request().unwrap(), 0)
        .unwrap();
    let Event::Knock { knock_id, .. } = ev[0] else {
        panic!()
    };
    alice.admit(knock_id).unwrap();
    let out = alice.commit_pending().unwrap().unwrap();
    alice.process_incoming(&out.commit, 0).unwrap();
    bob.process_incoming(&out.welcome.unwrap(), 0).unwrap();
    // Eve holds Alice's (wrong) secret: Alice verifies her, Bob must not.
    let mut eve = Member::new("Eve", ROOM, Some(b"another-secret-another-secret")).unwrap();
    let ev = alice
        .process_incoming(&eve.join_request().unwrap(), 0)
        .unwrap();
    assert!(matches!(ev[0], Event::JoinVerified { .. }));
    let out = alice.commit_pending().unwrap().unwrap();
    (out.commit, Receiver(bob))
}

struct Receiver(Member);
impl Receiver {
    fn process_incoming_bytes(mut self, b: &[u8]) -> Result<Vec<Event>, Error> {
        let r = self.0.process_incoming(b, 0);
        // Refused commit leaves state unchanged.
        assert_eq!(self.0.epoch().unwrap(), 1);
        r
    }
}

#[test]
fn a_knocking_joiner_is_added_only_after_a_member_admits_them() {
    let mut m = Meeting::new("Alice");
    let mut guest = Member::new("Guest", ROOM, None).unwrap();
    let ev = m.members[0]
        .process_incoming(&guest.join_request().unwrap(), 0)
        .unwrap();
    let Event::Knock { knock_id, joiner } = ev[0].clone() else {
        panic!()
    };
    assert_eq!(joiner.display_name, "Guest");
    m.members[0].admit(knock_id).unwrap();
    let out = m.members[0].commit_pending().unwrap().unwrap();
    let g = m.apply(out, guest);
    assert_eq!(m.members[g].roster().unwrap().len(), 2);
    assert_eq!(
        m.members[g].security_code().unwrap(),
        m.members[0].security_code().unwrap()
    );
}

#[test]
fn the_server_can_add_a_verified_joiner_by_external_proposal() {
    let mut m = Meeting::new("Alice");
    let mut bob = Member::new("Bob", ROOM, Some(SECRET)).unwrap();
    let req = bob.join_request().unwrap();
    let (id, has_proof) = conclave_e2ee::server::join_request_identity(&req).unwrap();
    assert_eq!((id.display_name.as_str(), has_proof), ("Bob", true));
    m.members[0].process_incoming(&req, 0).unwrap();
    // Alice has the add queued already; the server also proposes it.
    let kp = conclave_e2ee::server::join_request_key_package(&req).unwrap();
    let prop = m.ds.add_proposal(ROOM, 0, &kp).unwrap();
    let info = conclave_e2ee::server::inspect(&prop).unwrap();
    assert_eq!(info.kind, conclave_e2ee::server::MessageKind::Proposal);
    let ev = m.members[0].process_incoming(&prop, 0).unwrap();
    assert!(matches!(ev[0], Event::JoinVerified { .. }));
    // One Add, not two: the commit goes through and Bob joins.
    let out = m.members[0].commit_pending().unwrap().unwrap();
    m.apply(out, bob);
    assert_eq!(m.members[0].roster().unwrap().len(), 2);
    // Proposal first, then the request: also one Add.
    let mut carol = Member::new("Carol", ROOM, Some(SECRET)).unwrap();
    let req = carol.join_request().unwrap();
    let kp = conclave_e2ee::server::join_request_key_package(&req).unwrap();
    let prop = m.ds.add_proposal(ROOM, 1, &kp).unwrap();
    m.members[0].process_incoming(&req, 0).unwrap();
    m.members[1].process_incoming(&req, 0).unwrap();
    m.fan_out(&prop, &[]);
    let out = m.members[1].commit_pending().unwrap().unwrap();
    m.apply(out, carol);
    assert_eq!(m.members[0].roster().unwrap().len(), 3);
}

#[test]
fn a_member_that_missed_a_commit_detects_it_and_recovers_by_rejoining() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    m.join("Carol", 0);
    // Dave joins; Carol misses the commit.
    let mut dave = Member::new("Dave", ROOM, Some(SECRET)).unwrap();
    m.members[0]
        .process_incoming(&dave.join_request().unwrap(), 0)
        .unwrap();
    let out = m.members[0].commit_pending().unwrap().unwrap();
    m.fan_out(&out.commit, &[2]);
    dave.process_incoming(&out.welcome.unwrap(), 0).unwrap();
    m.members.push(dave);
    // Carol gets a chat from the new epoch: epoch mismatch.
    let chat = m.members[1].encrypt_chat("hi").unwrap();
    let err = m.members[2].process_incoming(&chat, 0).unwrap_err();
    assert_eq!(
        err,
        Error::EpochMismatch {
            local: 2,
            message: 3
        }
    );
    // Her frames are undecryptable to the others and vice versa.
    let mut ct = Vec::new();
    let mut pt = Vec::new();
    m.members[1]
        .sframe_encrypt(Codec::Opus, b"x", &mut ct)
        .unwrap();
    assert!(m.members[2]
        .sframe_decrypt(Codec::Opus, &ct, &mut pt, 0)
        .is_err());
    // Recovery: rejoin request; server removes the stale leaf; Alice commits both.
    let old_leaf = m.members[2].own_leaf().unwrap();
    let req = m.members[2].rejoin_request().unwrap();
    assert!(!m.members[2].in_group());
    let epoch = m.members[0].epoch().unwrap();
    let rm = m.ds.remove_proposal(ROOM, epoch, old_leaf).unwrap();
    m.fan_out(&rm, &[2]);
    m.members[0].process_incoming(&req, 0).unwrap();
    let out = m.members[0].commit_pending().unwrap().unwrap();
    m.fan_out(&out.commit, &[2]);
    m.members[2]
        .process_incoming(&out.welcome.unwrap(), 0)
        .unwrap();
    let code = m.members[0].security_code().unwrap();
    for x in &m.members {
        assert_eq!(x.security_code().unwrap(), code);
        assert_eq!(x.roster().unwrap().len(), 4);
    }
    m.members[1]
        .sframe_encrypt(Codec::Opus, b"y", &mut ct)
        .unwrap();
    m.members[2]
        .sframe_decrypt(Codec::Opus, &ct, &mut pt, 0)
        .unwrap();
    assert_eq!(pt, b"y");
}

#[test]
fn a_leaving_member_is_removed_by_the_next_commit() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    m.join("Carol", 0);
    let p = m.members[2].leave().unwrap();
    m.fan_out(&p, &[2]);
    let out = m.members[1].commit_pending().unwrap().unwrap();
    let evs = m.fan_out(&out.commit, &[]);
    assert!(matches!(evs[2][..], [Event::Removed { .. }]));
    match &evs[0][0] {
        Event::EpochChanged {
            removed, committer, ..
        } => {
            assert_eq!(removed[0].display_name, "Carol");
            assert_eq!(*committer, 1);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn concurrent_commits_resolve_to_the_first_one_delivered() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    let mut c1 = Member::new("Carol", ROOM, Some(SECRET)).unwrap();
    let mut d1 = Member::new("Dave", ROOM, Some(SECRET)).unwrap();
    let rc = c1.join_request().unwrap();
    let rd = d1.join_request().unwrap();
    m.members[0].process_incoming(&rc, 0).unwrap();
    m.members[1].process_incoming(&rd, 0).unwrap();
    let a = m.members[0].commit_pending().unwrap().unwrap();
    let b = m.members[1].commit_pending().unwrap().unwrap();
    // DS picks Alice's commit; Bob's is discarded and retried.
    let evs = m.fan_out(&a.commit, &[]);
    assert!(evs[1].contains(&Event::CommitDiscarded));
    drop(b);
    c1.process_incoming(&a.welcome.unwrap(), 0).unwrap();
    m.members.push(c1);
    let b2 = m.members[1].commit_pending().unwrap().unwrap();
    m.apply(b2, d1);
    let code = m.members[0].security_code().unwrap();
    assert!(m.members.iter().all(|x| x.security_code().unwrap() == code));
    assert_eq!(m.members[0].roster().unwrap().len(), 4);
}

#[test]
fn garbage_input_returns_errors_not_panics() {
    let mut m = Meeting::new("Alice");
    for g in [&b""[..], b"\x00\x01", b"CJR1", &[0xffu8; 300]] {
        assert!(m.members[0].process_incoming(g, 0).is_err());
        assert!(conclave_e2ee::server::inspect(g).is_err());
    }
    assert!(Member::new("", ROOM, None).is_err());
    assert!(Member::new("x", ROOM, Some(b"short")).is_err());
}

#[test]
fn a_member_removal_and_a_server_removal_of_the_same_leaf_commit_once() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    m.join("Carol", 0);
    let leaf = m.members[2].own_leaf().unwrap();
    let p = m.ds.remove_proposal(ROOM, 2, leaf).unwrap();
    m.fan_out(&p, &[]);
    m.members[0].remove(leaf).unwrap();
    let out = m.members[0].commit_pending().unwrap().unwrap();
    let evs = m.fan_out(&out.commit, &[]);
    assert!(matches!(evs[2][..], [Event::Removed { .. }]));
    assert_eq!(m.members[0].roster().unwrap().len(), 2);
}

/// Tiny deterministic PRNG (xorshift) so the test needs no extra crates.
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn mutated_and_random_messages_and_frames_never_panic() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    let mut carol = Member::new("Carol", ROOM, Some(SECRET)).unwrap();
    let samples = [
        m.members[0].encrypt_chat("hello").unwrap(),
        carol.join_request().unwrap(),
        m.ds.remove_proposal(ROOM, 1, 1).unwrap(),
        {
            let mut f = Vec::new();
            m.members[0]
                .sframe_encrypt(Codec::Vp8, &[0u8; 64], &mut f)
                .unwrap();
            f
        },
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::new();
    for i in 0..3000 {
        let mut b = samples[i % samples.len()].clone();
        match rng(&mut seed) % 3 {
            0 => {
                let n = b.len().max(1);
                for _ in 0..1 + rng(&mut seed) % 4 {
                    let pos = (rng(&mut seed) as usize) % n;
                    if let Some(x) = b.get_mut(pos) {
                        *x ^= 1 << (rng(&mut seed) % 8);
                    }
                }
            }
            1 => b.truncate((rng(&mut seed) as usize) % (b.len() + 1)),
            _ => {
                b = (0..rng(&mut seed) % 200)
                    .map(|_| rng(&mut seed) as u8)
                    .collect()
            }
        }
        let _ = m.members[1].process_incoming(&b, 0);
        let _ = conclave_e2ee::server::inspect(&b);
        let _ = conclave_e2ee::server::join_request_identity(&b);
        for c in [Codec::Opus, Codec::Vp8, Codec::Opaque] {
            let _ = m.members[1].sframe_decrypt(c, &b, &mut out, 0);
        }
    }
    // Still fully functional afterwards.
    let c = m.members[0].encrypt_chat("still here").unwrap();
    assert!(matches!(
        &m.members[1].process_incoming(&c, 0).unwrap()[0],
        Event::Chat { text, .. } if text == "still here"
    ));
}

#[test]
fn a_late_chat_from_a_member_who_left_still_names_the_sender() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    m.join("Carol", 0);
    let late = m.members[2].encrypt_chat("bye").unwrap();
    let leaf = m.members[2].own_leaf().unwrap();
    m.members[0].remove(leaf).unwrap();
    let out = m.members[0].commit_pending().unwrap().unwrap();
    m.fan_out(&out.commit, &[]);
    let ev = m.members[1].process_incoming(&late, 0).unwrap();
    assert!(
        matches!(&ev[0], Event::Chat { sender, text, .. } if sender.display_name == "Carol" && text == "bye")
    );
}

#[test]
fn a_late_chat_from_before_a_rejoin_names_the_old_session_not_the_new_one() {
    // Carol's chat is held back; she rejoins as a new session (new key,
    // counter from 0 again) into the same leaf; then the old chat arrives.
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    m.join("Carol", 0);
    let old_key = m.members[2].signature_key().to_vec();
    let late = m.members[2].encrypt_chat("before").unwrap();
    let leaf = m.members[2].own_leaf().unwrap();
    let mut carol2 = Member::new("Carol", ROOM, Some(SECRET)).unwrap();
    m.members[0].remove(leaf).unwrap();
    m.members[0]
        .process_incoming(&carol2.join_request().unwrap(), 0)
        .unwrap();
    let out = m.members[0].commit_pending().unwrap().unwrap();
    m.fan_out(&out.commit, &[2]);
    carol2.process_incoming(&out.welcome.unwrap(), 0).unwrap();
    assert_eq!(
        carol2.own_leaf().unwrap(),
        leaf,
        "the test needs the same leaf"
    );
    let new_key = carol2.signature_key().to_vec();
    assert_ne!(new_key, old_key);
    let fresh = carol2.encrypt_chat("after").unwrap();
    let chat = |ev: &[Event]| match &ev[0] {
        Event::Chat {
            sender, counter, ..
        } => (sender.leaf_index, sender.signature_key.clone(), *counter),
        e => panic!("{e:?}"),
    };
    let ev = m.members[1].process_incoming(&fresh, 0).unwrap();
    assert_eq!(chat(&ev), (leaf, new_key, 0));
    let ev = m.members[1].process_incoming(&late, 0).unwrap();
    assert_eq!(chat(&ev), (leaf, old_key, 0));
}

#[test]
fn a_self_update_commit_moves_everyone_to_a_new_epoch_with_fresh_keys() {
    let mut m = Meeting::new("Alice");
    m.join("Bob", 0);
    m.join("Carol", 0);
    let before = m.members[1].sframe_base_key().unwrap();
    let bob_leaf_key = m.members[1].epoch_authenticator().unwrap();
    m.members[1].request_self_update().unwrap();
    let out = m.members[1].commit_pending().unwrap().unwrap();
    assert!(out.welcome.is_none());
    m.fan_out(&out.commit, &[]);
    let code = m.members[0].security_code().unwrap();
    for x in &m.members {
        assert_eq!(x.epoch().unwrap(), 3);
        assert_eq!(x.security_code().unwrap(), code);
        assert_ne!(x.sframe_base_key().unwrap(), before);
    }
    assert_ne!(m.members[1].epoch_authenticator().unwrap(), bob_leaf_key);
    assert!(m.members[1].commit_pending().unwrap().is_none());
}
