//! Per-subscriber RTP sequence number rebasing.
//!
//! A subscriber that joins late sees a source's stream for the first time
//! after it may have wrapped its 16-bit sequence number. SRTP keys its
//! packet index on the rollover counter (ROC), which a new receiver assumes
//! to be 0, so forwarding the source's extended sequence number unchanged
//! would make every packet fail authentication. Each subscription therefore
//! restarts the numbering below 2^15 and keeps the source's gaps (so NACKs
//! and loss detection still work).

use str0m::rtp::SeqNo;

#[derive(Debug, Default)]
pub struct SeqRebase {
    /// Extended source sequence number that maps to outgoing `start`.
    base: Option<(u64, u64)>,
}

impl SeqRebase {
    /// The outgoing sequence number for a source packet, or `None` for a
    /// packet older than the first one forwarded (it cannot be placed).
    pub fn map(&mut self, source: SeqNo, start: u16) -> Option<SeqNo> {
        let source = *source;
        let (base, start) = *self.base.get_or_insert((source, u64::from(start & 0x7fff)));
        source.checked_sub(base).map(|delta| (start + delta).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_subscriber_starts_below_the_first_rollover_and_keeps_gaps() {
        let mut rebase = SeqRebase::default();
        let first = rebase.map(SeqNo::from(5 * 65_536 + 100), 1000);
        assert_eq!(first.map(|s| *s), Some(1000));
        assert_eq!(
            rebase.map(SeqNo::from(5 * 65_536 + 103), 0).map(|s| *s),
            Some(1003)
        );
    }

    #[test]
    fn packets_from_before_the_first_forwarded_one_are_dropped() {
        let mut rebase = SeqRebase::default();
        rebase.map(SeqNo::from(500), 7);
        assert_eq!(rebase.map(SeqNo::from(499), 7), None);
    }
}
