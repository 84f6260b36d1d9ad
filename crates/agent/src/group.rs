//! End-to-end encryption for one participant: the glue between the
//! agent's signaling and the group protocol of `conclave-e2ee`
//! ([`conclave_e2ee::Session`], the same state machine the browser runs as
//! wasm). It decodes base64, turns the session's outgoing messages into
//! `ClientMessage`s and its events into `Notice`s, and converts between the
//! agent's `Instant`s and the session's milliseconds.
//!
//! Nothing here logs keys, plaintext chat of others beyond the notice the
//! operator asked for, or media.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use conclave_e2ee::session::{hex as hex_bytes, ChatMessage};
use conclave_e2ee::{
    Codec, Error as MlsError, FrameInfo, Outgoing, Session, SessionConfig, SessionEvent,
    SessionState,
};
use conclave_protocol::{
    ClientMessage, E2eeStart, ParticipantId, MAX_CHAT_CHARS, MAX_CHAT_CIPHERTEXT_BYTES,
};

use crate::participant::Notice;
use crate::signaling::{InviteSecret, RoomUrl};

/// A commit of ours that is neither echoed nor rejected within this is
/// dropped and redone. Longer than the browser's: an overloaded server
/// running hundreds of agents can take several seconds, and dropping a
/// commit it then accepts costs a rejoin.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Undecryptable media of the epoch after ours for this long means we
/// missed a commit (the session's rule).
pub const MEDIA_AHEAD_REJOIN: Duration =
    Duration::from_millis(conclave_e2ee::session::MEDIA_AHEAD_REJOIN_MS);

/// Lowercase hex, as `ParticipantInfo.key` carries signature keys.
pub fn hex(bytes: &[u8]) -> String {
    hex_bytes(bytes)
}

/// Where the participant is in joining the encrypted group.
pub type GroupState = SessionState;

/// One participant's E2EE session and the agent-side bookkeeping around it.
pub struct Group {
    url: RoomUrl,
    /// The secret was made up here (print the invite link when creating).
    secret_generated: bool,
    admit_knocks: bool,
    session: Session,
    /// When the session's clock reads 0.
    base: Instant,
    /// Chat typed before we are in the group.
    chat_waiting: VecDeque<String>,
    out: Vec<ClientMessage>,
    notices: Vec<Notice>,
    keys_changed: bool,
    members_added: bool,
    /// Since when (and last when) received media was of the epoch after
    /// ours and undecryptable.
    ahead_since: Option<Instant>,
    ahead_last: Option<Instant>,
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
        let session = Session::new(
            name,
            url.room.as_bytes(),
            secret.as_ref().map(InviteSecret::as_bytes),
            SessionConfig {
                commit_timeout_ms: COMMIT_TIMEOUT.as_millis() as u64,
            },
        );
        Group {
            url,
            secret_generated,
            admit_knocks,
            session,
            base: Instant::now(),
            chat_waiting: VecDeque::new(),
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

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Our participant id, from `welcome`.
    pub fn set_me(&mut self, id: ParticipantId) {
        self.me = Some(id);
        self.session.set_me(id);
    }

    pub fn state(&self) -> GroupState {
        self.session.state()
    }

    /// In a verified group, with the current epoch's keys.
    pub fn is_member(&self) -> bool {
        self.session.is_member()
    }

    pub fn epoch(&self) -> Option<u64> {
        self.session.epoch()
    }

    pub fn security_code(&self) -> Option<&str> {
        self.session.security_code()
    }

    pub fn roster_len(&self) -> usize {
        self.session.roster().len()
    }

    /// The leaf of the member with this (hex) signature key, in the current epoch.
    pub fn leaf_of_key(&self, key: &str) -> Option<u32> {
        self.session.leaf_of_key(key)
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

    /// Moves what the session produced into messages and notices.
    fn drain(&mut self, now: Instant) {
        loop {
            if self.session.is_member() {
                while let Some(text) = self.chat_waiting.pop_front() {
                    let ms = self.ms(now);
                    let wall = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    self.session.send_chat(&text, wall, ms);
                }
            }
            let outgoing = self.session.take_outgoing();
            let events = self.session.take_events();
            if outgoing.is_empty() && events.is_empty() {
                break;
            }
            self.drain_once(outgoing, events, now);
        }
        self.commits = self.session.commits;
    }

    fn drain_once(&mut self, outgoing: Vec<Outgoing>, events: Vec<SessionEvent>, now: Instant) {
        for out in outgoing {
            let message = match out {
                Outgoing::GroupCreated { group_info } => ClientMessage::GroupCreated {
                    group_info: B64.encode(group_info),
                },
                Outgoing::JoinRequest { data } => ClientMessage::JoinRequest {
                    data: B64.encode(data),
                },
                Outgoing::Commit { commit, welcome } => ClientMessage::Commit {
                    commit: B64.encode(commit),
                    welcome: welcome.map(|w| B64.encode(w)),
                },
                Outgoing::Chat { data } => {
                    let data = B64.encode(data);
                    if data.len() > MAX_CHAT_CIPHERTEXT_BYTES {
                        self.warn("chat message too long once encrypted; not sent".into());
                        continue;
                    }
                    ClientMessage::Chat { data }
                }
                Outgoing::DenyKnock { participant } => ClientMessage::DenyKnock { id: participant },
            };
            self.out.push(message);
        }
        for event in events {
            match event {
                SessionEvent::Changed => {}
                SessionEvent::Keys(_) => {
                    self.keys_changed = true;
                    self.ahead_since = None;
                    self.ahead_last = None;
                }
                SessionEvent::SecurityCode {
                    epoch,
                    code,
                    members,
                } => self.notices.push(Notice::SecurityCode {
                    epoch,
                    code,
                    members,
                }),
                SessionEvent::InviteSecretCreated(secret) => {
                    self.secret_generated = true;
                    if let Ok(secret) = InviteSecret::from_bytes(secret) {
                        self.notices
                            .push(Notice::InviteLink(self.url.invite_link(&secret)));
                    }
                }
                SessionEvent::Knock(k) => {
                    let ms = self.ms(now);
                    let admitted = self.admit_knocks && self.session.admit(&k.signature_key, ms);
                    self.notices.push(Notice::Knock {
                        name: k.name,
                        fingerprint: k.fingerprint,
                        lookalike: k.lookalike,
                        id: k.participant,
                        admitted,
                    });
                }
                SessionEvent::Admitted { by, name } => self.notices.push(Notice::E2ee(format!(
                    "{name} was admitted without the invite secret by {}",
                    by.as_deref().unwrap_or("us")
                ))),
                SessionEvent::MembersAdded => self.members_added = true,
                SessionEvent::Resecuring { reason } => {
                    self.rejoins += 1;
                    self.keys_changed = true;
                    self.notices.push(Notice::E2ee(format!(
                        "re-securing the call ({reason}); compare the security code again"
                    )));
                }
                SessionEvent::MemberRemoved { by, name } => self.notices.push(Notice::E2ee(
                    format!("{name} was removed by {}", by.as_deref().unwrap_or("us")),
                )),
                SessionEvent::RemovedFromMeeting { by } => {
                    self.keys_changed = true;
                    self.notices.push(Notice::E2ee(format!(
                        "{by} removed us from the meeting; we do not rejoin"
                    )));
                }
                SessionEvent::Refused { reason } => {
                    self.warn(format!("refused a change to the group: {reason}"))
                }
                SessionEvent::Info(text) => self.notices.push(Notice::E2ee(text)),
                SessionEvent::Warning(text) => self.warn(text),
            }
        }
    }

    /// `welcome.e2ee` or `create_group.e2ee`: create the group or ask to join.
    pub fn start(&mut self, start: &E2eeStart, now: Instant, _now_ms: u64) {
        let Ok(sender) = B64.decode(&start.external_sender) else {
            self.warn("the server's external_sender is not base64; ignored".into());
            return;
        };
        let was_idle = self.session.state() == SessionState::Idle;
        let ms = self.ms(now);
        self.session.start(start.create, &sender, ms);
        match self.session.state() {
            SessionState::Knocking if was_idle => self.notices.push(Notice::E2ee(
                "no invite secret in the link: knocking, a member must admit us".into(),
            )),
            SessionState::Joining if was_idle && self.secret_generated => {
                self.notices.push(Notice::E2ee(
                    "no invite secret in the link: unless another participant of this \
                     process created the group, this is a knock a member must admit"
                        .into(),
                ))
            }
            _ => {}
        }
        self.drain(now);
    }

    /// A received frame we had no key for: note whether it is of the epoch
    /// right after ours (then everyone else has moved on without us).
    pub fn frame_without_key(&mut self, codec: Codec, frame: &[u8], now: Instant) {
        let Some(epoch) = self.session.epoch() else {
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
        match (self.session.epoch(), frame_epoch_bits(codec, frame)) {
            (Some(epoch), Some(bits)) => bits != epoch & 0xf,
            _ => false,
        }
    }

    /// A frame decrypted: we are not behind.
    pub fn frame_decrypted(&mut self) {
        self.ahead_since = None;
        self.ahead_last = None;
    }

    /// Rejoin (visibly) if media has been a key generation ahead of us for
    /// `MEDIA_AHEAD_REJOIN` and still is: a commit was lost or withheld.
    pub fn check_media_ahead(&mut self, now: Instant) {
        let (Some(since), Some(last)) = (self.ahead_since, self.ahead_last) else {
            return;
        };
        let (since, last, ms) = (self.ms(since), self.ms(last), self.ms(now));
        self.session.on_media_ahead(since, last, ms);
        self.drain(now);
    }

    /// An `mls` message from the server.
    pub fn on_mls(&mut self, from: Option<ParticipantId>, data: &str, now: Instant, _now_ms: u64) {
        let Ok(bytes) = B64.decode(data) else {
            self.warn("the server sent an mls message that is not base64; ignored".into());
            return;
        };
        let ms = self.ms(now);
        self.session.on_mls(from, &bytes, ms);
        self.drain(now);
    }

    /// `commit_rejected`: drop our commit and try again later.
    pub fn on_commit_rejected(&mut self, reason: &str, now: Instant) {
        let ms = self.ms(now);
        self.session.on_commit_rejected(reason, ms);
        self.drain(now);
    }

    /// A `chat` from the server: the decrypted notice, or `None` for nothing to show.
    pub fn on_chat(
        &mut self,
        seq: u32,
        from: ParticipantId,
        data: &str,
        own: bool,
        _now_ms: u64,
    ) -> Option<Notice> {
        let now = Instant::now();
        let bytes = if own {
            Vec::new()
        } else {
            match B64.decode(data) {
                Ok(b) => b,
                Err(_) => {
                    self.warn(format!("chat #{seq} is not base64; ignored"));
                    return None;
                }
            }
        };
        let ms = self.ms(now);
        let shown = self.session.on_chat(&bytes, own, ms);
        // Say which message could not be read.
        let events = self
            .session
            .take_events()
            .into_iter()
            .map(|e| match e {
                SessionEvent::Warning(w) if w.starts_with("could not decrypt a chat message") => {
                    SessionEvent::Warning(w.replacen(
                        "a chat message",
                        &format!("chat #{seq} from #{from}"),
                        1,
                    ))
                }
                e => e,
            })
            .collect();
        let outgoing = self.session.take_outgoing();
        self.drain_once(outgoing, events, now);
        self.drain(now);
        shown.map(|ChatMessage { name, text, .. }| Notice::Chat {
            seq,
            from,
            name,
            text,
        })
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
        self.chat_waiting.push_back(text);
        self.drain(now);
    }

    /// Refresh our own keys now (a self-update commit): a new epoch.
    pub fn update_keys(&mut self, now: Instant) -> bool {
        let ms = self.ms(now);
        let queued = self.session.update_keys(ms);
        self.drain(now);
        queued
    }

    /// The next time [`Group::poll`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        self.session
            .deadline()
            .map(|ms| self.base + Duration::from_millis(ms))
    }

    /// Timers: staggered commits, the commit watchdog, join request resends,
    /// verification of the group, backup group proofs.
    pub fn poll(&mut self, now: Instant) {
        let ms = self.ms(now);
        self.session.poll(ms);
        self.drain(now);
    }

    /// SFrame-encrypts one outgoing frame into `out`; false (nothing to
    /// send) while we have no verified group keys.
    pub fn encrypt(&mut self, codec: Codec, frame: &[u8], out: &mut Vec<u8>) -> bool {
        self.session.encrypt_frame(codec, frame, out)
    }

    /// Decrypts and authenticates one received frame into `out`.
    pub fn decrypt(
        &mut self,
        codec: Codec,
        frame: &[u8],
        out: &mut Vec<u8>,
        now_ms: u64,
    ) -> Result<FrameInfo, MlsError> {
        self.session.decrypt_frame(codec, frame, out, now_ms)
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
    use conclave_e2ee::Member;

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
        // The queued chat, then the group proof for B (a control message).
        let sent = a.take_messages();
        let [ClientMessage::Chat { .. }, ClientMessage::Chat { data: proof }] = sent.as_slice()
        else {
            panic!("A should send the chat and then the group proof: {sent:?}")
        };
        b.process_incoming(&unb64(&welcome), 0).expect("welcome");
        let events = b.process_incoming(&unb64(proof), 0).expect("proof");
        assert!(
            matches!(events.as_slice(), [conclave_e2ee::Event::Control { payload, .. }] if payload.starts_with(b"CGP1")),
            "{events:?}"
        );
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
