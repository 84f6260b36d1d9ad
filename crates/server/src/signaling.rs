//! One WebSocket connection: reads client messages, validates them, turns
//! them into hub commands, and writes the hub's messages back.
//!
//! Errors in what a client sends are answered with an `error` message on that
//! connection only; the room never notices. A connection that closes, for
//! whatever reason, leaves its room.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use conclave_protocol::{
    parse_client_message, ClientMessage, ErrorCode, ParticipantId, ServerMessage,
    KEEPALIVE_SECONDS, MAX_MESSAGE_BYTES,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::hub::{Command, HubHandle, CLIENT_QUEUE};

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
/// Chat and media-state messages: sustained rate and burst per connection.
const RATE_PER_SECOND: f64 = 10.0;
const RATE_BURST: f64 = 30.0;

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Where a connection is in joining its room.
enum Joining {
    /// Not joined; holds the link the hub will get with `join`.
    Idle(mpsc::Sender<ServerMessage>),
    /// `join` sent; the hub answers `welcome` or an error (then drops the link).
    Pending,
    Joined,
}

pub async fn serve(socket: WebSocket, hub: HubHandle) {
    let id: ParticipantId = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    // The connection keeps no sender of its own: when the hub drops the link,
    // `from_hub` ends, which is how the hub says "you were removed".
    let (link, mut from_hub) = mpsc::channel::<ServerMessage>(CLIENT_QUEUE);
    let mut state = Joining::Idle(link);
    let mut bucket = TokenBucket::new(Instant::now());
    let join_deadline = tokio::time::sleep(JOIN_TIMEOUT);
    tokio::pin!(join_deadline);
    // The first tick comes one period in: a new connection has just been heard from.
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut last_heard = Instant::now();

    loop {
        let joined = matches!(state, Joining::Joined);
        let reply = tokio::select! {
            incoming = stream.next() => {
                let Some(Ok(message)) = incoming else { break };
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => handle_text(id, &text, &hub, &mut state, &mut bucket).await,
                    Message::Binary(_) => Some(ServerMessage::error(ErrorCode::BadMessage, "binary messages are not part of the protocol")),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => None,
                }
            }
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
                    from_hub = rx;
                    state = Joining::Idle(link);
                    None
                }
            },
            _ = keepalive.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    tracing::info!(participant = id, "no sign of life from the client; closing");
                    break;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
                Some(ServerMessage::Keepalive)
            }
            _ = &mut join_deadline, if !joined => {
                let _ = send(&mut sink, &ServerMessage::error(ErrorCode::NotJoined, "no join message arrived in time")).await;
                break;
            }
        };
        if let Some(reply) = reply {
            if send(&mut sink, &reply).await.is_err() {
                break;
            }
        }
    }
    if !matches!(state, Joining::Idle(_)) {
        hub.send(Command::Leave { id }).await;
    }
    let _ = sink.close().await;
}

async fn handle_text(
    id: ParticipantId,
    text: &str,
    hub: &HubHandle,
    state: &mut Joining,
    bucket: &mut TokenBucket,
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
        ClientMessage::Leave => Command::Leave { id },
    };
    // Chat, media-state changes, join requests and knock decisions come from
    // people and go to everyone: cap their rate. Commits are not limited
    // (the group needs them), but each needs a valid signature of a member.
    let rate_limited = matches!(
        command,
        Command::Media { .. }
            | Command::Chat { .. }
            | Command::JoinRequest { .. }
            | Command::DenyKnock { .. }
    );
    if rate_limited && !bucket.take(Instant::now()) {
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
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(now: Instant) -> Self {
        TokenBucket {
            tokens: RATE_BURST,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * RATE_PER_SECOND).min(RATE_BURST);
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
        let mut bucket = TokenBucket::new(t0);
        let allowed = (0..100).filter(|_| bucket.take(t0)).count();
        assert_eq!(allowed, RATE_BURST as usize);
        assert!(bucket.take(t0 + Duration::from_millis(150)));
    }
}
