//! The control task: rooms, client links, and what goes to whom.
//!
//! It owns who is in which room ([`Rooms`]) and every client's link, turns
//! signaling [`Command`]s into announcements, queues MLS work to each room's
//! delivery task, passes the media task who joined and left and their
//! answers (no more than the offers call for), and delivers to clients what media and delivery report. It does
//! only bookkeeping: nothing here validates MLS or touches a datagram. It
//! never awaits a client (a client whose queue is full is disconnected) and
//! never waits for a room's delivery task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclave_protocol::{ErrorCode, ParticipantId, ServerMessage, TrackMapping};
use tokio::sync::{mpsc, Notify};
use tokio::time::MissedTickBehavior;

use crate::delivery::{Out, Signer};
use crate::delivery_task::{DeliveryTask, Step};
use crate::hub::{ClientSender, Command, Resumption};
use crate::media::{FromMedia, MediaHandle, ToMedia};
use crate::rooms::Rooms;
use crate::session::{new_token, Outbox, RESUME_GRACE};

/// SDP answers each offer lets through to media: its own, and a duplicate
/// or one that crossed it. Media parses every answer it gets, so a client
/// must not be able to send it more than that.
const ANSWERS_PER_OFFER: u8 = 3;

pub struct Control {
    rooms: Rooms<ClientSender>,
    /// One delivery task per occupied room; a room that empties drops its
    /// task, so a room opened again starts with a new group.
    delivery: HashMap<String, DeliveryTask>,
    signer: Arc<Signer>,
    commands: mpsc::Receiver<Command>,
    from_media: mpsc::UnboundedReceiver<FromMedia>,
    media: MediaHandle,
    /// What delivery tasks ask for, in each room's order.
    actions: mpsc::UnboundedReceiver<Vec<Out>>,
    actions_tx: mpsc::UnboundedSender<Vec<Out>>,
    /// Decided while handling one input, sent to media after it (in order).
    media_queue: Vec<ToMedia>,
    /// Answers each participant may still send media (see `ANSWERS_PER_OFFER`).
    answers_left: HashMap<ParticipantId, u8>,
    /// Every joined participant's session (see `session`), and who each
    /// resume token names.
    sessions: HashMap<ParticipantId, Session>,
    tokens: HashMap<String, ParticipantId>,
    /// The latest offer of each participant that has not answered it: a
    /// client resuming after its answer was lost on the way gets it again.
    unanswered: HashMap<ParticipantId, ServerMessage>,
}

/// A participant's session, as control knows it.
struct Session {
    token: String,
    /// The connection carrying it, and what wakes that connection when
    /// another one takes over.
    conn: ParticipantId,
    taken_over: Arc<Notify>,
    outbox: Arc<Outbox>,
    /// Its connection broke: the participant is removed at this time unless
    /// a new connection resumes the session first.
    orphaned_until: Option<Instant>,
}

impl Control {
    pub fn new(
        signer: Signer,
        max_participants: usize,
        commands: mpsc::Receiver<Command>,
        from_media: mpsc::UnboundedReceiver<FromMedia>,
        media: MediaHandle,
    ) -> Control {
        let (actions_tx, actions) = mpsc::unbounded_channel();
        Control {
            rooms: Rooms::with_limit(max_participants),
            delivery: HashMap::new(),
            signer: Arc::new(signer),
            commands,
            from_media,
            media,
            actions,
            actions_tx,
            media_queue: Vec::new(),
            answers_left: HashMap::new(),
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            unanswered: HashMap::new(),
        }
    }

    pub async fn run(mut self) {
        let mut orphan_check = tokio::time::interval(Duration::from_secs(1));
        orphan_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return };
                    self.handle_command(command);
                }
                _ = orphan_check.tick() => self.remove_orphans(Instant::now()),
                Some(event) = self.from_media.recv() => self.handle_media(event),
                Some(out) = self.actions.recv() => self.apply(out),
            }
            // A full media queue makes control wait (and signaling behind
            // it), never media.
            for message in self.media_queue.drain(..) {
                if self.media.send(message).await.is_err() {
                    return;
                }
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Join {
                id,
                room,
                name,
                media,
                link,
                outbox,
                taken_over,
            } => {
                // A room without a delivery task is empty: its first joiner
                // creates the group (the task agrees, see `RoomMls::joined`).
                let creates = !self.delivery.contains_key(&room);
                let start = self.signer.start(creates);
                match self
                    .rooms
                    .join(id, &room, &name, media, link.clone(), start)
                {
                    Ok(deliveries) => {
                        deliver(deliveries);
                        let (signer, actions) = (&self.signer, &self.actions_tx);
                        let task = self.delivery.entry(room.clone()).or_insert_with(|| {
                            DeliveryTask::spawn(room.clone(), signer.clone(), actions.clone())
                        });
                        // Membership steps are never refused.
                        let _ = task.queue(Step::Joined { id, creates });
                        // After the welcome, so the offer follows it.
                        self.media_queue.push(ToMedia::Join { id, room });
                        let token = new_token();
                        self.tokens.insert(token.clone(), id);
                        self.sessions.insert(
                            id,
                            Session {
                                token: token.clone(),
                                conn: id,
                                taken_over,
                                outbox,
                                orphaned_until: None,
                            },
                        );
                        self.send_to(id, ServerMessage::Session { resume: token });
                        tracing::info!(participant = id, "joined a room");
                    }
                    Err(error) => {
                        let _ = link.try_send(error);
                    }
                }
            }
            Command::Answer { id, sdp } => match self.answers_left.get_mut(&id) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    self.unanswered.remove(&id);
                    self.media_queue.push(ToMedia::Answer { id, sdp });
                }
                _ => self.send_to(
                    id,
                    ServerMessage::error(ErrorCode::BadSdp, "no offer is waiting for an answer"),
                ),
            },
            Command::Media { id, media } => deliver(self.rooms.set_media(id, media)),
            Command::Chat { id, data } => {
                let sent_at = unix_millis();
                self.queue_mls(id, Step::Chat { id, data, sent_at });
            }
            Command::GroupCreated { id, group_info } => {
                self.queue_mls(id, Step::GroupCreated { id, group_info });
            }
            Command::JoinRequest { id, data } => {
                self.queue_mls(id, Step::JoinRequest { id, data });
            }
            Command::Commit {
                id,
                commit,
                welcome,
            } => self.queue_mls(
                id,
                Step::Commit {
                    id,
                    commit,
                    welcome,
                },
            ),
            Command::DenyKnock { id, target } => {
                self.queue_mls(id, Step::DenyKnock { id, target });
            }
            Command::IceRestart { id } => {
                if self.rooms.room_of(id).is_some() {
                    self.media_queue.push(ToMedia::IceRestart { id });
                }
            }
            Command::HiddenVideo { id, participants } => {
                if self.rooms.room_of(id).is_some() {
                    self.media_queue
                        .push(ToMedia::HiddenVideo { id, participants });
                }
            }
            Command::Leave { id } => self.remove(id),
            Command::Resume {
                conn,
                token,
                taken_over,
                reply,
            } => {
                let resumed = self.resume(conn, &token, taken_over);
                let id = resumed.as_ref().map(|r| r.id);
                if reply.send(resumed).is_err() {
                    return;
                }
                // An offer whose answer may have been lost with the old
                // connection: once more (a second answer is refused).
                if let Some(id) = id {
                    if let Some(offer) = self.unanswered.get(&id).cloned() {
                        self.answers_left.insert(id, ANSWERS_PER_OFFER);
                        self.send_to(id, offer);
                    }
                }
            }
            Command::Disconnected { id, conn, broken } => match self.sessions.get_mut(&id) {
                // An old connection of a session another one took over.
                Some(session) if session.conn != conn => {}
                Some(session) if broken => {
                    tracing::info!(
                        participant = id,
                        "connection broke; the session waits for a resume"
                    );
                    session.orphaned_until = Some(Instant::now() + RESUME_GRACE);
                }
                _ => self.remove(id),
            },
        }
    }

    /// Queues `id`'s MLS message to its room's delivery task; a full queue
    /// is refused to `id` only.
    fn queue_mls(&mut self, id: ParticipantId, step: Step) {
        let Some(task) = self.rooms.room_of(id).and_then(|r| self.delivery.get(r)) else {
            return;
        };
        if let Err(error) = task.queue(step) {
            self.send_to(id, error);
        }
    }

    fn handle_media(&mut self, event: FromMedia) {
        match event {
            FromMedia::Offer {
                participant,
                sdp,
                mut tracks,
            } => {
                if self.signer.mislabels_media() {
                    mislabel(&mut tracks);
                }
                if self.rooms.link(participant).is_some() {
                    self.answers_left.insert(participant, ANSWERS_PER_OFFER);
                }
                let offer = ServerMessage::Offer { sdp, tracks };
                self.unanswered.insert(participant, offer.clone());
                self.send_to(participant, offer);
            }
            FromMedia::Tracks {
                participant,
                mut tracks,
            } => {
                if self.signer.mislabels_media() {
                    mislabel(&mut tracks);
                }
                self.send_to(participant, ServerMessage::Tracks { tracks });
            }
            FromMedia::Speaking { room, ids } => {
                for link in self.rooms.links_in(&room) {
                    let _ = link.try_send(ServerMessage::Speaking { ids: ids.clone() });
                }
            }
            FromMedia::Disconnected { participant } => {
                if let Some(link) = self.rooms.link(participant) {
                    let _ = link.try_send(ServerMessage::error(
                        ErrorCode::MediaFailed,
                        "the media connection was lost",
                    ));
                }
                self.remove(participant);
            }
            FromMedia::AnswerRefused {
                participant,
                reason,
            } => self.send_to(participant, ServerMessage::error(ErrorCode::BadSdp, reason)),
        }
    }

    /// Hands the session `token` names to connection `conn`, with a new
    /// token; wakes the connection that carried it, if it still runs.
    fn resume(
        &mut self,
        conn: ParticipantId,
        token: &str,
        taken_over: Arc<Notify>,
    ) -> Option<Resumption> {
        let id = self.tokens.remove(token)?;
        let session = self.sessions.get_mut(&id)?;
        session.taken_over.notify_one();
        session.taken_over = taken_over;
        session.conn = conn;
        session.orphaned_until = None;
        session.token = new_token();
        self.tokens.insert(session.token.clone(), id);
        tracing::info!(participant = id, "session taken over by a new connection");
        Some(Resumption {
            id,
            outbox: session.outbox.clone(),
            token: session.token.clone(),
        })
    }

    /// Removes the participants whose broken connection was not resumed in time.
    fn remove_orphans(&mut self, now: Instant) {
        let expired: Vec<ParticipantId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.orphaned_until.is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            tracing::info!(participant = id, "not resumed in time");
            self.remove(id);
        }
    }

    fn remove(&mut self, id: ParticipantId) {
        // Its connection, if any, ends when the link goes (below), after
        // what is queued for it (e.g. why it was turned away).
        if let Some(session) = self.sessions.remove(&id) {
            self.tokens.remove(&session.token);
        }
        self.unanswered.remove(&id);
        let Some(room) = self.rooms.room_of(id).map(str::to_owned) else {
            return;
        };
        self.media_queue.push(ToMedia::Leave { id });
        self.answers_left.remove(&id);
        if let Some((_, deliveries)) = self.rooms.leave(id) {
            deliver(deliveries);
            tracing::info!(participant = id, "left");
        }
        if let Some(task) = self.delivery.get(&room) {
            let _ = task.queue(Step::Left { id });
        }
        if !self.rooms.occupied(&room) {
            self.delivery.remove(&room);
        }
    }

    /// Carries out what a room's delivery service decided.
    fn apply(&mut self, out: Vec<Out>) {
        for action in out {
            match action {
                Out::To(p, message) => self.send_to(p, message),
                Out::Key(p, key) => deliver(self.rooms.set_key(p, key)),
                Out::Close(p) => {
                    tracing::info!(participant = p, "disconnected by a member's decision");
                    self.remove(p);
                }
                Out::Keyframes(p) => {
                    if let Some(room) = self.rooms.room_of(p) {
                        let room = room.to_owned();
                        self.media_queue.push(ToMedia::Keyframes { room });
                    }
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
fn mislabel(tracks: &mut [TrackMapping]) {
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
