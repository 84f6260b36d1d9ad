//! Who is in which room, under which name, and the room's chat order.
//!
//! Pure bookkeeping with no IO: the hub asks it what to announce and to
//! whom, and delivers. `T` is whatever the hub uses to reach a client.

use std::collections::{BTreeMap, HashMap};

use conclave_protocol::{
    validate_display_name, validate_room_name, ErrorCode, MediaState, ParticipantId,
    ParticipantInfo, ServerMessage, MAX_CHAT_CHARS,
};

/// Most participants one room admits; the next gets `room_full`.
pub const MAX_PARTICIPANTS_PER_ROOM: usize = 100;

struct Member<T> {
    info: ParticipantInfo,
    link: T,
}

struct Room<T> {
    members: BTreeMap<ParticipantId, Member<T>>,
    next_chat_seq: u32,
}

impl<T> Default for Room<T> {
    fn default() -> Self {
        Room {
            members: BTreeMap::new(),
            next_chat_seq: 0,
        }
    }
}

pub struct Rooms<T> {
    rooms: HashMap<String, Room<T>>,
    room_of: HashMap<ParticipantId, String>,
}

impl<T> Default for Rooms<T> {
    fn default() -> Self {
        Rooms {
            rooms: HashMap::new(),
            room_of: HashMap::new(),
        }
    }
}

/// Messages to deliver: (recipient's link, message).
pub type Deliveries<'a, T> = Vec<(&'a T, ServerMessage)>;

impl<T> Rooms<T> {
    pub fn link(&self, id: ParticipantId) -> Option<&T> {
        let room = self.rooms.get(self.room_of.get(&id)?)?;
        room.members.get(&id).map(|m| &m.link)
    }

    /// Admits `id`; on success returns the `welcome` for the joiner and the
    /// `participant_joined` announcements for the others.
    pub fn join(
        &mut self,
        id: ParticipantId,
        room: &str,
        name: &str,
        media: MediaState,
        link: T,
    ) -> Result<Deliveries<'_, T>, ServerMessage> {
        validate_room_name(room)
            .map_err(|e| ServerMessage::error(ErrorCode::InvalidRoom, e.to_string()))?;
        let name = name.trim();
        validate_display_name(name)
            .map_err(|e| ServerMessage::error(ErrorCode::InvalidName, e.to_string()))?;
        if self.room_of.contains_key(&id) {
            return Err(ServerMessage::error(
                ErrorCode::AlreadyJoined,
                "already in a room",
            ));
        }
        let entry = self.rooms.entry(room.to_owned()).or_default();
        if entry.members.len() >= MAX_PARTICIPANTS_PER_ROOM {
            return Err(ServerMessage::error(
                ErrorCode::RoomFull,
                format!("this room already has {MAX_PARTICIPANTS_PER_ROOM} participants"),
            ));
        }
        let info = ParticipantInfo {
            id,
            name: name.to_owned(),
            media,
        };
        let others: Vec<ParticipantInfo> = entry.members.values().map(|m| m.info.clone()).collect();
        entry.members.insert(
            id,
            Member {
                info: info.clone(),
                link,
            },
        );
        self.room_of.insert(id, room.to_owned());
        let mut out = Vec::with_capacity(entry.members.len());
        for (&member_id, member) in &entry.members {
            let msg = if member_id == id {
                ServerMessage::Welcome {
                    you: info.clone(),
                    participants: others.clone(),
                }
            } else {
                ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                }
            };
            out.push((&member.link, msg));
        }
        Ok(out)
    }

    /// Removes `id`; returns its link and the `participant_left` announcements.
    pub fn leave(&mut self, id: ParticipantId) -> Option<(T, Deliveries<'_, T>)> {
        let room_name = self.room_of.remove(&id)?;
        let room = self.rooms.get_mut(&room_name)?;
        let member = room.members.remove(&id)?;
        if room.members.is_empty() {
            self.rooms.remove(&room_name);
            return Some((member.link, Vec::new()));
        }
        let room = self.rooms.get(&room_name)?;
        let out = room
            .members
            .values()
            .map(|m| (&m.link, ServerMessage::ParticipantLeft { id }))
            .collect();
        Some((member.link, out))
    }

    pub fn set_media(&mut self, id: ParticipantId, media: MediaState) -> Deliveries<'_, T> {
        let Some(room) = self.room_of.get(&id).and_then(|r| self.rooms.get_mut(r)) else {
            return Vec::new();
        };
        let Some(member) = room.members.get_mut(&id) else {
            return Vec::new();
        };
        if member.info.media == media {
            return Vec::new();
        }
        member.info.media = media;
        let participant = member.info.clone();
        room.members
            .values()
            .map(|m| {
                (
                    &m.link,
                    ServerMessage::ParticipantUpdated {
                        participant: participant.clone(),
                    },
                )
            })
            .collect()
    }

    /// Numbers a chat message in room order and addresses it to everyone,
    /// the sender included (the echo is its delivery receipt).
    pub fn chat(
        &mut self,
        id: ParticipantId,
        text: String,
        sent_at: u64,
    ) -> Result<Deliveries<'_, T>, ServerMessage> {
        let count = text.chars().count();
        if count > MAX_CHAT_CHARS {
            return Err(ServerMessage::error(
                ErrorCode::TooLarge,
                format!("the message is {count} characters; at most {MAX_CHAT_CHARS} are allowed"),
            ));
        }
        if text.trim().is_empty() {
            return Err(ServerMessage::error(
                ErrorCode::BadMessage,
                "the message is empty",
            ));
        }
        let room = self
            .room_of
            .get(&id)
            .and_then(|r| self.rooms.get_mut(r))
            .ok_or_else(|| ServerMessage::error(ErrorCode::NotJoined, "join a room first"))?;
        let name = room
            .members
            .get(&id)
            .map(|m| m.info.name.clone())
            .unwrap_or_default();
        let seq = room.next_chat_seq;
        room.next_chat_seq = room.next_chat_seq.wrapping_add(1);
        Ok(room
            .members
            .values()
            .map(|m| {
                (
                    &m.link,
                    ServerMessage::Chat {
                        seq,
                        from: id,
                        name: name.clone(),
                        text: text.clone(),
                        sent_at,
                    },
                )
            })
            .collect())
    }

    /// Everyone in `room`, for room-wide notices.
    pub fn links_in(&self, room: &str) -> impl Iterator<Item = &T> {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|r| r.members.values().map(|m| &m.link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media() -> MediaState {
        MediaState {
            microphone: true,
            camera: true,
            screen: false,
        }
    }

    #[test]
    fn the_joiner_is_welcomed_with_the_others_and_they_hear_of_it() {
        let mut rooms = Rooms::default();
        rooms.join(1, "r", "Ada", media(), "a").expect("join");
        let out = rooms.join(2, "r", " Bob ", media(), "b").expect("join");
        assert_eq!(out.len(), 2);
        let welcome = out.iter().find(|(l, _)| **l == "b").expect("welcome for b");
        match &welcome.1 {
            ServerMessage::Welcome { you, participants } => {
                assert_eq!(you.name, "Bob", "names are trimmed");
                assert_eq!(participants.len(), 1);
                assert_eq!(participants[0].name, "Ada");
            }
            other => panic!("expected welcome, got {other:?}"),
        }
        assert!(matches!(
            out.iter().find(|(l, _)| **l == "a").expect("a told").1,
            ServerMessage::ParticipantJoined { .. }
        ));
    }

    #[test]
    fn chat_is_numbered_in_room_order_and_echoed_to_the_sender() {
        let mut rooms = Rooms::default();
        rooms.join(1, "r", "Ada", media(), "a").expect("join");
        rooms.join(2, "r", "Bob", media(), "b").expect("join");
        let seq_of = |d: Deliveries<'_, &str>| -> Vec<u32> {
            d.iter()
                .map(|(_, m)| match m {
                    ServerMessage::Chat { seq, .. } => *seq,
                    _ => u32::MAX,
                })
                .collect()
        };
        let mut seqs = seq_of(rooms.chat(1, "hello".into(), 0).expect("chat"));
        seqs.extend(seq_of(rooms.chat(2, "hi".into(), 0).expect("chat")));
        assert_eq!(seqs, vec![0, 0, 1, 1]);
    }

    #[test]
    fn leaving_announces_to_the_rest_and_empties_the_room() {
        let mut rooms = Rooms::default();
        rooms.join(1, "r", "Ada", media(), "a").expect("join");
        rooms.join(2, "r", "Bob", media(), "b").expect("join");
        let (link, out) = rooms.leave(1).expect("was there");
        assert_eq!(link, "a");
        assert_eq!(out.len(), 1);
        assert!(rooms.leave(1).is_none());
        let (_, out) = rooms.leave(2).expect("was there");
        assert!(out.is_empty());
        assert!(rooms.link(2).is_none());
    }

    #[test]
    fn bad_names_rooms_and_chat_are_refused_with_codes() {
        let mut rooms = Rooms::default();
        let code = |r: Result<Deliveries<'_, &str>, ServerMessage>| match r {
            Err(ServerMessage::Error { code, .. }) => code,
            _ => panic!("expected an error"),
        };
        assert_eq!(
            code(rooms.join(1, "a/b", "Ada", media(), "a")),
            ErrorCode::InvalidRoom
        );
        assert_eq!(
            code(rooms.join(1, "r", "  ", media(), "a")),
            ErrorCode::InvalidName
        );
        assert_eq!(code(rooms.chat(1, "hi".into(), 0)), ErrorCode::NotJoined);
        rooms.join(1, "r", "Ada", media(), "a").expect("join");
        assert_eq!(
            code(rooms.join(1, "r", "Ada", media(), "a")),
            ErrorCode::AlreadyJoined
        );
        assert_eq!(
            code(rooms.chat(1, "x".repeat(MAX_CHAT_CHARS + 1), 0)),
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn a_full_room_refuses_the_next_joiner() {
        let mut rooms = Rooms::default();
        for id in 0..MAX_PARTICIPANTS_PER_ROOM as u32 {
            rooms
                .join(id, "big", "P", media(), id)
                .expect("room has space");
        }
        match rooms.join(999, "big", "Late", media(), 999) {
            Err(ServerMessage::Error { code, .. }) => assert_eq!(code, ErrorCode::RoomFull),
            _ => panic!("expected room_full"),
        }
    }
}
