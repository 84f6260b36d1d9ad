//! The group session against an honest delivery service and against a
//! malicious one: each attack test plays the server's part with the
//! library's own pieces (a server-built `Member`, forged messages) and
//! checks that the session refuses it or makes it visible.
#![allow(clippy::unwrap_used)]

mod common;
use common::{ROOM, SECRET};
use conclave_e2ee::server::{DeliveryServiceSigner, RoomDelivery};
use conclave_e2ee::session::VERIFY_TIMEOUT_MS;
use conclave_e2ee::{
    valid_member_name, Event, Member, Outgoing, Session, SessionConfig, SessionEvent, SessionState,
};

/// One client of the simulated server.
struct Client {
    s: Session,
    events: Vec<SessionEvent>,
    chats: Vec<(String, String)>,
    connected: bool,
    /// Its messages no longer reach the server (the client is gone).
    gone: bool,
}

/// An honest delivery service (the server's rules, in memory) for sessions.
struct Net {
    ds: DeliveryServiceSigner,
    sender: Vec<u8>,
    delivery: Option<RoomDelivery>,
    clients: Vec<Client>,
    now: u64,
    /// Every application message relayed (what a server could replay).
    relayed: Vec<Vec<u8>>,
}

impl Net {
    fn new() -> Net {
        let ds = DeliveryServiceSigner::generate("conclave-server").unwrap();
        let sender = ds.external_sender().unwrap();
        Net {
            ds,
            sender,
            delivery: None,
            clients: Vec::new(),
            now: 1_000,
            relayed: Vec::new(),
        }
    }

    /// A participant enters; the first one creates the group.
    fn enter(&mut self, name: &str, secret: Option<&[u8]>) -> usize {
        let mut s = Session::new(name, ROOM, secret, SessionConfig::default());
        let id = self.clients.len();
        s.set_me(id as u32);
        let create = self.delivery.is_none() && self.clients.iter().all(|c| !c.connected);
        s.start(create, &self.sender, self.now);
        self.clients.push(Client {
            s,
            events: Vec::new(),
            chats: Vec::new(),
            connected: true,
            gone: false,
        });
        self.pump();
        id
    }

    fn in_group(&self, i: usize) -> bool {
        self.clients[i].connected
            && matches!(
                self.clients[i].s.state(),
                SessionState::Member | SessionState::Verifying
            )
    }

    /// Deliver everything the sessions want to send, until quiet.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut any = false;
            for i in 0..self.clients.len() {
                let out = self.clients[i].s.take_outgoing();
                let ev = self.clients[i].s.take_events();
                self.clients[i].events.extend(ev);
                for o in out {
                    if self.clients[i].gone {
                        continue;
                    }
                    any = true;
                    self.route(i, o);
                }
            }
            if !any {
                return;
            }
        }
        panic!("the sessions never went quiet");
    }

    fn route(&mut self, from: usize, o: Outgoing) {
        let now = self.now;
        match o {
            Outgoing::GroupCreated { group_info } => {
                self.delivery =
                    Some(RoomDelivery::from_group_info(&group_info, ROOM, &self.sender).unwrap());
            }
            Outgoing::JoinRequest { data } => {
                for j in 0..self.clients.len() {
                    if j != from && self.in_group(j) {
                        self.clients[j].s.on_mls(Some(from as u32), &data, now);
                    }
                }
            }
            Outgoing::Commit { commit, welcome } => {
                let members: Vec<usize> = (0..self.clients.len())
                    .filter(|&j| self.in_group(j))
                    .collect();
                match self.delivery.as_mut().unwrap().handle_commit(&commit) {
                    Ok(_) => {
                        for j in members {
                            self.clients[j].s.on_mls(Some(from as u32), &commit, now);
                        }
                        if let Some(w) = welcome {
                            for j in 0..self.clients.len() {
                                if self.clients[j].connected && !self.in_group(j) {
                                    self.clients[j].s.on_mls(Some(from as u32), &w, now);
                                }
                            }
                        }
                    }
                    Err(conclave_e2ee::Error::EpochMismatch { .. }) => {
                        self.clients[from].s.on_commit_rejected("epoch_moved", now)
                    }
                    Err(e) => self.clients[from]
                        .s
                        .on_commit_rejected(&format!("invalid commit: {e}"), now),
                }
            }
            Outgoing::Chat { data } => {
                self.relayed.push(data.clone());
                self.delivery
                    .as_ref()
                    .unwrap()
                    .check_application(&data)
                    .unwrap();
                for j in 0..self.clients.len() {
                    if self.in_group(j) {
                        if let Some(m) = self.clients[j].s.on_chat(&data, j == from, now) {
                            self.clients[j].chats.push((m.name, m.text));
                        }
                    }
                }
            }
            Outgoing::DenyKnock { .. } => {}
        }
    }

    /// Let time pass in 100 ms steps, running every session's timers.
    fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 100;
            for c in &mut self.clients {
                if c.s.deadline().is_some_and(|d| d <= self.now) {
                    c.s.poll(self.now);
                }
            }
            self.pump();
        }
    }

    /// The server notices a lost connection and proposes the removal.
    fn disconnect(&mut self, i: usize) {
        self.clients[i].connected = false;
        self.propose_removal(i);
    }

    /// The server proposes the removal of client `i` (still connected or not).
    fn propose_removal(&mut self, i: usize) {
        let key = self.clients[i]
            .s
            .roster()
            .iter()
            .find(|r| Some(r.leaf_index) == self.clients[i].s.own_leaf())
            .map(|r| r.signature_key.clone())
            .unwrap();
        let d = self.delivery.as_mut().unwrap();
        let leaf = d.leaf_of(&key).unwrap();
        let proposal = self.ds.remove_proposal(ROOM, d.epoch(), leaf).unwrap();
        d.handle_proposal(&proposal).unwrap();
        let now = self.now;
        for j in 0..self.clients.len() {
            if self.in_group(j) {
                self.clients[j].s.on_mls(None, &proposal, now);
            }
        }
        self.pump();
    }

    fn code(&self, i: usize) -> Option<String> {
        self.clients[i].s.security_code().map(str::to_owned)
    }
}

#[test]
fn joiners_with_the_secret_are_verified_and_everyone_shares_one_code() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    assert_eq!(net.clients[a].s.state(), SessionState::Member);
    let b = net.enter("Bob", Some(SECRET));
    let c = net.enter("Carol", Some(SECRET));
    for i in [a, b, c] {
        assert_eq!(net.clients[i].s.state(), SessionState::Member, "client {i}");
        assert_eq!(net.clients[i].s.roster().len(), 3);
    }
    let code = net.code(a).unwrap();
    assert_eq!(net.code(b).unwrap(), code);
    assert_eq!(net.code(c).unwrap(), code);
    // Bob got keys only after the group proved itself: his first key
    // event comes after the "proved" notice, never right at the Welcome.
    let ev = &net.clients[b].events;
    let proved = ev
        .iter()
        .position(|e| matches!(e, SessionEvent::Info(t) if t.contains("proved")))
        .expect("Bob saw the proof");
    let first_key = ev
        .iter()
        .position(|e| matches!(e, SessionEvent::Keys(Some(_))))
        .expect("Bob got keys");
    assert!(first_key > proved, "{ev:?}");
    // Chat flows both ways and is shown with the sender's MLS name.
    assert!(net.clients[b]
        .s
        .send_chat("hello from Bob", 1_700_000_000_000, net.now));
    net.pump();
    assert!(net.clients[a]
        .chats
        .contains(&("Bob".into(), "hello from Bob".into())));
    assert!(net.clients[c]
        .chats
        .contains(&("Bob".into(), "hello from Bob".into())));
    // Bob's own echo shows his text (group proofs sent by him never do).
    assert_eq!(
        net.clients[b].chats,
        vec![("Bob".to_string(), "hello from Bob".to_string())]
    );
}

/// Attack 1: the server builds its own group under the room's id, treats
/// the joiner's request as a knock, admits it itself and sends the Welcome.
#[test]
fn a_group_built_by_the_server_cannot_capture_a_joiner_with_the_secret() {
    let ds = DeliveryServiceSigner::generate("evil").unwrap();
    let sender = ds.external_sender().unwrap();
    // The server's made-up member, with a secret of its own.
    let mut alice = Member::new("Alice", ROOM, Some(b"server-made-secret-0000")).unwrap();
    alice
        .create_group(std::slice::from_ref(&sender), 0)
        .unwrap();

    let mut victim = Session::new("Victim", ROOM, Some(SECRET), SessionConfig::default());
    victim.start(false, &sender, 0);
    let Some(Outgoing::JoinRequest { data: request }) = victim.take_outgoing().pop() else {
        panic!("the victim asks to join")
    };
    let Event::Knock { knock_id, .. } = alice.handle_join_request(&request).unwrap() else {
        panic!("the server's member cannot verify the proof: a knock")
    };
    alice.admit(knock_id).unwrap();
    let out = alice.commit_pending().unwrap().unwrap();
    alice.confirm_commit(0).unwrap();
    victim.on_mls(Some(1), &out.welcome.unwrap(), 10);

    // In the server's group, but nothing is trusted or sent.
    assert_eq!(victim.state(), SessionState::Verifying);
    assert!(victim.roster().is_empty());
    assert!(victim.security_code().is_none());
    assert!(!victim.send_chat("secret plans", 20, 20));
    let mut sealed = Vec::new();
    assert!(!victim.encrypt_frame(conclave_e2ee::Codec::Opus, &[1, 2, 3], &mut sealed));
    assert!(victim.take_outgoing().is_empty());
    assert!(!victim
        .take_events()
        .iter()
        .any(|e| matches!(e, SessionEvent::Keys(Some(_)))));

    // Proofs the server can make: a random one, and a valid one for its own secret.
    let epoch = alice.epoch().unwrap();
    let mut forged = b"CGP1".to_vec();
    forged.extend_from_slice(&epoch.to_be_bytes());
    forged.extend_from_slice(&[7; 32]);
    forged.push(0);
    let own = alice.group_proof().unwrap().unwrap();
    let mut own_proof = b"CGP1".to_vec();
    own_proof.extend_from_slice(&epoch.to_be_bytes());
    own_proof.extend_from_slice(&own);
    own_proof.push(1); // and "share" its own key
    own_proof.extend_from_slice(&alice.invite_key().unwrap().to_bytes());
    for payload in [forged, own_proof] {
        let msg = alice.encrypt_control(&payload).unwrap();
        assert!(victim.on_chat(&msg, false, 30).is_none());
        assert_eq!(victim.state(), SessionState::Verifying);
    }
    // A chat from the server's member is not shown either.
    let chat = alice.encrypt_chat("welcome, everything is fine").unwrap();
    assert!(victim.on_chat(&chat, false, 40).is_none());

    // After the timeout the victim gives the group up, visibly, and asks again.
    victim.take_events();
    victim.poll(10 + VERIFY_TIMEOUT_MS);
    let events = victim.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::Resecuring { .. })),
        "{events:?}"
    );
    assert!(matches!(
        victim.take_outgoing().as_slice(),
        [Outgoing::JoinRequest { .. }]
    ));
    assert_eq!(victim.state(), SessionState::Joining);
}

/// Attack 1, replay: a genuine proof from the real group does not verify
/// another group (it is bound to the epoch authenticator).
#[test]
fn a_real_groups_proof_does_not_verify_a_server_built_group() {
    let mut net = Net::new();
    net.enter("Alice", Some(SECRET));
    net.enter("Bob", Some(SECRET));
    let real = net.clients[0].s.roster().len();
    assert_eq!(real, 2);
    // The server captures the proof message's plaintext only if it can
    // decrypt it, which it cannot; the strongest replay is re-sending the
    // real group's ciphertext into its own group.
    let ds = DeliveryServiceSigner::generate("evil").unwrap();
    let sender = ds.external_sender().unwrap();
    let mut alice = Member::new("Alice", ROOM, None).unwrap();
    alice
        .create_group(std::slice::from_ref(&sender), 0)
        .unwrap();
    let mut victim = Session::new("Victim", ROOM, Some(SECRET), SessionConfig::default());
    victim.start(false, &sender, 0);
    let Some(Outgoing::JoinRequest { data }) = victim.take_outgoing().pop() else {
        panic!("the victim asks to join")
    };
    let Event::Knock { knock_id, .. } = alice.handle_join_request(&data).unwrap() else {
        panic!()
    };
    alice.admit(knock_id).unwrap();
    let out = alice.commit_pending().unwrap().unwrap();
    victim.on_mls(Some(1), &out.welcome.unwrap(), 10);
    assert_eq!(victim.state(), SessionState::Verifying);
    // The real group's proofs (Alice proves it to Bob, then to Carol), as
    // the ciphertext the server relayed: replayed into the victim's group.
    net.enter("Carol", Some(SECRET));
    assert!(net.relayed.len() >= 2, "proofs were relayed");
    for data in net.relayed.clone() {
        assert!(victim.on_chat(&data, false, 20).is_none());
    }
    assert_eq!(victim.state(), SessionState::Verifying);
    assert!(victim.security_code().is_none());
}

/// Attack 2: `create_group` while in a group is ignored.
#[test]
fn the_server_cannot_make_a_member_drop_its_group() {
    let mut net = Net::new();
    net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    let epoch = net.clients[b].s.epoch();
    let code = net.code(b);
    let sender = net.sender.clone();
    net.clients[b].s.start(true, &sender, net.now);
    assert_eq!(net.clients[b].s.state(), SessionState::Member);
    assert_eq!(net.clients[b].s.epoch(), epoch);
    assert_eq!(net.code(b), code);
    assert!(net.clients[b].s.take_outgoing().is_empty());
}

/// Attack 2: a rejoin is never silent (here forced by a forged
/// "next epoch" commit, which nobody can authenticate).
#[test]
fn a_forced_rejoin_is_announced_and_rejoins_the_real_group() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    let old_code = net.code(b).unwrap();
    // A commit of Alice's for the *next* epoch, never delivered to Bob's
    // group state: Bob is behind as far as the message says.
    let mut shadow = Member::new("Alice", ROOM, Some(SECRET)).unwrap();
    shadow.create_group(&[net.sender.clone()], 0).unwrap();
    for _ in 0..3 {
        shadow.request_self_update().unwrap();
        shadow.commit_pending().unwrap().unwrap();
        shadow.confirm_commit(0).unwrap();
    }
    shadow.request_self_update().unwrap();
    let ahead = shadow.commit_pending().unwrap().unwrap().commit;
    net.clients[b].events.clear();
    let now = net.now;
    net.clients[b].s.on_mls(None, &ahead, now);
    net.pump();
    assert!(
        net.clients[b]
            .events
            .iter()
            .any(|e| matches!(e, SessionEvent::Resecuring { .. })),
        "{:?}",
        net.clients[b].events
    );
    // Bob is re-added (with a fresh key) and the group proves itself again.
    net.advance(3_000);
    assert_eq!(net.clients[b].s.state(), SessionState::Member);
    assert_eq!(net.code(b), net.code(a));
    assert_ne!(net.code(b).unwrap(), old_code);
    assert_eq!(net.clients[b].s.rejoins, 1);
}

/// Attack 2: a stray proposal from the server is a knock, never a refusal
/// that stops the member from committing.
#[test]
fn a_server_made_add_proposal_does_not_stall_a_member() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let mut stranger = Member::new("Mallory", ROOM, None).unwrap();
    let kp = stranger.key_package().unwrap();
    let epoch = net.delivery.as_ref().unwrap().epoch();
    let proposal = net.ds.add_proposal(ROOM, epoch, &kp).unwrap();
    let now = net.now;
    net.clients[a].s.on_mls(None, &proposal, now);
    net.pump();
    assert!(net.clients[a].s.refused().is_none());
    assert_eq!(net.clients[a].s.knocks().len(), 1);
    // Alice still commits a verified joiner.
    let b = net.enter("Bob", Some(SECRET));
    assert_eq!(net.clients[b].s.state(), SessionState::Member);
}

/// Knock-admitted members learn the invite key through the group; a meeting
/// whose only member came in by knock still verifies joiners and proves itself.
#[test]
fn a_meeting_run_by_a_knock_admitted_member_still_proves_itself() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let k = net.enter("Ken", None);
    assert_eq!(net.clients[k].s.state(), SessionState::Knocking);
    let knock = net.clients[a].s.knocks()[0].clone();
    assert_eq!(knock.name, "Ken");
    assert_eq!(knock.fingerprint.len(), 19, "{}", knock.fingerprint);
    let now = net.now;
    assert!(net.clients[a].s.admit(&knock.signature_key, now));
    net.pump();
    assert_eq!(net.clients[k].s.state(), SessionState::Member);
    assert!(net.clients[k].s.has_secret(), "Ken received the invite key");
    assert!(net.clients[a]
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Admitted { by: None, name } if name == "Ken")));

    net.disconnect(a);
    net.advance(2_000);
    assert_eq!(net.clients[k].s.roster().len(), 1);
    let j = net.enter("Jo", Some(SECRET));
    net.advance(2_000);
    assert_eq!(net.clients[j].s.state(), SessionState::Member);
    assert_eq!(net.code(j), net.code(k));
}

/// A member whose leaf a commit removes while it is still connected (the
/// server proposed it, or the others stopped hearing it) asks back in,
/// visibly, and gets back in: its old group state does not block the Welcome.
#[test]
fn a_member_removed_while_still_connected_gets_back_in() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    net.propose_removal(b);
    net.advance(2_000);
    assert!(net.clients[b]
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Resecuring { .. })));
    assert_eq!(net.clients[b].s.rejoins, 1);
    assert_eq!(net.clients[b].s.state(), SessionState::Member);
    assert_eq!(names(&net, a), ["Alice", "Bob"]);
    assert_eq!(net.code(a), net.code(b));
}

/// Attack 3: look-alike knocks are flagged; invisible characters are refused.
#[test]
fn look_alike_knocks_are_flagged_and_names_are_validated() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    net.enter("Bob", Some(SECRET));
    net.enter("B0B", None);
    net.enter("Zed", None);
    let knocks = net.clients[a].s.knocks();
    let bob = knocks.iter().find(|k| k.name == "B0B").unwrap();
    let zed = knocks.iter().find(|k| k.name == "Zed").unwrap();
    assert!(bob.lookalike);
    assert!(!zed.lookalike);
    assert_ne!(bob.fingerprint, zed.fingerprint);
    for bad in [
        "Bob\u{202E}",
        "B\u{200B}ob",
        "   ",
        "bell\u{7}",
        &"n".repeat(65),
    ] {
        assert!(!valid_member_name(bad), "{bad:?}");
        assert!(Member::new(bad, ROOM, None).is_err(), "{bad:?}");
    }
    assert!(valid_member_name("Zoë Ångström"));
}

/// Attack 9: a join request the server kept is not accepted again.
#[test]
fn a_replayed_join_request_does_not_re_add_a_departed_member() {
    let ds = DeliveryServiceSigner::generate("ds").unwrap();
    let mut a = Member::new("Alice", ROOM, Some(SECRET)).unwrap();
    a.create_group(&[ds.external_sender().unwrap()], 0).unwrap();
    let mut b = Member::new("Bob", ROOM, Some(SECRET)).unwrap();
    let request = b.join_request().unwrap();
    a.handle_join_request(&request).unwrap();
    let out = a.commit_pending().unwrap().unwrap();
    a.confirm_commit(0).unwrap();
    b.process_incoming(&out.welcome.unwrap(), 0).unwrap();
    // Bob leaves; the server replays his old request.
    a.remove(1).unwrap();
    a.commit_pending().unwrap().unwrap();
    a.confirm_commit(0).unwrap();
    assert_eq!(a.roster().unwrap().len(), 1);
    assert_eq!(
        a.handle_join_request(&request),
        Err(conclave_e2ee::Error::InvalidInput(
            "key package already used"
        ))
    );
    assert!(!a.has_pending());
}

/// Post-compromise security: every member refreshes its leaf periodically.
#[test]
fn members_self_update_periodically() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    let epoch = net.clients[a].s.epoch().unwrap();
    let code = net.code(a).unwrap();
    net.advance(conclave_e2ee::session::SELF_UPDATE_MS + 61_000);
    let later = net.clients[a].s.epoch().unwrap();
    assert!(
        later >= epoch + 2,
        "both members updated: {epoch} -> {later}"
    );
    assert_eq!(net.clients[b].s.epoch(), Some(later));
    assert_ne!(net.code(a).unwrap(), code);
    assert_eq!(net.code(a), net.code(b));
    assert_eq!(net.clients[a].s.roster().len(), 2);
}

/// Attack 7: a chat's time and its sender's counter travel inside the
/// encryption; a reordered relay shows both messages, a duplicated one once.
#[test]
fn chat_time_and_counter_come_from_inside_the_encryption() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    let now = net.now;
    assert!(net.clients[b].s.send_chat("first", 1_000_000, now));
    assert!(net.clients[b].s.send_chat("second", 2_000_000, now));
    let msgs: Vec<Vec<u8>> = net.clients[b]
        .s
        .take_outgoing()
        .into_iter()
        .map(|o| match o {
            Outgoing::Chat { data } => data,
            o => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(msgs.len(), 2);
    let alice = &mut net.clients[a].s;
    let second = alice.on_chat(&msgs[1], false, now).unwrap();
    let first = alice.on_chat(&msgs[0], false, now).unwrap();
    assert!(alice.on_chat(&msgs[1], false, now).is_none(), "shown once");
    assert_eq!(
        (first.text.as_str(), first.sent_at_ms, first.counter),
        ("first", 1_000_000, Some(0))
    );
    assert_eq!(
        (second.text.as_str(), second.sent_at_ms, second.counter),
        ("second", 2_000_000, Some(1))
    );
}

/// Attack 7, our own messages: the server echoes them back (we cannot
/// decrypt our own MLS messages, so the echo is matched to what we sent, in
/// order). A duplicated or reordered echo still shows each of our messages
/// once, in the order we sent them.
#[test]
fn duplicated_or_reordered_echoes_of_our_own_chat_show_each_message_once() {
    let mut net = Net::new();
    net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    let now = net.now;
    let bob = &mut net.clients[b].s;
    assert!(bob.send_chat("one", 1, now));
    assert!(bob.send_chat("two", 2, now));
    let sent = bob.take_outgoing();
    assert_eq!(sent.len(), 2);
    let Outgoing::Chat { data } = &sent[1] else {
        panic!("{sent:?}")
    };
    // The second echo first, then twice more (one duplicate too many).
    let shown: Vec<String> = (0..3)
        .filter_map(|_| bob.on_chat(data, true, now))
        .map(|m| m.text)
        .collect();
    assert_eq!(shown, ["one", "two"]);
}

/// SFrame carries 4 epoch bits: more than 16 membership changes in a few
/// seconds (within the old-key retention) must not confuse keys.
#[test]
fn media_keeps_decrypting_across_more_than_sixteen_epochs() {
    use conclave_e2ee::Codec;
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    let start = net.clients[a].s.epoch().unwrap();
    let (mut sealed, mut out) = (Vec::new(), Vec::new());
    let mut check = |net: &mut Net, from: usize, to: usize, what: &str| {
        let now = net.now;
        let payload = format!("{what} {from}->{to}");
        assert!(net.clients[from]
            .s
            .encrypt_frame(Codec::Opus, payload.as_bytes(), &mut sealed));
        let info = net.clients[to]
            .s
            .decrypt_frame(Codec::Opus, &sealed, &mut out, now)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(out, payload.as_bytes(), "{what}");
        assert_eq!(Some(info.epoch), net.clients[to].s.epoch(), "{what}");
    };
    for round in 0..10 {
        let guest = net.enter(&format!("Guest{round}"), Some(SECRET));
        net.advance(100);
        assert_eq!(net.clients[guest].s.state(), SessionState::Member);
        check(&mut net, a, b, &format!("round {round} joined"));
        check(&mut net, guest, a, &format!("round {round} guest"));
        check(&mut net, b, guest, &format!("round {round} to guest"));
        net.disconnect(guest);
        net.advance(100);
        check(&mut net, b, a, &format!("round {round} left"));
    }
    let end = net.clients[a].s.epoch().unwrap();
    assert!(end >= start + 20, "epochs {start}..{end}");
    assert_eq!(net.clients[a].s.epoch(), net.clients[b].s.epoch());
}

fn signature_key_hex(net: &Net, i: usize) -> String {
    let s = &net.clients[i].s;
    let own = s.own_leaf().unwrap();
    let key = &s
        .roster()
        .iter()
        .find(|r| r.leaf_index == own)
        .unwrap()
        .signature_key;
    conclave_e2ee::session::hex(key)
}

fn names(net: &Net, i: usize) -> Vec<String> {
    net.clients[i]
        .s
        .roster()
        .iter()
        .map(|r| r.display_name.clone())
        .collect()
}

/// Attack 6: removals are not the server's alone. A member removes another;
/// everyone sees who did it, and the removed client stops instead of
/// rejoining with its link.
#[test]
fn a_member_can_remove_another_and_the_removed_client_stops() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    let c = net.enter("Carol", Some(SECRET));
    net.advance(2_000);
    let carol = signature_key_hex(&net, c);
    let alice = signature_key_hex(&net, a);
    let now = net.now;
    assert!(
        !net.clients[a].s.remove_member(&alice, now),
        "removing ourselves is leaving"
    );
    assert!(!net.clients[a].s.remove_member("00ff", now));
    assert!(net.clients[a].s.remove_member(&carol, now));
    net.pump();
    net.advance(30_000);

    assert_eq!(names(&net, a), ["Alice", "Bob"]);
    assert_eq!(names(&net, b), ["Alice", "Bob"]);
    assert_eq!(net.code(a), net.code(b));
    let said = |i: usize, want: &SessionEvent| net.clients[i].events.iter().any(|e| e == want);
    assert!(said(
        a,
        &SessionEvent::MemberRemoved {
            by: None,
            name: "Carol".into()
        }
    ));
    assert!(said(
        b,
        &SessionEvent::MemberRemoved {
            by: Some("Alice".into()),
            name: "Carol".into()
        }
    ));
    assert!(said(
        c,
        &SessionEvent::RemovedFromMeeting { by: "Alice".into() }
    ));
    assert_eq!(net.clients[c].s.state(), SessionState::Removed);
    assert_eq!(
        net.clients[c].s.rejoins, 0,
        "the removed client does not ask back in"
    );
    assert!(net.clients[c].s.deadline().is_none());
    // Nor can the server restart it.
    let sender = net.sender.clone();
    net.clients[c].s.start(false, &sender, now);
    assert!(net.clients[c].s.take_outgoing().is_empty());
    assert_eq!(net.clients[c].s.state(), SessionState::Removed);
}

/// Attack 6: a leaf whose client is gone is removed by the members even if
/// the server never proposes it, because members hear from each other
/// (encrypted heartbeats) at least every PRESENCE_MS.
#[test]
fn a_vanished_member_is_removed_without_the_server() {
    use conclave_e2ee::session::{PRESENCE_MS, PRESENCE_TIMEOUT_MS};
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    let c = net.enter("Carol", Some(SECRET));
    net.advance(2_000);
    let epoch = net.clients[a].s.epoch().unwrap();
    // Carol's connection is gone; the server keeps quiet about it.
    net.clients[c].connected = false;
    net.clients[c].gone = true;
    net.advance(PRESENCE_TIMEOUT_MS - 10_000);
    assert_eq!(names(&net, a).len(), 3, "not before the timeout");
    assert_eq!(net.clients[a].s.epoch(), Some(epoch));
    net.advance(10_000 + 2 * 1_000);
    assert_eq!(names(&net, a), ["Alice", "Bob"]);
    assert_eq!(names(&net, b), ["Alice", "Bob"]);
    assert_eq!(
        net.clients[a].s.epoch(),
        Some(epoch + 1),
        "one commit, no race"
    );
    assert_eq!(net.clients[b].s.epoch(), Some(epoch + 1));
    // Two members who keep talking (heartbeats only) stay, for long.
    net.advance(5 * PRESENCE_MS);
    assert_eq!(names(&net, a), ["Alice", "Bob"]);
    assert_eq!(net.clients[a].s.epoch(), Some(epoch + 1));
}

/// A member whose own clock jumped (a suspended laptop) does not take the
/// others' silence meanwhile for their absence.
#[test]
fn a_member_that_was_asleep_does_not_remove_the_others() {
    use conclave_e2ee::session::PRESENCE_TIMEOUT_MS;
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    net.advance(2_000);
    let epoch = net.clients[a].s.epoch().unwrap();
    net.now += 3 * PRESENCE_TIMEOUT_MS; // nobody ran meanwhile
    net.advance(5_000);
    assert_eq!(names(&net, a), ["Alice", "Bob"]);
    assert_eq!(names(&net, b), ["Alice", "Bob"]);
    assert_eq!(net.clients[a].s.epoch(), Some(epoch));
}

/// A member who hears nothing (its downlink is cut, or the server stops
/// relaying to it) does not remove the others: it removes only while its
/// own messages come back to it.
#[test]
fn a_member_that_hears_nothing_does_not_remove_the_others() {
    use conclave_e2ee::session::PRESENCE_TIMEOUT_MS;
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let _b = net.enter("Bob", Some(SECRET));
    let c = net.enter("Carol", Some(SECRET));
    net.advance(2_000);
    let epoch = net.clients[a].s.epoch().unwrap();
    // Nothing reaches Carol any more, but what she sends is relayed.
    net.clients[c].connected = false;
    net.advance(2 * PRESENCE_TIMEOUT_MS);
    assert_eq!(names(&net, a), ["Alice", "Bob", "Carol"]);
    assert_eq!(net.clients[a].s.epoch(), Some(epoch));
    assert_eq!(net.clients[a].s.rejoins, 0);
}

/// What a malicious member sends: `payload` as a control message, relayed
/// by the (honest) server to everyone before anything else (call `pump`).
fn member_sends(net: &mut Net, from: usize, payload: impl FnOnce(&Member) -> Vec<u8>) {
    let now = net.now;
    assert!(net.clients[from].s.send_control_for_tests(payload, now));
    for o in net.clients[from].s.take_outgoing() {
        net.route(from, o);
    }
    for c in &mut net.clients {
        let ev = c.s.take_events();
        c.events.extend(ev);
    }
}

fn warned(net: &Net, i: usize, part: &str) -> bool {
    net.clients[i]
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Warning(t) if t.contains(part)))
}

/// A malicious member shares a wrong invite key with a member admitted by
/// knock, ahead of the honest key holder, with a group proof that matches
/// its wrong key. The knock-admitted member takes only the key the group
/// was created with (its commitment is in the group context), so once the
/// attacker and the others are gone it still admits and proves the group
/// to a joiner with the real link.
#[test]
fn a_knock_admitted_member_does_not_adopt_a_wrong_key_a_member_shares() {
    use conclave_e2ee::invite::InviteKey;
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let m = net.enter("Mallory", Some(SECRET));
    let k = net.enter("Ken", None);
    let knock = net.clients[a].s.knocks()[0].clone();
    let now = net.now;
    assert!(net.clients[a].s.admit(&knock.signature_key, now));
    // Alice's commit goes out; her group proof sharing the real key is
    // queued right behind it, but Mallory's wrong key reaches Ken first.
    let out = net.clients[a].s.take_outgoing();
    assert!(
        matches!(out.as_slice(), [Outgoing::Commit { .. }]),
        "{out:?}"
    );
    for o in out {
        net.route(a, o);
    }
    assert_eq!(net.clients[k].s.state(), SessionState::Member);
    assert!(!net.clients[k].s.has_secret());
    let wrong = InviteKey::from_bytes([0x66; 32]);
    member_sends(&mut net, m, |member| {
        let epoch = member.epoch().unwrap();
        let authenticator = member.epoch_authenticator().unwrap();
        let proof = wrong.group_proof(ROOM, epoch, &authenticator).unwrap();
        let mut p = b"CGP1".to_vec();
        p.extend_from_slice(&epoch.to_be_bytes());
        p.extend_from_slice(&proof);
        p.push(1);
        p.extend_from_slice(&wrong.to_bytes());
        p
    });
    assert!(warned(&net, k, "Mallory shared an invite key that is not"));
    assert!(
        !net.clients[k].s.has_secret(),
        "the wrong key was not taken"
    );
    // Alice's proof with the real key follows, and Ken takes that one.
    net.pump();
    assert!(net.clients[k].s.has_secret());

    // Everyone but Ken leaves; a joiner with the real link comes. Ken
    // verifies its proof, adds it, and proves the group to it.
    net.disconnect(m);
    net.advance(2_000);
    net.disconnect(a);
    net.advance(2_000);
    assert_eq!(names(&net, k), ["Ken"]);
    let j = net.enter("Jo", Some(SECRET));
    net.advance(2_000);
    assert_eq!(net.clients[j].s.state(), SessionState::Member);
    assert_eq!(names(&net, j), ["Jo", "Ken"]);
    assert_eq!(net.code(j), net.code(k));
    assert!(
        net.clients[k].s.knocks().is_empty(),
        "Jo was no knock to Ken"
    );
}

/// The other half: the commitment a knock-admitted member trusts is one
/// every joiner with the secret checked. A malicious creator that holds the
/// link but commits the group to a key of its own (to plant that key in
/// knock-admitted members later) cannot make a joiner with the link trust
/// the group, even with a correct group proof.
#[test]
fn a_group_created_with_another_invite_key_is_not_trusted() {
    use conclave_e2ee::invite::InviteKey;
    let ds = DeliveryServiceSigner::generate("ds").unwrap();
    let sender = ds.external_sender().unwrap();
    let mut mallory = Member::new("Mallory", ROOM, Some(b"mallory-made-this-key-0000")).unwrap();
    mallory
        .create_group(std::slice::from_ref(&sender), 0)
        .unwrap();
    let mut victim = Session::new("Victim", ROOM, Some(SECRET), SessionConfig::default());
    victim.start(false, &sender, 0);
    let Some(Outgoing::JoinRequest { data }) = victim.take_outgoing().pop() else {
        panic!("the victim asks to join")
    };
    let Event::Knock { knock_id, .. } = mallory.handle_join_request(&data).unwrap() else {
        panic!("Mallory's group holds another key")
    };
    mallory.admit(knock_id).unwrap();
    let out = mallory.commit_pending().unwrap().unwrap();
    mallory.confirm_commit(0).unwrap();
    victim.on_mls(Some(1), &out.welcome.unwrap(), 10);
    assert_eq!(victim.state(), SessionState::Verifying);
    // Mallory knows the real secret too and proves it.
    let real = InviteKey::derive(SECRET, ROOM).unwrap();
    let epoch = mallory.epoch().unwrap();
    let proof = real
        .group_proof(ROOM, epoch, &mallory.epoch_authenticator().unwrap())
        .unwrap();
    let mut payload = b"CGP1".to_vec();
    payload.extend_from_slice(&epoch.to_be_bytes());
    payload.extend_from_slice(&proof);
    payload.push(0);
    let msg = mallory.encrypt_control(&payload).unwrap();
    victim.take_events();
    assert!(victim.on_chat(&msg, false, 20).is_none());
    assert_eq!(victim.state(), SessionState::Verifying);
    assert!(victim.security_code().is_none());
    let events = victim.take_events();
    assert!(
        events.iter().any(
            |e| matches!(e, SessionEvent::Warning(t) if t.contains("was not created with it"))
        ),
        "{events:?}"
    );
}

/// A member's removal notices (`CRM1 || leaf || key`) and other control
/// messages that are malformed or forged never panic, never remove or
/// blame anyone, and the meeting goes on: a removed member stops only on a
/// notice from the member whose commit removed it.
#[test]
fn malformed_or_forged_control_messages_from_a_member_are_ignored() {
    let mut net = Net::new();
    let a = net.enter("Alice", Some(SECRET));
    let b = net.enter("Bob", Some(SECRET));
    let c = net.enter("Carol", Some(SECRET));
    let m = net.enter("Mallory", Some(SECRET));
    net.advance(2_000);
    let everyone = ["Alice", "Bob", "Carol", "Mallory"];
    let epoch = net.clients[a].s.epoch().unwrap();
    let roster = net.clients[a].s.roster().to_vec();
    let (bob, carol) = (&roster[b], &roster[c]);
    assert_eq!(
        (bob.display_name.as_str(), carol.display_name.as_str()),
        ("Bob", "Carol")
    );
    let notice = |leaf: u32, key: &[u8]| {
        let mut p = b"CRM1".to_vec();
        p.extend_from_slice(&leaf.to_be_bytes());
        p.extend_from_slice(key);
        p
    };
    let mut bob_key_and_more = bob.signature_key.clone();
    bob_key_and_more.push(0);
    let bad_notices = [
        b"CRM1".to_vec(),                                 // no leaf
        b"CRM1\0\0".to_vec(),                             // half a leaf
        notice(bob.leaf_index, &[]),                      // no key
        notice(bob.leaf_index, &bob.signature_key[..31]), // half a key
        notice(bob.leaf_index, &bob_key_and_more),        // a key and more
        notice(bob.leaf_index, &carol.signature_key),     // someone else's key
        notice(99, &bob.signature_key),                   // no such leaf
        notice(u32::MAX, &bob.signature_key),
        notice(bob.leaf_index, &vec![0x42; 100_000]), // huge
    ];
    let mut proof = b"CGP1".to_vec();
    proof.extend_from_slice(&epoch.to_be_bytes());
    proof.extend_from_slice(&[7; 32]);
    let other_garbage = [
        Vec::new(),
        b"CHB1 and more".to_vec(),
        b"XXXX".to_vec(),
        b"CGP1".to_vec(),
        [proof.as_slice(), &[2]].concat(),
        [proof.as_slice(), &[1], &[9; 31]].concat(),
    ];
    for payload in bad_notices.iter().chain(&other_garbage) {
        let payload = payload.clone();
        member_sends(&mut net, m, move |_| payload);
        net.pump();
    }
    net.advance(2_000);
    for i in [a, b, c, m] {
        assert_eq!(names(&net, i), everyone, "client {i}");
        assert_eq!(net.clients[i].s.epoch(), Some(epoch), "client {i}");
        assert!(!net.clients[i].events.iter().any(|e| matches!(
            e,
            SessionEvent::MemberRemoved { .. } | SessionEvent::RemovedFromMeeting { .. }
        )));
    }
    for i in [a, b, c] {
        let warnings = net.clients[i]
            .events
            .iter()
            .filter(|e| matches!(e, SessionEvent::Warning(t) if t.contains("Mallory sent a removal notice")))
            .count();
        assert_eq!(warnings, bad_notices.len(), "client {i}");
    }

    // A well-formed notice that Mallory is removing Bob, but she never
    // commits it; the server then proposes Bob's removal and Alice commits
    // it. Nobody blames Mallory, and Bob rejoins instead of stopping.
    member_sends(&mut net, m, |_| notice(bob.leaf_index, &bob.signature_key));
    net.pump();
    net.propose_removal(b);
    net.advance(3_000);
    assert_eq!(net.clients[b].s.state(), SessionState::Member);
    assert_eq!(net.clients[b].s.rejoins, 1);
    assert_eq!(names(&net, a), ["Alice", "Bob", "Carol", "Mallory"]);
    assert_eq!(net.code(a), net.code(b));
    for i in [a, b, c, m] {
        assert!(!net.clients[i].events.iter().any(|e| matches!(
            e,
            SessionEvent::MemberRemoved { .. } | SessionEvent::RemovedFromMeeting { .. }
        )));
    }

    // The meeting works: chat reaches everyone, and a real removal is
    // announced as before.
    let now = net.now;
    assert!(net.clients[b].s.send_chat("still here", 5, now));
    net.pump();
    for i in [a, c, m] {
        assert!(net.clients[i]
            .chats
            .contains(&("Bob".into(), "still here".into())));
    }
    let mallory = signature_key_hex(&net, m);
    assert!(net.clients[a].s.remove_member(&mallory, now));
    net.advance(2_000);
    assert_eq!(names(&net, c), ["Alice", "Bob", "Carol"]);
    assert!(net.clients[m]
        .events
        .contains(&SessionEvent::RemovedFromMeeting { by: "Alice".into() }));
}
