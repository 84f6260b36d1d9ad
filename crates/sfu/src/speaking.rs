//! Who is speaking, from the RFC 6464 audio level each audio packet carries
//! in its RTP header. The payload is never read (it may be encrypted).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_protocol::ParticipantId;

/// Audio level (dBov, 0 = loudest, -127 = silence) above which a participant counts as speaking.
const SPEAKING_LEVEL: i8 = -50;
/// How long one loud packet keeps a participant marked as speaking.
const HOLD: Duration = Duration::from_millis(600);

#[derive(Debug)]
struct Level {
    room: Arc<str>,
    loudest_recent: i8,
    last_loud: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct SpeakingDetector {
    levels: HashMap<ParticipantId, Level>,
    /// The set last reported per room, to report only changes.
    reported: HashMap<Arc<str>, Vec<ParticipantId>>,
}

impl SpeakingDetector {
    pub fn observe(&mut self, room: &Arc<str>, id: ParticipantId, level: i8, now: Instant) {
        let entry = self.levels.entry(id).or_insert_with(|| Level {
            room: room.clone(),
            loudest_recent: i8::MIN,
            last_loud: None,
        });
        if level >= SPEAKING_LEVEL {
            entry.last_loud = Some(now);
            entry.loudest_recent = entry.loudest_recent.max(level);
        }
    }

    /// When `id` last spoke (was louder than the speaking level).
    pub fn last_loud(&self, id: ParticipantId) -> Option<Instant> {
        self.levels.get(&id).and_then(|l| l.last_loud)
    }

    pub fn forget(&mut self, id: ParticipantId) {
        if let Some(level) = self.levels.remove(&id) {
            if let Some(ids) = self.reported.get_mut(&level.room) {
                ids.retain(|&p| p != id);
            }
        }
    }

    /// Rooms whose speaking set changed since the last tick, loudest first.
    pub fn tick(&mut self, now: Instant) -> Vec<(Arc<str>, Vec<ParticipantId>)> {
        let mut current: HashMap<Arc<str>, Vec<(i8, ParticipantId)>> = HashMap::new();
        for (&id, level) in &mut self.levels {
            let speaking = level
                .last_loud
                .is_some_and(|t| now.duration_since(t) < HOLD);
            let room = current.entry(level.room.clone()).or_default();
            if speaking {
                room.push((level.loudest_recent, id));
            }
            level.loudest_recent = i8::MIN;
        }
        let mut changed = Vec::new();
        for (room, mut speakers) in current {
            speakers.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let ids: Vec<ParticipantId> = speakers.into_iter().map(|(_, id)| id).collect();
            let previous = self.reported.entry(room.clone()).or_default();
            let mut sorted_prev = previous.clone();
            let mut sorted_now = ids.clone();
            sorted_prev.sort_unstable();
            sorted_now.sort_unstable();
            if sorted_prev != sorted_now {
                *previous = ids.clone();
                changed.push((room, ids));
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loud_participant_is_reported_once_and_silence_clears_it() {
        let room: Arc<str> = Arc::from("r");
        let mut detector = SpeakingDetector::default();
        let t0 = Instant::now();
        detector.observe(&room, 1, -20, t0);
        detector.observe(&room, 2, -127, t0);
        assert_eq!(detector.tick(t0), vec![(room.clone(), vec![1])]);
        assert!(detector.tick(t0 + Duration::from_millis(100)).is_empty());
        detector.observe(&room, 1, -127, t0 + Duration::from_millis(700));
        assert_eq!(
            detector.tick(t0 + Duration::from_millis(700)),
            vec![(room, vec![])]
        );
    }
}
