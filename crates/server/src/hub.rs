//! The hub: one task that owns every room, the SFU and the UDP socket.
//!
//! Concurrency model: all media and room state lives in this single task, so
//! nothing on the packet path takes a lock. WebSocket tasks send it
//! [`Command`]s over a channel and receive [`ServerMessage`]s on a per-client
//! channel. A slow client whose channel fills up is disconnected rather than
//! allowed to stall the room. One hub serves one core's worth of media; more
//! (per-room shards, several nodes) comes later.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclave_protocol::{ErrorCode, MediaState, ParticipantId, ServerMessage};
use conclave_sfu::{Output, Sfu, SfuConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::delivery::{Out, RoomMls, Signer};
use crate::rooms::Rooms;

/// Messages queued towards one client before it counts as stuck.
pub const CLIENT_QUEUE: usize = 512;
/// Commands queued towards the hub.
const COMMAND_QUEUE: usize = 4096;
/// Datagrams read per wake-up before timers get a turn.
const RECV_BATCH: usize = 64;
/// Largest datagram read; anything longer is truncated and then dropped.
const MAX_DATAGRAM: usize = 2048;

pub type ClientSender = mpsc::Sender<ServerMessage>;

#[derive(Debug)]
pub enum Command {
    Join {
        id: ParticipantId,
        room: String,
        name: String,
        media: MediaState,
        link: ClientSender,
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

pub struct Hub {
    sfu: Sfu,
    rooms: Rooms<ClientSender>,
    /// Each room's MLS delivery state (the server holds no group secret).
    mls: HashMap<String, RoomMls>,
    signer: Signer,
    socket: UdpSocket,
    commands: mpsc::Receiver<Command>,
    datagrams_dropped: u64,
}

impl Hub {
    /// Binds the UDP port and returns the hub (to be `run`) and its handle.
    pub async fn bind(
        udp_bind: SocketAddr,
        udp_public: SocketAddr,
        signer: Signer,
        max_participants: usize,
    ) -> std::io::Result<(Hub, HubHandle, SocketAddr)> {
        let socket = bind_udp(udp_bind)?;
        let bound = socket.local_addr()?;
        // Port 0 means "pick one": announce the port actually bound.
        let public = SocketAddr::new(
            udp_public.ip(),
            if udp_public.port() == 0 {
                bound.port()
            } else {
                udp_public.port()
            },
        );
        let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let hub = Hub {
            sfu: Sfu::new(SfuConfig {
                candidate_addr: public,
            }),
            rooms: Rooms::with_limit(max_participants),
            mls: HashMap::new(),
            signer,
            socket,
            commands,
            datagrams_dropped: 0,
        };
        Ok((hub, HubHandle { tx }, bound))
    }

    pub async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let deadline = self
                .sfu
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(500));
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return };
                    self.handle_command(command);
                }
                received = self.socket.recv_from(&mut buf) => {
                    match received {
                        Ok((n, source)) => self.handle_datagram(source, &buf[..n]),
                        Err(e) => tracing::debug!("udp receive error: {e}"),
                    }
                    for _ in 1..RECV_BATCH {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, source)) => self.handle_datagram(source, &buf[..n]),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => { tracing::debug!("udp receive error: {e}"); break; }
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            self.sfu.handle_timeout(Instant::now());
            self.drain_sfu();
        }
    }

    fn handle_datagram(&mut self, source: SocketAddr, data: &[u8]) {
        if let Err(reason) = self.sfu.handle_datagram(Instant::now(), source, data) {
            self.datagrams_dropped += 1;
            tracing::trace!(%source, ?reason, total = self.datagrams_dropped, "datagram dropped");
        }
        // Drained once per batch of datagrams, after the receive loop.
    }

    fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join {
                id,
                room,
                name,
                media,
                link,
            } => {
                let start = self.mls.get(&room).map_or_else(
                    || RoomMls::default().start_for_next(&self.signer),
                    |m| m.start_for_next(&self.signer),
                );
                match self
                    .rooms
                    .join(id, &room, &name, media, link.clone(), start)
                {
                    Ok(deliveries) => {
                        deliver(deliveries);
                        self.mls.entry(room.clone()).or_default().joined(id);
                        if let Err(e) = self.sfu.add_participant(now, id, &room) {
                            tracing::error!(participant = id, "sfu refused a participant: {e}");
                        }
                        tracing::info!(participant = id, "joined a room");
                    }
                    Err(error) => {
                        let _ = link.try_send(error);
                    }
                }
            }
            Command::Answer { id, sdp } => {
                if let Err(e) = self.sfu.handle_answer(now, id, &sdp) {
                    self.send_to(id, ServerMessage::error(ErrorCode::BadSdp, e.to_string()));
                }
            }
            Command::Media { id, media } => deliver(self.rooms.set_media(id, media)),
            Command::Chat { id, data } => {
                let now = unix_millis();
                self.with_mls(id, |m, _, _| m.chat(id, &data, now));
            }
            Command::GroupCreated { id, group_info } => {
                self.with_mls(id, |m, room, signer| {
                    m.group_created(id, room, &group_info, signer)
                });
            }
            Command::JoinRequest { id, data } => {
                self.with_mls(id, |m, _, signer| m.join_request(id, &data, signer));
            }
            Command::Commit {
                id,
                commit,
                welcome,
            } => {
                self.with_mls(id, |m, _, signer| {
                    m.commit(id, &commit, welcome.as_deref(), signer)
                });
            }
            Command::DenyKnock { id, target } => {
                self.with_mls(id, |m, _, _| m.deny_knock(id, target));
            }
            Command::Leave { id } => self.remove(id),
        }
        self.drain_sfu();
    }

    fn remove(&mut self, id: ParticipantId) {
        self.sfu.remove_participant(Instant::now(), id);
        let room = self.rooms.room_of(id).map(str::to_owned);
        if let Some((_, deliveries)) = self.rooms.leave(id) {
            deliver(deliveries);
            tracing::info!(participant = id, "left");
        }
        if let Some(room) = room {
            if let Some(m) = self.mls.get_mut(&room) {
                let out = m.left(id, &self.signer);
                if m.is_empty() {
                    self.mls.remove(&room);
                }
                self.apply(out);
            }
        }
    }

    /// Runs one MLS delivery step for `id`'s room and carries out its
    /// actions; a refusal goes back to `id` only.
    fn with_mls(
        &mut self,
        id: ParticipantId,
        step: impl FnOnce(&mut RoomMls, &str, &Signer) -> Result<Vec<Out>, ServerMessage>,
    ) {
        let Some(room) = self.rooms.room_of(id).map(str::to_owned) else {
            return;
        };
        let Some(m) = self.mls.get_mut(&room) else {
            return;
        };
        match step(m, &room, &self.signer) {
            Ok(out) => self.apply(out),
            Err(error) => self.send_to(id, error),
        }
    }

    fn apply(&mut self, out: Vec<Out>) {
        for action in out {
            match action {
                Out::To(p, message) => self.send_to(p, message),
                Out::Key(p, key) => deliver(self.rooms.set_key(p, key)),
                Out::Close(p) => {
                    tracing::info!(participant = p, "disconnected by a member's decision");
                    self.remove(p);
                }
            }
        }
    }

    fn send_to(&mut self, id: ParticipantId, message: ServerMessage) {
        let Some(link) = self.rooms.link(id) else {
            return;
        };
        if link.try_send(message).is_err() {
            tracing::info!(
                participant = id,
                "client is not reading its messages; disconnecting it"
            );
            self.remove(id);
        }
    }

    fn drain_sfu(&mut self) {
        while let Some(output) = self.sfu.poll_output() {
            match output {
                Output::Transmit {
                    destination,
                    contents,
                } => {
                    // UDP is lossy anyway: a full send buffer drops the datagram
                    // instead of stalling every room.
                    if let Err(e) = self.socket.try_send_to(&contents, destination) {
                        tracing::trace!(%destination, "udp send failed: {e}");
                    }
                }
                Output::Offer {
                    participant,
                    sdp,
                    mut tracks,
                } => {
                    if self.signer.mislabels_media() {
                        mislabel(&mut tracks);
                    }
                    self.send_to(participant, ServerMessage::Offer { sdp, tracks })
                }
                Output::Tracks {
                    participant,
                    mut tracks,
                } => {
                    if self.signer.mislabels_media() {
                        mislabel(&mut tracks);
                    }
                    self.send_to(participant, ServerMessage::Tracks { tracks })
                }
                Output::Speaking { room, ids } => {
                    for link in self.rooms.links_in(&room) {
                        let _ = link.try_send(ServerMessage::Speaking { ids: ids.clone() });
                    }
                }
                Output::Disconnected { participant } => {
                    tracing::info!(participant, "media connection lost");
                    if let Some(link) = self.rooms.link(participant) {
                        let _ = link.try_send(ServerMessage::error(
                            ErrorCode::MediaFailed,
                            "the media connection was lost",
                        ));
                    }
                    self.remove(participant);
                }
            }
        }
    }
}

/// Kernel socket buffer sizes asked for on the media socket. The default
/// (~200 KiB) overflows in bursts when every participant's keyframe arrives
/// at once; Linux caps the request at net.core.rmem_max / wmem_max.
const SOCKET_BUFFER: usize = 4 << 20;

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::warn!("cannot enlarge the UDP receive buffer: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::warn!("cannot enlarge the UDP send buffer: {e}");
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    tracing::debug!(
        receive = socket.recv_buffer_size().unwrap_or(0),
        send = socket.send_buffer_size().unwrap_or(0),
        "media socket buffers"
    );
    UdpSocket::from_std(socket.into())
}

fn deliver(deliveries: Vec<(&ClientSender, ServerMessage)>) {
    for (link, message) in deliveries {
        // A full queue means a stuck client; its own task notices the
        // closed channel or its socket error and leaves.
        let _ = link.try_send(message);
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Test mode: relabels every subscribed track as the next publisher's (in
/// id order, cyclically), as a malicious server would to show one member's
/// media under another's name.
fn mislabel(tracks: &mut [conclave_protocol::TrackMapping]) {
    use conclave_protocol::TrackDirection;
    let mut publishers: Vec<_> = tracks
        .iter()
        .filter(|t| t.direction == TrackDirection::Subscribe)
        .map(|t| t.participant)
        .collect();
    publishers.sort_unstable();
    publishers.dedup();
    if publishers.len() < 2 {
        return;
    }
    for t in tracks
        .iter_mut()
        .filter(|t| t.direction == TrackDirection::Subscribe)
    {
        if let Some(i) = publishers.iter().position(|&p| p == t.participant) {
            t.participant = publishers[(i + 1) % publishers.len()];
        }
    }
}
