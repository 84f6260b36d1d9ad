//! Receive slots: which sources a subscriber gets, on a fixed set of m-lines.
//!
//! Every subscriber has the same fixed number of send m-lines per kind of
//! track (its *slots*), negotiated once when it joins. The SFU maps sources
//! onto them and rewrites sequence numbers and timestamps so each slot is one
//! continuous stream; joins and leaves change the mapping, never the SDP. So
//! the server's work per subscriber does not grow with the room, and streams
//! nobody sends on do not exist.
//!
//! This module is the policy: given who could fill a kind of slot (ranked,
//! best first), which source goes in which slot. It keeps a source in the
//! slot it has (a move would cost the receiver a keyframe and its tile a
//! flicker) and only replaces holders that dropped out of the top.

use conclave_protocol::{ParticipantId, TrackSource};

/// Slots per subscriber for each kind of track. Sized so that meetings of up
/// to ten people never switch a slot (each other participant has a camera
/// and an audio slot of its own); above that, the most recent speakers win.
pub fn slot_count(track: TrackSource) -> usize {
    match track {
        TrackSource::Microphone => 9,
        TrackSource::Camera => 9,
        TrackSource::Screen => 2,
    }
}

/// The new holder of each slot, given the current holders and the ranked
/// candidates (best first, no duplicates). Holders among the top
/// `current.len()` candidates stay where they are; the other top candidates
/// fill the remaining slots in rank order; a slot with nothing to carry
/// becomes empty.
pub fn assign(
    current: &[Option<ParticipantId>],
    ranked: &[ParticipantId],
) -> Vec<Option<ParticipantId>> {
    let top = &ranked[..ranked.len().min(current.len())];
    let mut next: Vec<Option<ParticipantId>> = Vec::with_capacity(current.len());
    for holder in current {
        let keep = holder.filter(|h| top.contains(h) && !next.contains(&Some(*h)));
        next.push(keep);
    }
    let waiting: Vec<ParticipantId> = top
        .iter()
        .copied()
        .filter(|c| !next.contains(&Some(*c)))
        .collect();
    let mut waiting = waiting.into_iter();
    for slot in next.iter_mut().filter(|s| s.is_none()) {
        match waiting.next() {
            Some(c) => *slot = Some(c),
            None => break,
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_room_fills_slots_in_order_and_keeps_them() {
        let first = assign(&[None, None, None], &[4, 7]);
        assert_eq!(first, vec![Some(4), Some(7), None]);
        // A newcomer takes the free slot; nobody moves.
        assert_eq!(assign(&first, &[7, 4, 9]), vec![Some(4), Some(7), Some(9)]);
    }

    #[test]
    fn a_source_that_left_frees_its_slot_without_moving_the_others() {
        assert_eq!(
            assign(&[Some(4), Some(7), Some(9)], &[4, 9]),
            vec![Some(4), None, Some(9)]
        );
    }

    #[test]
    fn in_a_full_room_a_new_top_candidate_replaces_the_one_that_fell_out() {
        // 2 slots; 9 starts speaking and ranks first, 7 falls to third.
        assert_eq!(
            assign(&[Some(4), Some(7)], &[9, 4, 7]),
            vec![Some(4), Some(9)]
        );
    }

    #[test]
    fn no_source_is_given_two_slots() {
        let next = assign(&[Some(3), None, Some(3)], &[3, 5]);
        let mut held: Vec<_> = next.iter().flatten().collect();
        held.sort();
        held.dedup();
        assert_eq!(held.len(), next.iter().flatten().count());
    }
}
