//! One WebSocket connection: reads client messages, validates them, turns
//! them into hub commands, and writes the hub's messages back.
//!
//! Errors in what a client sends are answered with an `error` message on that
//! connection only; the room never notices. A connection that closes, for
//! whatever reason, leaves its room.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use conclave_protocol::{
    parse_client_message, ClientMessage, ErrorCode, ParticipantId, ServerMessage,
    KEEPALIVE_SECONDS, MAX_MESSAGE_BYTES,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, Notify, OwnedMutexGuard};

use crate::hub::{Command, HubHandle, Resumption, CLIENT_QUEUE};
use crate::session::Outbox;

/// How long a resuming connection waits for the old one to let go of the
/// session's queue (it does as soon as control wakes it, unless it is
/// stuck writing to a dead socket, which the wake interrupts too).
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Frames above this are refused by the WebSocket layer itself (the
/// connection closes). Between `MAX_MESSAGE_BYTES` and this, the client gets
/// a `too_large` error and stays connected.
pub const MAX_FRAME_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
/// A connection must send `join` within this time.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Every `KEEPALIVE` the server pings the connection (browsers answer pings
/// by themselves) and sends a `keepalive` message (which clients watch for).
/// It drops a connection it has heard nothing from for `SILENCE_LIMIT`: a
/// half-open TCP connection must not keep a ghost in the room.
const KEEPALIVE: Duration = Duration::from_secs(KEEPALIVE_SECONDS);
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// Chat, media-state and knock decisions: sustained rate and burst per connection.
const RATE: Rate = Rate {
    per_second: 10.0,
    burst: 30.0,
};
/// Join requests go to every member and cost each a KeyPackage check; an
/// honest client resends one every 10 s while it waits.
const JOIN_REQUEST_RATE: Rate = Rate {
    per_second: 0.5,
    burst: 5.0,
};
/// Commits: one per membership change or self-update from an honest member;
/// each costs the server a signature and tree check.
const COMMIT_RATE: Rate = Rate {
    per_second: 5.0,
    burst: 20.0,
};
/// An ICE restart costs the server an offer; an honest client asks every
/// few seconds while its media path is down, and only then.
const ICE_RESTART_RATE: Rate = Rate {
    per_second: 0.2,
    burst: 3.0,
};
/// A GroupInfo is sent once per group a participant creates.
const GROUP_CREATED_RATE: Rate = Rate {
    per_second: 0.2,
    burst: 3.0,
};

#[derive(Clone, Copy)]
struct Rate {
    per_second: f64,
    burst: f64,
}

/// One token bucket per kind of message a connection may send.
struct Limits {
    general: TokenBucket,
    join_request: TokenBucket,
    commit: TokenBucket,
    group_created: TokenBucket,
    ice_restart: TokenBucket,
}

impl Limits {
    fn new(now: Instant) -> Self {
        Limits {
            general: TokenBucket::new(RATE, now),
            join_request: TokenBucket::new(JOIN_REQUEST_RATE, now),
            commit: TokenBucket::new(COMMIT_RATE, now),
            group_created: TokenBucket::new(GROUP_CREATED_RATE, now),
            ice_restart: TokenBucket::new(ICE_RESTART_RATE, now),
        }
    }

    /// The bucket `command` draws from, if it is limited.
    fn bucket(&mut self, command: &Command) -> Option<&mut TokenBucket> {
        match command {
            Command::Media { .. }
            | Command::Chat { .. }
            | Command::DenyKnock { .. }
            | Command::HiddenVideo { .. } => Some(&mut self.general),
            Command::JoinRequest { .. } => Some(&mut self.join_request),
            Command::Commit { .. } => Some(&mut self.commit),
            Command::GroupCreated { .. } => Some(&mut self.group_created),
            Command::IceRestart { .. } => Some(&mut self.ice_restart),
            _ => None,
        }
    }
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Where a connection is in joining its room.
enum Joining {
    /// Not joined; holds the link the hub will get with `join`.
    Idle(mpsc::Sender<ServerMessage>),
    /// `join` sent; the hub answers `welcome` or an error (then drops the link).
    Pending,
    Joined,
}

/// Tells a connection it is one too many and closes it.
pub async fn refuse(socket: WebSocket, code: ErrorCode, message: String) {
    let (mut sink, _) = socket.split();
    let _ = send(&mut sink, &ServerMessage::error(code, message)).await;
    let _ = sink.close().await;
}

pub async fn serve(socket: WebSocket, hub: HubHandle) {
    // This connection's number; also the participant id of a join made on
    // it. A `resume` makes it carry an earlier participant's session.
    let conn: ParticipantId = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut id = conn;
    let (mut sink, mut stream) = socket.split();
    // The connection keeps no sender of its own: when the hub drops the link,
    // the outbox's queue ends, which is how the hub says "you were removed".
    let (link, queue) = mpsc::channel::<ServerMessage>(CLIENT_QUEUE);
    let mut outbox = Arc::new(Outbox::new(queue));
    let mut from_hub = outbox.queue.clone().lock_owned().await;
    // Control wakes this when a new connection takes the session over.
    let taken_over = Arc::new(Notify::new());
    let mut state = Joining::Idle(link);
    let mut bucket = Limits::new(Instant::now());
    let join_deadline = tokio::time::sleep(JOIN_TIMEOUT);
    tokio::pin!(join_deadline);
    // The first tick comes one period in: a new connection has just been heard from.
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut last_heard = Instant::now();
    // How the connection ended: a close (or the hub's decision) ends the
    // session; a broken connection leaves it to be resumed.
    let mut broken = false;

    loop {
        let joined = matches!(state, Joining::Joined);
        let reply = tokio::select! {
            // What the hub said comes first: when it refuses a join it sends
            // the error and drops the link, and the closed link (which makes
            // the connection idle again) must be seen before the client's
            // next message, or a quick retry would be told it already joined.
            biased;
            () = taken_over.notified() => break,
            outgoing = from_hub.recv() => match outgoing {
                Some(message) => {
                    if matches!(message, ServerMessage::Welcome { .. }) {
                        state = Joining::Joined;
                    }
                    Some(message)
                }
                None if joined => break,
                None => {
                    // The hub refused the join (its error came first): allow another try.
                    let (link, rx) = mpsc::channel(CLIENT_QUEUE);
                    *from_hub = rx;
                    state = Joining::Idle(link);
                    None
                }
            },
            incoming = stream.next() => {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        broken = is_broken(e);
                        break;
                    }
                    None => break,
                };
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => match parse_client_message(&text) {
                        Ok(ClientMessage::Resume { token, received }) if matches!(state, Joining::Idle(_)) => {
                            match resume(conn, token, received, &hub, &taken_over).await {
                                Ok((session, queue, missed)) => {
                                    id = session.id;
                                    outbox = session.outbox;
                                    from_hub = queue;
                                    state = Joining::Joined;
                                    let resumed = ServerMessage::Resumed { resume: session.token };
                                    if send(&mut sink, &resumed).await.is_err() {
                                        broken = true;
                                        break;
                                    }
                                    tracing::info!(participant = id, missed = missed.len(), "session resumed on a new connection");
                                    // What the broken connection may have lost, as it was sent then.
                                    let mut failed = false;
                                    for json in missed {
                                        if sink.send(Message::Text(Utf8Bytes::from(json))).await.is_err() {
                                            failed = true;
                                            break;
                                        }
                                    }
                                    if failed {
                                        broken = true;
                                        break;
                                    }
                                    None
                                }
                                Err(refusal) => Some(refusal),
                            }
                        }
                        _ => {
                            let carrier = Carrier { outbox: &outbox, taken_over: &taken_over };
                            handle_text(id, &text, &hub, &mut state, &mut bucket, carrier).await
                        }
                    },
                    Message::Binary(_) => Some(ServerMessage::error(ErrorCode::BadMessage, "binary messages are not part of the protocol")),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => None,
                }
            }
            _ = keepalive.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    tracing::info!(participant = id, "no sign of life from the client; closing");
                    broken = true;
                    break;
                }
                // Like every write, a takeover interrupts it (a dead
                // peer's full send buffer would otherwise hold the queue).
                tokio::select! {
                    biased;
                    () = taken_over.notified() => break,
                    sent = sink.send(Message::Ping(Default::default())) => {
                        if sent.is_err() {
                            broken = true;
                            break;
                        }
                    }
                }
                Some(ServerMessage::Keepalive)
            }
            _ = &mut join_deadline, if !joined => {
                let _ = send(&mut sink, &ServerMessage::error(ErrorCode::NotJoined, "no join message arrived in time")).await;
                break;
            }
        };
        if let Some(reply) = reply {
            let Ok(json) = serde_json::to_string(&reply) else {
                continue;
            };
            // Numbered for a resume, which replays what may have been lost;
            // keepalives are not (they are only signs of life).
            if !matches!(reply, ServerMessage::Keepalive) {
                outbox.record(&json);
            }
            tokio::select! {
                biased;
                () = taken_over.notified() => break,
                sent = sink.send(Message::Text(Utf8Bytes::from(json))) => {
                    if sent.is_err() {
                        broken = true;
                        break;
                    }
                }
            }
        }
    }
    // A connection taking the session over waits for the queue: let go first.
    drop(from_hub);
    if !matches!(state, Joining::Idle(_)) {
        hub.send(Command::Disconnected { id, conn, broken }).await;
    }
    let _ = sink.close().await;
}

/// Whether a read error means the connection broke (reset, timed out: a
/// network change, an outage), which leaves the session to be resumed.
/// A peer that closed its end without a close frame (a process that
/// ended) has left.
fn is_broken(error: axum::Error) -> bool {
    let inner = error.into_inner();
    !matches!(
        inner.downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
        ))
    )
}

/// A session taken over by this connection: the participant, its outbox
/// and queue (locked: the old connection has let go), what it missed.
type Takeover = (
    Resumption,
    OwnedMutexGuard<mpsc::Receiver<ServerMessage>>,
    Vec<String>,
);

/// Asks control for the session `token` names, then waits for its old
/// connection to let go of the queue. An `error` to send if it cannot be
/// resumed.
async fn resume(
    conn: ParticipantId,
    token: String,
    received: u64,
    hub: &HubHandle,
    taken_over: &Arc<Notify>,
) -> Result<Takeover, ServerMessage> {
    let failed = |why: &str| ServerMessage::error(ErrorCode::ResumeFailed, why);
    let (reply, answer) = oneshot::channel();
    hub.send(Command::Resume {
        conn,
        token,
        taken_over: taken_over.clone(),
        reply,
    })
    .await;
    let Ok(Some(session)) = answer.await else {
        return Err(failed("that session is over; join again"));
    };
    let queue = tokio::time::timeout(RELEASE_WAIT, session.outbox.queue.clone().lock_owned())
        .await
        .map_err(|_| failed("the session's old connection did not let go; join again"));
    let queue = match queue {
        Ok(q) => q,
        Err(e) => {
            hub.send(Command::Disconnected {
                id: session.id,
                conn,
                broken: false,
            })
            .await;
            return Err(e);
        }
    };
    let Some(missed) = session.outbox.since(received) else {
        hub.send(Command::Disconnected {
            id: session.id,
            conn,
            broken: false,
        })
        .await;
        return Err(failed("too much was missed to catch up; join again"));
    };
    Ok((session, queue, missed))
}

/// What a join hands control besides the link: the connection's outbox and
/// how to tell it another connection took the session over.
struct Carrier<'a> {
    outbox: &'a Arc<Outbox>,
    taken_over: &'a Arc<Notify>,
}

async fn handle_text(
    id: ParticipantId,
    text: &str,
    hub: &HubHandle,
    state: &mut Joining,
    bucket: &mut Limits,
    carrier: Carrier<'_>,
) -> Option<ServerMessage> {
    let message = match parse_client_message(text) {
        Ok(m) => m,
        Err(error) => return Some(error),
    };
    let command = match message {
        ClientMessage::Join { room, name, media } => {
            let Joining::Idle(link) = std::mem::replace(state, Joining::Pending) else {
                return Some(ServerMessage::error(
                    ErrorCode::AlreadyJoined,
                    "already in a room",
                ));
            };
            Command::Join {
                id,
                room,
                name,
                media,
                link,
                outbox: carrier.outbox.clone(),
                taken_over: carrier.taken_over.clone(),
            }
        }
        _ if !matches!(state, Joining::Joined) => {
            return Some(ServerMessage::error(
                ErrorCode::NotJoined,
                "send join first and wait for welcome",
            ));
        }
        ClientMessage::Answer { sdp } => Command::Answer { id, sdp },
        ClientMessage::MediaState { media } => Command::Media { id, media },
        ClientMessage::Chat { data } => Command::Chat { id, data },
        ClientMessage::GroupCreated { group_info } => Command::GroupCreated { id, group_info },
        ClientMessage::JoinRequest { data } => Command::JoinRequest { id, data },
        ClientMessage::Commit { commit, welcome } => Command::Commit {
            id,
            commit,
            welcome,
        },
        ClientMessage::DenyKnock { id: target } => Command::DenyKnock { id, target },
        ClientMessage::IceRestart => Command::IceRestart { id },
        ClientMessage::HiddenVideo { participants } => {
            if participants.len() > conclave_protocol::MAX_HIDDEN_VIDEO {
                return Some(ServerMessage::error(
                    ErrorCode::TooLarge,
                    "hidden_video lists too many participants",
                ));
            }
            Command::HiddenVideo { id, participants }
        }
        ClientMessage::Leave => Command::Leave { id },
        ClientMessage::Resume { .. } => {
            return Some(ServerMessage::error(
                ErrorCode::AlreadyJoined,
                "resume is the first message of a new connection",
            ));
        }
    };
    // Everything that goes to other people or costs MLS validation is capped
    // per connection, each kind in its own bucket, so a flood of one kind
    // neither starves the others nor reaches the room.
    let allowed = match bucket.bucket(&command) {
        Some(b) => b.take(Instant::now()),
        None => true,
    };
    if !allowed {
        return Some(ServerMessage::error(
            ErrorCode::RateLimited,
            "too many messages; slow down",
        ));
    }
    hub.send(command).await;
    None
}

async fn send<S>(sink: &mut S, message: &ServerMessage) -> Result<(), ()>
where
    S: SinkExt<Message> + Unpin,
{
    let json = serde_json::to_string(message).map_err(|_| ())?;
    sink.send(Message::Text(Utf8Bytes::from(json)))
        .await
        .map_err(|_| ())
}

struct TokenBucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            rate,
            tokens: rate.burst,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_refills() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(RATE, t0);
        let allowed = (0..100).filter(|_| bucket.take(t0)).count();
        assert_eq!(allowed, RATE.burst as usize);
        assert!(bucket.take(t0 + Duration::from_millis(150)));
    }

    #[test]
    fn each_kind_of_mls_message_has_its_own_limit() {
        let t0 = Instant::now();
        let mut limits = Limits::new(t0);
        let join = Command::JoinRequest {
            id: 1,
            data: String::new(),
        };
        let chat = Command::Chat {
            id: 1,
            data: String::new(),
        };
        let mut take = |c: &Command| limits.bucket(c).is_some_and(|b| b.take(t0));
        let joins = (0..50).filter(|_| take(&join)).count();
        assert_eq!(joins, JOIN_REQUEST_RATE.burst as usize);
        // A join-request flood leaves chat untouched.
        assert!(take(&chat));
        let commit = Command::Commit {
            id: 1,
            commit: String::new(),
            welcome: None,
        };
        assert_eq!(
            (0..50).filter(|_| take(&commit)).count(),
            COMMIT_RATE.burst as usize
        );
        let created = Command::GroupCreated {
            id: 1,
            group_info: String::new(),
        };
        assert_eq!(
            (0..50).filter(|_| take(&created)).count(),
            GROUP_CREATED_RATE.burst as usize
        );
    }
}
