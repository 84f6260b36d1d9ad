//! Receive statistics per remote participant and track, computed from RTP
//! headers only (so `--count-only` costs no more than counting): packets,
//! bytes, frames (marker bits on video), loss from sequence gaps, and the
//! RFC 3550 interarrival jitter.

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
    /// Packets missing from the sequence number range seen (never negative:
    /// duplicates from retransmission do not hide losses elsewhere).
    pub lost: u64,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    #[serde(skip)]
    seq: Option<SeqTrack>,
    #[serde(skip)]
    transit: Option<f64>,
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
        self.lost = expected.saturating_sub(s.received);
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

    pub fn add(&mut self, other: &TrackStats) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.frames += other.frames;
        self.frames_complete += other.frames_complete;
        self.keyframes += other.keyframes;
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
}

impl ParticipantStats {
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
}
