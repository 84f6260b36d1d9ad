//! Receive statistics per remote participant and track, computed from RTP
//! headers only (so `--count-only` costs no more than counting): packets,
//! bytes, frames (marker bits on video), loss from sequence gaps, and the
//! RFC 3550 interarrival jitter; outside count-only mode also what SFrame
//! decryption made of the frames.

use std::collections::BTreeMap;
use std::time::Instant;

use conclave_protocol::{ParticipantId, TrackSource};
use serde::Serialize;

/// Counters for one received track.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrackStats {
    pub packets: u64,
    pub bytes: u64,
    /// Marker bits seen (video: one per frame).
    pub frames: u64,
    /// Frames fully reassembled and recognised as VP8 (not in count-only mode).
    pub frames_complete: u64,
    pub keyframes: u64,
    /// Frames decrypted and authenticated (SFrame) whose plaintext looks
    /// right (not in count-only mode).
    pub decrypted: u64,
    /// Frames that failed authentication or were malformed: with a
    /// well-behaved server and members, always 0.
    pub decrypt_failures: u64,
    /// Frames dropped for lack of their epoch's key (sent before we joined,
    /// or for an epoch we never reached).
    pub no_key: u64,
    /// Packets missing from the sequence number range seen (never negative:
    /// duplicates from retransmission do not hide losses elsewhere).
    pub lost: u64,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    #[serde(skip)]
    seq: Option<SeqTrack>,
    #[serde(skip)]
    transit: Option<f64>,
    /// Loss counted on the receive slots this track was on before.
    #[serde(skip)]
    lost_before: u64,
}

#[derive(Debug, Clone, Copy)]
struct SeqTrack {
    first: u64,
    highest: u64,
    received: u64,
}

impl TrackStats {
    /// Records one packet. `seq` is str0m's extended sequence number, `clock`
    /// the RTP clock rate, `arrival` seconds since an arbitrary epoch.
    pub fn record(
        &mut self,
        seq: u64,
        rtp_time: u32,
        clock: u32,
        arrival: f64,
        len: usize,
        marker: bool,
    ) {
        self.packets += 1;
        self.bytes += len as u64;
        if marker {
            self.frames += 1;
        }
        let s = self.seq.get_or_insert(SeqTrack {
            first: seq,
            highest: seq,
            received: 0,
        });
        s.received += 1;
        s.first = s.first.min(seq);
        s.highest = s.highest.max(seq);
        let expected = s.highest - s.first + 1;
        self.lost = self.lost_before + expected.saturating_sub(s.received);
        // Jitter, RFC 3550 §6.4.1, computed in milliseconds.
        let transit = arrival * 1000.0 - f64::from(rtp_time) * 1000.0 / f64::from(clock);
        if let Some(prev) = self.transit {
            let mut d = (transit - prev).abs();
            // RTP timestamps wrap; a jump of hours is a wrap, not jitter.
            if d > 3_600_000.0 {
                d = 0.0;
            }
            self.jitter_ms += (d - self.jitter_ms) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// The track arrives on another receive slot from now on: other
    /// sequence numbers and timestamps (the SFU numbers each slot as one
    /// stream), so loss and jitter start over from its next packet, keeping
    /// the loss counted so far.
    pub fn restart(&mut self) {
        self.lost_before = self.lost;
        self.seq = None;
        self.transit = None;
    }

    pub fn add(&mut self, other: &TrackStats) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.frames += other.frames;
        self.frames_complete += other.frames_complete;
        self.keyframes += other.keyframes;
        self.decrypted += other.decrypted;
        self.decrypt_failures += other.decrypt_failures;
        self.no_key += other.no_key;
        self.lost += other.lost;
        self.jitter_ms = self.jitter_ms.max(other.jitter_ms);
    }

    /// Loss in percent of packets expected.
    pub fn loss_percent(&self) -> f64 {
        let expected = self.packets + self.lost;
        if expected == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / expected as f64
        }
    }
}

/// What one remote participant sent us.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteStats {
    pub name: String,
    pub audio: TrackStats,
    pub video: TrackStats,
    pub screen: TrackStats,
    /// Frames on this participant's m-lines that decrypted under another
    /// member's SFrame key than the one the server announced for them
    /// (dropped, not counted as decrypted).
    pub wrong_sender: u64,
    #[serde(skip)]
    pub last_packet: Option<Instant>,
}

impl RemoteStats {
    pub fn track_mut(&mut self, source: TrackSource) -> &mut TrackStats {
        match source {
            TrackSource::Microphone => &mut self.audio,
            TrackSource::Camera => &mut self.video,
            TrackSource::Screen => &mut self.screen,
        }
    }
}

/// Everything one local participant has seen and sent so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ParticipantStats {
    pub name: String,
    pub id: Option<ParticipantId>,
    pub connected: bool,
    /// In the room's MLS group (has the media keys).
    pub in_group: bool,
    pub epoch: Option<u64>,
    /// The current epoch's security code (public: members compare it).
    pub security_code: Option<String>,
    /// Members of the group in the current epoch.
    pub members: usize,
    /// Our commits the server accepted.
    pub commits: u64,
    /// Rejoins after a missed commit or a removal.
    pub rejoins: u64,
    pub remotes: BTreeMap<ParticipantId, RemoteStats>,
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub sent_frames: u64,
    pub keyframe_requests: u64,
    /// `speaking` messages received (the server saw our RFC 6464 levels).
    pub speaking_updates: u64,
    /// The latest set of speakers, loudest first.
    pub speaking: Vec<ParticipantId>,
    /// Datagrams the OS refused (socket buffer full).
    pub send_drops: u64,
    /// Frames dropped because they crossed a move of their receive slot to
    /// another participant (the previous one's last, the next one's first).
    pub dropped_switching: u64,
    /// Frames dropped because they cannot be tied to the participant their
    /// slot carries: no announced key in our roster, or an older epoch's
    /// frame under another leaf than theirs now.
    pub dropped_unattributed: u64,
}

impl ParticipantStats {
    /// Frames decrypted, failed and dropped for lack of keys, over every remote and track.
    pub fn e2ee_totals(&self) -> (u64, u64, u64) {
        let (audio, video) = self.totals();
        (
            audio.decrypted + video.decrypted,
            audio.decrypt_failures + video.decrypt_failures,
            audio.no_key + video.no_key,
        )
    }

    /// Frames from a participant decrypted under someone else's key.
    pub fn wrong_sender(&self) -> u64 {
        self.remotes.values().map(|r| r.wrong_sender).sum()
    }

    /// Audio, video and screen of every remote, summed.
    pub fn totals(&self) -> (TrackStats, TrackStats) {
        let mut audio = TrackStats::default();
        let mut video = TrackStats::default();
        for r in self.remotes.values() {
            audio.add(&r.audio);
            video.add(&r.video);
            video.add(&r.screen);
        }
        (audio, video)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_in_sequence_numbers_count_as_loss_and_markers_as_frames() {
        let mut t = TrackStats::default();
        for (i, seq) in [10u64, 11, 13, 14, 17].into_iter().enumerate() {
            t.record(
                seq,
                3000 * i as u32,
                90_000,
                i as f64 / 30.0,
                100,
                seq % 2 == 1,
            );
        }
        assert_eq!(t.packets, 5);
        assert_eq!(t.lost, 3);
        assert_eq!(t.frames, 3);
        assert_eq!(t.bytes, 500);
        assert!(
            t.jitter_ms < 1.0,
            "perfectly paced packets: {}",
            t.jitter_ms
        );
        assert!((t.loss_percent() - 37.5).abs() < 1e-9);
    }

    #[test]
    fn a_track_that_moves_to_another_slot_keeps_its_loss_and_starts_over() {
        let mut t = TrackStats::default();
        for (i, seq) in [10u64, 11, 13].into_iter().enumerate() {
            t.record(seq, 960 * i as u32, 48_000, i as f64 * 0.02, 80, false);
        }
        assert_eq!(t.lost, 1);
        t.restart();
        // Far away in sequence numbers and timestamps: neither loss nor jitter.
        for (i, seq) in [30_000u64, 30_001, 30_002].into_iter().enumerate() {
            let i = i + 10;
            t.record(
                seq,
                2_000_000_000 + 960 * i as u32,
                48_000,
                i as f64 * 0.02,
                80,
                false,
            );
        }
        assert_eq!(t.lost, 1);
        assert_eq!(t.packets, 6);
        assert!(t.jitter_ms < 1.0, "{}", t.jitter_ms);
    }
}
