//! Conclave's signaling protocol: every message that crosses the WebSocket
//! between a client and the server, defined once here.
//!
//! The browser's TypeScript types (`web/src/protocol.gen.ts`) are generated
//! from these definitions by `cargo run -p conclave-protocol --bin gen-ts`, and a
//! test fails when the checked-in file drifts from what this crate produces.
//! `docs/protocol.md` describes the flow; this file is the schema.
//!
//! Messages are JSON objects tagged by `type` (snake_case). Validation that
//! only needs the message itself (sizes, names) lives here so the server and
//! the Rust agent apply the same rules.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

mod validate;
pub use validate::{validate_display_name, validate_room_name, ValidationError};

/// Largest WebSocket text message either side accepts, in bytes.
/// SDP for a 50-person room (150 m-lines) stays well below this.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;
/// Longest MLS message (base64 text) the server relays: join requests,
/// commits, Welcomes and GroupInfo of a 100-member group fit comfortably.
pub const MAX_MLS_BYTES: usize = 384 * 1024;
/// Longest join request (base64 text): one KeyPackage with a short name and
/// an invite proof is under 1 KiB; anything much larger is a flood relayed
/// to every member.
pub const MAX_JOIN_REQUEST_BYTES: usize = 8 * 1024;
/// Longest encrypted chat message (base64 text of an MLS application message).
pub const MAX_CHAT_CIPHERTEXT_BYTES: usize = 32 * 1024;
/// Longest chat message, in Unicode scalar values (checked by clients before
/// encrypting: the server only sees ciphertext).
pub const MAX_CHAT_CHARS: usize = 4000;
/// Most participants a `hidden_video` message may list.
pub const MAX_HIDDEN_VIDEO: usize = 1000;
/// Longest display name, in Unicode scalar values.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest room name, in Unicode scalar values.
pub const MAX_ROOM_CHARS: usize = 64;

/// How often the server sends `keepalive` (and pings the WebSocket).
pub const KEEPALIVE_SECONDS: u64 = 10;

/// Server-assigned identifier of a participant, unique within a server run.
pub type ParticipantId = u32;

/// What a media track carries, from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Microphone,
    Camera,
    Screen,
}

impl TrackSource {
    pub const ALL: [TrackSource; 3] = [
        TrackSource::Microphone,
        TrackSource::Camera,
        TrackSource::Screen,
    ];

    pub fn is_audio(self) -> bool {
        matches!(self, TrackSource::Microphone)
    }
}

/// What a participant is currently sending. Drives mute icons and layout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct MediaState {
    pub microphone: bool,
    pub camera: bool,
    pub screen: bool,
}

/// A participant as the server announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    /// The name the participant gave the server. Clients show the name from
    /// the MLS roster; this one is only a claim.
    pub name: String,
    pub media: MediaState,
    /// Hex MLS signature public key (as in the roster) from the participant's latest join
    /// request (or GroupInfo, for the group's creator); `null` before it sent
    /// one. Clients match it against the MLS roster: a participant whose key
    /// is not in the roster is shown as unverified and gets no keys.
    pub key: Option<String>,
}

/// How a participant starts end-to-end encryption (in `welcome` and
/// `create_group`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct E2eeStart {
    /// True: the room has no MLS group yet and this participant creates it
    /// (then sends `group_created`). False: send a `join_request`.
    pub create: bool,
    /// Base64 TLS-serialized MLS ExternalSender of this server, for the new
    /// group's `external_senders` extension (so the server can propose removals).
    pub external_sender: String,
}

/// Whether an m-line carries media from the client to the server or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum TrackDirection {
    /// The client sends its own `source` on this m-line.
    Publish,
    /// The client receives `participant`'s `source` on this m-line.
    Subscribe,
}

/// What one m-line (identified by its `mid`) of the client's peer connection is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct TrackMapping {
    pub mid: String,
    pub direction: TrackDirection,
    pub participant: ParticipantId,
    pub source: TrackSource,
}

/// Messages from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message on a connection: enter `room` as `name`.
    Join {
        room: String,
        name: String,
        media: MediaState,
    },
    /// The answer to the server's latest `offer`.
    Answer { sdp: String },
    /// The client started or stopped sending something (mute, camera off, screen share).
    MediaState { media: MediaState },
    /// A chat message to everyone in the room: base64 MLS application
    /// message (the server cannot read it).
    Chat { data: String },
    /// The creator's new MLS group: base64 GroupInfo with the ratchet tree
    /// extension. Only from the participant told to create.
    GroupCreated { group_info: String },
    /// Base64 join request (KeyPackage, plus invite proof if the joiner has
    /// the link's secret). Relayed to the group's members.
    JoinRequest { data: String },
    /// A member's MLS commit for the current epoch (base64 PublicMessage),
    /// and the Welcome for the members it adds. The first valid commit per
    /// epoch wins; others get `commit_rejected`.
    Commit {
        commit: String,
        welcome: Option<String>,
    },
    /// A member refuses a knocking participant: the server tells it and
    /// closes its connection.
    DenyKnock { id: ParticipantId },
    /// The client's media path broke (network change, outage): the server
    /// sends an `offer` with new ICE credentials (an ICE restart) once no
    /// other offer is outstanding. The call, its MLS group and keys go on.
    IceRestart,
    /// The participants whose video (camera and screen) this client does
    /// not display now: tiles out of view, or the whole page hidden. The
    /// server stops forwarding it and resumes with a keyframe when a
    /// participant is no longer listed; audio always flows. Replaces the
    /// previous list; at most `MAX_HIDDEN_VIDEO` entries.
    HiddenVideo { participants: Vec<ParticipantId> },
    /// Leaving on purpose (closing the socket works too).
    Leave,
    /// First message on a new connection instead of `join`: take over the
    /// session `token` names (from `session` or `resumed`) after the old
    /// connection broke (network change, outage). `received` counts the
    /// server messages the client got on it and its earlier connections,
    /// `keepalive` and `resumed` not counted; the server sends the rest.
    Resume { token: String, received: u64 },
}

/// Why the server refused something. Stable strings the client maps to human text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a known message shape.
    BadMessage,
    /// Larger than `MAX_MESSAGE_BYTES` (or a field over its own limit).
    TooLarge,
    InvalidRoom,
    InvalidName,
    /// A message that needs `join` first.
    NotJoined,
    AlreadyJoined,
    RoomFull,
    /// The client's address already holds as many connections as the server
    /// allows one address (sent before closing the new one).
    TooManyConnections,
    /// An `answer` with no offer outstanding, or SDP the server could not accept.
    BadSdp,
    /// Too many messages in a short time.
    RateLimited,
    /// The media (ICE/DTLS) connection failed or timed out; rejoin.
    MediaFailed,
    /// A member of the meeting refused this participant's request to join.
    KnockDenied,
    /// An MLS message the server could not accept (malformed, wrong epoch, not allowed).
    BadMls,
    /// The session a `resume` named is over (or what the client missed is
    /// no longer kept): join again.
    ResumeFailed,
    Internal,
}

/// Messages from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Reply to `join`: who you are and who is already here.
    Welcome {
        you: ParticipantInfo,
        participants: Vec<ParticipantInfo>,
        e2ee: E2eeStart,
    },
    /// The room's MLS group is gone (its last member left) while this
    /// participant waited to join: create a new one (`e2ee.create` is true).
    CreateGroup {
        e2ee: E2eeStart,
    },
    /// An MLS handshake message for the client to process, in the room's
    /// order: a join request (`from` = who asks), a commit, a proposal
    /// (the server's Remove, `from` = null) or a Welcome for this client.
    Mls {
        from: Option<ParticipantId>,
        data: String,
    },
    /// The client's `commit` was not accepted: `epoch_moved` (another commit
    /// won this epoch; it is on its way) or anything else (malformed).
    CommitRejected {
        reason: String,
    },
    /// A new SDP offer. `tracks` says what every m-line is for; the client
    /// attaches its own tracks to `publish` m-lines and answers with `answer`.
    Offer {
        sdp: String,
        tracks: Vec<TrackMapping>,
    },
    /// The m-lines now carry other tracks, without renegotiation: the SFU
    /// moved a source onto (or off) one of the client's fixed receive slots.
    /// Same meaning as an offer's `tracks` (the whole map; a subscribe
    /// m-line not listed carries nothing); it applies after any offer sent
    /// before it. Media from the new source starts at its next keyframe.
    Tracks {
        tracks: Vec<TrackMapping>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        id: ParticipantId,
    },
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    /// A chat message, in the room's order (`seq` increases by one per room).
    Chat {
        seq: u32,
        from: ParticipantId,
        /// Base64 MLS application message; the sender and text come from decrypting it.
        data: String,
        /// Server time, milliseconds since the Unix epoch.
        sent_at: u64,
    },
    /// Participants currently speaking, loudest first (from RFC 6464 audio levels).
    Speaking {
        ids: Vec<ParticipantId>,
    },
    /// Sent every `KEEPALIVE_SECONDS` so a client can tell a live but quiet
    /// server from one that stopped answering (browsers cannot see WebSocket pings).
    Keepalive,
    /// After `welcome`: the secret that lets a new connection take this
    /// session over if this one breaks (`resume`). Single use.
    Session {
        resume: String,
    },
    /// The `resume` worked: this connection carries the session now. What
    /// the client had not received follows, then everything new. `resume`
    /// is the token for the next time.
    Resumed {
        resume: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}

/// Parses a client message, enforcing the size limit before touching JSON.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ServerMessage> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ServerMessage::error(
            ErrorCode::TooLarge,
            format!(
                "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                text.len()
            ),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        ServerMessage::error(ErrorCode::BadMessage, format!("unreadable message: {e}"))
    })
}

/// The TypeScript module the web client imports, generated from the types above.
pub fn typescript_bindings() -> String {
    let cfg = ts_rs::Config::new().with_large_int("number");
    let decls = [
        <TrackSource as TS>::decl(&cfg),
        <MediaState as TS>::decl(&cfg),
        <ParticipantInfo as TS>::decl(&cfg),
        <E2eeStart as TS>::decl(&cfg),
        <TrackDirection as TS>::decl(&cfg),
        <TrackMapping as TS>::decl(&cfg),
        <ClientMessage as TS>::decl(&cfg),
        <ErrorCode as TS>::decl(&cfg),
        <ServerMessage as TS>::decl(&cfg),
    ];
    let mut out = String::from(
        "// Generated from crates/protocol by `cargo run -p conclave-protocol --bin gen-ts`.\n\
         // Do not edit by hand: a Rust test fails when this file and the Rust types differ.\n\n",
    );
    out.push_str("export type ParticipantId = number;\n\n");
    for decl in decls {
        out.push_str("export ");
        out.push_str(&decl);
        out.push_str("\n\n");
    }
    out.push_str(&format!(
        "export const MAX_MESSAGE_BYTES = {MAX_MESSAGE_BYTES};\n\
         export const MAX_CHAT_CHARS = {MAX_CHAT_CHARS};\n\
         export const MAX_MLS_BYTES = {MAX_MLS_BYTES};\n\
         export const MAX_CHAT_CIPHERTEXT_BYTES = {MAX_CHAT_CIPHERTEXT_BYTES};\n\
         export const MAX_NAME_CHARS = {MAX_NAME_CHARS};\n\
         export const MAX_ROOM_CHARS = {MAX_ROOM_CHARS};\n\
         export const KEEPALIVE_SECONDS = {KEEPALIVE_SECONDS};\n"
    ));
    out
}
