//! End-to-end encryption for one participant: its MLS member (native
//! `conclave-e2ee`, the same core the browser runs as wasm), driven by the
//! server acting as delivery service, and the SFrame keys that follow the
//! group's epochs.
//!
//! Sans-IO like the core underneath: signaling messages and the time go in,
//! `ClientMessage`s to send and `Notice`s come out. The session calls
//! [`Group::poll`] at [`Group::deadline`] for the timers (staggered commits,
//! the commit watchdog, resending an unanswered join request).
//!
//! Nothing here logs keys, plaintext chat of others beyond the notice the
//! operator asked for, or media.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use conclave_e2ee::{Codec, Error as MlsError, Event, FrameInfo, Member, RosterEntry};
use conclave_protocol::{
    ClientMessage, E2eeStart, ParticipantId, MAX_CHAT_CHARS, MAX_CHAT_CIPHERTEXT_BYTES,
};

use crate::participant::Notice;
use crate::signaling::{InviteSecret, RoomUrl};

/// Committers after the first wait this long per rank (the browser's rule).
pub const COMMIT_STAGGER: Duration = Duration::from_millis(400);
/// A commit of ours that is neither echoed nor rejected within this is
/// dropped and redone. The server answers every commit (echo or
/// `commit_rejected`) over an ordered connection, so this only guards
/// against a server that lost it; an overloaded server can take several
/// seconds, and dropping a commit it then accepts costs a rejoin.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// A join request without a Welcome is sent again after this long.
pub const JOIN_RESEND: Duration = Duration::from_secs(10);
/// Undecryptable media of the epoch after ours for this long means we
/// missed a commit (the browser's rule).
pub const MEDIA_AHEAD_REJOIN: Duration = Duration::from_secs(5);

/// Lowercase hex, as `ParticipantInfo.key` carries signature keys.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the participant is in joining the encrypted group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No `welcome` yet.
    Idle,
    /// Join request sent (with invite proof), waiting for a member's commit.
    Joining,
    /// Join request sent without the secret: a member has to admit us.
    Knocking,
    /// In the group: keys available.
    Member,
    /// Could not start (bad `external_sender`, refused GroupInfo…).
    Failed,
}

/// One participant's MLS state and the protocol around it.
pub struct Group {
    name: String,
    url: RoomUrl,
    secret: Option<InviteSecret>,
    /// The secret was made up locally (print the invite link when creating).
    secret_generated: bool,
    admit_knocks: bool,
    member: Option<Member>,
    state: GroupState,
    /// When our commit went out; `None` when nothing of ours is in flight.
    commit_sent: Option<Instant>,
    /// When to commit what is pending (staggered by rank).
    commit_at: Option<Instant>,
    /// Leaves the server proposed to remove in this epoch (not ranked).
    remove_proposed: HashSet<u32>,
    roster: Vec<RosterEntry>,
    leaf_by_key: HashMap<String, u32>,
    own_leaf: Option<u32>,
    epoch: Option<u64>,
    security_code: Option<String>,
    join_request: Option<String>,
    join_sent: Option<Instant>,
    chat_queue: VecDeque<String>,
    own_sent: VecDeque<String>,
    out: Vec<ClientMessage>,
    notices: Vec<Notice>,
    keys_changed: bool,
    members_added: bool,
    /// Since when (and last when) received media was of the epoch after
    /// ours and undecryptable: we missed a commit nobody followed up on.
    ahead_since: Option<Instant>,
    ahead_last: Option<Instant>,
    /// Our participant id (to recognise our own messages coming back).
    me: Option<ParticipantId>,
    /// Commits of ours the server accepted.
    pub commits: u64,
    /// Rejoins after a missed commit or a removal.
    pub rejoins: u64,
}

impl Group {
    pub fn new(
        name: &str,
        url: RoomUrl,
        secret: Option<InviteSecret>,
        secret_generated: bool,
        admit_knocks: bool,
    ) -> Group {
        Group {
            name: name.to_owned(),
            url,
            secret,
            secret_generated,
            admit_knocks,
            member: None,
            state: GroupState::Idle,
            commit_sent: None,
            commit_at: None,
            remove_proposed: HashSet::new(),
            roster: Vec::new(),
            leaf_by_key: HashMap::new(),
            own_leaf: None,
            epoch: None,
            security_code: None,
            join_request: None,
            join_sent: None,
            chat_queue: VecDeque::new(),
            own_sent: VecDeque::new(),
            out: Vec::new(),
            notices: Vec::new(),
            keys_changed: false,
            members_added: false,
            ahead_since: None,
            ahead_last: None,
            me: None,
            commits: 0,
            rejoins: 0,
        }
    }

    /// Our participant id, from `welcome`.
    pub fn set_me(&mut self, id: ParticipantId) {
        self.me = Some(id);
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    /// In the group, with the current epoch's keys.
    pub fn is_member(&self) -> bool {
        self.state == GroupState::Member
    }

    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    pub fn security_code(&self) -> Option<&str> {
        self.security_code.as_deref()
    }

    pub fn roster_len(&self) -> usize {
        self.roster.len()
    }

    /// The leaf of the member with this (hex) signature key, in the current epoch.
    pub fn leaf_of_key(&self, key: &str) -> Option<u32> {
        self.leaf_by_key.get(key).copied()
    }

    /// Messages to send to the server, in order.
    pub fn take_messages(&mut self) -> Vec<ClientMessage> {
        std::mem::take(&mut self.out)
    }

    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Whether new SFrame keys arrived since the last call (retry held frames).
    pub fn take_keys_changed(&mut self) -> bool {
        std::mem::take(&mut self.keys_changed)
    }

    /// Whether members were added since the last call (send them a keyframe).
    pub fn take_members_added(&mut self) -> bool {
        std::mem::take(&mut self.members_added)
    }

    fn warn(&mut self, text: String) {
        self.notices.push(Notice::Warning(text));
    }

    fn new_member(&mut self) -> Option<Member> {
        let room_id = self.url.room.as_bytes();
        match Member::new(
            &self.name,
            room_id,
            self.secret.as_ref().map(InviteSecret::as_bytes),
        ) {
            Ok(m) => Some(m),
            Err(e) => {
                self.state = GroupState::Failed;
                self.warn(format!("cannot start end-to-end encryption: {e}"));
                None
            }
        }
    }

    /// `welcome.e2ee` or `create_group.e2ee`: create the group or ask to join.
    pub fn start(&mut self, start: &E2eeStart, now: Instant, now_ms: u64) {
        if self.state == GroupState::Member {
            self.warn(
                "the server asked us to start encryption again while in the group; ignored".into(),
            );
            return;
        }
        if start.create {
            self.create(&start.external_sender, now, now_ms);
        } else {
            self.member = self.new_member();
            self.send_join_request(now, false);
        }
    }

    fn create(&mut self, external_sender: &str, now: Instant, now_ms: u64) {
        let Ok(sender) = B64.decode(external_sender) else {
            self.state = GroupState::Failed;
            self.warn("the server's external_sender is not base64; cannot create the group".into());
            return;
        };
        if self.secret.is_none() {
            match InviteSecret::generate() {
                Ok(s) => {
                    self.secret = Some(s);
                    self.secret_generated = true;
                }
                Err(e) => self.warn(e),
            }
        }
        let Some(mut member) = self.new_member() else {
            return;
        };
        let events = match member.create_group(&[sender], now_ms) {
            Ok(ev) => ev,
            Err(e) => {
                self.state = GroupState::Failed;
                self.warn(format!("cannot create the encrypted group: {e}"));
                return;
            }
        };
        let group_info = match member.group_info() {
            Ok(g) => g,
            Err(e) => {
                self.state = GroupState::Failed;
                self.warn(format!("cannot export the new group's GroupInfo: {e}"));
                return;
            }
        };
        self.member = Some(member);
        self.out.push(ClientMessage::GroupCreated {
            group_info: B64.encode(group_info),
        });
        if self.secret_generated {
            if let Some(secret) = &self.secret {
                let link = self.url.invite_link(secret);
                self.notices.push(Notice::InviteLink(link));
            }
        }
        self.handle_events(events, None, now);
        self.after_processing(now);
    }

    fn send_join_request(&mut self, now: Instant, rejoin: bool) {
        let Some(member) = self.member.as_mut() else {
            return;
        };
        let request = if rejoin {
            member.rejoin_request()
        } else {
            member.join_request()
        };
        match request {
            Ok(bytes) => {
                let data = B64.encode(bytes);
                self.out
                    .push(ClientMessage::JoinRequest { data: data.clone() });
                self.join_request = Some(data);
                self.join_sent = Some(now);
                self.state = if self.secret.is_some() {
                    GroupState::Joining
                } else {
                    GroupState::Knocking
                };
                if self.state == GroupState::Knocking {
                    self.notices.push(Notice::E2ee(
                        "no invite secret in the link: knocking, a member must admit us".into(),
                    ));
                } else if self.secret_generated && !rejoin {
                    self.notices.push(Notice::E2ee(
                        "no invite secret in the link: unless another participant of this \
                         process created the group, this is a knock a member must admit"
                            .into(),
                    ));
                }
            }
            Err(e) => {
                self.state = GroupState::Failed;
                self.warn(format!("cannot make a join request: {e}"));
            }
        }
    }

    fn leave_group_state(&mut self) {
        self.state = GroupState::Idle;
        self.commit_sent = None;
        self.commit_at = None;
        self.remove_proposed.clear();
        self.roster.clear();
        self.leaf_by_key.clear();
        self.own_leaf = None;
        self.epoch = None;
        self.keys_changed = true;
        self.ahead_since = None;
        self.ahead_last = None;
    }

    /// A received frame we had no key for: note whether it is of the epoch
    /// right after ours (then everyone else has moved on without us).
    pub fn frame_without_key(&mut self, codec: Codec, frame: &[u8], now: Instant) {
        let Some(epoch) = self.epoch.filter(|_| self.state == GroupState::Member) else {
            return;
        };
        if frame_epoch_bits(codec, frame) == Some((epoch + 1) & 0xf) {
            self.ahead_since.get_or_insert(now);
            self.ahead_last = Some(now);
        }
    }

    /// Whether a frame that failed authentication may only have met an old
    /// epoch's key: SFrame KIDs carry 4 epoch bits, so when 16 epochs pass
    /// within the 5 s an old key is kept (many joins at once), a frame of
    /// the epoch after ours finds the retained key of 16 epochs before.
    pub fn maybe_stale_key(&self, codec: Codec, frame: &[u8]) -> bool {
        match (self.epoch, frame_epoch_bits(codec, frame)) {
            (Some(epoch), Some(bits)) => bits != epoch & 0xf,
            _ => false,
        }
    }

    /// A frame decrypted: we are not behind.
    pub fn frame_decrypted(&mut self) {
        self.ahead_since = None;
        self.ahead_last = None;
    }

    /// Rejoin if media has been a key generation ahead of us for
    /// `MEDIA_AHEAD_REJOIN` (and still is): a commit was lost or withheld.
    pub fn check_media_ahead(&mut self, now: Instant) {
        let (Some(since), Some(last)) = (self.ahead_since, self.ahead_last) else {
            return;
        };
        if self.state != GroupState::Member
            || self.commit_sent.is_some()
            || now.saturating_duration_since(since) < MEDIA_AHEAD_REJOIN
            || now.saturating_duration_since(last) > Duration::from_secs(1)
        {
            return;
        }
        self.notices.push(Notice::E2ee(
            "media is a key generation ahead of us (missed commit): rejoining".into(),
        ));
        self.rejoins += 1;
        self.leave_group_state();
        self.send_join_request(now, true);
    }

    /// An `mls` message from the server.
    pub fn on_mls(&mut self, from: Option<ParticipantId>, data: &str, now: Instant, now_ms: u64) {
        let Ok(bytes) = B64.decode(data) else {
            self.warn("the server sent an mls message that is not base64; ignored".into());
            return;
        };
        let Some(member) = self.member.as_mut() else {
            self.warn("an mls message arrived before we started encryption; ignored".into());
            return;
        };
        match member.process_incoming(&bytes, now_ms) {
            Ok(events) => self.handle_events(events, from, now),
            Err(MlsError::EpochMismatch { local, message })
                if message > local && self.state == GroupState::Member =>
            {
                self.notices.push(Notice::E2ee(format!(
                    "missed a commit (we are at epoch {local}, the group at {message}): rejoining"
                )));
                self.rejoins += 1;
                self.leave_group_state();
                self.send_join_request(now, true);
            }
            Err(MlsError::InvalidInput("joiner is already a member")) => {
                // A repeated join request of someone already added: expected.
            }
            Err(e) if self.state == GroupState::Member && from.is_some() && from == self.me => {
                // Our own commit, accepted by the server after we gave up
                // on it: the group moved on without us.
                self.notices.push(Notice::E2ee(format!(
                    "our own commit came back after we dropped it ({e}): rejoining"
                )));
                self.rejoins += 1;
                self.leave_group_state();
                self.send_join_request(now, true);
            }
            Err(e) if self.state == GroupState::Member => {
                self.warn(format!("ignored an MLS message: {e}"));
            }
            // Before we are in the group, nothing else is ours to read.
            Err(_) => {}
        }
        self.after_processing(now);
    }

    /// `commit_rejected`: drop our commit and try again later.
    pub fn on_commit_rejected(&mut self, reason: &str, now: Instant) {
        if let Some(m) = self.member.as_mut() {
            let _ = m.discard_pending_commit();
        }
        self.commit_sent = None;
        if reason != "epoch_moved" {
            self.warn(format!("the server rejected our commit: {reason}"));
        }
        self.after_processing(now);
    }

    /// A `chat` from the server: the decrypted notice, or `None` for nothing to show.
    pub fn on_chat(
        &mut self,
        seq: u32,
        from: ParticipantId,
        data: &str,
        own: bool,
        now_ms: u64,
    ) -> Option<Notice> {
        if own {
            // Our own echo cannot be decrypted by us (MLS); we know what we sent.
            let text = self.own_sent.pop_front()?;
            return Some(Notice::Chat {
                seq,
                from,
                name: self.name.clone(),
                text,
            });
        }
        let Ok(bytes) = B64.decode(data) else {
            self.warn(format!("chat #{seq} is not base64; ignored"));
            return None;
        };
        let member = self.member.as_mut()?;
        match member.process_incoming(&bytes, now_ms) {
            Ok(events) => {
                let mut shown = None;
                for event in events {
                    if let Event::Chat { sender, text } = event {
                        shown = Some(Notice::Chat {
                            seq,
                            from,
                            name: sender.display_name,
                            text,
                        });
                    }
                }
                shown
            }
            Err(e) => {
                self.warn(format!("could not decrypt chat #{seq} from #{from}: {e}"));
                None
            }
        }
    }

    /// Queue a chat message; it goes out once we are in the group.
    pub fn queue_chat(&mut self, text: String, now: Instant) {
        let chars = text.chars().count();
        if chars == 0 || chars > MAX_CHAT_CHARS {
            self.warn(format!(
                "chat message of {chars} characters not sent (1 to {MAX_CHAT_CHARS})"
            ));
            return;
        }
        self.chat_queue.push_back(text);
        self.after_processing(now);
    }

    fn flush_chat(&mut self) {
        while self.state == GroupState::Member && self.commit_sent.is_none() {
            let Some(text) = self.chat_queue.front() else {
                return;
            };
            let Some(member) = self.member.as_mut() else {
                return;
            };
            match member.encrypt_chat(text) {
                Ok(ct) => {
                    let data = B64.encode(ct);
                    let text = self.chat_queue.pop_front().unwrap_or_default();
                    if data.len() > MAX_CHAT_CIPHERTEXT_BYTES {
                        self.warn("chat message too long once encrypted; not sent".into());
                        continue;
                    }
                    self.own_sent.push_back(text);
                    self.out.push(ClientMessage::Chat { data });
                }
                Err(MlsError::CommitPending) => return,
                Err(e) => {
                    self.chat_queue.pop_front();
                    self.warn(format!("could not encrypt a chat message: {e}"));
                }
            }
        }
    }

    fn handle_events(&mut self, events: Vec<Event>, from: Option<ParticipantId>, now: Instant) {
        for event in events {
            match event {
                Event::Joined {
                    epoch,
                    roster,
                    security_code,
                    ..
                } => {
                    self.state = GroupState::Member;
                    self.join_request = None;
                    self.join_sent = None;
                    self.apply_epoch(epoch, roster, security_code);
                }
                Event::EpochChanged {
                    epoch,
                    roster,
                    security_code,
                    added,
                    committer,
                    admitted_without_secret,
                    ..
                } => {
                    if self.own_leaf == Some(committer) && self.commit_sent.is_some() {
                        self.commits += 1;
                    }
                    self.commit_sent = None;
                    self.remove_proposed.clear();
                    if !added.is_empty() {
                        self.members_added = true;
                    }
                    for a in admitted_without_secret {
                        self.notices.push(Notice::E2ee(format!(
                            "{} was admitted without the invite secret",
                            a.display_name
                        )));
                    }
                    self.apply_epoch(epoch, roster, security_code);
                }
                Event::Removed => {
                    self.notices.push(Notice::E2ee(
                        "removed from the encrypted group; asking to rejoin".into(),
                    ));
                    self.rejoins += 1;
                    self.leave_group_state();
                    // A fresh signature key, as for any rejoin: the server
                    // tells our new leaf from a stale one by key.
                    self.send_join_request(now, true);
                }
                Event::Knock { knock_id, joiner } => {
                    let admitted = self.admit_knocks
                        && self
                            .member
                            .as_mut()
                            .is_some_and(|m| m.admit(knock_id).is_ok());
                    self.notices.push(Notice::Knock {
                        name: joiner.display_name,
                        id: from,
                        admitted,
                    });
                }
                Event::RemoveProposed {
                    leaf_index,
                    by_server,
                } => {
                    if by_server {
                        self.remove_proposed.insert(leaf_index);
                    }
                }
                Event::CommitDiscarded => self.commit_sent = None,
                Event::Chat { .. } | Event::Control { .. } | Event::JoinVerified { .. } => {}
            }
        }
    }

    fn apply_epoch(&mut self, epoch: u64, roster: Vec<RosterEntry>, code: String) {
        self.epoch = Some(epoch);
        self.own_leaf = self.member.as_ref().and_then(|m| m.own_leaf().ok());
        self.leaf_by_key = roster
            .iter()
            .map(|r| (hex(&r.signature_key), r.leaf_index))
            .collect();
        self.roster = roster;
        self.keys_changed = true;
        if self.security_code.as_deref() != Some(code.as_str()) {
            self.notices.push(Notice::SecurityCode {
                epoch,
                code: code.clone(),
                members: self.roster.len(),
            });
            self.security_code = Some(code);
        }
    }

    /// Our position among the roster's leaves (those not being removed).
    fn rank(&self) -> usize {
        let mut leaves: Vec<u32> = self
            .roster
            .iter()
            .map(|r| r.leaf_index)
            .filter(|l| !self.remove_proposed.contains(l))
            .collect();
        leaves.sort_unstable();
        self.own_leaf
            .and_then(|own| leaves.iter().position(|&l| l == own))
            .unwrap_or(leaves.len())
    }

    fn after_processing(&mut self, now: Instant) {
        self.flush_chat();
        if self.state != GroupState::Member
            || self.commit_sent.is_some()
            || self.commit_at.is_some()
            || !self.member.as_ref().is_some_and(Member::has_pending)
        {
            return;
        }
        let rank = self.rank() as u32;
        if rank == 0 {
            self.commit_now(now);
        } else {
            self.commit_at = Some(now + COMMIT_STAGGER * rank);
        }
    }

    fn commit_now(&mut self, now: Instant) {
        self.commit_at = None;
        if self.state != GroupState::Member || self.commit_sent.is_some() {
            return;
        }
        let Some(member) = self.member.as_mut() else {
            return;
        };
        match member.commit_pending() {
            Ok(Some(c)) => {
                self.out.push(ClientMessage::Commit {
                    commit: B64.encode(&c.commit),
                    welcome: c.welcome.as_deref().map(|w| B64.encode(w)),
                });
                self.commit_sent = Some(now);
            }
            Ok(None) | Err(MlsError::CommitPending) => {}
            Err(e) => self.warn(format!("could not commit: {e}")),
        }
    }

    /// The next time [`Group::poll`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        [
            self.commit_at,
            self.commit_sent.map(|t| t + COMMIT_TIMEOUT),
            self.join_sent
                .filter(|_| self.state != GroupState::Member)
                .map(|t| t + JOIN_RESEND),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers: staggered commits, the commit watchdog, join request resends.
    pub fn poll(&mut self, now: Instant) {
        if self.commit_at.is_some_and(|t| now >= t) {
            self.commit_now(now);
        }
        if self.commit_sent.is_some_and(|t| now >= t + COMMIT_TIMEOUT) {
            self.warn(format!(
                "our commit was neither accepted nor rejected within {} s; redoing it",
                COMMIT_TIMEOUT.as_secs()
            ));
            if let Some(m) = self.member.as_mut() {
                let _ = m.discard_pending_commit();
            }
            self.commit_sent = None;
        }
        if self.state != GroupState::Member
            && self.join_sent.is_some_and(|t| now >= t + JOIN_RESEND)
        {
            if let Some(data) = self.join_request.clone() {
                self.out.push(ClientMessage::JoinRequest { data });
                self.join_sent = Some(now);
            }
        }
        self.after_processing(now);
    }

    /// SFrame-encrypts one outgoing frame into `out`; false (nothing to
    /// send) while we have no group keys.
    pub fn encrypt(&mut self, codec: Codec, frame: &[u8], out: &mut Vec<u8>) -> bool {
        if self.state != GroupState::Member {
            return false;
        }
        self.member
            .as_mut()
            .is_some_and(|m| m.sframe_encrypt(codec, frame, out).is_ok())
    }

    /// Decrypts and authenticates one received frame into `out`.
    pub fn decrypt(
        &mut self,
        codec: Codec,
        frame: &[u8],
        out: &mut Vec<u8>,
        now_ms: u64,
    ) -> Result<FrameInfo, MlsError> {
        match self.member.as_mut() {
            Some(m) => m.sframe_decrypt(codec, frame, out, now_ms),
            None => Err(MlsError::NotInGroup),
        }
    }
}

/// The low 4 epoch bits of a protected frame's SFrame KID.
fn frame_epoch_bits(codec: Codec, frame: &[u8]) -> Option<u64> {
    let n = codec.clear_prefix_len(frame).ok()?;
    let (kid, _, _) = conclave_e2ee::sframe::decode_header(frame.get(n..)?).ok()?;
    Some(kid & 0xf)
}

/// Whether a decryption error only means "no key for this frame (yet)":
/// the frame is from an epoch we have not reached or never had.
pub fn is_missing_key(e: &MlsError) -> bool {
    matches!(
        e,
        MlsError::UnknownKey | MlsError::NoKey | MlsError::NotInGroup
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_e2ee::server::DeliveryServiceSigner;

    fn unb64(s: &str) -> Vec<u8> {
        B64.decode(s).expect("base64")
    }

    /// The creator's side of the protocol against a native member, with the
    /// test playing the delivery service; then the member moves on to an
    /// epoch whose commit the creator never gets.
    #[test]
    fn a_member_that_misses_a_commit_rejoins_when_media_stays_an_epoch_ahead() {
        let ds = DeliveryServiceSigner::generate("test").expect("signer");
        let url = RoomUrl::parse("http://127.0.0.1:1/unit").expect("url");
        let secret = InviteSecret::from_bytes(vec![7; 32]).expect("secret");
        let mut a = Group::new("a", url, Some(secret.clone()), false, false);
        let t0 = Instant::now();
        let start = E2eeStart {
            create: true,
            external_sender: B64.encode(ds.external_sender().expect("external sender")),
        };
        a.start(&start, t0, 0);
        assert!(a.is_member());
        assert!(matches!(
            a.take_messages().as_slice(),
            [ClientMessage::GroupCreated { .. }]
        ));

        // B asks with the invite proof; A (rank 0) commits at once.
        let mut b = Member::new("b", b"unit", Some(secret.as_bytes())).expect("member");
        let request = b.join_request().expect("request");
        a.on_mls(Some(2), &B64.encode(request), t0, 0);
        let sent = a.take_messages();
        let [ClientMessage::Commit {
            commit,
            welcome: Some(welcome),
        }] = sent.as_slice()
        else {
            panic!("A should commit B's addition at once")
        };
        let (commit, welcome) = (commit.clone(), welcome.clone());
        // Chat waits while A's commit is in flight.
        a.queue_chat("after the commit".into(), t0);
        assert!(a.take_messages().is_empty());
        a.on_mls(Some(1), &commit, t0, 0);
        assert_eq!(a.epoch(), Some(1));
        assert_eq!(a.commits, 1);
        assert!(matches!(
            a.take_messages().as_slice(),
            [ClientMessage::Chat { .. }]
        ));
        b.process_incoming(&unb64(&welcome), 0).expect("welcome");
        assert_eq!(
            a.security_code(),
            Some(b.security_code().expect("code").as_str())
        );

        // Chat and media from B decrypt at A.
        let chat = b.encrypt_chat("hi").expect("chat");
        let shown = a.on_chat(0, 2, &B64.encode(chat), false, 0);
        assert!(
            matches!(&shown, Some(Notice::Chat { name, text, .. }) if name == "b" && text == "hi"),
            "{shown:?}"
        );
        let (mut frame, mut out) = (Vec::new(), Vec::new());
        b.sframe_encrypt(Codec::Opus, &[1, 2, 3], &mut frame)
            .expect("encrypt");
        a.decrypt(Codec::Opus, &frame, &mut out, 0)
            .expect("decrypt");
        assert_eq!(out, [1, 2, 3]);
        // Tampered: an authentication failure, not a missing key.
        let last = frame.len() - 1;
        frame[last] ^= 1;
        let e = a
            .decrypt(Codec::Opus, &frame, &mut out, 0)
            .expect_err("must not decrypt");
        assert!(!is_missing_key(&e), "{e}");

        // B moves to epoch 2; its commit never reaches A.
        b.request_self_update().expect("update");
        b.commit_pending().expect("commit").expect("pending");
        b.confirm_commit(0).expect("applied");
        b.sframe_encrypt(Codec::Opus, &[4, 5, 6], &mut frame)
            .expect("encrypt");
        let e = a
            .decrypt(Codec::Opus, &frame, &mut out, 0)
            .expect_err("must not decrypt");
        assert!(is_missing_key(&e), "{e}");
        a.frame_without_key(Codec::Opus, &frame, t0);
        a.frame_without_key(Codec::Opus, &frame, t0 + Duration::from_millis(4500));
        a.check_media_ahead(t0 + Duration::from_millis(4600));
        assert!(a.is_member(), "not yet: under 5 s");
        a.frame_without_key(Codec::Opus, &frame, t0 + Duration::from_millis(5400));
        a.check_media_ahead(t0 + Duration::from_millis(5500));
        assert_eq!(a.state(), GroupState::Joining);
        assert_eq!(a.rejoins, 1);
        assert!(matches!(
            a.take_messages().as_slice(),
            [ClientMessage::JoinRequest { .. }]
        ));
    }
}
