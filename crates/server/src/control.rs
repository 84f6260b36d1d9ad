//! The control task: rooms, client links, MLS delivery, and what goes to whom.
//!
//! It owns who is in which room ([`Rooms`]), every client's link and each
//! room's MLS delivery state, turns signaling [`Command`]s into
//! announcements and MLS steps, passes the media task who joined and left
//! and their answers, and delivers to clients what media reports. Nothing
//! here touches a datagram, and it never awaits a client (a client whose
//! queue is full is disconnected).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use conclave_protocol::{ErrorCode, ParticipantId, ServerMessage, TrackMapping};
use tokio::sync::mpsc;

use crate::delivery::{Out, RoomMls, Signer};
use crate::hub::{ClientSender, Command};
use crate::media::{FromMedia, ToMedia};
use crate::rooms::Rooms;

pub struct Control {
    rooms: Rooms<ClientSender>,
    /// Each room's MLS delivery state (the server holds no group secret).
    mls: HashMap<String, RoomMls>,
    signer: Signer,
    commands: mpsc::Receiver<Command>,
    from_media: mpsc::UnboundedReceiver<FromMedia>,
    to_media: mpsc::Sender<ToMedia>,
    /// Decided while handling one input, sent to media after it (in order).
    media_queue: Vec<ToMedia>,
}

impl Control {
    pub fn new(
        signer: Signer,
        max_participants: usize,
        commands: mpsc::Receiver<Command>,
        from_media: mpsc::UnboundedReceiver<FromMedia>,
        to_media: mpsc::Sender<ToMedia>,
    ) -> Control {
        Control {
            rooms: Rooms::with_limit(max_participants),
            mls: HashMap::new(),
            signer,
            commands,
            from_media,
            to_media,
            media_queue: Vec::new(),
        }
    }

    pub async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return };
                    self.handle_command(command);
                }
                Some(event) = self.from_media.recv() => self.handle_media(event),
            }
            // A full media queue makes control wait (and signaling behind
            // it), never media.
            for message in self.media_queue.drain(..) {
                if self.to_media.send(message).await.is_err() {
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
            } => {
                let start = self.mls.get(&room).map_or_else(
                    || RoomMls::default().start_for_next(&self.signer),
                    |m| m.start_for_next(&self.signer),
                );
                match self
                    .rooms
                    .join(id, &room, &name, media, link.clone(), start)
                {
                    Ok(deliveries) => {
                        deliver(deliveries);
                        self.mls.entry(room.clone()).or_default().joined(id);
                        // After the welcome, so the offer follows it.
                        self.media_queue.push(ToMedia::Join { id, room });
                        tracing::info!(participant = id, "joined a room");
                    }
                    Err(error) => {
                        let _ = link.try_send(error);
                    }
                }
            }
            Command::Answer { id, sdp } => {
                if self.rooms.room_of(id).is_some() {
                    self.media_queue.push(ToMedia::Answer { id, sdp });
                }
            }
            Command::Media { id, media } => deliver(self.rooms.set_media(id, media)),
            Command::Chat { id, data } => {
                let now = unix_millis();
                self.with_mls(id, |m, _, _| m.chat(id, &data, now));
            }
            Command::GroupCreated { id, group_info } => {
                self.with_mls(id, |m, room, signer| {
                    m.group_created(id, room, &group_info, signer)
                });
            }
            Command::JoinRequest { id, data } => {
                self.with_mls(id, |m, _, signer| m.join_request(id, &data, signer));
            }
            Command::Commit {
                id,
                commit,
                welcome,
            } => {
                self.with_mls(id, |m, _, signer| {
                    m.commit(id, &commit, welcome.as_deref(), signer)
                });
            }
            Command::DenyKnock { id, target } => {
                self.with_mls(id, |m, _, _| m.deny_knock(id, target));
            }
            Command::Leave { id } => self.remove(id),
        }
    }

    /// Runs one MLS delivery step for `id`'s room and carries out its
    /// actions; a refusal goes back to `id` only.
    fn with_mls(
        &mut self,
        id: ParticipantId,
        step: impl FnOnce(&mut RoomMls, &str, &Signer) -> Result<Vec<Out>, ServerMessage>,
    ) {
        let Some(room) = self.rooms.room_of(id).map(str::to_owned) else {
            return;
        };
        let Some(m) = self.mls.get_mut(&room) else {
            return;
        };
        match step(m, &room, &self.signer) {
            Ok(out) => self.apply(out),
            Err(error) => self.send_to(id, error),
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
                self.send_to(participant, ServerMessage::Offer { sdp, tracks });
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

    fn remove(&mut self, id: ParticipantId) {
        let Some(room) = self.rooms.room_of(id).map(str::to_owned) else {
            return;
        };
        self.media_queue.push(ToMedia::Leave { id });
        if let Some((_, deliveries)) = self.rooms.leave(id) {
            deliver(deliveries);
            tracing::info!(participant = id, "left");
        }
        if let Some(m) = self.mls.get_mut(&room) {
            let out = m.left(id, &self.signer);
            if m.is_empty() {
                self.mls.remove(&room);
            }
            self.apply(out);
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
