//! The hub: how the server's state is split between tasks, and how
//! signaling reaches it.
//!
//! Two parts, so that neither signaling nor MLS work can queue ahead of media:
//! - the **control** task (`control`) owns the rooms and every client's
//!   link and decides what goes to whom; each room's MLS delivery service
//!   runs on a task of its own (`delivery_task`), its checks on tokio's
//!   blocking pool, so a room's MLS flood holds up neither media nor other
//!   rooms' MLS work;
//! - the **media** threads (`media`) own the SFU's participants and the UDP
//!   port's sockets, one thread per core, so the packet path takes no lock
//!   and waits for no other work.
//!
//! WebSocket tasks send control [`Command`]s over a bounded channel and
//! receive [`ServerMessage`]s on a per-client channel (the link), which
//! only control writes to. Control tells media who joined and left and
//! passes on SDP answers; media hands control the offers, track maps,
//! speaking changes and failures to tell clients. Ordering follows from the
//! channels: control queues a participant's welcome before telling media
//! about it, so its offer (and so its answer) comes after.

use std::sync::Arc;

use conclave_protocol::{MediaState, ParticipantId, ServerMessage};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::control::Control;
use crate::delivery::Signer;
use crate::media::{Bound, MediaAddrs};
use crate::session::Outbox;

/// Messages queued towards one client before it counts as stuck.
pub const CLIENT_QUEUE: usize = 512;
/// Commands queued towards control.
const COMMAND_QUEUE: usize = 4096;

pub type ClientSender = mpsc::Sender<ServerMessage>;

/// A session handed to the connection that resumes it.
pub struct Resumption {
    pub id: ParticipantId,
    pub outbox: Arc<Outbox>,
    /// The token for the next resume.
    pub token: String,
}

pub enum Command {
    /// `link` feeds `outbox`'s queue; `taken_over` wakes the connection
    /// when another one resumes the session.
    Join {
        id: ParticipantId,
        room: String,
        name: String,
        media: MediaState,
        link: ClientSender,
        outbox: Arc<Outbox>,
        taken_over: Arc<Notify>,
    },
    /// Connection `conn` asks for the session `token` names; `None` if
    /// there is none.
    Resume {
        conn: ParticipantId,
        token: String,
        taken_over: Arc<Notify>,
        reply: oneshot::Sender<Option<Resumption>>,
    },
    /// Connection `conn`, which carried `id`'s session, ended: `broken`
    /// (no close; a network change or outage) leaves the session waiting
    /// for a resume, anything else ends it.
    Disconnected {
        id: ParticipantId,
        conn: ParticipantId,
        broken: bool,
    },
    Answer {
        id: ParticipantId,
        sdp: String,
    },
    Media {
        id: ParticipantId,
        media: MediaState,
    },
    /// Encrypted chat (an MLS application message, base64).
    Chat {
        id: ParticipantId,
        data: String,
    },
    GroupCreated {
        id: ParticipantId,
        group_info: String,
    },
    JoinRequest {
        id: ParticipantId,
        data: String,
    },
    Commit {
        id: ParticipantId,
        commit: String,
        welcome: Option<String>,
    },
    DenyKnock {
        id: ParticipantId,
        target: ParticipantId,
    },
    /// The client's media path broke: restart ICE with a new offer.
    IceRestart {
        id: ParticipantId,
    },
    /// Whose video the client does not display now.
    HiddenVideo {
        id: ParticipantId,
        participants: Vec<ParticipantId>,
    },
    /// The client left or its connection closed.
    Leave {
        id: ParticipantId,
    },
}

#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Command>,
}

impl HubHandle {
    pub async fn send(&self, command: Command) -> bool {
        self.tx.send(command).await.is_ok()
    }
}

/// Binds the media ports (UDP, and TCP for ICE-TCP), starts `media_threads`
/// media threads and the control task (on the current runtime), and returns
/// the handle for signaling and the addresses bound.
pub fn start(
    media_addrs: MediaAddrs,
    media_threads: usize,
    signer: Signer,
    max_participants: usize,
) -> Result<(HubHandle, Bound), String> {
    let (media_events, from_media) = mpsc::unbounded_channel();
    let (media, bound) = crate::media::start(media_addrs, media_threads, media_events)?;
    let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let control = Control::new(signer, max_participants, commands, from_media, media);
    tokio::spawn(control.run());
    Ok((HubHandle { tx }, bound))
}
