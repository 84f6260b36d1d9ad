//! The media task: the SFU and its UDP socket, on a thread of its own.
//!
//! Everything on the packet path lives here, so forwarding takes no lock.
//! It runs on its own OS thread with its own single-threaded runtime: the
//! shared runtime's work (WebSocket frames, TLS, MLS) cannot make a datagram
//! wait for a worker, only for a CPU. It hears from the control task who
//! joined and left and their SDP answers ([`ToMedia`]), and gives control
//! what clients must be told ([`FromMedia`]: offers, track maps, speaking
//! changes, failures); it never waits on control.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_protocol::{ParticipantId, TrackMapping};
use conclave_sfu::{Output, Sfu, SfuConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams read per wake-up before commands and timers get a turn.
const RECV_BATCH: usize = 64;
/// Largest datagram read; anything longer is truncated and then dropped.
const MAX_DATAGRAM: usize = 2048;
/// Kernel socket buffer sizes asked for on the media socket. The default
/// (~200 KiB) overflows in bursts when every participant's keyframe arrives
/// at once; Linux caps the request at net.core.rmem_max / wmem_max.
const SOCKET_BUFFER: usize = 4 << 20;

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

struct Media {
    sfu: Sfu,
    socket: UdpSocket,
    commands: mpsc::Receiver<ToMedia>,
    /// Unbounded so that media never waits for control; it carries one
    /// message per negotiation, answer or speaking change, never per packet.
    events: mpsc::UnboundedSender<FromMedia>,
    datagrams_dropped: u64,
}

/// Binds the media socket (reporting a busy port at once) and starts the
/// media thread. `public` is the address announced to browsers (port 0:
/// the one bound). Returns the bound address.
pub fn start(
    bind: SocketAddr,
    public: SocketAddr,
    commands: mpsc::Receiver<ToMedia>,
    events: mpsc::UnboundedSender<FromMedia>,
) -> std::io::Result<SocketAddr> {
    let socket = bind_udp(bind)?;
    let bound = socket.local_addr()?;
    let public = SocketAddr::new(
        public.ip(),
        if public.port() == 0 {
            bound.port()
        } else {
            public.port()
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered with the media runtime's reactor, which its thread drives.
    let socket = {
        let _media_runtime = runtime.enter();
        UdpSocket::from_std(socket)?
    };
    let media = Media {
        sfu: Sfu::new(SfuConfig {
            candidate_addr: public,
        }),
        socket,
        commands,
        events,
        datagrams_dropped: 0,
    };
    std::thread::Builder::new()
        .name("conclave-media".into())
        .spawn(move || runtime.block_on(media.run()))?;
    Ok(bound)
}

impl Media {
    async fn run(mut self) {
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

    fn handle_command(&mut self, command: ToMedia) {
        let now = Instant::now();
        match command {
            ToMedia::Join { id, room } => {
                if let Err(e) = self.sfu.add_participant(now, id, &room) {
                    tracing::error!(participant = id, "sfu refused a participant: {e}");
                }
            }
            ToMedia::Answer { id, sdp } => {
                if let Err(e) = self.sfu.handle_answer(now, id, &sdp) {
                    self.tell(FromMedia::AnswerRefused {
                        participant: id,
                        reason: e.to_string(),
                    });
                }
            }
            ToMedia::Leave { id } => self.sfu.remove_participant(now, id),
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
                Output::Disconnected { participant } => {
                    tracing::info!(participant, "media connection lost");
                    self.tell(FromMedia::Disconnected { participant });
                }
            }
        }
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
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
    Ok(socket.into())
}
