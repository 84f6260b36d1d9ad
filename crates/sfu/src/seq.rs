//! Rewriting one slot's RTP numbering so it stays one continuous stream.
//!
//! A slot (see `slots`) carries one source at a time, and its source changes
//! as people join, leave and speak. The receiver must see one stream: each
//! source's first packet on the slot continues the slot's sequence numbers
//! and timestamps where the previous source's ended, and within a source the
//! source's own gaps are kept (so NACKs and loss detection still work).
//!
//! A fresh slot starts numbering below 2^15. SRTP keys its packet index on
//! the rollover counter, which a new receiver assumes to be 0; forwarding a
//! long-running source's sequence numbers unchanged would make every packet
//! fail authentication once the source had wrapped.

use std::time::Instant;

use str0m::rtp::SeqNo;

#[derive(Debug)]
pub struct SlotRewrite {
    /// RTP clock rate of the slot's kind of media (48 kHz audio, 90 kHz video).
    clock_rate: u32,
    /// Where a fresh slot's numbering starts.
    start: u64,
    /// The current source's extended sequence number that maps to the given
    /// outgoing one: its first forwarded packet.
    base: Option<(u64, u64)>,
    /// Added (wrapping) to the current source's RTP timestamps.
    ts_offset: u32,
    /// The highest outgoing sequence number so far, with its timestamp and
    /// the time it was written.
    last: Option<(u64, u32, Instant)>,
}

impl SlotRewrite {
    pub fn new(start: u16, clock_rate: u32) -> Self {
        SlotRewrite {
            clock_rate,
            start: u64::from(start & 0x7fff),
            base: None,
            ts_offset: 0,
            last: None,
        }
    }

    /// Another source takes the slot: its next packet continues the numbering.
    pub fn restart(&mut self) {
        self.base = None;
    }

    /// Whether anything was forwarded on this slot yet.
    pub fn has_sent(&self) -> bool {
        self.last.is_some()
    }

    /// The outgoing sequence number and timestamp for a packet of the
    /// current source, or `None` for one older than its first forwarded
    /// packet (it cannot be placed).
    pub fn map(&mut self, seq: SeqNo, timestamp: u32, now: Instant) -> Option<(SeqNo, u32)> {
        let seq = *seq;
        let (base_in, base_out) = match self.base {
            Some(base) => base,
            None => {
                let out = self.last.map_or(self.start, |(s, _, _)| s + 1);
                self.ts_offset = match self.last {
                    // Time passes on the slot while it switches: the new
                    // source's first timestamp lands that far after the last.
                    Some((_, last_ts, at)) => {
                        let elapsed = now.saturating_duration_since(at).as_secs_f64();
                        let ticks = ((elapsed * f64::from(self.clock_rate)) as u32).max(1);
                        last_ts.wrapping_add(ticks).wrapping_sub(timestamp)
                    }
                    None => 0,
                };
                self.base = Some((seq, out));
                (seq, out)
            }
        };
        let out = base_out + seq.checked_sub(base_in)?;
        let ts = timestamp.wrapping_add(self.ts_offset);
        if self.last.is_none_or(|(s, _, _)| out > s) {
            self.last = Some((out, ts, now));
        }
        Some((out.into(), ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_late_subscriber_starts_below_the_first_rollover_and_keeps_gaps() {
        let now = Instant::now();
        let mut slot = SlotRewrite::new(1000, 90_000);
        let first = slot.map(SeqNo::from(5 * 65_536 + 100), 7, now);
        assert_eq!(first.map(|(s, t)| (*s, t)), Some((1000, 7)));
        let next = slot.map(SeqNo::from(5 * 65_536 + 103), 9, now);
        assert_eq!(next.map(|(s, t)| (*s, t)), Some((1003, 9)));
    }

    #[test]
    fn packets_from_before_the_first_forwarded_one_are_dropped() {
        let now = Instant::now();
        let mut slot = SlotRewrite::new(7, 90_000);
        slot.map(SeqNo::from(500), 0, now);
        assert_eq!(slot.map(SeqNo::from(499), 0, now), None);
    }

    #[test]
    fn a_new_source_continues_the_slot_numbering_and_its_clock() {
        let t0 = Instant::now();
        let mut slot = SlotRewrite::new(100, 90_000);
        slot.map(SeqNo::from(40_000), 1_000_000, t0);
        slot.map(SeqNo::from(40_001), 1_003_000, t0);
        slot.restart();
        // The next source's numbers are unrelated; 100 ms later on the wall clock.
        let t1 = t0 + Duration::from_millis(100);
        let (seq, ts) = slot.map(SeqNo::from(7), 55, t1).expect("placed");
        assert_eq!(*seq, 102);
        assert_eq!(ts, 1_003_000 + 9_000);
        let (seq, ts) = slot.map(SeqNo::from(8), 55 + 3_000, t1).expect("placed");
        assert_eq!((*seq, ts), (103, 1_015_000));
        // The old source's late packets belong to nobody now.
        assert_eq!(slot.map(SeqNo::from(6), 0, t1), None);
    }
}
