//! JavaScript bindings of `conclave-e2ee` for the browser.
//!
//! This crate exists only to expose the sans-IO core to a Web Worker through
//! `wasm-bindgen`; it holds no logic of its own beyond type conversion:
//! numbers that are `u64` in Rust (epochs, milliseconds) are JS numbers
//! (`f64`, exact below 2^53), binary data is `Uint8Array`, events and rosters
//! are JSON strings (binary fields hex-encoded), errors are thrown `Error`s.
//!
//! Two classes:
//! * [`SframeCtx`] — standalone SFrame for the media Worker: push one base
//!   key per epoch, encrypt/decrypt frames (optionally into a caller buffer).
//! * [`MlsMember`] — the bare MLS participant (interop tests and benches).
//! * [`MlsSession`] — the group protocol the page runs
//!   (`conclave_e2ee::Session`): create or join, commits, group proofs,
//!   knocks, chat. Its output is JSON: `ClientMessage`s ready to send (binary
//!   fields base64, as the signaling protocol has them) and events.
//!
//! There is deliberately no SFrame *encryption* outside [`SframeCtx`]: a
//! second context with the same epoch key would reuse nonces.

use conclave_e2ee::session::{EpochKeys, KnockInfo};
use conclave_e2ee::{
    Codec, Event, Member, Outgoing, RosterEntry, Session, SessionConfig, SessionEvent,
    SessionState, SframeContext,
};
use wasm_bindgen::prelude::*;

fn err(e: conclave_e2ee::Error) -> JsError {
    JsError::new(&e.to_string())
}

fn to_u64(v: f64, what: &str) -> Result<u64, JsError> {
    if (0.0..=9_007_199_254_740_991.0).contains(&v) && v.fract() == 0.0 {
        Ok(v as u64)
    } else {
        Err(JsError::new(&format!(
            "{what} must be a non-negative integer"
        )))
    }
}

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[usize::from(x >> 4)] as char);
        s.push(H[usize::from(x & 15)] as char);
    }
    s
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn roster_json(r: &RosterEntry) -> String {
    format!(
        "{{\"leafIndex\":{},\"displayName\":{},\"signatureKey\":\"{}\"}}",
        if r.leaf_index == u32::MAX {
            "null".to_string()
        } else {
            r.leaf_index.to_string()
        },
        json_str(&r.display_name),
        hex(&r.signature_key)
    )
}

fn list_json(rs: &[RosterEntry]) -> String {
    format!(
        "[{}]",
        rs.iter().map(roster_json).collect::<Vec<_>>().join(",")
    )
}

/// JSON form of one event (`type` field + payload).
pub fn event_json(e: &Event) -> String {
    match e {
        Event::Joined {
            epoch,
            roster,
            security_code,
            sframe_base_key,
        } => format!(
            "{{\"type\":\"joined\",\"epoch\":{epoch},\"roster\":{},\"securityCode\":{},\"sframeBaseKey\":\"{}\"}}",
            list_json(roster),
            json_str(security_code),
            hex(sframe_base_key)
        ),
        Event::EpochChanged {
            epoch,
            roster,
            security_code,
            sframe_base_key,
            added,
            removed,
            admitted_without_secret,
            committer,
        } => format!(
            "{{\"type\":\"epochChanged\",\"epoch\":{epoch},\"roster\":{},\"securityCode\":{},\"sframeBaseKey\":\"{}\",\"added\":{},\"removed\":{},\"admittedWithoutSecret\":{},\"committer\":{committer}}}",
            list_json(roster),
            json_str(security_code),
            hex(sframe_base_key),
            list_json(added),
            list_json(removed),
            list_json(admitted_without_secret)
        ),
        Event::Removed { committer } => format!("{{\"type\":\"removed\",\"committer\":{committer}}}"),
        Event::Chat {
            sender,
            text,
            sent_at_ms,
            counter,
        } => format!(
            "{{\"type\":\"chat\",\"sender\":{},\"text\":{},\"sentAt\":{sent_at_ms},\"counter\":{counter}}}",
            roster_json(sender),
            json_str(text)
        ),
        Event::Control { sender, payload } => format!(
            "{{\"type\":\"control\",\"sender\":{},\"payload\":\"{}\"}}",
            roster_json(sender),
            hex(payload)
        ),
        Event::JoinVerified { joiner } => format!(
            "{{\"type\":\"joinVerified\",\"joiner\":{}}}",
            roster_json(joiner)
        ),
        Event::Knock { knock_id, joiner } => format!(
            "{{\"type\":\"knock\",\"knockId\":{knock_id},\"joiner\":{}}}",
            roster_json(joiner)
        ),
        Event::RemoveProposed {
            leaf_index,
            by_server,
        } => format!(
            "{{\"type\":\"removeProposed\",\"leafIndex\":{leaf_index},\"byServer\":{by_server}}}"
        ),
        Event::CommitDiscarded => "{\"type\":\"commitDiscarded\"}".into(),
    }
}

fn events_json(es: &[Event]) -> String {
    format!(
        "[{}]",
        es.iter().map(event_json).collect::<Vec<_>>().join(",")
    )
}

/// Standalone SFrame context (RFC 9605, suite 0x0004, MLS-derived KIDs).
#[wasm_bindgen]
pub struct SframeCtx {
    inner: SframeContext,
    buf: Vec<u8>,
}

#[wasm_bindgen]
impl SframeCtx {
    /// New context; `own_leaf` is our MLS leaf index (needed to send).
    #[wasm_bindgen(constructor)]
    pub fn new(own_leaf: Option<u32>) -> SframeCtx {
        SframeCtx {
            inner: SframeContext::new(own_leaf),
            buf: Vec::new(),
        }
    }

    /// Context with one epoch's base key installed (tests, interop).
    #[wasm_bindgen(js_name = fromBaseKey)]
    pub fn from_base_key(base_key: &[u8], epoch: f64, own_leaf: u32) -> Result<SframeCtx, JsError> {
        Ok(SframeCtx {
            inner: SframeContext::from_base_key(base_key, to_u64(epoch, "epoch")?, own_leaf)
                .map_err(err)?,
            buf: Vec::new(),
        })
    }

    /// Set our leaf index (after join/rejoin).
    #[wasm_bindgen(js_name = setOwnLeaf)]
    pub fn set_own_leaf(&mut self, leaf: Option<u32>) {
        self.inner.set_own_leaf(leaf);
    }

    /// Install an epoch's 16-byte base key at time `now_ms`.
    #[wasm_bindgen(js_name = setEpochKey)]
    pub fn set_epoch_key(
        &mut self,
        epoch: f64,
        base_key: &[u8],
        now_ms: f64,
    ) -> Result<(), JsError> {
        self.inner
            .set_epoch_key(
                to_u64(epoch, "epoch")?,
                base_key,
                to_u64(now_ms.floor(), "now_ms")?,
            )
            .map_err(err)
    }

    /// How long old epochs stay decryptable after a new one (default 5000).
    #[wasm_bindgen(js_name = setRetentionMs)]
    pub fn set_retention_ms(&mut self, ms: f64) -> Result<(), JsError> {
        self.inner.set_retention_ms(to_u64(ms, "ms")?);
        Ok(())
    }

    /// Drop all keys.
    pub fn clear(&mut self) {
        self.inner.clear();
    }

    /// Encrypt a frame; codec 0 = Opus, 1 = VP8, 2 = opaque.
    pub fn encrypt(&mut self, codec: u8, frame: &[u8]) -> Result<Vec<u8>, JsError> {
        let c = Codec::from_u8(codec).map_err(err)?;
        self.inner.encrypt(c, frame, &mut self.buf).map_err(err)?;
        Ok(self.buf.clone())
    }

    /// Encrypt into a caller buffer (needs `frame.length + 33` bytes); returns the length.
    #[wasm_bindgen(js_name = encryptInto)]
    pub fn encrypt_into(
        &mut self,
        codec: u8,
        frame: &[u8],
        out: &mut [u8],
    ) -> Result<usize, JsError> {
        let c = Codec::from_u8(codec).map_err(err)?;
        self.inner.encrypt(c, frame, &mut self.buf).map_err(err)?;
        copy_out(&self.buf, out)
    }

    /// Decrypt a frame received at `now_ms`; returns the original frame.
    pub fn decrypt(&mut self, codec: u8, frame: &[u8], now_ms: f64) -> Result<Vec<u8>, JsError> {
        let c = Codec::from_u8(codec).map_err(err)?;
        self.inner
            .decrypt(c, frame, &mut self.buf, to_u64(now_ms.floor(), "now_ms")?)
            .map_err(err)?;
        Ok(self.buf.clone())
    }

    /// Decrypt into a caller buffer (needs `frame.length` bytes); returns the length.
    #[wasm_bindgen(js_name = decryptInto)]
    pub fn decrypt_into(
        &mut self,
        codec: u8,
        frame: &[u8],
        out: &mut [u8],
        now_ms: f64,
    ) -> Result<usize, JsError> {
        let c = Codec::from_u8(codec).map_err(err)?;
        self.inner
            .decrypt(c, frame, &mut self.buf, to_u64(now_ms.floor(), "now_ms")?)
            .map_err(err)?;
        copy_out(&self.buf, out)
    }

    /// Sender leaf index encoded in a protected frame's KID (no decryption).
    #[wasm_bindgen(js_name = senderLeaf)]
    pub fn sender_leaf(codec: u8, frame: &[u8]) -> Result<u32, JsError> {
        let c = Codec::from_u8(codec).map_err(err)?;
        let p = c.clear_prefix_len(frame).map_err(err)?;
        let rest = frame.get(p..).ok_or_else(|| JsError::new("short frame"))?;
        let (kid, _, _) = conclave_e2ee::sframe::decode_header(rest).map_err(err)?;
        Ok(conclave_e2ee::sframe::split_kid(kid).map_err(err)?.0)
    }
}

fn copy_out(src: &[u8], out: &mut [u8]) -> Result<usize, JsError> {
    let dst = out
        .get_mut(..src.len())
        .ok_or_else(|| JsError::new("output buffer too small"))?;
    dst.copy_from_slice(src);
    Ok(src.len())
}

/// One MLS participant (see `conclave_e2ee::Member`).
#[wasm_bindgen]
pub struct MlsMember {
    inner: Member,
    welcome: Option<Vec<u8>>,
    buf: Vec<u8>,
}

#[wasm_bindgen]
impl MlsMember {
    /// New participant; `invite_secret` from the link fragment, if any.
    #[wasm_bindgen(constructor)]
    pub fn new(
        display_name: &str,
        room_id: &[u8],
        invite_secret: Option<Vec<u8>>,
    ) -> Result<MlsMember, JsError> {
        Ok(MlsMember {
            inner: Member::new(display_name, room_id, invite_secret.as_deref()).map_err(err)?,
            welcome: None,
            buf: Vec::new(),
        })
    }

    /// A join request (KeyPackage + invite proof if we hold the secret).
    #[wasm_bindgen(js_name = joinRequest)]
    pub fn join_request(&mut self) -> Result<Vec<u8>, JsError> {
        self.inner.join_request().map_err(err)
    }

    /// Drop group state and make a new join request (after a missed commit).
    #[wasm_bindgen(js_name = rejoinRequest)]
    pub fn rejoin_request(&mut self) -> Result<Vec<u8>, JsError> {
        self.inner.rejoin_request().map_err(err)
    }

    /// Create the group; `external_sender` is the server's serialized
    /// ExternalSender. Returns events JSON.
    #[wasm_bindgen(js_name = createGroup)]
    pub fn create_group(
        &mut self,
        external_sender: Option<Vec<u8>>,
        now_ms: f64,
    ) -> Result<String, JsError> {
        let senders: Vec<Vec<u8>> = external_sender.into_iter().collect();
        let ev = self
            .inner
            .create_group(&senders, to_u64(now_ms.floor(), "now_ms")?)
            .map_err(err)?;
        Ok(events_json(&ev))
    }

    /// The group's public GroupInfo (with ratchet tree) for the server.
    #[wasm_bindgen(js_name = groupInfo)]
    pub fn group_info(&self) -> Result<Vec<u8>, JsError> {
        self.inner.group_info().map_err(err)
    }

    /// Whether queued Adds/Removes or stored proposals wait for a commit.
    #[wasm_bindgen(js_name = hasPending)]
    pub fn has_pending(&self) -> bool {
        self.inner.has_pending()
    }

    /// Process a message from the server; returns events JSON.
    #[wasm_bindgen(js_name = processIncoming)]
    pub fn process_incoming(&mut self, bytes: &[u8], now_ms: f64) -> Result<String, JsError> {
        let ev = self
            .inner
            .process_incoming(bytes, to_u64(now_ms.floor(), "now_ms")?)
            .map_err(err)?;
        Ok(events_json(&ev))
    }

    /// Commit queued changes; returns the commit (or undefined). The Welcome,
    /// if any, is then available from `takeWelcome()`.
    #[wasm_bindgen(js_name = commitPending)]
    pub fn commit_pending(&mut self) -> Result<Option<Vec<u8>>, JsError> {
        match self.inner.commit_pending().map_err(err)? {
            Some(o) => {
                self.welcome = o.welcome;
                Ok(Some(o.commit))
            }
            None => Ok(None),
        }
    }

    /// The Welcome of the last commit, if any.
    #[wasm_bindgen(js_name = takeWelcome)]
    pub fn take_welcome(&mut self) -> Option<Vec<u8>> {
        self.welcome.take()
    }

    /// Apply our pending commit (DS accepted it without echo); events JSON.
    #[wasm_bindgen(js_name = confirmCommit)]
    pub fn confirm_commit(&mut self, now_ms: f64) -> Result<String, JsError> {
        let ev = self
            .inner
            .confirm_commit(to_u64(now_ms.floor(), "now_ms")?)
            .map_err(err)?;
        Ok(events_json(&ev))
    }

    /// Drop our pending commit (DS rejected it).
    #[wasm_bindgen(js_name = discardPendingCommit)]
    pub fn discard_pending_commit(&mut self) -> Result<(), JsError> {
        self.inner.discard_pending_commit().map_err(err)
    }

    /// Make the next commit refresh our leaf keys (call periodically).
    #[wasm_bindgen(js_name = requestSelfUpdate)]
    pub fn request_self_update(&mut self) -> Result<(), JsError> {
        self.inner.request_self_update().map_err(err)
    }

    /// Admit a knocking joiner.
    pub fn admit(&mut self, knock_id: f64) -> Result<(), JsError> {
        self.inner.admit(to_u64(knock_id, "knockId")?).map_err(err)
    }

    /// Reject a knocking joiner.
    pub fn reject(&mut self, knock_id: f64) -> Result<(), JsError> {
        self.inner.reject(to_u64(knock_id, "knockId")?).map_err(err)
    }

    /// Queue removal of a member.
    pub fn remove(&mut self, leaf_index: u32) -> Result<(), JsError> {
        self.inner.remove(leaf_index).map_err(err)
    }

    /// Propose our own removal; returns the proposal to send.
    pub fn leave(&mut self) -> Result<Vec<u8>, JsError> {
        self.inner.leave().map_err(err)
    }

    /// Encrypt a chat message.
    #[wasm_bindgen(js_name = encryptChat)]
    pub fn encrypt_chat(&mut self, text: &str) -> Result<Vec<u8>, JsError> {
        self.inner.encrypt_chat(text).map_err(err)
    }

    /// Encrypt a control message.
    #[wasm_bindgen(js_name = encryptControl)]
    pub fn encrypt_control(&mut self, payload: &[u8]) -> Result<Vec<u8>, JsError> {
        self.inner.encrypt_control(payload).map_err(err)
    }

    /// Roster JSON.
    pub fn roster(&self) -> Result<String, JsError> {
        Ok(list_json(&self.inner.roster().map_err(err)?))
    }

    /// Current epoch.
    pub fn epoch(&self) -> Result<f64, JsError> {
        Ok(self.inner.epoch().map_err(err)? as f64)
    }

    /// Our leaf index.
    #[wasm_bindgen(js_name = ownLeaf)]
    pub fn own_leaf(&self) -> Result<u32, JsError> {
        self.inner.own_leaf().map_err(err)
    }

    /// Security code of the current epoch.
    #[wasm_bindgen(js_name = securityCode)]
    pub fn security_code(&self) -> Result<String, JsError> {
        self.inner.security_code().map_err(err)
    }

    /// Epoch authenticator bytes.
    #[wasm_bindgen(js_name = epochAuthenticator)]
    pub fn epoch_authenticator(&self) -> Result<Vec<u8>, JsError> {
        self.inner.epoch_authenticator().map_err(err)
    }

    /// SFrame base key of the current epoch (to push into a media Worker's `SframeCtx`).
    #[wasm_bindgen(js_name = sframeBaseKey)]
    pub fn sframe_base_key(&self) -> Result<Vec<u8>, JsError> {
        self.inner.sframe_base_key().map_err(err)
    }

    /// Decrypt a frame with this member's own SFrame context.
    #[wasm_bindgen(js_name = sframeDecrypt)]
    pub fn sframe_decrypt(
        &mut self,
        codec: u8,
        frame: &[u8],
        now_ms: f64,
    ) -> Result<Vec<u8>, JsError> {
        let c = Codec::from_u8(codec).map_err(err)?;
        self.inner
            .sframe_decrypt(c, frame, &mut self.buf, to_u64(now_ms.floor(), "now_ms")?)
            .map_err(err)?;
        Ok(self.buf.clone())
    }
}

/// Standard base64 with padding (what the signaling protocol carries).
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                s.push(A[((n >> shift) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn opt_num<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |x| x.to_string())
}

fn opt_str(v: Option<&str>) -> String {
    v.map_or_else(|| "null".to_string(), json_str)
}

/// JSON of one outgoing message, in the signaling protocol's shape.
pub fn outgoing_json(o: &Outgoing) -> String {
    match o {
        Outgoing::GroupCreated { group_info } => format!(
            "{{\"type\":\"group_created\",\"group_info\":\"{}\"}}",
            b64(group_info)
        ),
        Outgoing::JoinRequest { data } => {
            format!("{{\"type\":\"join_request\",\"data\":\"{}\"}}", b64(data))
        }
        Outgoing::Commit { commit, welcome } => format!(
            "{{\"type\":\"commit\",\"commit\":\"{}\",\"welcome\":{}}}",
            b64(commit),
            welcome
                .as_ref()
                .map_or_else(|| "null".to_string(), |w| format!("\"{}\"", b64(w)))
        ),
        Outgoing::Chat { data } => format!("{{\"type\":\"chat\",\"data\":\"{}\"}}", b64(data)),
        Outgoing::DenyKnock { participant } => {
            format!("{{\"type\":\"deny_knock\",\"id\":{participant}}}")
        }
    }
}

fn keys_json(k: &Option<EpochKeys>) -> String {
    match k {
        None => "null".into(),
        Some(k) => format!(
            "{{\"epoch\":{},\"ownLeaf\":{},\"baseKey\":\"{}\"}}",
            k.epoch,
            k.own_leaf,
            hex(&k.base_key)
        ),
    }
}

fn knock_json(k: &KnockInfo) -> String {
    format!(
        "{{\"signatureKey\":\"{}\",\"name\":{},\"fingerprint\":{},\"lookalike\":{},\"participantId\":{}}}",
        k.signature_key,
        json_str(&k.name),
        json_str(&k.fingerprint),
        k.lookalike,
        opt_num(k.participant)
    )
}

/// JSON of one session event (`type` field + payload).
pub fn session_event_json(e: &SessionEvent) -> String {
    match e {
        SessionEvent::Changed => "{\"type\":\"changed\"}".into(),
        SessionEvent::Keys(k) => format!("{{\"type\":\"keys\",\"key\":{}}}", keys_json(k)),
        SessionEvent::SecurityCode {
            epoch,
            code,
            members,
        } => format!(
            "{{\"type\":\"securityCode\",\"epoch\":{epoch},\"code\":{},\"members\":{members}}}",
            json_str(code)
        ),
        SessionEvent::InviteSecretCreated(secret) => format!(
            "{{\"type\":\"inviteSecretCreated\",\"secret\":\"{}\"}}",
            hex(secret)
        ),
        SessionEvent::Knock(k) => format!("{{\"type\":\"knock\",\"knock\":{}}}", knock_json(k)),
        SessionEvent::Admitted { by, name } => format!(
            "{{\"type\":\"admitted\",\"by\":{},\"name\":{}}}",
            opt_str(by.as_deref()),
            json_str(name)
        ),
        SessionEvent::MembersAdded => "{\"type\":\"membersAdded\"}".into(),
        SessionEvent::Resecuring { reason } => format!(
            "{{\"type\":\"resecuring\",\"reason\":{}}}",
            json_str(reason)
        ),
        SessionEvent::MemberRemoved { by, name } => format!(
            "{{\"type\":\"memberRemoved\",\"by\":{},\"name\":{}}}",
            opt_str(by.as_deref()),
            json_str(name)
        ),
        SessionEvent::RemovedFromMeeting { by } => format!(
            "{{\"type\":\"removedFromMeeting\",\"by\":{}}}",
            json_str(by)
        ),
        SessionEvent::Refused { reason } => {
            format!("{{\"type\":\"refused\",\"reason\":{}}}", json_str(reason))
        }
        SessionEvent::Info(t) => format!("{{\"type\":\"info\",\"text\":{}}}", json_str(t)),
        SessionEvent::Warning(t) => format!("{{\"type\":\"warning\",\"text\":{}}}", json_str(t)),
    }
}

fn state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::Idle => "idle",
        SessionState::Joining => "joining",
        SessionState::Knocking => "knocking",
        SessionState::Verifying => "verifying",
        SessionState::Member => "member",
        SessionState::Failed => "failed",
        SessionState::Removed => "removed",
    }
}

fn ms(v: f64) -> u64 {
    // Times come from Date.now(): finite and positive; clamp anything else.
    if v.is_finite() && v > 0.0 {
        v.floor() as u64
    } else {
        0
    }
}

/// A sender's chat time is any u64 another member chose: shown only if
/// within a day of our clock (else 0, and the page shows the server's time).
/// A far-off value would otherwise make the page's `Date` throw.
fn shown_time(sent_at_ms: u64, now_ms: u64) -> u64 {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    if sent_at_ms.abs_diff(now_ms) <= DAY_MS {
        sent_at_ms
    } else {
        0
    }
}

/// The page's E2EE session (see `conclave_e2ee::Session`).
#[wasm_bindgen]
pub struct MlsSession {
    inner: Session,
}

#[wasm_bindgen]
impl MlsSession {
    /// New session; `invite_secret` from the link fragment, if any.
    #[wasm_bindgen(constructor)]
    pub fn new(display_name: &str, room_id: &[u8], invite_secret: Option<Vec<u8>>) -> MlsSession {
        MlsSession {
            inner: Session::new(
                display_name,
                room_id,
                invite_secret.as_deref(),
                SessionConfig::default(),
            ),
        }
    }

    /// Our participant id (from `welcome`).
    #[wasm_bindgen(js_name = setMe)]
    pub fn set_me(&mut self, id: u32) {
        self.inner.set_me(id);
    }

    /// `welcome.e2ee` / `create_group.e2ee`.
    pub fn start(&mut self, create: bool, external_sender: &[u8], now_ms: f64) {
        self.inner.start(create, external_sender, ms(now_ms));
    }

    /// A server `mls` message.
    #[wasm_bindgen(js_name = onMls)]
    pub fn on_mls(&mut self, from: Option<u32>, data: &[u8], now_ms: f64) {
        self.inner.on_mls(from, data, ms(now_ms));
    }

    /// A server `commit_rejected`.
    #[wasm_bindgen(js_name = onCommitRejected)]
    pub fn on_commit_rejected(&mut self, reason: &str, now_ms: f64) {
        self.inner.on_commit_rejected(reason, ms(now_ms));
    }

    /// A server `chat`: JSON `{name, text, leaf, key, sentAt, counter}` to
    /// show, or undefined. `key` (hex, or null for our own echo or if
    /// unknown) is the sender's signature key in the message's epoch: with
    /// `leaf`, the sender session `counter` counts in.
    #[wasm_bindgen(js_name = onChat)]
    pub fn on_chat(&mut self, data: &[u8], own: bool, now_ms: f64) -> Option<String> {
        let now = ms(now_ms);
        self.inner.on_chat(data, own, now).map(|m| {
            format!(
                "{{\"name\":{},\"text\":{},\"leaf\":{},\"key\":{},\"sentAt\":{},\"counter\":{}}}",
                json_str(&m.name),
                json_str(&m.text),
                opt_num(m.leaf),
                opt_str(m.sender_key.as_deref().map(hex).as_deref()),
                shown_time(m.sent_at_ms, now),
                opt_num(m.counter)
            )
        })
    }

    /// The server says this participant left.
    #[wasm_bindgen(js_name = participantLeft)]
    pub fn participant_left(&mut self, id: u32) {
        self.inner.participant_left(id);
    }

    /// The media Worker saw next-epoch frames it could not decrypt.
    #[wasm_bindgen(js_name = onMediaAhead)]
    pub fn on_media_ahead(&mut self, since_ms: f64, last_ms: f64, now_ms: f64) {
        self.inner
            .on_media_ahead(ms(since_ms), ms(last_ms), ms(now_ms));
    }

    /// Queue a chat message; false when the call is not secured. The page's
    /// clock is the wall clock, so `now_ms` is also the send time shown.
    #[wasm_bindgen(js_name = sendChat)]
    pub fn send_chat(&mut self, text: &str, now_ms: f64) -> bool {
        self.inner.send_chat(text, ms(now_ms), ms(now_ms))
    }

    /// Admit a knock by signature key (hex).
    pub fn admit(&mut self, signature_key: &str, now_ms: f64) -> bool {
        self.inner.admit(signature_key, ms(now_ms))
    }

    /// Deny a knock by signature key (hex).
    pub fn deny(&mut self, signature_key: &str) -> bool {
        self.inner.deny(signature_key)
    }

    /// Remove a member (by signature key, hex) from the meeting; false if
    /// they are not a member of our verified group.
    #[wasm_bindgen(js_name = removeMember)]
    pub fn remove_member(&mut self, signature_key: &str, now_ms: f64) -> bool {
        self.inner.remove_member(signature_key, ms(now_ms))
    }

    /// Run due timers.
    pub fn poll(&mut self, now_ms: f64) {
        self.inner.poll(ms(now_ms));
    }

    /// When to call `poll` next (ms, same clock as the inputs), if ever.
    pub fn deadline(&self) -> Option<f64> {
        self.inner.deadline().map(|d| d as f64)
    }

    /// What the session produced since the last call:
    /// `{"out": [ClientMessage…], "events": [event…]}`.
    pub fn drain(&mut self) -> String {
        let out: Vec<String> = self
            .inner
            .take_outgoing()
            .iter()
            .map(outgoing_json)
            .collect();
        let events: Vec<String> = self
            .inner
            .take_events()
            .iter()
            .map(session_event_json)
            .collect();
        format!(
            "{{\"out\":[{}],\"events\":[{}]}}",
            out.join(","),
            events.join(",")
        )
    }

    /// The state the UI shows, as JSON: `state`, `epoch`, `securityCode`,
    /// `ownLeaf`, `roster`, `knocks`, `refused`, `hasSecret`, `waitingSince`.
    pub fn snapshot(&self) -> String {
        let s = &self.inner;
        format!(
            "{{\"state\":\"{}\",\"epoch\":{},\"securityCode\":{},\"ownLeaf\":{},\"roster\":{},\"knocks\":[{}],\"refused\":{},\"hasSecret\":{},\"waitingSince\":{}}}",
            state_name(s.state()),
            opt_num(s.epoch()),
            opt_str(s.security_code()),
            opt_num(s.own_leaf()),
            list_json(s.roster()),
            s.knocks().iter().map(knock_json).collect::<Vec<_>>().join(","),
            opt_str(s.refused()),
            s.has_secret(),
            opt_num(s.waiting_since())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_times_far_from_our_clock_are_not_shown() {
        let now = 1_800_000_000_000;
        assert_eq!(shown_time(now - 5_000, now), now - 5_000);
        assert_eq!(shown_time(u64::MAX, now), 0);
        assert_eq!(shown_time(0, now), 0);
        assert_eq!(shown_time(now + 2 * 24 * 3_600_000, now), 0);
    }

    #[test]
    fn json_escaping_and_hex_are_correct() {
        assert_eq!(json_str("a\"b\\\n"), "\"a\\\"b\\\\\\u000a\"");
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (&[0xfb, 0xff][..], "+/8="),
        ] {
            assert_eq!(b64(raw), enc);
        }
        let e = Event::Knock {
            knock_id: 3,
            joiner: RosterEntry {
                leaf_index: u32::MAX,
                display_name: "Eve".into(),
                signature_key: vec![1],
            },
        };
        assert_eq!(
            event_json(&e),
            "{\"type\":\"knock\",\"knockId\":3,\"joiner\":{\"leafIndex\":null,\"displayName\":\"Eve\",\"signatureKey\":\"01\"}}"
        );
    }
}
