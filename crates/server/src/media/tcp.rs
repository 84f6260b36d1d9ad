//! ICE over TCP (RFC 6544): the media port's TCP side, for browsers whose
//! UDP is blocked.
//!
//! Every participant's offer has a passive TCP host candidate next to the
//! UDP one (lower priority, so UDP wins where it works). A browser that
//! cannot use UDP connects here and sends what it would have sent over UDP
//! (STUN, DTLS, SRTP), each datagram framed with a 2-byte length (RFC 4571).
//!
//! One thread owns every TCP connection (a task each, on its own
//! single-threaded runtime): TCP is the fallback, so its connections are few
//! and it does not need a core each; and the media threads' UDP path stays
//! exactly as it is. It reads frames and routes each to the media thread
//! that owns its participant, as `routing` does for UDP datagrams read on the
//! wrong thread: a STUN request by the participant its ufrag names, the rest
//! by the thread the connection was routed to. A TCP connection cannot be
//! spoofed, so the first STUN request decides the route; the owner's SFU
//! then checks it (message integrity) and confirms, which fixes the
//! connection to that participant. The media threads hand back what goes
//! out on TCP, after each loop turn, in one message.
//!
//! Bounds: frames of at most [`MAX_FRAME`] bytes; [`MAX_CONNECTIONS`] in all
//! and [`MAX_PER_ADDRESS`] per client address (IPv6: per /64); a connection
//! must send a STUN request its owner accepts within [`PRE_STUN_TIMEOUT`],
//! and goes when silent for [`IDLE_TIMEOUT`] (ICE consent checks come every
//! few seconds). A connection whose first frame is not a STUN request for a
//! participant, or that sends a frame no WebRTC peer sends (RFC 7983: not
//! STUN, DTLS, RTP or RTCP; empty; too long), is closed. Nothing waits for a
//! slow peer: every queue is bounded and full means dropped (as UDP would),
//! and a peer that stops reading for [`WRITE_TIMEOUT`] is disconnected.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use conclave_protocol::ParticipantId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::routing::UfragAliases;
use crate::connections::ConnectionLimit;

/// The longest frame accepted or sent: media datagrams stay under the
/// path MTU (str0m sends at most ~1200 bytes; browsers likewise).
pub const MAX_FRAME: usize = 1500;
/// Open TCP connections, all addresses together.
pub const MAX_CONNECTIONS: usize = 2048;
/// Open TCP connections from one address (an office behind one NAT whose
/// UDP is blocked: one per participant, a few more while ICE runs).
pub const MAX_PER_ADDRESS: usize = 64;
/// A connection must have a STUN request accepted within this.
pub const PRE_STUN_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection silent this long is closed (consent checks come every ~5 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer that does not take what is written for this long is gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames queued towards one connection before more are dropped.
const CONNECTION_QUEUE: usize = 256;
/// Messages queued between the TCP thread and each media thread.
pub const MEDIA_QUEUE: usize = 1024;
/// Commands queued from control.
pub const COMMAND_QUEUE: usize = 4096;

/// From control, so frames find their participant's media thread.
#[derive(Debug)]
pub enum TcpCommand {
    Join { id: ParticipantId, owner: usize },
    Leave { id: ParticipantId },
}

/// Frames read from TCP connections for one media thread: (connection's
/// remote address, frame without its length prefix).
pub type TcpFrames = Vec<(SocketAddr, Vec<u8>)>;

/// What a media thread has for the TCP thread after one loop turn.
#[derive(Debug, Default)]
pub struct FromShard {
    pub from: usize,
    /// Datagrams to write, each as one frame, on the connection from the address.
    pub transmits: Vec<(SocketAddr, Vec<u8>)>,
    /// Connections on which the thread's SFU accepted a STUN request for a participant.
    pub confirmed: Vec<(SocketAddr, ParticipantId)>,
}

impl FromShard {
    /// An empty batch from media thread `from`.
    pub fn empty_from(from: usize) -> Self {
        FromShard {
            from,
            ..FromShard::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.transmits.is_empty() && self.confirmed.is_empty()
    }
}

/// What kind of datagram a frame holds, by its first byte (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stun,
    /// DTLS, RTP or RTCP.
    Media,
}

fn kind(frame: &[u8]) -> Option<Kind> {
    match *frame.first()? {
        0..=3 => Some(Kind::Stun),
        20..=63 | 128..=191 => Some(Kind::Media),
        _ => None,
    }
}

/// Splits complete RFC 4571 frames off the front of `buf`; `Err` when a
/// length is 0 or over [`MAX_FRAME`] (the stream cannot be trusted after).
/// Returns the frames and how many bytes they took.
fn split_frames(buf: &[u8]) -> Result<(Vec<&[u8]>, usize), ()> {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(prefix) = buf.get(at..at + 2) {
        let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        if len == 0 || len > MAX_FRAME {
            return Err(());
        }
        let Some(frame) = buf.get(at + 2..at + 2 + len) else {
            break;
        };
        frames.push(frame);
        at += 2 + len;
    }
    Ok((frames, at))
}

struct Connection {
    /// Frames to write (the writer task's queue).
    out: mpsc::Sender<Vec<u8>>,
    /// The media thread its frames go to: set by its first STUN request,
    /// fixed when that thread's SFU accepts one.
    thread: Option<usize>,
    /// The participant whose `Rtc` accepted a STUN request on it.
    participant: Option<ParticipantId>,
}

#[derive(Default)]
struct State {
    owners: HashMap<ParticipantId, usize>,
    aliases: UfragAliases,
    connections: HashMap<SocketAddr, Connection>,
    dropped: Dropped,
}

/// Counts of what was dropped, for tracing.
#[derive(Debug, Default)]
struct Dropped {
    to_media: u64,
    to_peer: u64,
    closed_bad: u64,
    refused: u64,
}

/// The TCP thread's parts, made before it starts.
pub struct TcpThread {
    listener: std::net::TcpListener,
    commands: mpsc::Receiver<TcpCommand>,
    from_shards: mpsc::Receiver<FromShard>,
    to_shards: Vec<mpsc::Sender<TcpFrames>>,
    aliases: UfragAliases,
}

impl TcpThread {
    pub fn new(
        listener: std::net::TcpListener,
        commands: mpsc::Receiver<TcpCommand>,
        from_shards: mpsc::Receiver<FromShard>,
        to_shards: Vec<mpsc::Sender<TcpFrames>>,
        aliases: UfragAliases,
    ) -> Self {
        TcpThread {
            listener,
            commands,
            from_shards,
            to_shards,
            aliases,
        }
    }

    /// Runs on the calling thread until control goes away.
    pub fn run(self) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, self.serve())
    }

    async fn serve(self) -> std::io::Result<()> {
        let TcpThread {
            listener,
            mut commands,
            mut from_shards,
            to_shards,
            aliases,
        } = self;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let state = Rc::new(RefCell::new(State {
            aliases,
            ..State::default()
        }));
        let to_shards = Rc::new(to_shards);
        let per_address = ConnectionLimit::new(MAX_PER_ADDRESS);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        accept(&state, &to_shards, &per_address, stream, remote);
                    }
                    Err(e) => {
                        // Out of descriptors, most likely: give closing
                        // connections a moment rather than spin.
                        tracing::warn!("ice-tcp accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                command = commands.recv() => {
                    let Some(command) = command else { return Ok(()) };
                    let mut state = state.borrow_mut();
                    match command {
                        TcpCommand::Join { id, owner } => {
                            state.owners.insert(id, owner);
                        }
                        TcpCommand::Leave { id } => {
                            state.owners.remove(&id);
                            // Dropping its queue's sender ends the connection's task.
                            state.connections.retain(|_, c| c.participant != Some(id));
                        }
                    }
                }
                Some(batch) = from_shards.recv() => {
                    from_shard(&mut state.borrow_mut(), batch);
                    for _ in 1..16 {
                        let Ok(batch) = from_shards.try_recv() else { break };
                        from_shard(&mut state.borrow_mut(), batch);
                    }
                }
            }
        }
    }
}

fn from_shard(state: &mut State, batch: FromShard) {
    for (source, id) in batch.confirmed {
        if let Some(c) = state.connections.get_mut(&source) {
            c.thread = Some(batch.from);
            c.participant = Some(id);
        }
    }
    for (destination, contents) in batch.transmits {
        let sent = state
            .connections
            .get(&destination)
            .is_some_and(|c| c.out.try_send(contents).is_ok());
        if !sent {
            // A full queue (a slow reader) or a connection that is gone:
            // dropped, as UDP would.
            state.dropped.to_peer += 1;
            tracing::trace!(%destination, totals = ?state.dropped, "ice-tcp frame not sent");
        }
    }
}

fn accept(
    state: &Rc<RefCell<State>>,
    to_shards: &Rc<Vec<mpsc::Sender<TcpFrames>>>,
    per_address: &Arc<ConnectionLimit>,
    stream: TcpStream,
    remote: SocketAddr,
) {
    let mut s = state.borrow_mut();
    let permit = if s.connections.len() < MAX_CONNECTIONS {
        per_address.try_open(remote.ip())
    } else {
        None
    };
    let Some(permit) = permit else {
        s.dropped.refused += 1;
        tracing::debug!(%remote, totals = ?s.dropped, "ice-tcp connection refused: too many");
        return;
    };
    if s.connections.contains_key(&remote) {
        // Cannot happen (one listening address, so the remote address is
        // the connection's 4-tuple); never let two share a queue.
        return;
    }
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
    s.connections.insert(
        remote,
        Connection {
            out: tx,
            thread: None,
            participant: None,
        },
    );
    drop(s);
    let state = state.clone();
    let to_shards = to_shards.clone();
    tokio::task::spawn_local(async move {
        let _permit = permit;
        let (read, write) = stream.into_split();
        let reason = tokio::select! {
            r = read_frames(read, remote, &state, &to_shards) => r,
            r = write_frames(write, rx) => r,
        };
        let mut s = state.borrow_mut();
        s.connections.remove(&remote);
        if let Err(reason) = reason {
            s.dropped.closed_bad += 1;
            tracing::debug!(%remote, reason, totals = ?s.dropped, "ice-tcp connection closed");
        }
    });
}

/// Reads frames until the peer closes (`Ok`) or misbehaves (`Err`: why).
async fn read_frames(
    mut read: OwnedReadHalf,
    remote: SocketAddr,
    state: &Rc<RefCell<State>>,
    to_shards: &[mpsc::Sender<TcpFrames>],
) -> Result<(), &'static str> {
    let accepted = Instant::now();
    let mut last_frame = accepted;
    let mut buf = vec![0u8; 4 * (MAX_FRAME + 2)];
    let mut filled = 0;
    let mut batches: Vec<TcpFrames> = vec![Vec::new(); to_shards.len()];
    loop {
        let confirmed = state
            .borrow()
            .connections
            .get(&remote)
            .is_some_and(|c| c.participant.is_some());
        let deadline = if confirmed {
            last_frame + IDLE_TIMEOUT
        } else {
            (accepted + PRE_STUN_TIMEOUT).min(last_frame + IDLE_TIMEOUT)
        };
        let n = tokio::select! {
            n = read.read(&mut buf[filled..]) => n,
            _ = tokio::time::sleep_until(deadline) => {
                // Confirmation may have come since the deadline was set.
                let confirmed = state
                    .borrow()
                    .connections
                    .get(&remote)
                    .is_some_and(|c| c.participant.is_some());
                let now = Instant::now();
                if now >= last_frame + IDLE_TIMEOUT {
                    return Err("idle");
                }
                if !confirmed && now >= accepted + PRE_STUN_TIMEOUT {
                    return Err("no accepted STUN request in time");
                }
                continue;
            }
        };
        let n = match n {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => n,
        };
        filled += n;
        last_frame = Instant::now();
        let (frames, used) = split_frames(&buf[..filled]).map_err(|()| "bad frame length")?;
        {
            let mut s = state.borrow_mut();
            let State {
                owners,
                aliases,
                connections,
                ..
            } = &mut *s;
            let Some(connection) = connections.get_mut(&remote) else {
                return Ok(());
            };
            for frame in frames {
                let thread = match kind(frame) {
                    None => return Err("not STUN, DTLS, RTP or RTCP"),
                    Some(Kind::Stun) => {
                        let named = aliases
                            .stun_participant(frame)
                            .and_then(|id| owners.get(&id).copied());
                        if connection.thread.is_none() {
                            connection.thread = named;
                        }
                        // A request goes to the participant it names (whose
                        // Rtc checks it); anything else where the connection goes.
                        named.or(connection.thread)
                    }
                    Some(Kind::Media) => connection.thread,
                };
                let Some(thread) = thread else {
                    // ICE-TCP starts with a STUN request (RFC 6544 §7.1)
                    // naming one of our participants.
                    return Err("no STUN request for a participant first");
                };
                if let Some(batch) = batches.get_mut(thread) {
                    batch.push((remote, frame.to_vec()));
                }
            }
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        for (thread, batch) in batches.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if to_shards[thread].try_send(std::mem::take(batch)).is_err() {
                let mut s = state.borrow_mut();
                s.dropped.to_media += 1;
                tracing::debug!(thread, totals = ?s.dropped, "ice-tcp frames for a media thread dropped");
            }
        }
    }
}

/// Writes queued frames with their length prefixes until the queue is
/// closed (`Ok`) or the peer stops taking them (`Err`).
async fn write_frames(
    mut write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> Result<(), &'static str> {
    let mut out = Vec::with_capacity(16 * (MAX_FRAME + 2));
    while let Some(frame) = rx.recv().await {
        out.clear();
        push_frame(&mut out, &frame);
        // Whatever else is queued goes in the same write.
        while out.len() < 15 * (MAX_FRAME + 2) {
            let Ok(frame) = rx.try_recv() else { break };
            push_frame(&mut out, &frame);
        }
        match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ok(()),
            Err(_) => return Err("the peer stopped reading"),
        }
    }
    Ok(())
}

fn push_frame(out: &mut Vec<u8>, frame: &[u8]) {
    let Ok(len) = u16::try_from(frame.len()) else {
        return;
    };
    if frame.is_empty() || frame.len() > MAX_FRAME {
        return;
    }
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_whole_and_a_partial_one_waits() {
        let mut buf = vec![0, 3, 1, 2, 3, 0, 1, 9];
        buf.extend_from_slice(&[0, 4, 7, 7]);
        let (frames, used) = split_frames(&buf).expect("valid");
        assert_eq!(frames, vec![&[1, 2, 3][..], &[9][..]]);
        assert_eq!(used, 8, "the third frame is incomplete");
        assert_eq!(split_frames(&[0]).expect("valid").1, 0);
    }

    #[test]
    fn an_empty_or_oversized_length_poisons_the_stream() {
        assert!(split_frames(&[0, 0, 1]).is_err());
        let over = (MAX_FRAME as u16 + 1).to_be_bytes();
        assert!(split_frames(&[0, 1, 5, over[0], over[1]]).is_err());
        let max = (MAX_FRAME as u16).to_be_bytes();
        assert!(split_frames(&[max[0], max[1], 1]).is_ok());
    }

    #[test]
    fn frames_are_classified_by_their_first_byte() {
        assert_eq!(kind(&[0, 1]), Some(Kind::Stun));
        assert_eq!(kind(&[22]), Some(Kind::Media), "DTLS");
        assert_eq!(kind(&[0x80]), Some(Kind::Media), "RTP");
        for bad in [&[][..], &[4], &[64], &[127], &[192], b"G"] {
            assert_eq!(kind(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn written_frames_carry_their_length_and_impossible_ones_are_skipped() {
        let mut out = Vec::new();
        push_frame(&mut out, &[5, 6]);
        push_frame(&mut out, &[]);
        push_frame(&mut out, &vec![1; MAX_FRAME + 1]);
        assert_eq!(out, vec![0, 2, 5, 6]);
    }
}
