//! Media: the SFU and the UDP port, on threads of their own.
//!
//! Everything on the packet path lives on the media threads (`shard`), so
//! forwarding takes no lock. Each runs on its own OS thread with its own
//! single-threaded runtime: the shared runtime's work (WebSocket frames,
//! TLS, MLS) cannot make a datagram wait for a worker, only for a CPU.
//!
//! There is one media thread per core by default. Each owns a share of the
//! participants (their `Rtc`s: ICE, DTLS, SRTP, send queues) and one socket
//! of the port's group (`udp`); it knows every room's members and forwards
//! what its own participants publish to its own subscribers, relaying each
//! packet once to every other thread that has subscribers for it. A big
//! room is spread over the threads like everyone else, so one meeting can
//! use every core. Control decides who owns a joiner ([`MediaHandle`]: the
//! thread with fewest participants) and tells every thread of every join,
//! in the same order, so they agree on each room's join order.
//!
//! Browsers whose UDP is blocked reach the SFU over TCP (`tcp`: ICE-TCP,
//! RFC 6544), on a thread of its own that passes frames to the owning
//! media thread and writes what media threads hand back.
//!
//! Media hears from the control task who joined and left and their SDP
//! answers ([`ToMedia`]), and gives control what clients must be told
//! ([`FromMedia`]: offers, track maps, speaking changes, failures); it
//! never waits on control.

mod routing;
mod shard;
mod tcp;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;

use conclave_protocol::{ParticipantId, TrackMapping};
use tokio::sync::mpsc;

use shard::{Shard, ShardCommand};
use tcp::{TcpCommand, TcpThread};

/// Commands queued from control towards each media thread.
const COMMAND_QUEUE: usize = 4096;

/// From control, in the order control decided them: a participant is
/// added before its answer can arrive, and removed when it leaves.
#[derive(Debug)]
pub enum ToMedia {
    /// Welcomed into `room`: negotiate with it.
    Join {
        id: ParticipantId,
        room: String,
    },
    Answer {
        id: ParticipantId,
        sdp: String,
    },
    Leave {
        id: ParticipantId,
    },
    /// The client's media path broke: offer it an ICE restart.
    IceRestart {
        id: ParticipantId,
    },
    /// Whose video the participant does not display now.
    HiddenVideo {
        id: ParticipantId,
        participants: Vec<ParticipantId>,
    },
    /// A commit added members to `room`: ask its video publishers for
    /// keyframes under the new epoch.
    Keyframes {
        room: String,
    },
}

/// To control, for the clients concerned.
#[derive(Debug)]
pub enum FromMedia {
    Offer {
        participant: ParticipantId,
        sdp: String,
        tracks: Vec<TrackMapping>,
    },
    /// The participant's slots carry other tracks now (no renegotiation).
    Tracks {
        participant: ParticipantId,
        tracks: Vec<TrackMapping>,
    },
    Speaking {
        room: String,
        ids: Vec<ParticipantId>,
    },
    /// The participant's media connection is gone: it is to be removed.
    Disconnected { participant: ParticipantId },
    AnswerRefused {
        participant: ParticipantId,
        reason: String,
    },
}

/// Control's side of the media threads: who owns whom, and the channels.
pub struct MediaHandle {
    threads: Vec<mpsc::Sender<ShardCommand>>,
    /// The ICE-TCP thread, which routes frames to owners.
    tcp: mpsc::Sender<TcpCommand>,
    owners: HashMap<ParticipantId, usize>,
    /// Participants each thread owns.
    load: Vec<usize>,
    /// Per room, how many of its members each thread owns.
    rooms: HashMap<String, Vec<usize>>,
    room_of: HashMap<ParticipantId, String>,
}

/// The media threads are gone (the server is stopping).
#[derive(Debug)]
pub struct MediaGone;

impl MediaHandle {
    /// Sends `command` to the thread that owns participant `id`, if any
    /// (one that left has none: the command is moot).
    async fn to_owner(&self, id: ParticipantId, command: ShardCommand) -> Result<(), MediaGone> {
        let Some(&owner) = self.owners.get(&id) else {
            return Ok(());
        };
        self.threads[owner]
            .send(command)
            .await
            .map_err(|_| MediaGone)
    }

    pub async fn send(&mut self, message: ToMedia) -> Result<(), MediaGone> {
        match message {
            ToMedia::Join { id, room } => {
                let owner = self.choose_owner(&room);
                self.owners.insert(id, owner);
                self.load[owner] += 1;
                let threads = self.threads.len();
                self.rooms
                    .entry(room.clone())
                    .or_insert_with(|| vec![0; threads])[owner] += 1;
                self.room_of.insert(id, room.clone());
                self.tcp
                    .send(TcpCommand::Join { id, owner })
                    .await
                    .map_err(|_| MediaGone)?;
                for thread in &self.threads {
                    let join = ShardCommand::Join {
                        id,
                        room: room.clone(),
                        owner,
                    };
                    thread.send(join).await.map_err(|_| MediaGone)?;
                }
            }
            ToMedia::Answer { id, sdp } => {
                self.to_owner(id, ShardCommand::Answer { id, sdp }).await?
            }
            ToMedia::IceRestart { id } => {
                self.to_owner(id, ShardCommand::IceRestart { id }).await?
            }
            ToMedia::HiddenVideo { id, participants } => {
                self.to_owner(id, ShardCommand::HiddenVideo { id, participants })
                    .await?
            }
            ToMedia::Keyframes { room } => {
                for thread in &self.threads {
                    let keyframes = ShardCommand::Keyframes { room: room.clone() };
                    thread.send(keyframes).await.map_err(|_| MediaGone)?;
                }
            }
            ToMedia::Leave { id } => {
                let Some(owner) = self.owners.remove(&id) else {
                    return Ok(());
                };
                self.load[owner] -= 1;
                if let Some(room) = self.room_of.remove(&id) {
                    if let Some(counts) = self.rooms.get_mut(&room) {
                        counts[owner] -= 1;
                        if counts.iter().all(|&n| n == 0) {
                            self.rooms.remove(&room);
                        }
                    }
                }
                self.tcp
                    .send(TcpCommand::Leave { id })
                    .await
                    .map_err(|_| MediaGone)?;
                for thread in &self.threads {
                    thread
                        .send(ShardCommand::Leave { id })
                        .await
                        .map_err(|_| MediaGone)?;
                }
            }
        }
        Ok(())
    }

    /// The thread with the fewest participants; among equals, the one with
    /// most of the room already (a small room then stays on one thread and
    /// needs no relays).
    fn choose_owner(&self, room: &str) -> usize {
        let in_room = |t: usize| self.rooms.get(room).map_or(0, |counts| counts[t]);
        (0..self.threads.len())
            .min_by_key(|&t| (self.load[t], std::cmp::Reverse(in_room(t)), t))
            .unwrap_or(0)
    }
}

/// Where media listens and what offers announce.
#[derive(Debug, Clone, Copy)]
pub struct MediaAddrs {
    pub udp_bind: SocketAddr,
    /// Port 0: the one bound.
    pub udp_public: SocketAddr,
    pub tcp_bind: SocketAddr,
    /// Port 0: the one bound.
    pub tcp_public: SocketAddr,
}

/// The ports bound (for `:0`).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

/// Binds the media ports, UDP and TCP (reporting a busy port at once), and
/// starts `threads` media threads and the ICE-TCP thread. Returns control's
/// handle and the bound addresses.
pub fn start(
    addrs: MediaAddrs,
    threads: usize,
    events: mpsc::UnboundedSender<FromMedia>,
) -> Result<(MediaHandle, Bound), String> {
    let threads = threads.clamp(1, conclave_sfu::MAX_SHARDS);
    let udp_error = |e: std::io::Error| format!("cannot bind UDP {}: {e}", addrs.udp_bind);
    let tcp_error = |e: std::io::Error| {
        format!(
            "cannot listen on TCP {} for ICE-TCP (set another with --tcp-port): {e}",
            addrs.tcp_bind
        )
    };
    let sockets = udp::bind_group(addrs.udp_bind, threads).map_err(udp_error)?;
    let bound = sockets[0].local_addr().map_err(udp_error)?;
    let with_port = |public: SocketAddr, bound: SocketAddr| {
        SocketAddr::new(
            public.ip(),
            if public.port() == 0 {
                bound.port()
            } else {
                public.port()
            },
        )
    };
    let public = with_port(addrs.udp_public, bound);
    let listener = std::net::TcpListener::bind(addrs.tcp_bind).map_err(tcp_error)?;
    let tcp_bound = listener.local_addr().map_err(tcp_error)?;
    let tcp_public = with_port(addrs.tcp_public, tcp_bound);
    let mut commands = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        handles.push(tx);
        commands.push(rx);
    }
    let (peer_senders, inboxes) = shard::peer_channels(threads);
    let (tcp_commands, tcp_command_rx) = mpsc::channel(tcp::COMMAND_QUEUE);
    let (to_tcp, from_shards) = mpsc::channel(tcp::MEDIA_QUEUE);
    let (to_shards, tcp_inboxes): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| mpsc::channel(tcp::MEDIA_QUEUE))
        .unzip();
    let aliases = routing::UfragAliases::default();
    let tcp_thread = TcpThread::new(
        listener,
        tcp_command_rx,
        from_shards,
        to_shards,
        aliases.clone(),
    );
    std::thread::Builder::new()
        .name("conclave-ice-tcp".into())
        .spawn(move || {
            if let Err(e) = tcp_thread.run() {
                tracing::error!("the ICE-TCP thread stopped: {e}");
            }
        })
        .map_err(|e| e.to_string())?;
    for (index, (((socket, commands), inbox), tcp_inbox)) in sockets
        .into_iter()
        .zip(commands)
        .zip(inboxes)
        .zip(tcp_inboxes)
        .enumerate()
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // Registered with this thread's runtime's reactor, which it drives.
        let socket = {
            let _runtime = runtime.enter();
            tokio::net::UdpSocket::from_std(socket).map_err(udp_error)?
        };
        let shard = Shard::new(
            index,
            public,
            tcp_public,
            socket,
            commands,
            inbox,
            peer_senders.clone(),
            (tcp_inbox, to_tcp.clone()),
            events.clone(),
            aliases.clone(),
        );
        std::thread::Builder::new()
            .name(format!("conclave-media-{index}"))
            .spawn(move || runtime.block_on(shard.run()))
            .map_err(|e| e.to_string())?;
    }
    let handle = MediaHandle {
        load: vec![0; threads],
        threads: handles,
        tcp: tcp_commands,
        owners: HashMap::new(),
        rooms: HashMap::new(),
        room_of: HashMap::new(),
    };
    Ok((
        handle,
        Bound {
            udp: bound,
            tcp: tcp_bound,
        },
    ))
}
