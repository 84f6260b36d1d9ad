//! Each room's MLS delivery service ([`RoomMls`]) on a task of its own.
//!
//! Checking a GroupInfo, a commit or a join request (signatures, the public
//! tree, KeyPackages) costs up to milliseconds, and a room's participants can
//! keep the server doing it. So the control task never runs these steps: it
//! queues them, in order, to the room's task, which runs them on tokio's
//! blocking pool (no async worker waits on them) and sends the resulting
//! actions back. One room's steps keep their order; rooms never wait for
//! each other, and a room whose queue is full refuses its clients' MLS
//! messages instead of growing without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use conclave_protocol::{ErrorCode, ParticipantId, ServerMessage};
use tokio::sync::mpsc;

use crate::delivery::{Out, RoomMls, Signer};

/// Client MLS messages one room may have queued; more are refused with
/// `rate_limited`. Per-connection limits (signaling) keep honest rooms far
/// below it; it bounds what a room of flooders can pile up.
const ROOM_BACKLOG: usize = 256;

/// One step of a room's delivery service, in the order control saw it.
#[derive(Debug)]
pub enum Step {
    /// Control welcomed `id`, telling it to create the group if `creates`.
    Joined {
        id: ParticipantId,
        creates: bool,
    },
    Left {
        id: ParticipantId,
    },
    Chat {
        id: ParticipantId,
        data: String,
        sent_at: u64,
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
}

impl Step {
    /// Whether a client's message caused it (those count towards the backlog).
    fn sent_by_client(&self) -> bool {
        !matches!(self, Step::Joined { .. } | Step::Left { .. })
    }

    fn run(self, mls: &mut RoomMls, room: &str, signer: &Signer) -> Vec<Out> {
        // A refusal goes back to the sender only.
        let reply = |id, result: Result<Vec<Out>, ServerMessage>| {
            result.unwrap_or_else(|error| vec![Out::To(id, error)])
        };
        match self {
            Step::Joined { id, creates } => {
                if mls.joined(id) != creates {
                    tracing::error!(
                        participant = id,
                        creates,
                        "the control task and the delivery service disagree on who creates the group"
                    );
                }
                Vec::new()
            }
            Step::Left { id } => mls.left(id, signer),
            Step::Chat { id, data, sent_at } => reply(id, mls.chat(id, &data, sent_at)),
            Step::GroupCreated { id, group_info } => {
                reply(id, mls.group_created(id, room, &group_info, signer))
            }
            Step::JoinRequest { id, data } => reply(id, mls.join_request(id, &data, signer)),
            Step::Commit {
                id,
                commit,
                welcome,
            } => reply(id, mls.commit(id, &commit, welcome.as_deref(), signer)),
            Step::DenyKnock { id, target } => reply(id, mls.deny_knock(id, target)),
        }
    }
}

/// Control's handle on one room's task. Dropping it ends the task once
/// its queue is done.
pub struct DeliveryTask {
    steps: mpsc::UnboundedSender<Step>,
    /// Client steps queued and not yet run.
    backlog: Arc<AtomicUsize>,
}

impl DeliveryTask {
    /// Starts the delivery service of a room that has just opened; its
    /// actions go to `actions`, in order.
    pub fn spawn(
        room: String,
        signer: Arc<Signer>,
        actions: mpsc::UnboundedSender<Vec<Out>>,
    ) -> DeliveryTask {
        let (steps, queue) = mpsc::unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(Room {
            name: room,
            mls: RoomMls::default(),
            signer,
            queue,
            backlog: backlog.clone(),
            actions,
        }));
        DeliveryTask { steps, backlog }
    }

    /// Queues a step. Joins and leaves always go through (the room's size
    /// bounds them); a client's message is refused when the backlog is full.
    pub fn queue(&self, step: Step) -> Result<(), ServerMessage> {
        if step.sent_by_client() && self.backlog.fetch_add(1, Ordering::Relaxed) >= ROOM_BACKLOG {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            return Err(ServerMessage::error(
                ErrorCode::RateLimited,
                "this room's encryption messages are queued up; try again shortly",
            ));
        }
        // The task only ends when this sender is dropped (or it panicked,
        // which it logged): a step sent to a dead task is simply lost.
        let _ = self.steps.send(step);
        Ok(())
    }
}

/// A room's delivery state, moved onto a blocking thread while it has work.
struct Room {
    name: String,
    mls: RoomMls,
    signer: Arc<Signer>,
    queue: mpsc::UnboundedReceiver<Step>,
    backlog: Arc<AtomicUsize>,
    actions: mpsc::UnboundedSender<Vec<Out>>,
}

impl Room {
    /// Runs `first` and then whatever is queued, sending each step's actions as it ends.
    fn run_queued(&mut self, first: Step) {
        let mut next = Some(first);
        while let Some(step) = next {
            let by_client = step.sent_by_client();
            let out = step.run(&mut self.mls, &self.name, &self.signer);
            if by_client {
                self.backlog.fetch_sub(1, Ordering::Relaxed);
            }
            if !out.is_empty() {
                let _ = self.actions.send(out);
            }
            next = self.queue.try_recv().ok();
        }
    }
}

async fn run(mut room: Room) {
    // Idle rooms hold no thread: the task waits here, and only a room with
    // work occupies a blocking thread.
    while let Some(first) = room.queue.recv().await {
        let job = tokio::task::spawn_blocking(move || {
            room.run_queued(first);
            room
        });
        room = match job.await {
            Ok(room) => room,
            Err(e) => {
                tracing::error!("a room's MLS delivery service failed: {e}");
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: ParticipantId) -> Step {
        Step::Chat {
            id,
            data: String::new(),
            sent_at: 0,
        }
    }

    #[tokio::test]
    async fn a_room_refuses_client_messages_beyond_its_backlog_until_it_catches_up() {
        let signer = Arc::new(Signer::generate().expect("signer"));
        let (actions, mut done) = mpsc::unbounded_channel();
        let task = DeliveryTask::spawn("r".into(), signer, actions);
        // On this single-threaded runtime the task cannot run before we wait.
        task.queue(Step::Joined {
            id: 1,
            creates: true,
        })
        .expect("membership is never refused");
        for _ in 0..ROOM_BACKLOG {
            task.queue(chat(1)).expect("within the backlog");
        }
        match task.queue(chat(1)) {
            Err(ServerMessage::Error { code, .. }) => assert_eq!(code, ErrorCode::RateLimited),
            other => panic!("expected rate_limited, got {other:?}"),
        }
        task.queue(Step::Left { id: 2 })
            .expect("membership is never refused");
        // Each chat is refused to its sender (it is not in the group yet).
        for _ in 0..ROOM_BACKLOG {
            let out = done.recv().await.expect("an answer per chat");
            assert!(matches!(
                out.as_slice(),
                [Out::To(1, ServerMessage::Error { .. })]
            ));
        }
        task.queue(chat(1)).expect("the backlog emptied");
    }
}
