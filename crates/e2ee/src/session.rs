//! One participant's end-to-end-encryption session for one meeting: the
//! group protocol around [`Member`], written once for every client.
//!
//! The browser (through `conclave-e2ee-wasm`) and the native agent both
//! drive this state machine; they keep only the glue to their sockets,
//! media and UI. It is sans-IO: server messages, user actions and the time
//! (`now_ms`, any monotonic millisecond clock) go in; [`Outgoing`] messages
//! for the server and [`SessionEvent`]s for the application come out
//! ([`Session::take_outgoing`], [`Session::take_events`]). Timers are the
//! caller's: call [`Session::poll`] at [`Session::deadline`].
//!
//! What it decides (docs/security.md has the why):
//! * **Create or join.** The server says which; a `create` while we are in a
//!   group is ignored, so the server cannot make us drop our group.
//! * **Accept a group only if it proves the invite secret.** A joiner that
//!   holds the secret stays [`SessionState::Verifying`] after its Welcome —
//!   no keys, nothing sent — until a member sends a group proof
//!   ([`crate::invite::InviteKey::group_proof`]) for an epoch it is in. A
//!   group the server built itself cannot produce one.
//! * **Commit without N-way races.** Members commit queued changes in rank
//!   order (rank 0 at once, rank r after r × [`COMMIT_STAGGER_MS`]).
//! * **Share the invite key with members admitted by knock**, inside the
//!   group, so they can verify joiners, prove the group, and rejoin without
//!   a new human decision. They take only the key the group's invite
//!   commitment names ([`Member::invite_key_matches_group`]), never one a
//!   member makes up.
//! * **Never rejoin silently.** Every rejoin is announced with
//!   [`SessionEvent::Resecuring`]: the security code must be compared again.
//! * **Chat** is queued while a commit is in flight and shown only once the
//!   group is verified.
//! * **Removals are not the server's alone.** A member can remove another
//!   ([`Session::remove_member`]): an authenticated notice, then the commit;
//!   the removed client stops instead of rejoining. Every member sends an
//!   encrypted heartbeat at least every [`PRESENCE_MS`], and a leaf silent
//!   for [`PRESENCE_TIMEOUT_MS`] is removed by the members even if the
//!   server never proposes it.

use std::collections::{HashMap, HashSet, VecDeque};

use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::invite::{InviteKey, PROOF_LEN};
use crate::member::{Event, Member, RosterEntry};
use crate::server::{inspect, MessageKind};

/// Committers after the first wait this long per rank before trying.
pub const COMMIT_STAGGER_MS: u64 = 400;
/// A commit neither echoed nor rejected within this is dropped and redone.
/// The server answers every commit over an ordered connection, so this only
/// guards against a server too busy to answer soon; too short a limit drops
/// commits it later accepts (seen with 5 s under load).
pub const DEFAULT_COMMIT_TIMEOUT_MS: u64 = 20_000;
/// After a commit the server found invalid, wait this long before the next.
pub const COMMIT_BACKOFF_MS: u64 = 2_000;
/// A join request without a Welcome is sent again after this long.
pub const JOIN_RESEND_MS: u64 = 10_000;
/// Undecryptable media of the next epoch for this long means we missed a commit.
pub const MEDIA_AHEAD_REJOIN_MS: u64 = 5_000;
/// A group that has not proved the invite secret within this long after
/// its Welcome is given up: we ask to join again.
pub const VERIFY_TIMEOUT_MS: u64 = 15_000;
/// Members other than the committer send the group proof after this long
/// (plus their rank's stagger) unless someone else sent it first.
pub const PROOF_BACKUP_MS: u64 = 1_000;

/// Every member refreshes its own leaf this often (an MLS path update), so a
/// device whose keys leaked stops being able to read the meeting:
/// post-compromise security. Spread over members by leaf index.
pub const SELF_UPDATE_MS: u64 = 10 * 60 * 1000;

/// Every member sends an encrypted heartbeat when it has sent nothing else
/// for this long, so the others can tell that its leaf is still in use.
pub const PRESENCE_MS: u64 = 30_000;
/// A leaf that has sent nothing (heartbeat, chat, proof, commit) for this
/// long is removed by the members, even if the server does not propose it.
/// Three missed heartbeats and some slack for a busy or throttled client.
pub const PRESENCE_TIMEOUT_MS: u64 = 100_000;
/// If our own clock jumped by more than this between two calls we were
/// asleep (suspended laptop, frozen tab): others' silence proves nothing.
const ASLEEP_MS: u64 = 2 * PRESENCE_MS;
/// Our own messages came back within this: we hear the group, so the
/// others' silence means something (our heartbeat period and some slack).
const HEARING_MS: u64 = PRESENCE_MS + PRESENCE_MS / 2;
/// How long a removal notice waits for its commit.
const REMOVAL_NOTICE_MS: u64 = 60_000;

/// Magic of the heartbeat control message (no body).
const HEARTBEAT_MAGIC: &[u8; 4] = b"CHB1";
/// Magic of the removal notice: `"CRM1" || leaf u32 || signature key`. A
/// member announces it before committing the removal, so the removed client
/// knows a member (not a lost connection) removed it.
const REMOVAL_MAGIC: &[u8; 4] = b"CRM1";

/// Magic of the group-proof control message:
/// `"CGP1" || epoch u64 || proof(32) || flag u8 || [invite key(32)]`.
const GROUP_PROOF_MAGIC: &[u8; 4] = b"CGP1";
/// How many epochs' authenticators we keep to check late proofs.
const KEPT_AUTHENTICATORS: usize = 8;
/// Names of past members kept for look-alike checks.
const KEPT_NAMES: usize = 256;

/// Where the participant is in joining the encrypted group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Not started (no `welcome` yet).
    Idle,
    /// Join request with invite proof sent, waiting for a Welcome.
    Joining,
    /// Join request without the secret: a member has to admit us.
    Knocking,
    /// In a group that has not yet proved it knows the invite secret: no
    /// keys, nothing sent, not shown as secured.
    Verifying,
    /// In the group, verified: keys available.
    Member,
    /// Could not start (bad server data, no randomness…).
    Failed,
    /// A member removed us from the meeting: we do not rejoin.
    Removed,
}

/// A message for the server (the glue encodes it as signaling JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// `group_created`: the new group's GroupInfo.
    GroupCreated {
        /// Serialized GroupInfo with the ratchet tree.
        group_info: Vec<u8>,
    },
    /// `join_request`.
    JoinRequest {
        /// Serialized join request.
        data: Vec<u8>,
    },
    /// `commit`.
    Commit {
        /// The commit.
        commit: Vec<u8>,
        /// The Welcome for joiners, if any.
        welcome: Option<Vec<u8>>,
    },
    /// `chat`: an MLS application message (chat text or group control).
    Chat {
        /// The MLS PrivateMessage.
        data: Vec<u8>,
    },
    /// `deny_knock`: the server tells the knocker and disconnects it.
    DenyKnock {
        /// The knocker's participant id.
        participant: u32,
    },
}

/// The media keys of one epoch (for the SFrame Worker or the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochKeys {
    /// Epoch.
    pub epoch: u64,
    /// Our leaf (SFrame sender id).
    pub own_leaf: u32,
    /// SFrame base key of the epoch. Never log it.
    pub base_key: Vec<u8>,
}

/// Someone asking to join without the invite secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnockInfo {
    /// Their signature key (lowercase hex): one knock per key.
    pub signature_key: String,
    /// The name in their credential.
    pub name: String,
    /// Short fingerprint of their signature key, to compare out of band.
    pub fingerprint: String,
    /// The name equals or resembles a current or earlier member's.
    pub lookalike: bool,
    /// The server's participant id of the knocker, if known.
    pub participant: Option<u32>,
    knock_ids: Vec<u64>,
}

/// What the application should know or show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// State, epoch, roster, security code, knocks or refusal changed: re-render.
    Changed,
    /// New media keys (`None`: drop every key).
    Keys(Option<EpochKeys>),
    /// The security code of a verified group changed.
    SecurityCode {
        /// Epoch.
        epoch: u64,
        /// Code.
        code: String,
        /// Group size.
        members: usize,
    },
    /// We create the group with a secret made up here: invite links carry it.
    InviteSecretCreated(Vec<u8>),
    /// A new knock ([`Session::knocks`] has the details).
    Knock(KnockInfo),
    /// A member was admitted without the invite secret.
    Admitted {
        /// Who admitted (`None`: we did).
        by: Option<String>,
        /// Who was admitted.
        name: String,
    },
    /// The commit added members (send them a key frame).
    MembersAdded,
    /// We leave our group state and ask to join again: the call is not
    /// secured until then and its security code must be compared again.
    Resecuring {
        /// Why, in words.
        reason: String,
    },
    /// A member removed someone from the meeting (not for a lost connection).
    MemberRemoved {
        /// Who removed them (`None`: we did).
        by: Option<String>,
        /// Who was removed.
        name: String,
    },
    /// A member removed us from the meeting. The session stops: no keys, no
    /// rejoin. The application should leave the meeting and say so.
    RemovedFromMeeting {
        /// Who removed us.
        by: String,
    },
    /// A membership change was refused as unauthorized.
    Refused {
        /// Why.
        reason: String,
    },
    /// Something worth a line in a log.
    Info(String),
    /// Something that went wrong but left the session working.
    Warning(String),
}

/// A chat message read from the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Sender's name, from the MLS credential (ours for our own echo).
    pub name: String,
    /// Text.
    pub text: String,
    /// Sender's leaf.
    pub leaf: Option<u32>,
    /// Sender's per-session signature key, as in the message's epoch:
    /// with `leaf`, the sender session that `counter` counts in (a member
    /// who rejoins gets a new key and starts counting again). `None` for
    /// our own echo, or if unknown.
    pub sender_key: Option<Vec<u8>>,
    /// When the sender says it sent it (ms since the Unix epoch; 0: not
    /// given). From inside the encryption, not the server's word.
    pub sent_at_ms: u64,
    /// The sender's message counter (inside the encryption); `None` for our
    /// own echo.
    pub counter: Option<u32>,
}

/// Tunables that differ between clients.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How long our commit may stay unanswered.
    pub commit_timeout_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            commit_timeout_ms: DEFAULT_COMMIT_TIMEOUT_MS,
        }
    }
}

/// One participant's session (see the module docs).
pub struct Session {
    name: String,
    room_id: Vec<u8>,
    secret: Option<Vec<u8>>,
    config: SessionConfig,
    member: Option<Member>,
    state: SessionState,
    /// Whether we created the group (then it needs no proof to us).
    created: bool,
    commit_sent: Option<u64>,
    commit_at: Option<u64>,
    urgent_commit: bool,
    backoff_until: u64,
    remove_proposed: HashSet<u32>,
    roster: Vec<RosterEntry>,
    own_leaf: Option<u32>,
    epoch: Option<u64>,
    security_code: Option<String>,
    /// Epoch authenticators of recent epochs we were in (late proofs).
    authenticators: VecDeque<(u64, Vec<u8>)>,
    /// Highest epoch for which a valid group proof was seen or sent.
    proved_epoch: Option<u64>,
    /// When to send a group proof for the current epoch (backup senders).
    proof_at: Option<u64>,
    /// The next proof also carries the invite key (someone was admitted by knock).
    share_key: bool,
    verify_since: Option<u64>,
    next_self_update: Option<u64>,
    join_request: Option<Vec<u8>>,
    join_sent: Option<u64>,
    waiting_since: Option<u64>,
    /// Chat to send: text and the time the user sent it.
    chat_queue: VecDeque<(String, u64)>,
    /// What we sent, in order, to match the server's echoes (`None`: control).
    own_sent: VecDeque<Option<(String, u64)>>,
    knocks: Vec<KnockInfo>,
    known_names: VecDeque<String>,
    refused: Option<String>,
    /// When each other leaf last showed it is in use (verified group only).
    last_seen: HashMap<u32, u64>,
    /// When we last sent an application message (heartbeats fill gaps).
    last_sent: u64,
    /// The last time anything called us (to notice that we were asleep).
    last_tick: Option<u64>,
    /// When the server last relayed one of our own messages back to us.
    last_echo: u64,
    /// Authenticated "I am removing X" notices, waiting for their commit.
    removal_notices: Vec<RemovalNotice>,
    /// Members we are removing whose notice is not sent yet.
    removals_to_announce: Vec<RosterEntry>,
    me: Option<u32>,
    out: Vec<Outgoing>,
    events: Vec<SessionEvent>,
    /// Commits of ours the server accepted.
    pub commits: u64,
    /// Times we left our group state and asked to join again.
    pub rejoins: u64,
}

/// A member's notice that it is removing someone.
struct RemovalNotice {
    by_leaf: u32,
    by_name: String,
    target_leaf: u32,
    target_key: Vec<u8>,
    at: u64,
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short, readable fingerprint of a signature key: 4 groups of 4 hex digits.
pub fn key_fingerprint(signature_key: &[u8]) -> String {
    let d = Sha256::digest(signature_key);
    d[..8]
        .chunks(2)
        .map(hex)
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// A name folded for look-alike comparison: case, spacing, punctuation and
/// the common digit-for-letter swaps do not count.
fn fold_name(name: &str) -> String {
    name.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric())
        .map(|c| match c {
            '0' => 'o',
            '1' | 'i' | '|' => 'l',
            '3' => 'e',
            '5' => 's',
            'а' => 'a', // Cyrillic look-alikes of Latin letters
            'е' => 'e',
            'о' => 'o',
            'р' => 'p',
            'с' => 'c',
            'х' => 'x',
            c => c,
        })
        .collect()
}

impl Session {
    /// A session for `room_id` as `display_name`; `invite_secret` if the
    /// link carried one.
    pub fn new(
        display_name: &str,
        room_id: &[u8],
        invite_secret: Option<&[u8]>,
        config: SessionConfig,
    ) -> Session {
        Session {
            name: display_name.to_owned(),
            room_id: room_id.to_vec(),
            secret: invite_secret.map(<[u8]>::to_vec),
            config,
            member: None,
            state: SessionState::Idle,
            created: false,
            commit_sent: None,
            commit_at: None,
            urgent_commit: false,
            backoff_until: 0,
            remove_proposed: HashSet::new(),
            roster: Vec::new(),
            own_leaf: None,
            epoch: None,
            security_code: None,
            authenticators: VecDeque::new(),
            proved_epoch: None,
            proof_at: None,
            share_key: false,
            verify_since: None,
            next_self_update: None,
            join_request: None,
            join_sent: None,
            waiting_since: None,
            chat_queue: VecDeque::new(),
            own_sent: VecDeque::new(),
            knocks: Vec::new(),
            known_names: VecDeque::new(),
            refused: None,
            last_seen: HashMap::new(),
            last_sent: 0,
            last_tick: None,
            last_echo: 0,
            removal_notices: Vec::new(),
            removals_to_announce: Vec::new(),
            me: None,
            out: Vec::new(),
            events: Vec::new(),
            commits: 0,
            rejoins: 0,
        }
    }

    // ---- state --------------------------------------------------------

    /// Where we are.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// In a verified group, with keys.
    pub fn is_member(&self) -> bool {
        self.state == SessionState::Member
    }

    /// Whether we hold the invite secret (or a key shared by the group).
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
            || self
                .member
                .as_ref()
                .is_some_and(|m| m.invite_key().is_some())
    }

    /// Current epoch (verified group only).
    pub fn epoch(&self) -> Option<u64> {
        self.epoch.filter(|_| self.is_member())
    }

    /// Security code (verified group only).
    pub fn security_code(&self) -> Option<&str> {
        self.security_code.as_deref().filter(|_| self.is_member())
    }

    /// Roster (verified group only; empty otherwise).
    pub fn roster(&self) -> &[RosterEntry] {
        if self.is_member() {
            &self.roster
        } else {
            &[]
        }
    }

    /// Our leaf (verified group only).
    pub fn own_leaf(&self) -> Option<u32> {
        self.own_leaf.filter(|_| self.is_member())
    }

    /// The leaf of the member with this (hex) signature key.
    pub fn leaf_of_key(&self, key_hex: &str) -> Option<u32> {
        self.roster()
            .iter()
            .find(|r| hex(&r.signature_key).eq_ignore_ascii_case(key_hex))
            .map(|r| r.leaf_index)
    }

    /// People knocking now.
    pub fn knocks(&self) -> &[KnockInfo] {
        &self.knocks
    }

    /// Why a membership change was refused, while that stands.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// Since when we have been asking to join (for "still waiting" hints).
    pub fn waiting_since(&self) -> Option<u64> {
        self.waiting_since
    }

    /// Our participant id (to recognise our own messages coming back).
    pub fn set_me(&mut self, id: u32) {
        self.me = Some(id);
    }

    /// Messages for the server, in order.
    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.out)
    }

    /// Events for the application, in order.
    pub fn take_events(&mut self) -> Vec<SessionEvent> {
        std::mem::take(&mut self.events)
    }

    fn warn(&mut self, text: impl Into<String>) {
        self.events.push(SessionEvent::Warning(text.into()));
    }

    fn info(&mut self, text: impl Into<String>) {
        self.events.push(SessionEvent::Info(text.into()));
    }

    fn fail(&mut self, text: String) {
        self.state = SessionState::Failed;
        self.warn(text);
        self.events.push(SessionEvent::Changed);
    }

    // ---- starting -----------------------------------------------------

    /// `welcome.e2ee` / `create_group.e2ee`: create the group or ask to join.
    /// Ignored while we are in a group: the server cannot make us drop it.
    pub fn start(&mut self, create: bool, external_sender: &[u8], now_ms: u64) {
        if matches!(self.state, SessionState::Member | SessionState::Verifying) {
            self.warn("the server asked us to start encryption again while in the group; ignored");
            return;
        }
        if self.state == SessionState::Removed {
            return; // a member removed us; only the user can come back
        }
        self.reset_group_state();
        if create {
            self.create(external_sender, now_ms);
        } else {
            self.member = self.new_member();
            if self.member.is_some() {
                self.send_join_request(now_ms, false);
            }
        }
        self.after_processing(now_ms);
    }

    fn new_member(&mut self) -> Option<Member> {
        match Member::new(&self.name, &self.room_id, self.secret.as_deref()) {
            Ok(m) => Some(m),
            Err(e) => {
                self.fail(format!("cannot start end-to-end encryption: {e}"));
                None
            }
        }
    }

    fn create(&mut self, external_sender: &[u8], now_ms: u64) {
        let Some(mut member) = self.new_member() else {
            return;
        };
        if self.secret.is_none() {
            match member.generate_invite_secret() {
                Ok(s) => {
                    self.secret = Some(s.clone());
                    self.events.push(SessionEvent::InviteSecretCreated(s));
                }
                Err(e) => return self.fail(format!("no randomness for an invite secret: {e}")),
            }
        }
        let events = match member.create_group(&[external_sender.to_vec()], now_ms) {
            Ok(ev) => ev,
            Err(e) => return self.fail(format!("cannot create the encrypted group: {e}")),
        };
        let group_info = match member.group_info() {
            Ok(g) => g,
            Err(e) => return self.fail(format!("cannot export the new group's GroupInfo: {e}")),
        };
        self.member = Some(member);
        self.created = true;
        self.out.push(Outgoing::GroupCreated { group_info });
        self.handle_events(events, None, now_ms);
    }

    fn send_join_request(&mut self, now_ms: u64, rejoin: bool) {
        let Some(member) = self.member.as_mut() else {
            return;
        };
        let request = if rejoin {
            member.rejoin_request()
        } else {
            member.join_request()
        };
        match request {
            Ok(data) => {
                self.out.push(Outgoing::JoinRequest { data: data.clone() });
                self.join_request = Some(data);
                self.join_sent = Some(now_ms);
                self.waiting_since.get_or_insert(now_ms);
                self.state = if self.has_secret() {
                    SessionState::Joining
                } else {
                    SessionState::Knocking
                };
                self.events.push(SessionEvent::Changed);
            }
            Err(e) => self.fail(format!("cannot make a join request: {e}")),
        }
    }

    /// Forget the group we were in (keeping the member and its keys to rejoin).
    fn reset_group_state(&mut self) {
        let had_keys = self.is_member();
        self.created = false;
        self.commit_sent = None;
        self.commit_at = None;
        self.urgent_commit = false;
        self.remove_proposed.clear();
        self.roster.clear();
        self.own_leaf = None;
        self.epoch = None;
        self.security_code = None;
        self.authenticators.clear();
        self.proved_epoch = None;
        self.proof_at = None;
        self.share_key = false;
        self.verify_since = None;
        self.next_self_update = None;
        self.knocks.clear();
        self.refused = None;
        self.last_seen.clear();
        self.removal_notices.clear();
        self.removals_to_announce.clear();
        if had_keys {
            self.events.push(SessionEvent::Keys(None));
        }
    }

    /// Leave our group state and ask to join again, visibly.
    fn resecure(&mut self, reason: String, now_ms: u64) {
        self.rejoins += 1;
        self.reset_group_state();
        self.events.push(SessionEvent::Resecuring { reason });
        self.send_join_request(now_ms, true);
    }

    // ---- server input -------------------------------------------------

    /// An `mls` message from the server (`from`: who it says sent it).
    pub fn on_mls(&mut self, from: Option<u32>, bytes: &[u8], now_ms: u64) {
        self.tick(now_ms);
        let Some(member) = self.member.as_mut() else {
            self.warn("an mls message arrived before we started encryption; ignored");
            return;
        };
        let in_group = matches!(self.state, SessionState::Member | SessionState::Verifying);
        match member.process_incoming(bytes, now_ms) {
            Ok(events) => self.handle_events(events, from, now_ms),
            Err(Error::EpochMismatch { local, message }) if message > local && in_group => {
                self.resecure(
                    format!("missed a change to the group (we are at epoch {local}, it is at {message})"),
                    now_ms,
                );
            }
            Err(Error::InvalidInput("joiner is already a member")) => {}
            Err(Error::CommitRefused(reason))
                if in_group && inspect(bytes).is_ok_and(|i| i.kind == MessageKind::Commit) =>
            {
                // A member's commit we will not follow. The others may: if
                // the group moves on without us we rejoin, visibly.
                self.refused = Some(reason.clone());
                self.events.push(SessionEvent::Refused { reason });
                self.events.push(SessionEvent::Changed);
            }
            Err(e) if self.state == SessionState::Member && from.is_some() && from == self.me => {
                // Our own commit, accepted after we gave up on it: the group
                // moved on without us.
                self.resecure(
                    format!("our own commit came back after we dropped it ({e})"),
                    now_ms,
                );
            }
            Err(e) if in_group => self.warn(format!("ignored an MLS message: {e}")),
            // Before we are in the group, nothing else is ours to read.
            Err(_) => {}
        }
        self.after_processing(now_ms);
    }

    /// `commit_rejected`: drop our commit and try again later.
    pub fn on_commit_rejected(&mut self, reason: &str, now_ms: u64) {
        if self.commit_sent.is_none() {
            // epoch_moved after the winning commit already dropped ours is normal.
            if reason != "epoch_moved" {
                self.warn(format!(
                    "the server rejected our commit: {reason}, but none was in flight; ignored"
                ));
            }
            return;
        }
        if let Some(m) = self.member.as_mut() {
            let _ = m.discard_pending_commit();
        }
        self.commit_sent = None;
        if reason != "epoch_moved" {
            self.warn(format!("the server rejected our commit: {reason}"));
            self.backoff_until = now_ms + COMMIT_BACKOFF_MS;
        }
        self.after_processing(now_ms);
    }

    /// A `chat` from the server: what to show, if anything. `own`: the
    /// server says we sent it (our echo, which MLS cannot decrypt for us).
    pub fn on_chat(&mut self, data: &[u8], own: bool, now_ms: u64) -> Option<ChatMessage> {
        self.tick(now_ms);
        if own {
            self.last_echo = now_ms;
            let (text, sent_at_ms) = self.own_sent.pop_front()??;
            return Some(ChatMessage {
                name: self.own_name(),
                text,
                leaf: self.own_leaf,
                sender_key: None,
                sent_at_ms,
                counter: None,
            });
        }
        if !matches!(self.state, SessionState::Member | SessionState::Verifying) {
            return None;
        }
        let member = self.member.as_mut()?;
        let events = match member.process_incoming(data, now_ms) {
            Ok(ev) => ev,
            Err(e) => {
                self.warn(format!("could not decrypt a chat message: {e}"));
                return None;
            }
        };
        let mut shown = None;
        let mut rest = Vec::new();
        for ev in events {
            match ev {
                Event::Chat {
                    sender,
                    text,
                    sent_at_ms,
                    counter,
                } => {
                    self.seen(sender.leaf_index, now_ms);
                    shown = Some(ChatMessage {
                        name: sender.display_name,
                        text,
                        leaf: Some(sender.leaf_index),
                        sender_key: (!sender.signature_key.is_empty())
                            .then_some(sender.signature_key),
                        sent_at_ms,
                        counter: Some(counter),
                    })
                }
                other => rest.push(other),
            }
        }
        self.handle_events(rest, None, now_ms);
        self.after_processing(now_ms);
        // Chat of a group that has not proved itself is not shown.
        shown.filter(|_| self.is_member())
    }

    /// The server says this participant left: forget their knock.
    pub fn participant_left(&mut self, id: u32) {
        let before = self.knocks.len();
        self.knocks.retain(|k| k.participant != Some(id));
        if self.knocks.len() != before {
            self.events.push(SessionEvent::Changed);
        }
    }

    /// The media Worker has seen undecryptable frames of the epoch after
    /// ours since `since_ms`, last at `last_ms`: after
    /// [`MEDIA_AHEAD_REJOIN_MS`] of that we missed a commit and rejoin.
    pub fn on_media_ahead(&mut self, since_ms: u64, last_ms: u64, now_ms: u64) {
        if self.state != SessionState::Member
            || self.commit_sent.is_some()
            || now_ms.saturating_sub(since_ms) < MEDIA_AHEAD_REJOIN_MS
            || now_ms.saturating_sub(last_ms) > 1_000
        {
            return;
        }
        self.resecure(
            "media stays a key generation ahead of us (a missed change)".into(),
            now_ms,
        );
    }

    // ---- user actions -------------------------------------------------

    /// Queue a chat message; false if we cannot send now (not in a verified
    /// group). `sent_at_ms` is the wall-clock time (ms since the Unix epoch)
    /// receivers show.
    pub fn send_chat(&mut self, text: &str, sent_at_ms: u64, now_ms: u64) -> bool {
        if !self.is_member() {
            return false;
        }
        self.chat_queue.push_back((text.to_owned(), sent_at_ms));
        self.after_processing(now_ms);
        true
    }

    /// Refresh our own leaf now (an MLS self-update commit, as the periodic
    /// one does): a new epoch. False if we are not in a verified group.
    pub fn update_keys(&mut self, now_ms: u64) -> bool {
        if !self.is_member() {
            return false;
        }
        let queued = self
            .member
            .as_mut()
            .is_some_and(|m| m.request_self_update().is_ok());
        self.after_processing(now_ms);
        queued
    }

    /// Removes and returns the knock of this signature key (hex), if any.
    fn take_knock(&mut self, signature_key_hex: &str) -> Option<KnockInfo> {
        let pos = self
            .knocks
            .iter()
            .position(|k| k.signature_key.eq_ignore_ascii_case(signature_key_hex))?;
        Some(self.knocks.remove(pos))
    }

    /// Let a knocking person in: their Add is committed right away.
    pub fn admit(&mut self, signature_key_hex: &str, now_ms: u64) -> bool {
        let Some(knock) = self.take_knock(signature_key_hex) else {
            return false;
        };
        let Some(member) = self.member.as_mut() else {
            return false;
        };
        let (latest, older) = match knock.knock_ids.split_last() {
            Some((l, o)) => (Some(*l), o.to_vec()),
            None => (None, Vec::new()),
        };
        for id in older {
            let _ = member.reject(id);
        }
        let ok = latest.is_some_and(|id| member.admit(id).is_ok());
        if !ok {
            self.warn(format!(
                "{} could not be admitted; they can ask again",
                knock.name
            ));
        }
        self.urgent_commit = true;
        self.events.push(SessionEvent::Changed);
        self.after_processing(now_ms);
        ok
    }

    /// Refuse a knocking person: the server tells them and disconnects them.
    pub fn deny(&mut self, signature_key_hex: &str) -> bool {
        let Some(knock) = self.take_knock(signature_key_hex) else {
            return false;
        };
        if let Some(member) = self.member.as_mut() {
            for id in &knock.knock_ids {
                let _ = member.reject(*id);
            }
        }
        if let Some(participant) = knock.participant {
            self.out.push(Outgoing::DenyKnock { participant });
        }
        self.events.push(SessionEvent::Changed);
        true
    }

    /// Remove a member (by signature key, hex) from the meeting: a notice
    /// to the group, then the commit. The removed client stops rather than
    /// rejoining. False if we are not in a verified group or they are not a
    /// member (or are us: leaving is closing the connection).
    pub fn remove_member(&mut self, signature_key_hex: &str, now_ms: u64) -> bool {
        let Some(target) = self
            .roster()
            .iter()
            .find(|r| hex(&r.signature_key).eq_ignore_ascii_case(signature_key_hex))
            .cloned()
        else {
            return false;
        };
        if Some(target.leaf_index) == self.own_leaf {
            return false;
        }
        if !self
            .removals_to_announce
            .iter()
            .any(|r| r.leaf_index == target.leaf_index)
        {
            self.removals_to_announce.push(target);
        }
        self.after_processing(now_ms);
        true
    }

    /// **For tests only** (attack tests play a malicious member): send
    /// `payload(member)` as a control message, exactly as the session sends
    /// its heartbeats and group proofs. An honest client never calls it; it
    /// gives the caller nothing it does not already hold. False if we are
    /// not in a verified group or cannot send now.
    #[doc(hidden)]
    pub fn send_control_for_tests(
        &mut self,
        payload: impl FnOnce(&Member) -> Vec<u8>,
        now_ms: u64,
    ) -> bool {
        if !self.is_member() || self.commit_sent.is_some() {
            return false;
        }
        let Some(member) = self.member.as_mut() else {
            return false;
        };
        let payload = payload(member);
        let Ok(data) = member.encrypt_control(&payload) else {
            return false;
        };
        self.out.push(Outgoing::Chat { data });
        self.own_sent.push_back(None);
        self.last_sent = now_ms;
        true
    }

    // ---- media --------------------------------------------------------

    /// SFrame-encrypt one outgoing frame (native clients); false while we
    /// have no verified keys: nothing is sent then.
    pub fn encrypt_frame(&mut self, codec: crate::Codec, frame: &[u8], out: &mut Vec<u8>) -> bool {
        self.is_member()
            && self
                .member
                .as_mut()
                .is_some_and(|m| m.sframe_encrypt(codec, frame, out).is_ok())
    }

    /// Decrypt and authenticate one received frame (native clients).
    pub fn decrypt_frame(
        &mut self,
        codec: crate::Codec,
        frame: &[u8],
        out: &mut Vec<u8>,
        now_ms: u64,
    ) -> crate::Result<crate::FrameInfo> {
        match self.member.as_mut() {
            Some(m) if self.state == SessionState::Member => {
                m.sframe_decrypt(codec, frame, out, now_ms)
            }
            _ => Err(Error::NotInGroup),
        }
    }

    // ---- timers -------------------------------------------------------

    /// The next time [`Session::poll`] has something to do.
    pub fn deadline(&self) -> Option<u64> {
        let waiting = matches!(self.state, SessionState::Joining | SessionState::Knocking);
        [
            self.commit_at,
            self.commit_sent.map(|t| t + self.config.commit_timeout_ms),
            self.join_sent
                .filter(|_| waiting)
                .map(|t| t + JOIN_RESEND_MS),
            self.verify_since
                .filter(|_| self.state == SessionState::Verifying)
                .map(|t| t + VERIFY_TIMEOUT_MS),
            self.proof_at,
            self.next_self_update.filter(|_| self.is_member()),
            self.next_heartbeat(),
            self.next_silence_check(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run what is due: staggered commits, the commit watchdog, join
    /// resends, the verification timeout, backup group proofs.
    pub fn poll(&mut self, now_ms: u64) {
        self.tick(now_ms);
        if self.commit_at.is_some_and(|t| now_ms >= t) {
            self.commit_at = None;
            self.commit_now(now_ms);
        }
        if self
            .commit_sent
            .is_some_and(|t| now_ms >= t + self.config.commit_timeout_ms)
        {
            self.warn(format!(
                "our commit was neither accepted nor rejected within {} s; redoing it",
                self.config.commit_timeout_ms / 1000
            ));
            if let Some(m) = self.member.as_mut() {
                let _ = m.discard_pending_commit();
            }
            self.commit_sent = None;
        }
        if matches!(self.state, SessionState::Joining | SessionState::Knocking)
            && self.join_sent.is_some_and(|t| now_ms >= t + JOIN_RESEND_MS)
        {
            if let Some(data) = self.join_request.clone() {
                self.out.push(Outgoing::JoinRequest { data });
                self.join_sent = Some(now_ms);
                self.events.push(SessionEvent::Changed);
            }
        }
        if self.state == SessionState::Verifying
            && self
                .verify_since
                .is_some_and(|t| now_ms >= t + VERIFY_TIMEOUT_MS)
        {
            self.resecure(
                "the group we were welcomed into did not prove that it knows the invite secret"
                    .into(),
                now_ms,
            );
        }
        if self.is_member() && self.next_self_update.is_some_and(|t| now_ms >= t) {
            self.next_self_update = Some(now_ms + SELF_UPDATE_MS);
            if let Some(m) = self.member.as_mut() {
                let _ = m.request_self_update();
            }
        }
        self.after_processing(now_ms);
    }

    // ---- internals ----------------------------------------------------

    fn own_name(&self) -> String {
        self.roster
            .iter()
            .find(|r| Some(r.leaf_index) == self.own_leaf)
            .map_or_else(|| self.name.clone(), |r| r.display_name.clone())
    }

    fn handle_events(&mut self, events: Vec<Event>, from: Option<u32>, now_ms: u64) {
        for event in events {
            match event {
                Event::Joined {
                    epoch,
                    roster,
                    security_code,
                    sframe_base_key,
                } => self.on_joined(epoch, roster, security_code, sframe_base_key, now_ms),
                Event::EpochChanged {
                    epoch,
                    roster,
                    security_code,
                    sframe_base_key,
                    added,
                    removed,
                    committer,
                    admitted_without_secret,
                } => {
                    self.seen(committer, now_ms);
                    self.announce_moderated_removals(committer, &removed, &roster);
                    let ours = self.own_leaf == Some(committer) && self.commit_sent.is_some();
                    if ours {
                        self.commits += 1;
                    }
                    self.commit_sent = None;
                    self.remove_proposed.clear();
                    // A refusal stands only while the group is where we refused it.
                    self.refused = None;
                    let by = if ours {
                        None
                    } else {
                        Some(
                            roster
                                .iter()
                                .find(|r| r.leaf_index == committer)
                                .map_or_else(|| "A member".to_owned(), |r| r.display_name.clone()),
                        )
                    };
                    for a in &admitted_without_secret {
                        self.events.push(SessionEvent::Admitted {
                            by: by.clone(),
                            name: a.display_name.clone(),
                        });
                    }
                    self.knocks.retain(|k| {
                        !roster
                            .iter()
                            .any(|r| hex(&r.signature_key) == k.signature_key)
                    });
                    self.apply_epoch(epoch, roster, security_code, sframe_base_key, now_ms);
                    if !added.is_empty() {
                        self.events.push(SessionEvent::MembersAdded);
                        self.schedule_proof(ours, !admitted_without_secret.is_empty(), now_ms);
                    }
                }
                Event::Removed { committer } => self.on_removed(committer, now_ms),
                Event::Knock { knock_id, joiner } => self.on_knock(knock_id, joiner, from),
                Event::RemoveProposed {
                    leaf_index,
                    by_server,
                } => {
                    if by_server {
                        self.remove_proposed.insert(leaf_index);
                    }
                }
                Event::CommitDiscarded => self.commit_sent = None,
                Event::Control { sender, payload } => {
                    self.seen(sender.leaf_index, now_ms);
                    self.on_control(&sender, &payload, now_ms)
                }
                Event::Chat { .. } | Event::JoinVerified { .. } => {}
            }
        }
    }

    fn on_joined(
        &mut self,
        epoch: u64,
        roster: Vec<RosterEntry>,
        code: String,
        base_key: Vec<u8>,
        now_ms: u64,
    ) {
        self.join_request = None;
        self.join_sent = None;
        self.waiting_since = None;
        // A group we made, or one we knocked on (a person admitted us; we
        // had no secret to check it with), needs no proof.
        let needs_proof = !self.created && self.state == SessionState::Joining;
        self.state = if needs_proof {
            self.verify_since = Some(now_ms);
            self.info("in the group; waiting for its members to prove they hold the invite secret");
            SessionState::Verifying
        } else {
            SessionState::Member
        };
        self.apply_epoch(epoch, roster, code, base_key, now_ms);
        if self.is_member() {
            self.last_sent = now_ms;
        }
        self.plan_self_update(now_ms);
    }

    /// The first self-update after joining, spread by leaf so members do not
    /// all commit at once.
    fn plan_self_update(&mut self, now_ms: u64) {
        if self.is_member() && self.next_self_update.is_none() {
            let spread = u64::from(self.own_leaf.unwrap_or(0) % 60) * 10_000;
            self.next_self_update = Some(now_ms + SELF_UPDATE_MS + spread);
        }
    }

    fn apply_epoch(
        &mut self,
        epoch: u64,
        roster: Vec<RosterEntry>,
        code: String,
        base_key: Vec<u8>,
        now_ms: u64,
    ) {
        self.epoch = Some(epoch);
        // Presence: newcomers count as seen now; leaves gone are forgotten.
        self.last_seen
            .retain(|leaf, _| roster.iter().any(|r| r.leaf_index == *leaf));
        for r in &roster {
            self.last_seen.entry(r.leaf_index).or_insert(now_ms);
        }
        self.own_leaf = self.member.as_ref().and_then(|m| m.own_leaf().ok());
        if let Some(a) = self
            .member
            .as_ref()
            .and_then(|m| m.epoch_authenticator().ok())
        {
            self.authenticators.push_back((epoch, a));
            while self.authenticators.len() > KEPT_AUTHENTICATORS {
                self.authenticators.pop_front();
            }
        }
        for r in &roster {
            if !self.known_names.contains(&r.display_name) {
                self.known_names.push_back(r.display_name.clone());
                if self.known_names.len() > KEPT_NAMES {
                    self.known_names.pop_front();
                }
            }
        }
        let mut roster = roster;
        roster.sort_by_key(|r| r.leaf_index);
        self.roster = roster;
        self.security_code = Some(code);
        if self.state == SessionState::Member {
            self.emit_keys(epoch, base_key);
        }
        self.events.push(SessionEvent::Changed);
    }

    fn emit_keys(&mut self, epoch: u64, base_key: Vec<u8>) {
        if let Some(own_leaf) = self.own_leaf {
            self.events.push(SessionEvent::Keys(Some(EpochKeys {
                epoch,
                own_leaf,
                base_key,
            })));
        }
        if let Some(code) = self.security_code.clone() {
            self.events.push(SessionEvent::SecurityCode {
                epoch,
                code,
                members: self.roster.len(),
            });
        }
    }

    fn on_knock(&mut self, knock_id: u64, joiner: RosterEntry, from: Option<u32>) {
        let key = hex(&joiner.signature_key);
        if let Some(k) = self.knocks.iter_mut().find(|k| k.signature_key == key) {
            k.knock_ids.push(knock_id);
            if from.is_some() {
                k.participant = from;
            }
            return;
        }
        let folded = fold_name(&joiner.display_name);
        let lookalike = !folded.is_empty()
            && (self.known_names.iter().any(|n| fold_name(n) == folded)
                || self.knocks.iter().any(|k| fold_name(&k.name) == folded));
        let info = KnockInfo {
            fingerprint: key_fingerprint(&joiner.signature_key),
            signature_key: key,
            name: joiner.display_name,
            lookalike,
            participant: from,
            knock_ids: vec![knock_id],
        };
        self.events.push(SessionEvent::Knock(info.clone()));
        self.events.push(SessionEvent::Changed);
        self.knocks.push(info);
    }

    /// Our position among the roster's leaves not being removed.
    fn rank(&self) -> u64 {
        let mut leaves: Vec<u32> = self
            .roster
            .iter()
            .map(|r| r.leaf_index)
            .filter(|l| !self.remove_proposed.contains(l))
            .collect();
        leaves.sort_unstable();
        let rank = self
            .own_leaf
            .and_then(|own| leaves.iter().position(|&l| l == own))
            .unwrap_or(leaves.len());
        rank as u64
    }

    // ---- group proofs ---------------------------------------------------

    /// After a commit that added someone: the committer proves the group at
    /// once; other key holders stand by in rank order in case it cannot.
    fn schedule_proof(&mut self, we_committed: bool, share_key: bool, now_ms: u64) {
        if !self.is_member() || !self.has_invite_key() {
            return;
        }
        self.share_key |= share_key;
        let delay = if we_committed {
            0
        } else {
            PROOF_BACKUP_MS + self.rank() * COMMIT_STAGGER_MS
        };
        self.proof_at = Some(now_ms + delay);
    }

    fn has_invite_key(&self) -> bool {
        self.member
            .as_ref()
            .is_some_and(|m| m.invite_key().is_some())
    }

    fn send_proof_if_due(&mut self, now_ms: u64) {
        if self.proof_at.is_none_or(|t| now_ms < t) || self.commit_sent.is_some() {
            return;
        }
        self.proof_at = None;
        let (Some(epoch), true) = (self.epoch, self.is_member()) else {
            return;
        };
        if self.proved_epoch.is_some_and(|p| p >= epoch) && !self.share_key {
            return;
        }
        let Some(member) = self.member.as_mut() else {
            return;
        };
        let Ok(Some(proof)) = member.group_proof() else {
            return;
        };
        let mut payload = Vec::with_capacity(4 + 8 + PROOF_LEN + 1 + 32);
        payload.extend_from_slice(GROUP_PROOF_MAGIC);
        payload.extend_from_slice(&epoch.to_be_bytes());
        payload.extend_from_slice(&proof);
        match member.invite_key().filter(|_| self.share_key) {
            Some(k) => {
                payload.push(1);
                payload.extend_from_slice(&k.to_bytes());
            }
            None => payload.push(0),
        }
        match member.encrypt_control(&payload) {
            Ok(data) => {
                self.out.push(Outgoing::Chat { data });
                self.own_sent.push_back(None);
                self.last_sent = now_ms;
                self.proved_epoch = Some(epoch);
                self.share_key = false;
            }
            Err(Error::CommitPending) => self.proof_at = Some(now_ms),
            Err(e) => self.warn(format!("could not send the group proof: {e}")),
        }
    }

    fn on_control(&mut self, sender: &RosterEntry, payload: &[u8], now_ms: u64) {
        if payload == HEARTBEAT_MAGIC {
            return; // its arrival was the point
        }
        if let Some(body) = payload.strip_prefix(REMOVAL_MAGIC.as_slice()) {
            return self.on_removal_notice(sender, body, now_ms);
        }
        let Some(body) = payload.strip_prefix(GROUP_PROOF_MAGIC.as_slice()) else {
            return; // other control messages are not ours
        };
        let parsed = (|| {
            let epoch = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
            let proof = body.get(8..8 + PROOF_LEN)?;
            let key = match body.get(8 + PROOF_LEN..)? {
                [0] => None,
                [1, k @ ..] if k.len() == 32 => Some(<[u8; 32]>::try_from(k).ok()?),
                _ => return None,
            };
            Some((epoch, proof.to_vec(), key))
        })();
        let Some((epoch, proof, shared_key)) = parsed else {
            self.warn(format!(
                "{} sent a malformed group proof",
                sender.display_name
            ));
            return;
        };
        // A member admitted by knock learns the key here (the message is
        // readable only by the group's members). But any member can send
        // one, with a proof that matches its own key: we take a key only if
        // it matches the commitment in the group context, which the creator
        // set, no commit can change, and every joiner holding the secret
        // checked. So a malicious member cannot plant a key of its own.
        if let (Some(k), Some(member)) = (shared_key, self.member.as_mut()) {
            if member.invite_key().is_none() {
                if member.adopt_invite_key(InviteKey::from_bytes(k)) {
                    self.info("received the meeting's invite key from the group");
                } else {
                    self.warn(format!(
                        "{} shared an invite key that is not the one this group was created with; ignored",
                        sender.display_name
                    ));
                }
            }
        }
        let Some(key) = self.member.as_ref().and_then(|m| m.invite_key().cloned()) else {
            return;
        };
        let Some(authenticator) = self
            .authenticators
            .iter()
            .find(|(e, _)| *e == epoch)
            .map(|(_, a)| a.clone())
        else {
            return; // an epoch we were not in
        };
        if !key.verify_group_proof(&self.room_id, epoch, &authenticator, &proof) {
            self.warn(format!(
                "{} sent a group proof that does not match the invite secret",
                sender.display_name
            ));
            return;
        }
        if self.proved_epoch.is_none_or(|p| p < epoch) {
            self.proved_epoch = Some(epoch);
        }
        if self.epoch == Some(epoch) && !self.share_key {
            self.proof_at = None;
        }
        if self.state == SessionState::Verifying {
            // Knock-admitted members trust the group's invite commitment
            // (above), so we, who can check it, accept only a group whose
            // commitment is to our key.
            if !self
                .member
                .as_ref()
                .is_some_and(Member::invite_key_matches_group)
            {
                self.warn(
                    "the group proved the invite secret but was not created with it; not trusted",
                );
                return;
            }
            self.state = SessionState::Member;
            self.verify_since = None;
            self.info("the group proved that it knows the invite secret");
            self.last_sent = now_ms;
            self.plan_self_update(now_ms);
            if let (Some(epoch), Some(base_key)) = (
                self.epoch,
                self.member.as_ref().and_then(|m| m.sframe_base_key().ok()),
            ) {
                self.emit_keys(epoch, base_key);
            }
            self.events.push(SessionEvent::Changed);
            self.after_processing(now_ms);
        }
    }

    // ---- committing and sending -----------------------------------------

    fn after_processing(&mut self, now_ms: u64) {
        self.flush_chat(now_ms);
        self.send_proof_if_due(now_ms);
        self.announce_removals(now_ms);
        self.send_heartbeat_if_due(now_ms);
        self.remove_silent_members(now_ms);
        if self.state != SessionState::Member
            || self.refused.is_some()
            || self.commit_sent.is_some()
            || self.commit_at.is_some()
            || !self.member.as_ref().is_some_and(Member::has_pending)
        {
            return;
        }
        let ranked = if self.urgent_commit {
            0
        } else {
            self.rank() * COMMIT_STAGGER_MS
        };
        let at = (now_ms + ranked).max(self.backoff_until);
        if at <= now_ms {
            self.commit_now(now_ms);
        } else {
            self.commit_at = Some(at);
        }
    }

    fn commit_now(&mut self, now_ms: u64) {
        self.commit_at = None;
        if self.state != SessionState::Member
            || self.refused.is_some()
            || self.commit_sent.is_some()
        {
            return;
        }
        let Some(member) = self.member.as_mut() else {
            return;
        };
        match member.commit_pending() {
            Ok(Some(c)) => {
                self.out.push(Outgoing::Commit {
                    commit: c.commit,
                    welcome: c.welcome,
                });
                self.commit_sent = Some(now_ms);
                self.urgent_commit = false;
            }
            Ok(None) | Err(Error::CommitPending) => {}
            Err(e) => self.warn(format!("could not commit: {e}")),
        }
    }

    fn flush_chat(&mut self, now_ms: u64) {
        while self.is_member() && self.commit_sent.is_none() {
            let Some((text, sent_at)) = self.chat_queue.front() else {
                return;
            };
            let Some(member) = self.member.as_mut() else {
                return;
            };
            match member.encrypt_chat_at(text, *sent_at) {
                Ok(data) => {
                    let text = self.chat_queue.pop_front();
                    self.own_sent.push_back(text);
                    self.out.push(Outgoing::Chat { data });
                    self.last_sent = now_ms;
                }
                Err(Error::CommitPending) => return,
                Err(e) => {
                    self.chat_queue.pop_front();
                    self.warn(format!(
                        "a chat message could not be encrypted and was not sent: {e}"
                    ));
                }
            }
        }
    }

    // ---- presence and removals ------------------------------------------

    /// Notice a jump of our own clock (we were asleep): then the others'
    /// silence proves nothing, so everyone counts as seen now.
    fn tick(&mut self, now_ms: u64) {
        if self
            .last_tick
            .is_some_and(|t| now_ms.saturating_sub(t) > ASLEEP_MS)
        {
            for t in self.last_seen.values_mut() {
                *t = now_ms;
            }
            self.last_sent = self.last_sent.min(now_ms);
        }
        self.last_tick = Some(now_ms);
    }

    /// An authenticated message or commit from `leaf`: it is in use.
    fn seen(&mut self, leaf: u32, now_ms: u64) {
        if let Some(t) = self.last_seen.get_mut(&leaf) {
            *t = (*t).max(now_ms);
        }
    }

    fn next_heartbeat(&self) -> Option<u64> {
        // While our commit is in flight nothing can be sent; its answer
        // runs the sending again.
        (self.is_member() && self.commit_sent.is_none()).then_some(self.last_sent + PRESENCE_MS)
    }

    /// When the next leaf will have been silent too long (leaves already
    /// being removed do not count, or we would poll in a loop).
    fn next_silence_check(&self) -> Option<u64> {
        if !self.is_member() || self.refused.is_some() {
            return None;
        }
        self.last_seen
            .iter()
            .filter(|(leaf, _)| {
                Some(**leaf) != self.own_leaf && !self.remove_proposed.contains(leaf)
            })
            .map(|(_, t)| t + PRESENCE_TIMEOUT_MS)
            .min()
            // Past what we can judge until our next echo, which rechecks.
            .filter(|&t| t <= self.last_echo + HEARING_MS)
    }

    fn send_heartbeat_if_due(&mut self, now_ms: u64) {
        if !self.is_member() || self.commit_sent.is_some() || now_ms < self.last_sent + PRESENCE_MS
        {
            return;
        }
        let Some(member) = self.member.as_mut() else {
            return;
        };
        match member.encrypt_control(HEARTBEAT_MAGIC) {
            Ok(data) => {
                self.out.push(Outgoing::Chat { data });
                self.own_sent.push_back(None);
                self.last_sent = now_ms;
            }
            Err(Error::CommitPending) => {}
            Err(e) => {
                self.last_sent = now_ms; // try again next period, not in a loop
                self.warn(format!("could not send a heartbeat: {e}"));
            }
        }
    }

    /// Whether the others' silence can be trusted: the server relayed our
    /// own heartbeat back lately. If not, it is we who hear nothing.
    fn hearing(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_echo) <= HEARING_MS
    }

    /// Queue the removal of every leaf silent for [`PRESENCE_TIMEOUT_MS`]:
    /// its connection is gone even if the server does not say so.
    fn remove_silent_members(&mut self, now_ms: u64) {
        if !self.is_member() || self.refused.is_some() || !self.hearing(now_ms) {
            return;
        }
        let mut silent: Vec<u32> = self
            .last_seen
            .iter()
            .filter(|(leaf, t)| {
                Some(**leaf) != self.own_leaf && now_ms >= **t + PRESENCE_TIMEOUT_MS
            })
            .map(|(leaf, _)| *leaf)
            .collect();
        silent.sort_unstable();
        for leaf in silent {
            let Some(member) = self.member.as_mut() else {
                return;
            };
            if member.remove(leaf).is_ok() && self.remove_proposed.insert(leaf) {
                let name = self
                    .roster
                    .iter()
                    .find(|r| r.leaf_index == leaf)
                    .map_or_else(String::new, |r| r.display_name.clone());
                self.info(format!(
                    "{name} has sent nothing for {} s; removing them from the group",
                    PRESENCE_TIMEOUT_MS / 1000
                ));
            }
        }
    }

    /// Send the notices of removals the user asked for, then queue them.
    fn announce_removals(&mut self, now_ms: u64) {
        while self.is_member() && self.commit_sent.is_none() {
            let Some(target) = self.removals_to_announce.first().cloned() else {
                return;
            };
            let (Some(own_leaf), Some(member)) = (self.own_leaf, self.member.as_mut()) else {
                return;
            };
            let mut payload = Vec::with_capacity(8 + target.signature_key.len());
            payload.extend_from_slice(REMOVAL_MAGIC);
            payload.extend_from_slice(&target.leaf_index.to_be_bytes());
            payload.extend_from_slice(&target.signature_key);
            match member.encrypt_control(&payload) {
                Ok(data) => {
                    self.removals_to_announce.remove(0);
                    self.out.push(Outgoing::Chat { data });
                    self.own_sent.push_back(None);
                    self.last_sent = now_ms;
                    if member.remove(target.leaf_index).is_ok() {
                        self.remove_proposed.insert(target.leaf_index);
                        self.urgent_commit = true;
                        self.removal_notices.push(RemovalNotice {
                            by_leaf: own_leaf,
                            by_name: self.name.clone(),
                            target_leaf: target.leaf_index,
                            target_key: target.signature_key,
                            at: now_ms,
                        });
                    }
                }
                Err(Error::CommitPending) => return,
                Err(e) => {
                    self.removals_to_announce.remove(0);
                    self.warn(format!("could not remove {}: {e}", target.display_name));
                }
            }
        }
    }

    /// `"CRM1" || leaf || signature key` from a member: it is about to remove
    /// that member. Kept until the commit (or [`REMOVAL_NOTICE_MS`]).
    fn on_removal_notice(&mut self, sender: &RosterEntry, body: &[u8], now_ms: u64) {
        let parsed = body
            .get(..4)
            .and_then(|l| l.try_into().ok())
            .map(|l| (u32::from_be_bytes(l), &body[4..]));
        let Some((leaf, key)) = parsed.filter(|(leaf, key)| {
            self.roster
                .iter()
                .any(|r| r.leaf_index == *leaf && r.signature_key == *key)
        }) else {
            self.warn(format!(
                "{} sent a removal notice for someone not in the group",
                sender.display_name
            ));
            return;
        };
        // One notice per sender and target (the latest): a member repeating
        // itself cannot grow this list.
        self.removal_notices.retain(|n| {
            now_ms.saturating_sub(n.at) < REMOVAL_NOTICE_MS
                && !(n.by_leaf == sender.leaf_index && n.target_leaf == leaf)
        });
        self.removal_notices.push(RemovalNotice {
            by_leaf: sender.leaf_index,
            by_name: sender.display_name.clone(),
            target_leaf: leaf,
            target_key: key.to_vec(),
            at: now_ms,
        });
    }

    /// Members this commit removed on a member's notice: say who did it.
    fn announce_moderated_removals(
        &mut self,
        committer: u32,
        removed: &[RosterEntry],
        roster: &[RosterEntry],
    ) {
        for r in removed {
            // A rejoin removes the old leaf of someone still in the group.
            if roster.iter().any(|n| n.signature_key == r.signature_key) {
                continue;
            }
            let Some(pos) = self.removal_notices.iter().position(|n| {
                n.by_leaf == committer
                    && n.target_leaf == r.leaf_index
                    && n.target_key == r.signature_key
            }) else {
                continue;
            };
            let notice = self.removal_notices.remove(pos);
            let by = (Some(committer) != self.own_leaf).then_some(notice.by_name);
            self.events.push(SessionEvent::MemberRemoved {
                by,
                name: r.display_name.clone(),
            });
        }
    }

    /// A commit removed our leaf. If its committer told the group it was
    /// removing us, a member decided: we stop. Otherwise (a server proposal,
    /// our silence) we ask to join again, visibly.
    fn on_removed(&mut self, committer: u32, now_ms: u64) {
        let by = self.own_leaf.and_then(|own| {
            self.removal_notices
                .iter()
                .find(|n| n.by_leaf == committer && n.target_leaf == own)
                .map(|n| n.by_name.clone())
        });
        match by {
            Some(by) => {
                self.reset_group_state();
                self.join_request = None;
                self.join_sent = None;
                self.chat_queue.clear();
                self.state = SessionState::Removed;
                self.events.push(SessionEvent::RemovedFromMeeting { by });
                self.events.push(SessionEvent::Changed);
            }
            None => self.resecure("we were removed from the group".into(), now_ms),
        }
    }
}
