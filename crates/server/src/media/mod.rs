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
//! Media hears from the control task who joined and left and their SDP
//! answers ([`ToMedia`]), and gives control what clients must be told
//! ([`FromMedia`]: offers, track maps, speaking changes, failures); it
//! never waits on control.

mod routing;
mod shard;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;

use conclave_protocol::{ParticipantId, TrackMapping};
use tokio::sync::mpsc;

use shard::{Shard, ShardCommand};

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
                if let Some(&owner) = self.owners.get(&id) {
                    let answer = ShardCommand::Answer { id, sdp };
                    self.threads[owner]
                        .send(answer)
                        .await
                        .map_err(|_| MediaGone)?;
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

/// Binds the media port (reporting a busy port at once) and starts
/// `threads` media threads. `public` is the address announced to browsers
/// (port 0: the one bound). Returns control's handle and the bound address.
pub fn start(
    bind: SocketAddr,
    public: SocketAddr,
    threads: usize,
    events: mpsc::UnboundedSender<FromMedia>,
) -> std::io::Result<(MediaHandle, SocketAddr)> {
    let threads = threads.clamp(1, conclave_sfu::MAX_SHARDS);
    let sockets = udp::bind_group(bind, threads)?;
    let bound = sockets[0].local_addr()?;
    let public = SocketAddr::new(
        public.ip(),
        if public.port() == 0 {
            bound.port()
        } else {
            public.port()
        },
    );
    let mut commands = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        handles.push(tx);
        commands.push(rx);
    }
    let (peer_senders, inboxes) = shard::peer_channels(threads);
    for (index, ((socket, commands), inbox)) in
        sockets.into_iter().zip(commands).zip(inboxes).enumerate()
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Registered with this thread's runtime's reactor, which it drives.
        let socket = {
            let _runtime = runtime.enter();
            tokio::net::UdpSocket::from_std(socket)?
        };
        let shard = Shard::new(
            index,
            public,
            socket,
            commands,
            inbox,
            peer_senders.clone(),
            events.clone(),
        );
        std::thread::Builder::new()
            .name(format!("conclave-media-{index}"))
            .spawn(move || runtime.block_on(shard.run()))?;
    }
    let handle = MediaHandle {
        load: vec![0; threads],
        threads: handles,
        owners: HashMap::new(),
        rooms: HashMap::new(),
        room_of: HashMap::new(),
    };
    Ok((handle, bound))
}
