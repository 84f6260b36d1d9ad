//! Who is in which room, under which name, and the room's chat order.
//!
//! Pure bookkeeping with no IO: the control task asks it what to announce
//! and to whom, and delivers. `T` is whatever control uses to reach a client.

use std::collections::{BTreeMap, HashMap};

use conclave_protocol::{
    validate_display_name, validate_room_name, E2eeStart, ErrorCode, MediaState, ParticipantId,
    ParticipantInfo, ServerMessage,
};

/// Most participants one room admits unless configured otherwise
/// (`--max-participants`); the next gets `room_full`.
pub const MAX_PARTICIPANTS_PER_ROOM: usize = 100;

struct Member<T> {
    info: ParticipantInfo,
    link: T,
}

struct Room<T> {
    members: BTreeMap<ParticipantId, Member<T>>,
}

impl<T> Default for Room<T> {
    fn default() -> Self {
        Room {
            members: BTreeMap::new(),
        }
    }
}

pub struct Rooms<T> {
    rooms: HashMap<String, Room<T>>,
    room_of: HashMap<ParticipantId, String>,
    max_per_room: usize,
}

impl<T> Default for Rooms<T> {
    fn default() -> Self {
        Rooms::with_limit(MAX_PARTICIPANTS_PER_ROOM)
    }
}

/// Messages to deliver: (recipient's link, message).
pub type Deliveries<'a, T> = Vec<(&'a T, ServerMessage)>;

impl<T> Rooms<T> {
    /// Rooms that admit at most `max_per_room` participants each (at least 1).
    pub fn with_limit(max_per_room: usize) -> Self {
        Rooms {
            rooms: HashMap::new(),
            room_of: HashMap::new(),
            max_per_room: max_per_room.max(1),
        }
    }

    pub fn link(&self, id: ParticipantId) -> Option<&T> {
        let room = self.rooms.get(self.room_of.get(&id)?)?;
        room.members.get(&id).map(|m| &m.link)
    }

    /// The room `id` is in.
    pub fn room_of(&self, id: ParticipantId) -> Option<&str> {
        self.room_of.get(&id).map(String::as_str)
    }

    /// Whether anyone is in `room`.
    pub fn occupied(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Admits `id`; on success returns the `welcome` (with `e2ee`) for the
    /// joiner and the `participant_joined` announcements for the others.
    pub fn join(
        &mut self,
        id: ParticipantId,
        room: &str,
        name: &str,
        media: MediaState,
        link: T,
        e2ee: E2eeStart,
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
        if entry.members.len() >= self.max_per_room {
            return Err(ServerMessage::error(
                ErrorCode::RoomFull,
                format!(
                    "it already has {} participants, the most this server allows in one room",
                    self.max_per_room
                ),
            ));
        }
        let info = ParticipantInfo {
            id,
            name: name.to_owned(),
            media,
            key: None,
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
                    e2ee: e2ee.clone(),
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
        self.update(id, |info| {
            std::mem::replace(&mut info.media, media) != media
        })
    }

    /// Records the MLS signature key `id` announced (hex) and tells everyone.
    pub fn set_key(&mut self, id: ParticipantId, key: String) -> Deliveries<'_, T> {
        self.update(id, |info| {
            let changed = info.key.as_deref() != Some(key.as_str());
            info.key = Some(key);
            changed
        })
    }

    /// Applies `change` to `id`'s info; if it reports a change, announces
    /// the new info to the whole room (the participant included).
    fn update(
        &mut self,
        id: ParticipantId,
        change: impl FnOnce(&mut ParticipantInfo) -> bool,
    ) -> Deliveries<'_, T> {
        let Some(room) = self.room_of.get(&id).and_then(|r| self.rooms.get_mut(r)) else {
            return Vec::new();
        };
        let Some(member) = room.members.get_mut(&id) else {
            return Vec::new();
        };
        if !change(&mut member.info) {
            return Vec::new();
        }
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

    fn start() -> E2eeStart {
        E2eeStart {
            create: false,
            external_sender: String::new(),
        }
    }

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
        rooms
            .join(1, "r", "Ada", media(), "a", start())
            .expect("join");
        let out = rooms
            .join(2, "r", " Bob ", media(), "b", start())
            .expect("join");
        assert_eq!(out.len(), 2);
        let welcome = out.iter().find(|(l, _)| **l == "b").expect("welcome for b");
        match &welcome.1 {
            ServerMessage::Welcome {
                you, participants, ..
            } => {
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
    fn a_key_update_is_announced_once_to_everyone() {
        let mut rooms = Rooms::default();
        rooms
            .join(1, "r", "Ada", media(), "a", start())
            .expect("join");
        rooms
            .join(2, "r", "Bob", media(), "b", start())
            .expect("join");
        let out = rooms.set_key(1, "abcd".into());
        assert_eq!(out.len(), 2);
        match &out[0].1 {
            ServerMessage::ParticipantUpdated { participant } => {
                assert_eq!(participant.key.as_deref(), Some("abcd"))
            }
            other => panic!("expected participant_updated, got {other:?}"),
        }
        assert!(rooms.set_key(1, "abcd".into()).is_empty());
    }

    #[test]
    fn leaving_announces_to_the_rest_and_empties_the_room() {
        let mut rooms = Rooms::default();
        rooms
            .join(1, "r", "Ada", media(), "a", start())
            .expect("join");
        rooms
            .join(2, "r", "Bob", media(), "b", start())
            .expect("join");
        let (link, out) = rooms.leave(1).expect("was there");
        assert_eq!(link, "a");
        assert_eq!(out.len(), 1);
        assert!(rooms.leave(1).is_none());
        assert!(rooms.occupied("r"));
        let (_, out) = rooms.leave(2).expect("was there");
        assert!(out.is_empty());
        assert!(rooms.link(2).is_none());
        assert!(!rooms.occupied("r"));
    }

    #[test]
    fn bad_names_and_rooms_are_refused_with_codes() {
        let mut rooms = Rooms::default();
        let code = |r: Result<Deliveries<'_, &str>, ServerMessage>| match r {
            Err(ServerMessage::Error { code, .. }) => code,
            _ => panic!("expected an error"),
        };
        assert_eq!(
            code(rooms.join(1, "a/b", "Ada", media(), "a", start())),
            ErrorCode::InvalidRoom
        );
        assert_eq!(
            code(rooms.join(1, "r", "  ", media(), "a", start())),
            ErrorCode::InvalidName
        );
        rooms
            .join(1, "r", "Ada", media(), "a", start())
            .expect("join");
        assert_eq!(
            code(rooms.join(1, "r", "Ada", media(), "a", start())),
            ErrorCode::AlreadyJoined
        );
    }

    #[test]
    fn a_full_room_refuses_the_next_joiner() {
        let mut rooms = Rooms::default();
        for id in 0..MAX_PARTICIPANTS_PER_ROOM as u32 {
            rooms
                .join(id, "big", "P", media(), id, start())
                .expect("room has space");
        }
        match rooms.join(999, "big", "Late", media(), 999, start()) {
            Err(ServerMessage::Error { code, .. }) => assert_eq!(code, ErrorCode::RoomFull),
            _ => panic!("expected room_full"),
        }
    }

    #[test]
    fn a_configured_limit_applies_per_room_and_frees_up_on_leave() {
        let mut rooms = Rooms::with_limit(2);
        rooms
            .join(1, "r", "Ada", media(), 1, start())
            .expect("first");
        rooms
            .join(2, "r", "Bob", media(), 2, start())
            .expect("second");
        match rooms.join(3, "r", "Cy", media(), 3, start()) {
            Err(ServerMessage::Error { code, message }) => {
                assert_eq!(code, ErrorCode::RoomFull);
                assert!(message.contains("2 participants"), "{message}");
            }
            _ => panic!("expected room_full"),
        }
        rooms
            .join(3, "other", "Cy", media(), 3, start())
            .expect("another room has space");
        rooms.leave(3);
        rooms.leave(2);
        rooms
            .join(3, "r", "Cy", media(), 3, start())
            .expect("a place freed up");
    }
}
