//! What both modes share: the counters the generator's tasks update, the
//! VP8-shaped payloads and their pacing, and the measurement window.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::sys;

/// Video frames per second of the synthetic stream (RTP clock 90 kHz).
const FPS: u64 = 30;
/// One keyframe every this many frames.
const KEYFRAME_EVERY: u64 = 60;

#[derive(Default)]
pub struct Counters {
    /// Peers whose media connection is up (or relay receivers registered).
    pub connected: AtomicUsize,
    /// Subscribers that have received at least one packet.
    pub receiving: AtomicUsize,
    /// Packets the publisher sent.
    pub sent: AtomicU64,
    /// Packets all subscribers received (authenticated and decrypted).
    pub received: AtomicU64,
    /// Size of a forwarded datagram as it arrived at a subscriber.
    pub wire_bytes: AtomicUsize,
    /// Local UDP ports of the generator's sockets.
    pub ports: Mutex<Vec<u16>>,
    /// The first error a task met.
    pub error: Mutex<Option<String>>,
}

impl Counters {
    pub fn fail(&self, error: String) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(error);
        }
    }

    pub fn add_port(&self, port: u16) {
        if let Ok(mut ports) = self.ports.lock() {
            ports.push(port);
        }
    }

    fn ports(&self) -> Vec<u16> {
        self.ports.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }
}

/// VP8-shaped RTP payloads: a payload descriptor with a 15-bit picture id
/// (start bit on a frame's first packet), a VP8 frame header at the start of
/// each frame (a 1280×720 keyframe every `KEYFRAME_EVERY` frames), then
/// filler; frames of `rate / FPS` packets, the marker on each frame's last.
pub struct Vp8Source {
    per_frame: u64,
    packet: u64,
    payload_len: usize,
}

pub struct Vp8Packet {
    pub payload: Vec<u8>,
    pub marker: bool,
    pub rtp_time: u32,
}

impl Vp8Source {
    pub fn new(rate: f64, payload_len: usize) -> Vp8Source {
        Vp8Source {
            per_frame: ((rate / FPS as f64) as u64).max(1),
            packet: 0,
            payload_len: payload_len.max(16),
        }
    }

    pub fn next_packet(&mut self) -> Vp8Packet {
        let frame = self.packet / self.per_frame;
        let index = self.packet % self.per_frame;
        self.packet += 1;
        let picture_id = (frame & 0x7fff) as u16;
        let first = index == 0;
        let mut payload = Vec::with_capacity(self.payload_len);
        // X=1, S on the first packet of a frame, partition 0.
        payload.push(if first { 0x90 } else { 0x80 });
        // I=1: picture id present; M=1: 15 bits.
        payload.push(0x80);
        payload.extend_from_slice(&(0x8000 | picture_id).to_be_bytes());
        if first {
            let key = frame.is_multiple_of(KEYFRAME_EVERY);
            // Frame tag: P bit (0 = keyframe), version 0, show_frame, and a
            // first partition size.
            let size: u32 = 900;
            let tag = u32::from(!key) | (1 << 4) | (size << 5);
            payload.extend_from_slice(&tag.to_le_bytes()[..3]);
            if key {
                payload.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                payload.extend_from_slice(&1280u16.to_le_bytes());
                payload.extend_from_slice(&720u16.to_le_bytes());
            }
        }
        // Filler that looks like what it is in Conclave: ciphertext.
        let mut x = (self.packet as u32).wrapping_mul(2_654_435_761) | 1;
        while payload.len() < self.payload_len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            payload.push(x as u8);
        }
        Vp8Packet {
            payload,
            marker: index + 1 == self.per_frame,
            rtp_time: (frame * (90_000 / FPS)) as u32,
        }
    }
}

/// How many packets are due now, for a constant `rate` since `start`, given
/// `sent` so far (at most a burst of 1000 after a stall).
pub fn due(start: Instant, rate: f64, sent: u64) -> u64 {
    let target = (start.elapsed().as_secs_f64() * rate) as u64;
    target.saturating_sub(sent).min(1000)
}

/// One run's result, printed as a line of JSON with `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub mode: String,
    pub fanout: usize,
    pub target_pps: u64,
    pub pinned: Option<usize>,
    pub seconds: f64,
    /// Packets per second the publisher sent.
    pub sent_pps: f64,
    /// Packets per second all subscribers received.
    pub forwarded_pps: f64,
    /// CPU seconds the forwarder (server or relay) used per second.
    pub cores: f64,
    /// Forwarded packets per CPU-second of the forwarder.
    pub pps_per_cpu_second: f64,
    /// 1 − received / (sent × fanout), over the window.
    pub loss: f64,
    /// CPU seconds per second of the load generator (this process).
    pub generator_cores: f64,
    /// Kernel drops on the forwarder's socket during the window.
    pub forwarder_socket_drops: u64,
    /// Kernel drops on the generator's sockets during the window.
    pub generator_socket_drops: u64,
    /// Size of one forwarded datagram on the wire.
    pub datagram_bytes: usize,
    /// The SRTP protection profile negotiated (Conclave), or the relay's cipher.
    pub cipher: String,
}

impl RunResult {
    pub fn summary(&self) -> String {
        format!(
            "{mode}: fan-out {fanout}, target {target} fwd pps, {pin}: sent {sent:.0} pps, \
             forwarded {fwd:.0} pps, forwarder {cores:.2} cores → {per:.0} fwd pps per CPU-second, \
             loss {loss:.2}%, generator {gen:.2} cores, socket drops forwarder {fd} generator {gd}, \
             {bytes}-byte datagrams, {cipher}",
            mode = self.mode,
            fanout = self.fanout,
            target = self.target_pps,
            pin = match self.pinned {
                Some(c) => format!("forwarder pinned to core {c}"),
                None => "unpinned".into(),
            },
            sent = self.sent_pps,
            fwd = self.forwarded_pps,
            cores = self.cores,
            per = self.pps_per_cpu_second,
            loss = self.loss * 100.0,
            gen = self.generator_cores,
            fd = self.forwarder_socket_drops,
            gd = self.generator_socket_drops,
            bytes = self.datagram_bytes,
            cipher = self.cipher,
        )
    }
}

pub struct Window {
    pub fanout: usize,
    pub warmup: Duration,
    pub seconds: Duration,
    pub forwarder_pid: u32,
    pub forwarder_port: u16,
}

struct Snapshot {
    at: Instant,
    sent: u64,
    received: u64,
    forwarder_cpu: f64,
    generator_cpu: f64,
    forwarder_drops: u64,
    generator_drops: u64,
}

fn snapshot(counters: &Counters, window: &Window) -> Result<Snapshot, String> {
    Ok(Snapshot {
        at: Instant::now(),
        sent: counters.sent.load(Relaxed),
        received: counters.received.load(Relaxed),
        forwarder_cpu: sys::cpu_seconds(window.forwarder_pid)?,
        generator_cpu: sys::cpu_seconds(std::process::id())?,
        forwarder_drops: sys::udp_drops(&[window.forwarder_port]),
        generator_drops: sys::udp_drops(&counters.ports()),
    })
}

/// Waits for every peer to connect (`peers`), starts the publisher (`go`),
/// waits until every subscriber receives, lets it warm up, then measures.
/// Returns the numbers of the window; `stop` ends every task afterwards.
pub async fn measure(
    counters: &Arc<Counters>,
    window: &Window,
    peers: usize,
    go: &watch::Sender<bool>,
) -> Result<Measured, String> {
    wait_for(
        counters,
        "peers to connect",
        Duration::from_secs(30),
        || counters.connected.load(Relaxed) >= peers,
    )
    .await?;
    // Renegotiations triggered by the last joins settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = go.send(true);
    wait_for(
        counters,
        "every subscriber to receive",
        Duration::from_secs(10),
        || counters.receiving.load(Relaxed) >= window.fanout,
    )
    .await?;
    tokio::time::sleep(window.warmup).await;
    let a = snapshot(counters, window)?;
    tokio::time::sleep(window.seconds).await;
    let b = snapshot(counters, window)?;
    if let Some(e) = counters.error() {
        return Err(e);
    }
    let dt = (b.at - a.at).as_secs_f64();
    let sent = (b.sent - a.sent) as f64;
    let received = (b.received - a.received) as f64;
    Ok(Measured {
        sent_pps: sent / dt,
        forwarded_pps: received / dt,
        cores: (b.forwarder_cpu - a.forwarder_cpu) / dt,
        generator_cores: (b.generator_cpu - a.generator_cpu) / dt,
        forwarder_drops: b.forwarder_drops.saturating_sub(a.forwarder_drops),
        generator_drops: b.generator_drops.saturating_sub(a.generator_drops),
        loss: if sent > 0.0 {
            1.0 - received / (sent * window.fanout as f64)
        } else {
            1.0
        },
    })
}

pub struct Measured {
    pub sent_pps: f64,
    pub forwarded_pps: f64,
    pub cores: f64,
    pub generator_cores: f64,
    pub forwarder_drops: u64,
    pub generator_drops: u64,
    pub loss: f64,
}

impl Measured {
    pub fn into_result(
        self,
        mode: &str,
        args: &crate::RunArgs,
        datagram_bytes: usize,
        cipher: String,
    ) -> RunResult {
        RunResult {
            mode: mode.into(),
            fanout: args.fanout,
            target_pps: args.pps,
            pinned: args.pin,
            seconds: args.seconds,
            sent_pps: self.sent_pps,
            forwarded_pps: self.forwarded_pps,
            cores: self.cores,
            pps_per_cpu_second: if self.cores > 0.0 {
                self.forwarded_pps / self.cores
            } else {
                0.0
            },
            loss: self.loss,
            generator_cores: self.generator_cores,
            forwarder_socket_drops: self.forwarder_drops,
            generator_socket_drops: self.generator_drops,
            datagram_bytes,
            cipher,
        }
    }
}

async fn wait_for(
    counters: &Counters,
    what: &str,
    limit: Duration,
    done: impl Fn() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        if let Some(e) = counters.error() {
            return Err(e);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {limit:?} waiting for {what} ({} connected, {} receiving)",
                counters.connected.load(Relaxed),
                counters.receiving.load(Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
