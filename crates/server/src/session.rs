//! What lets a participant's session outlive its WebSocket.
//!
//! A network change or an outage breaks the TCP connection under the
//! WebSocket, often without either side hearing of it. The session (the
//! participant, its media, its place in the MLS group) should not end with
//! it: the client opens a new connection and sends `resume` with the token
//! it was given (single use: each `resumed` brings the next).
//!
//! Whatever carries the session reads control's messages from the session's
//! [`Outbox`], which stays with the session: messages not yet sent wait
//! there for the next connection, and the last [`REPLAY_KEPT`] sent are
//! kept, numbered, because the broken connection may have lost some in
//! flight; `resume` says how many arrived and the rest are sent again. So
//! the client sees every message once, in order, or the resume fails and
//! it joins afresh.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use conclave_protocol::ServerMessage;
use rand::RngCore;
use tokio::sync::mpsc;

/// How long a session whose connection broke waits for a `resume` before
/// the participant is removed.
pub const RESUME_GRACE: Duration = Duration::from_secs(20);

/// Messages kept after sending, for a resume to send again.
pub const REPLAY_KEPT: usize = 512;

/// A session's messages: those waiting to be sent, and the last ones sent.
pub struct Outbox {
    /// From control. The connection carrying the session holds the lock for
    /// as long as it does; the next one waits for it.
    pub queue: Arc<tokio::sync::Mutex<mpsc::Receiver<ServerMessage>>>,
    sent: Mutex<Sent>,
}

#[derive(Default)]
struct Sent {
    /// Messages sent so far (the number of the latest).
    count: u64,
    /// The latest ones, as sent (JSON), oldest first.
    kept: VecDeque<String>,
}

impl Outbox {
    pub fn new(queue: mpsc::Receiver<ServerMessage>) -> Outbox {
        Outbox {
            queue: Arc::new(tokio::sync::Mutex::new(queue)),
            sent: Mutex::new(Sent::default()),
        }
    }

    /// Records a message as sent.
    pub fn record(&self, json: &str) {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        sent.count += 1;
        if sent.kept.len() == REPLAY_KEPT {
            sent.kept.pop_front();
        }
        sent.kept.push_back(json.to_owned());
    }

    /// The messages sent after the first `received`, if all are still kept
    /// (and `received` is not more than were sent).
    pub fn since(&self, received: u64) -> Option<Vec<String>> {
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        let missed = usize::try_from(sent.count.checked_sub(received)?).ok()?;
        if missed > sent.kept.len() {
            return None;
        }
        Some(
            sent.kept
                .iter()
                .skip(sent.kept.len() - missed)
                .cloned()
                .collect(),
        )
    }
}

/// A new resume token: 32 random bytes, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_gets_exactly_what_was_sent_after_what_arrived() {
        let (_tx, rx) = mpsc::channel(1);
        let outbox = Outbox::new(rx);
        for i in 1..=5 {
            outbox.record(&format!("m{i}"));
        }
        assert_eq!(outbox.since(5), Some(vec![]));
        assert_eq!(
            outbox.since(3),
            Some(vec!["m4".to_owned(), "m5".to_owned()])
        );
        assert_eq!(outbox.since(0).map(|v| v.len()), Some(5));
        assert_eq!(
            outbox.since(6),
            None,
            "more than was sent: a confused client"
        );
    }

    #[test]
    fn only_the_latest_are_kept() {
        let (_tx, rx) = mpsc::channel(1);
        let outbox = Outbox::new(rx);
        for i in 0..REPLAY_KEPT + 10 {
            outbox.record(&format!("m{i}"));
        }
        let all = (REPLAY_KEPT + 10) as u64;
        assert_eq!(
            outbox.since(all - REPLAY_KEPT as u64).map(|v| v.len()),
            Some(REPLAY_KEPT)
        );
        assert_eq!(
            outbox.since(all - REPLAY_KEPT as u64 - 1),
            None,
            "one too many was lost"
        );
    }

    #[test]
    fn tokens_are_long_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
