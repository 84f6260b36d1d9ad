//! Renders statistics: a detailed per-remote view for one participant, a
//! line per participant when many run at once, and JSON lines for scripts.

use std::fmt::Write;
use std::time::Duration;

use crate::stats::{ParticipantStats, TrackStats};

fn kbps(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64().max(0.001);
    bytes as f64 * 8.0 / secs / 1000.0
}

fn track(label: &str, t: &TrackStats, elapsed: Duration, video: bool) -> String {
    let mut s = format!(
        "{label} {} pkts {:.0} kbps",
        t.packets,
        kbps(t.bytes, elapsed)
    );
    if video {
        let _ = write!(s, " {} frames", t.frames);
        if t.frames_complete > 0 || t.keyframes > 0 {
            let _ = write!(s, " ({} whole, {} key)", t.frames_complete, t.keyframes);
        }
    }
    let _ = write!(
        s,
        " loss {:.1}% jitter {:.1} ms",
        t.loss_percent(),
        t.jitter_ms
    );
    if t.decrypted > 0 || t.decrypt_failures > 0 || t.no_key > 0 {
        let _ = write!(
            s,
            " decrypted {} failed {} no-key {}",
            t.decrypted, t.decrypt_failures, t.no_key
        );
    }
    s
}

/// The group part of a participant's line.
fn group(p: &ParticipantStats) -> String {
    if !p.in_group {
        return "not in the encrypted group".into();
    }
    let (decrypted, failed, no_key) = p.e2ee_totals();
    let mut s = format!(
        "epoch {} ({} members) code {}",
        p.epoch.unwrap_or(0),
        p.members,
        p.security_code.as_deref().unwrap_or("?")
    );
    if decrypted > 0 || failed > 0 || no_key > 0 {
        let _ = write!(
            s,
            ", frames decrypted {decrypted} failed {failed} no-key {no_key}"
        );
    }
    let wrong = p.wrong_sender();
    if wrong > 0 {
        let _ = write!(s, ", {wrong} under another member's key");
    }
    if p.dropped_switching > 0 {
        let _ = write!(s, ", {} across slot moves", p.dropped_switching);
    }
    if p.dropped_unattributed > 0 {
        let _ = write!(s, ", {} unattributed", p.dropped_unattributed);
    }
    s
}

/// Human-readable report. With one participant, one line per remote; with
/// several, one line per local participant and a total.
pub fn text(all: &[ParticipantStats], elapsed: Duration) -> String {
    let mut out = String::new();
    let secs = elapsed.as_secs_f64();
    if let [one] = all {
        let _ = writeln!(
            out,
            "[{secs:.1}s] {}: sent {} pkts ({:.0} kbps), {} keyframe requests, {} remote participants; {}",
            one.name,
            one.sent_packets,
            kbps(one.sent_bytes, elapsed),
            one.keyframe_requests,
            one.remotes.len(),
            group(one)
        );
        for (id, r) in &one.remotes {
            let _ = writeln!(
                out,
                "  {} (#{id}): {} | {}",
                r.name,
                track("audio", &r.audio, elapsed, false),
                track("video", &r.video, elapsed, true)
            );
        }
        return out;
    }
    let mut audio_all = TrackStats::default();
    let mut video_all = TrackStats::default();
    let mut sent = 0;
    for p in all {
        let (audio, video) = p.totals();
        let _ = writeln!(
            out,
            "[{secs:.1}s] {}: from {} remotes: {} | {} | {}",
            p.name,
            p.remotes.len(),
            track("audio", &audio, elapsed, false),
            track("video", &video, elapsed, true),
            group(p)
        );
        audio_all.add(&audio);
        video_all.add(&video);
        sent += p.sent_bytes;
    }
    let codes: std::collections::BTreeSet<&str> = all
        .iter()
        .filter_map(|p| p.security_code.as_deref())
        .collect();
    let _ = writeln!(
        out,
        "[{secs:.1}s] total ({} participants, {} connected, {} in the encrypted group, {} security code(s)): sent {:.0} kbps | received {} | {}",
        all.len(),
        all.iter().filter(|p| p.connected).count(),
        all.iter().filter(|p| p.in_group).count(),
        codes.len(),
        kbps(sent, elapsed),
        track("audio", &audio_all, elapsed, false),
        track("video", &video_all, elapsed, true)
    );
    out
}

/// One JSON object (a single line) with every counter.
pub fn json(kind: &str, all: &[ParticipantStats], elapsed: Duration) -> String {
    let mut audio = TrackStats::default();
    let mut video = TrackStats::default();
    for p in all {
        let (a, v) = p.totals();
        audio.add(&a);
        video.add(&v);
    }
    serde_json::json!({
        "type": kind,
        "elapsed_s": elapsed.as_secs_f64(),
        "totals": {
            "audio": audio,
            "video": video,
            "audio_loss_percent": audio.loss_percent(),
            "video_loss_percent": video.loss_percent(),
        },
        "participants": all,
    })
    .to_string()
}
