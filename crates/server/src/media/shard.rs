//! One media thread: an SFU state machine for the participants it owns, its
//! socket of the media port, and its links to the other media threads.
//!
//! Each loop turn takes one kind of input (a command from control, a batch
//! from another thread, datagrams from the socket, or a timer), runs the
//! SFU's timers, then sends what the SFU produced: datagrams in `sendmmsg`
//! batches, one message per other thread with everything for it (datagrams
//! of its participants read here, packets its subscribers need, keyframe
//! requests, confirmed addresses), and control's messages.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_protocol::{ParticipantId, TrackSource};
use conclave_sfu::{KeyframeRequestKind, Output, RelayedPacket, Sfu, SfuConfig, Transport};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::routing::{Route, Routing, UfragAliases};
use super::tcp::{FromShard, TcpFrames};
use super::udp::{self, RecvBatch, SendLoss, BATCH};
use super::FromMedia;

/// `recvmmsg` calls per wake-up before commands and timers get a turn
/// (`BATCH` datagrams each).
const RECV_ROUNDS: usize = 2;
/// Batches queued from the other threads before more are dropped (like a
/// full socket buffer: the sender never waits).
const INBOX_QUEUE: usize = 1024;
/// Inbox batches taken per wake-up.
const INBOX_ROUNDS: usize = 16;

#[derive(Debug)]
pub enum ShardCommand {
    /// A participant joined `room`; `owner` is the thread that owns it
    /// (every thread hears of every join).
    Join {
        id: ParticipantId,
        room: String,
        owner: usize,
    },
    /// Only to the owner.
    Answer {
        id: ParticipantId,
        sdp: String,
    },
    Leave {
        id: ParticipantId,
    },
    /// Only to the owner: offer the participant an ICE restart.
    IceRestart {
        id: ParticipantId,
    },
    /// Only to the owner: whose video the participant does not display.
    HiddenVideo {
        id: ParticipantId,
        participants: Vec<ParticipantId>,
    },
    /// To every thread: its video publishers in `room` are to send keyframes.
    Keyframes {
        room: String,
    },
}

/// Everything one media thread has for another after one loop turn.
#[derive(Default)]
pub struct PeerBatch {
    from: usize,
    /// Read on the sender's socket, from the receiver's participants.
    datagrams: Vec<(SocketAddr, Vec<u8>)>,
    /// Published by the sender's participants, for the receiver's subscribers.
    packets: Vec<Arc<RelayedPacket>>,
    /// For sources the receiver owns.
    keyframe_requests: Vec<(ParticipantId, TrackSource, KeyframeRequestKind)>,
    /// Addresses the sender's SFU checked for its participants, among
    /// those the receiver passed on (see `routing`).
    confirmed: Vec<(SocketAddr, ParticipantId)>,
}

impl PeerBatch {
    /// An empty batch from thread `from`.
    fn empty_from(from: usize) -> Self {
        PeerBatch {
            from,
            ..PeerBatch::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
            && self.packets.is_empty()
            && self.keyframe_requests.is_empty()
            && self.confirmed.is_empty()
    }
}

/// One inbox per thread, and every thread's senders to them.
pub fn peer_channels(
    threads: usize,
) -> (Vec<mpsc::Sender<PeerBatch>>, Vec<mpsc::Receiver<PeerBatch>>) {
    (0..threads).map(|_| mpsc::channel(INBOX_QUEUE)).unzip()
}

pub struct Shard {
    index: usize,
    sfu: Sfu,
    socket: UdpSocket,
    routing: Routing,
    commands: mpsc::Receiver<ShardCommand>,
    inbox: mpsc::Receiver<PeerBatch>,
    peers: Vec<mpsc::Sender<PeerBatch>>,
    /// What goes to each other thread at the end of this turn.
    outbox: Vec<PeerBatch>,
    /// Unbounded so that media never waits for control; it carries one
    /// message per negotiation, answer or speaking change, never per packet.
    events: mpsc::UnboundedSender<FromMedia>,
    received: RecvBatch,
    transmits: Vec<(SocketAddr, Vec<u8>)>,
    /// Frames the ICE-TCP thread read for this thread's participants.
    tcp_in: mpsc::Receiver<TcpFrames>,
    /// What goes back to the ICE-TCP thread at the end of this turn.
    tcp_out: mpsc::Sender<FromShard>,
    tcp_batch: FromShard,
    dropped: Dropped,
}

/// Counts of what was dropped, for tracing.
#[derive(Debug, Default)]
struct Dropped {
    datagrams: u64,
    send_full: u64,
    send_refused: u64,
    peer_batches: u64,
    tcp_batches: u64,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        public: SocketAddr,
        tcp_public: SocketAddr,
        socket: UdpSocket,
        commands: mpsc::Receiver<ShardCommand>,
        inbox: mpsc::Receiver<PeerBatch>,
        peers: Vec<mpsc::Sender<PeerBatch>>,
        (tcp_in, tcp_out): (mpsc::Receiver<TcpFrames>, mpsc::Sender<FromShard>),
        events: mpsc::UnboundedSender<FromMedia>,
        aliases: UfragAliases,
    ) -> Self {
        let outbox = (0..peers.len())
            .map(|_| PeerBatch::empty_from(index))
            .collect();
        Shard {
            index,
            sfu: Sfu::new(SfuConfig {
                candidate_addr: public,
                tcp_candidate_addr: Some(tcp_public),
            }),
            socket,
            routing: Routing::new(index, aliases),
            commands,
            inbox,
            peers,
            outbox,
            events,
            received: RecvBatch::default(),
            transmits: Vec::with_capacity(BATCH),
            tcp_in,
            tcp_out,
            tcp_batch: FromShard::empty_from(index),
            dropped: Dropped::default(),
        }
    }

    pub async fn run(mut self) {
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
                Some(batch) = self.inbox.recv() => {
                    self.handle_peer_batch(batch);
                    for _ in 1..INBOX_ROUNDS {
                        let Ok(batch) = self.inbox.try_recv() else { break };
                        self.handle_peer_batch(batch);
                    }
                }
                readable = self.socket.readable() => {
                    if readable.is_ok() {
                        self.receive();
                    }
                }
                Some(frames) = self.tcp_in.recv() => {
                    self.handle_tcp_frames(frames);
                    for _ in 1..INBOX_ROUNDS {
                        let Ok(frames) = self.tcp_in.try_recv() else { break };
                        self.handle_tcp_frames(frames);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            self.sfu.handle_timeout(Instant::now());
            self.drain_sfu();
            self.send_transmits();
            self.send_to_peers();
            self.send_to_tcp();
        }
    }

    fn handle_tcp_frames(&mut self, frames: TcpFrames) {
        let now = Instant::now();
        for (source, data) in &frames {
            match self.sfu.handle_tcp_frame(now, *source, data) {
                Ok(()) => {
                    // A STUN request our Rtc accepted: the connection is
                    // this participant's.
                    if let Some(id) = self.routing.aliases().stun_participant(data) {
                        self.tcp_batch.confirmed.push((*source, id));
                    }
                }
                Err(reason) => {
                    self.dropped.datagrams += 1;
                    tracing::trace!(%source, ?reason, "ice-tcp frame dropped");
                }
            }
        }
    }

    fn send_to_tcp(&mut self) {
        if self.tcp_batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.tcp_batch, FromShard::empty_from(self.index));
        if self.tcp_out.try_send(batch).is_err() {
            // The TCP thread is behind: TCP peers' media is late anyway.
            self.dropped.tcp_batches += 1;
            tracing::debug!(totals = ?self.dropped, "batch for the ICE-TCP thread dropped");
        }
    }

    fn receive(&mut self) {
        let fd = self.socket.as_raw_fd();
        for _ in 0..RECV_ROUNDS {
            let received = &mut self.received;
            let count = match self.socket.try_io(Interest::READABLE, || received.recv(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!("udp receive error: {e}");
                    return;
                }
            };
            let now = Instant::now();
            for i in 0..count {
                let Some((source, data)) = self.received.get(i) else {
                    self.dropped.datagrams += 1;
                    continue;
                };
                let sfu = &self.sfu;
                let route = if self.peers.len() == 1 {
                    Route::Here
                } else {
                    self.routing.route(source, data, |a| sfu.knows_address(a))
                };
                match route {
                    Route::Here => {
                        if let Err(reason) = self.sfu.handle_datagram(now, source, data) {
                            self.dropped.datagrams += 1;
                            tracing::trace!(%source, ?reason, total = self.dropped.datagrams, "datagram dropped");
                        }
                    }
                    Route::Thread(owner) => {
                        if let Some(out) = self.outbox.get_mut(owner) {
                            out.datagrams.push((source, data.to_vec()));
                        }
                    }
                }
                // The subscribers written to are polled once per batch, on
                // the next drain (see `Sfu::handle_datagram`).
            }
            if count < BATCH {
                return;
            }
        }
    }

    fn handle_peer_batch(&mut self, batch: PeerBatch) {
        let now = Instant::now();
        for (source, data) in &batch.datagrams {
            match self.sfu.handle_datagram(now, *source, data) {
                Ok(()) => {
                    // A STUN request our Rtc accepted: its address is checked,
                    // so the reading thread may route it here from now on.
                    if let Some(id) = self.routing.aliases().stun_participant(data) {
                        if let Some(out) = self.outbox.get_mut(batch.from) {
                            out.confirmed.push((*source, id));
                        }
                    }
                }
                Err(reason) => {
                    self.dropped.datagrams += 1;
                    tracing::trace!(%source, ?reason, "passed-on datagram dropped");
                }
            }
        }
        for packet in &batch.packets {
            self.sfu.handle_relayed(now, packet);
        }
        for &(source, track, kind) in &batch.keyframe_requests {
            self.sfu.handle_keyframe_request(now, source, track, kind);
        }
        for &(source, id) in &batch.confirmed {
            self.routing.confirm(source, id);
        }
    }

    fn handle_command(&mut self, command: ShardCommand) {
        let now = Instant::now();
        match command {
            ShardCommand::Join { id, room, owner } => {
                self.routing.join(id, owner);
                let added = if owner == self.index {
                    self.sfu.add_participant(now, id, &room)
                } else {
                    self.sfu.add_remote(now, id, &room, owner)
                };
                if let Err(e) = added {
                    tracing::error!(participant = id, "sfu refused a participant: {e}");
                }
            }
            ShardCommand::Answer { id, sdp } => {
                if let Err(e) = self.sfu.handle_answer(now, id, &sdp) {
                    self.tell(FromMedia::AnswerRefused {
                        participant: id,
                        reason: e.to_string(),
                    });
                }
            }
            ShardCommand::IceRestart { id } => {
                if let Err(e) = self.sfu.restart_ice(now, id) {
                    tracing::debug!(participant = id, "no ICE restart: {e}");
                }
            }
            ShardCommand::HiddenVideo { id, participants } => {
                self.sfu.set_hidden_video(now, id, &participants)
            }
            ShardCommand::Keyframes { room } => self.sfu.request_room_keyframes(now, &room),
            ShardCommand::Leave { id } => {
                self.routing.aliases().forget(id);
                self.routing.leave(id);
                self.sfu.remove_participant(now, id);
            }
        }
    }

    /// Control only goes away when the server stops: nothing to do then.
    fn tell(&self, event: FromMedia) {
        let _ = self.events.send(event);
    }

    fn drain_sfu(&mut self) {
        while let Some(output) = self.sfu.poll_output() {
            match output {
                Output::Transmit {
                    transport: Transport::Udp,
                    destination,
                    contents,
                } => {
                    self.transmits.push((destination, contents));
                    if self.transmits.len() >= BATCH {
                        self.send_transmits();
                    }
                }
                Output::Transmit {
                    transport: Transport::Tcp,
                    destination,
                    contents,
                } => self.tcp_batch.transmits.push((destination, contents)),
                Output::Relay { shards, packet } => {
                    for (thread, out) in self.outbox.iter_mut().enumerate() {
                        if shards & (1 << thread) != 0 {
                            out.packets.push(packet.clone());
                        }
                    }
                }
                Output::KeyframeRequest {
                    shard,
                    source,
                    track,
                    kind,
                } => {
                    if let Some(out) = self.outbox.get_mut(shard) {
                        out.keyframe_requests.push((source, track, kind));
                    }
                }
                Output::Offer {
                    participant,
                    sdp,
                    tracks,
                } => self.tell(FromMedia::Offer {
                    participant,
                    sdp,
                    tracks,
                }),
                Output::Tracks {
                    participant,
                    tracks,
                } => self.tell(FromMedia::Tracks {
                    participant,
                    tracks,
                }),
                Output::Speaking { room, ids } => self.tell(FromMedia::Speaking { room, ids }),
                Output::IceUfrag {
                    participant,
                    ufrag,
                    dropped,
                } => {
                    tracing::info!(participant, "ICE restart offered");
                    self.routing
                        .aliases()
                        .add(ufrag, participant, dropped.as_deref());
                }
                Output::Disconnected { participant } => {
                    tracing::info!(participant, "media connection lost");
                    self.tell(FromMedia::Disconnected { participant });
                }
            }
        }
    }

    fn send_transmits(&mut self) {
        if self.transmits.is_empty() {
            return;
        }
        let SendLoss { full, refused } = udp::send_batch(self.socket.as_raw_fd(), &self.transmits);
        self.transmits.clear();
        if full + refused > 0 {
            self.dropped.send_full += full as u64;
            self.dropped.send_refused += refused as u64;
            tracing::trace!(full, refused, totals = ?self.dropped, "datagrams not sent");
        }
    }

    fn send_to_peers(&mut self) {
        for (thread, out) in self.outbox.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            let batch = std::mem::replace(out, PeerBatch::empty_from(self.index));
            if self.peers[thread].try_send(batch).is_err() {
                // That thread is behind (or gone): its media is late anyway.
                self.dropped.peer_batches += 1;
                tracing::debug!(thread, totals = ?self.dropped, "batch for a media thread dropped");
            }
        }
    }
}
