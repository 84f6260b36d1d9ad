//! The m-line map (`TrackMapping`) and what it means for received frames,
//! now that the SFU gives each subscriber fixed receive slots: its first
//! offer has every m-line the client will ever have, and `tracks` messages
//! move subscribe m-lines between participants (or to nobody) without
//! renegotiating. One m-line, and one SSRC, then carries A's camera, later
//! B's.
//!
//! Frames on a slot count only if they are from the MLS leaf of the
//! participant the slot carries (the browser's Worker keeps the same rule,
//! `web/src/e2ee/receivers.ts`). The server's `tracks` message and the
//! media race, so A's last frames can arrive after the agent moved the
//! slot to B, and B's first ones before: both are dropped as *switching*,
//! not counted as a wrong sender, which stays the sign of a server that
//! labels one member's media as another's.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use conclave_protocol::{ParticipantId, TrackDirection, TrackMapping, TrackSource};
use str0m::media::Mid;

pub type TrackMap = HashMap<Mid, TrackMapping>;

/// An offer's map, by mid (of a mid listed twice, the first entry counts).
pub fn offer_map(tracks: Vec<TrackMapping>) -> TrackMap {
    let mut map = TrackMap::new();
    for t in tracks {
        map.entry(Mid::from(t.mid.as_str())).or_insert(t);
    }
    map
}

/// The map after a `tracks` message (the whole map, not a change): every
/// subscribe m-line carries what the message says, or nothing if it is not
/// listed. Publish m-lines stay as the last offer negotiated them (what an
/// m-line sends cannot change without an offer), so the message's publish
/// entries, and subscribe entries on a publish m-line, are ignored.
pub fn remap(current: &TrackMap, tracks: Vec<TrackMapping>) -> TrackMap {
    let mut next: TrackMap = current
        .iter()
        .filter(|(_, t)| t.direction == TrackDirection::Publish)
        .map(|(mid, t)| (*mid, t.clone()))
        .collect();
    for (mid, t) in offer_map(tracks) {
        if t.direction == TrackDirection::Subscribe {
            next.entry(mid).or_insert(t);
        }
    }
    next
}

/// Who a subscribe m-line carries (None: nobody, or a publish m-line).
pub fn carried(map: &TrackMap, mid: &Mid) -> Option<(ParticipantId, TrackSource)> {
    map.get(mid)
        .filter(|t| t.direction == TrackDirection::Subscribe)
        .map(|t| (t.participant, t.source))
}

/// Subscribe m-lines that carry another participant or source than before
/// (including ones that start or stop carrying anything), each with the
/// participant it carried before.
pub fn moved(before: &TrackMap, after: &TrackMap) -> Vec<(Mid, Option<ParticipantId>)> {
    let mids: HashSet<&Mid> = before.keys().chain(after.keys()).collect();
    mids.into_iter()
        .filter_map(|mid| {
            let was = carried(before, mid);
            (was != carried(after, mid)).then(|| (*mid, was.map(|(p, _)| p)))
        })
        .collect()
}

/// Participants some subscribe m-line carries.
pub fn subscribed(map: &TrackMap) -> HashSet<ParticipantId> {
    map.values()
        .filter(|t| t.direction == TrackDirection::Subscribe)
        .map(|t| t.participant)
        .collect()
}

/// How long after a slot moved away from a participant frames of another
/// leaf are taken for frames in flight across the move.
pub const SWITCH_GRACE: Duration = Duration::from_secs(1);

/// What became of one decrypted frame on a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the leaf of the participant the slot carries.
    Accept,
    /// From another member, not explained by a recent move.
    WrongSender,
    /// In flight across a move of the slot.
    Switching,
    /// The slot's participant has no leaf we know (no key announced, or
    /// not in our roster): nobody to tie the frame to.
    Unattributed,
}

/// Frames of one other leaf refused in a row on a slot, charged as wrong
/// senders to the participant the slot carried.
#[derive(Debug, Clone, Copy)]
struct Refused {
    leaf: u32,
    count: u64,
    since: Instant,
    charged: ParticipantId,
}

/// The part of a slot's history that judging its frames needs.
#[derive(Debug, Default)]
pub struct SlotGuard {
    /// When the slot last moved away from a participant.
    switched_at: Option<Instant>,
    refused: Option<Refused>,
}

impl SlotGuard {
    /// The slot moved (see `moved`): `had_someone` if it carried a
    /// participant before, `to_leaf` the new participant's leaf if known.
    /// Returns frames earlier charged as wrong senders that were the new
    /// participant's first ones, ahead of the `tracks` message: (the
    /// participant they were charged to, how many).
    pub fn moved(
        &mut self,
        had_someone: bool,
        to_leaf: Option<u32>,
        now: Instant,
    ) -> Option<(ParticipantId, u64)> {
        if had_someone {
            self.switched_at = Some(now);
        }
        let refused = self.refused.take()?;
        (Some(refused.leaf) == to_leaf
            && now.saturating_duration_since(refused.since) <= SWITCH_GRACE)
            .then_some((refused.charged, refused.count))
    }

    /// Whether the slot moved away from a participant within `SWITCH_GRACE`.
    pub fn recently_moved(&self, now: Instant) -> bool {
        self.switched_at
            .is_some_and(|at| now.saturating_duration_since(at) <= SWITCH_GRACE)
    }

    /// A frame from `leaf` decrypted on this slot, which carries `charged`,
    /// whose leaf is `expected`.
    pub fn judge(
        &mut self,
        expected: Option<u32>,
        leaf: u32,
        charged: ParticipantId,
        now: Instant,
    ) -> Verdict {
        if expected == Some(leaf) {
            return Verdict::Accept;
        }
        if self.recently_moved(now) {
            return Verdict::Switching;
        }
        if expected.is_none() {
            return Verdict::Unattributed;
        }
        match self.refused.as_mut() {
            Some(r) if r.leaf == leaf && r.charged == charged => r.count += 1,
            _ => {
                self.refused = Some(Refused {
                    leaf,
                    count: 1,
                    since: now,
                    charged,
                })
            }
        }
        Verdict::WrongSender
    }
}

/// Track-map entries for tests (here and in `participant`).
#[cfg(test)]
pub(crate) mod test_maps {
    use conclave_protocol::{ParticipantId, TrackDirection, TrackMapping, TrackSource};

    pub fn sub(mid: &str, participant: ParticipantId, source: TrackSource) -> TrackMapping {
        TrackMapping {
            mid: mid.into(),
            direction: TrackDirection::Subscribe,
            participant,
            source,
        }
    }

    pub fn publish(mid: &str, source: TrackSource) -> TrackMapping {
        TrackMapping {
            mid: mid.into(),
            direction: TrackDirection::Publish,
            participant: 1,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_maps::{publish, sub};
    use super::*;

    fn m(mid: &str) -> Mid {
        Mid::from(mid)
    }

    /// A slot server's first offer: three publish m-lines, slots 3–6.
    fn offered() -> TrackMap {
        offer_map(vec![
            publish("0", TrackSource::Microphone),
            publish("1", TrackSource::Camera),
            publish("2", TrackSource::Screen),
            sub("3", 2, TrackSource::Microphone),
            sub("5", 2, TrackSource::Camera),
        ])
    }

    #[test]
    fn a_tracks_message_moves_slots_and_keeps_the_publish_m_lines() {
        let before = offered();
        let after = remap(
            &before,
            vec![
                sub("3", 7, TrackSource::Microphone),
                sub("6", 2, TrackSource::Camera),
                // Cannot change without an offer: ignored.
                publish("4", TrackSource::Screen),
                sub("1", 9, TrackSource::Camera),
            ],
        );
        assert_eq!(carried(&after, &m("3")), Some((7, TrackSource::Microphone)));
        assert_eq!(
            carried(&after, &m("5")),
            None,
            "not listed: carries nothing"
        );
        assert_eq!(carried(&after, &m("6")), Some((2, TrackSource::Camera)));
        assert_eq!(after.get(&m("1")), before.get(&m("1")));
        assert!(!after.contains_key(&m("4")));
        let publish: HashSet<_> = after
            .values()
            .filter(|t| t.direction == TrackDirection::Publish)
            .map(|t| t.mid.clone())
            .collect();
        assert_eq!(publish, ["0", "1", "2"].map(String::from).into());
        let mut moves = moved(&before, &after);
        moves.sort();
        assert_eq!(
            moves,
            vec![(m("3"), Some(2)), (m("5"), Some(2)), (m("6"), None)]
        );
        assert_eq!(subscribed(&after), [2, 7].into());
        // An empty list frees every slot.
        let empty = remap(&after, Vec::new());
        assert_eq!(empty.len(), 3);
        assert!(subscribed(&empty).is_empty());
    }

    #[test]
    fn a_source_change_on_a_slot_is_a_move_and_the_first_entry_of_a_mid_counts() {
        let before = offer_map(vec![
            sub("3", 2, TrackSource::Camera),
            sub("3", 4, TrackSource::Camera),
        ]);
        assert_eq!(carried(&before, &m("3")), Some((2, TrackSource::Camera)));
        let after = remap(&before, vec![sub("3", 2, TrackSource::Screen)]);
        assert_eq!(moved(&before, &after), vec![(m("3"), Some(2))]);
        assert!(moved(&after, &after).is_empty());
    }

    #[test]
    fn only_the_carried_members_frames_count_and_a_move_excuses_the_frames_in_flight() {
        let t = Instant::now();
        let (a, b) = (3, 5);
        let (pa, pb) = (20, 21);
        let mut slot = SlotGuard::default();
        assert_eq!(slot.judge(Some(a), a, pa, t), Verdict::Accept);
        assert_eq!(slot.judge(Some(a), b, pa, t), Verdict::WrongSender);
        assert_eq!(slot.judge(None, b, pa, t), Verdict::Unattributed);
        // The slot moves from A to B: A's frames in flight are switching.
        let mut slot = SlotGuard::default();
        assert_eq!(slot.moved(true, Some(b), t), None);
        let soon = t + Duration::from_millis(300);
        assert_eq!(slot.judge(Some(b), a, pb, soon), Verdict::Switching);
        assert_eq!(slot.judge(Some(b), b, pb, soon), Verdict::Accept);
        let later = t + SWITCH_GRACE + Duration::from_millis(1);
        assert_eq!(slot.judge(Some(b), a, pb, later), Verdict::WrongSender);
        // From nobody to someone is no move away from a member.
        let mut slot = SlotGuard::default();
        slot.moved(false, Some(b), t);
        assert_eq!(slot.judge(Some(b), a, pb, soon), Verdict::WrongSender);
    }

    #[test]
    fn the_new_participants_first_frames_before_the_move_are_given_back() {
        let t = Instant::now();
        let (a, b, c) = (3, 5, 8);
        let (pa, pb) = (20, 21);
        let mut slot = SlotGuard::default();
        for i in 0..4 {
            let at = t + Duration::from_millis(i);
            assert_eq!(slot.judge(Some(a), b, pa, at), Verdict::WrongSender);
        }
        let at = t + Duration::from_millis(50);
        assert_eq!(slot.moved(true, Some(b), at), Some((pa, 4)));
        // Once only.
        assert_eq!(slot.moved(true, Some(b), at), None);
        assert_eq!(slot.judge(Some(b), b, pb, at), Verdict::Accept);

        // Not when the slot goes to someone else, or the run is too old
        // to be a race.
        let mut slot = SlotGuard::default();
        slot.judge(Some(a), b, pa, t);
        assert_eq!(slot.moved(true, Some(c), t), None);
        let mut slot = SlotGuard::default();
        slot.judge(Some(a), b, pa, t);
        slot.judge(Some(a), b, pa, t + SWITCH_GRACE);
        assert_eq!(
            slot.moved(true, Some(b), t + SWITCH_GRACE + Duration::from_millis(1)),
            None
        );
        // A run restarts when another leaf's frames come between.
        let mut slot = SlotGuard::default();
        slot.judge(Some(a), b, pa, t);
        slot.judge(Some(a), c, pa, t);
        slot.judge(Some(a), b, pa, t);
        assert_eq!(slot.moved(true, Some(b), t), Some((pa, 1)));
    }
}
