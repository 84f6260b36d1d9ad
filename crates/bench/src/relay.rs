//! The baseline: a bare UDP relay doing the least an SFU with SRTP must do.
//! Each datagram is RTP-shaped (a 12-byte header, then the payload sealed
//! with AES-256-GCM, the header as associated data, the IV built from SSRC,
//! rollover counter and sequence number as in RFC 7714). The relay opens it
//! with the publisher's key (authenticating it), and for each of the `fanout`
//! subscribers rewrites the header (that leg's SSRC and sequence number),
//! seals the payload with that subscriber's key and sends it: one `recvfrom`
//! per packet in, one `sendto` per packet out, as the server does.
//!
//! The relay runs as its own process (`conclave-bench relay-serve`, pinned
//! like the server); the generator's subscribers register with a hello
//! datagram, then open and count what arrives.

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::digest::{digest, SHA256};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::load::{self, Counters, RunResult, Vp8Source, Window};
use crate::{sys, RunArgs};

const HEADER: usize = 12;
const TAG: usize = 16;
/// A subscriber's registration: this byte, then its index (1-based, u32).
const HELLO: u8 = 0x01;
const HELLO_ACK: u8 = 0x02;
const PAYLOAD_TYPE: u8 = 96;

/// One leg's key and salt (index 0: the publisher's; i: subscriber i's),
/// derived from the run's random seed.
pub struct Leg {
    key: LessSafeKey,
    salt: [u8; 12],
    ssrc: u32,
}

impl Leg {
    pub fn derive(seed: &[u8], index: u32) -> Leg {
        let part = |label: &[u8]| {
            let mut input = seed.to_vec();
            input.extend_from_slice(&index.to_be_bytes());
            input.extend_from_slice(label);
            digest(&SHA256, &input)
        };
        let key = part(b"key");
        let key = UnboundKey::new(&AES_256_GCM, key.as_ref()).expect("a 32-byte AES-256 key");
        let mut salt = [0u8; 12];
        salt.copy_from_slice(&part(b"salt").as_ref()[..12]);
        let s = part(b"ssrc");
        Leg {
            key: LessSafeKey::new(key),
            salt,
            ssrc: u32::from_be_bytes([s.as_ref()[0], s.as_ref()[1], s.as_ref()[2], s.as_ref()[3]]),
        }
    }

    /// RFC 7714 §8.1: salt XOR (0, 0, SSRC, ROC, SEQ).
    fn nonce(&self, ssrc: u32, index: u64) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&((index >> 16) as u32).to_be_bytes());
        iv[10..12].copy_from_slice(&(index as u16).to_be_bytes());
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// Writes header and sealed payload into `out`; returns the datagram length.
    fn seal(&self, index: u64, marker: bool, ts: u32, payload: &[u8], out: &mut [u8]) -> usize {
        let len = HEADER + payload.len() + TAG;
        out[0] = 0x80;
        out[1] = PAYLOAD_TYPE | if marker { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&(index as u16).to_be_bytes());
        out[4..8].copy_from_slice(&ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let (header, body) = out[..len].split_at_mut(HEADER);
        let (plain, tag) = body.split_at_mut(payload.len());
        plain.copy_from_slice(payload);
        let sealed = self
            .key
            .seal_in_place_separate_tag(self.nonce(self.ssrc, index), Aad::from(&*header), plain)
            .expect("AES-GCM seals any payload of a datagram's size");
        tag.copy_from_slice(sealed.as_ref());
        len
    }

    /// Authenticates and decrypts `datagram` in place; returns the plaintext's length.
    fn open(&self, roc: &mut Roc, datagram: &mut [u8]) -> Option<usize> {
        if datagram.len() < HEADER + TAG || datagram[0] & 0xc0 != 0x80 {
            return None;
        }
        let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
        let ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
        let index = roc.index(seq);
        let (header, body) = datagram.split_at_mut(HEADER);
        let plain = self
            .key
            .open_in_place(self.nonce(ssrc, index), Aad::from(&*header), body)
            .ok()?;
        Some(plain.len())
    }
}

/// The receiver's estimate of the sender's rollover counter (RFC 3711 §3.3.1, simplified).
#[derive(Default)]
struct Roc {
    last: Option<u64>,
}

impl Roc {
    fn index(&mut self, seq: u16) -> u64 {
        let Some(last) = self.last else {
            self.last = Some(u64::from(seq));
            return u64::from(seq);
        };
        let roc = last >> 16;
        let last_seq = last as u16;
        let roc = if seq < last_seq && last_seq - seq > 0x8000 {
            roc + 1
        } else if seq > last_seq && seq - last_seq > 0x8000 && roc > 0 {
            roc - 1
        } else {
            roc
        };
        let index = (roc << 16) | u64::from(seq);
        if index > last {
            self.last = Some(index);
        }
        index
    }
}

/// `conclave-bench relay-serve`: the relay process. Prints `relay on ADDR`,
/// forwards for `seconds`, then prints what it did and exits.
pub fn serve(fanout: usize, seconds: f64, seed: &str) -> Result<(), String> {
    let seed = hex_decode(seed).ok_or("the seed is not hex")?;
    let socket = sys::udp_socket().map_err(|e| e.to_string())?;
    socket.set_nonblocking(false).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    println!("relay on {addr}");
    let _ = std::io::stdout().flush();

    let publisher = Leg::derive(&seed, 0);
    let legs: Vec<Leg> = (1..=fanout as u32).map(|i| Leg::derive(&seed, i)).collect();
    let mut subscribers: Vec<Option<(SocketAddr, u64)>> = vec![None; fanout];
    let mut roc = Roc::default();
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let (mut forwarded, mut rejected) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e.to_string()),
        };
        if n == 5 && buf[0] == HELLO {
            let i = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if (1..=fanout).contains(&i) {
                subscribers[i - 1].get_or_insert((from, 0)).0 = from;
                let _ = socket.send_to(&[HELLO_ACK], from);
            }
            continue;
        }
        let marker = buf[1] & 0x80 != 0;
        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let Some(len) = publisher.open(&mut roc, &mut buf[..n]) else {
            rejected += 1;
            continue;
        };
        let payload = &buf[HEADER..HEADER + len];
        for (leg, subscriber) in legs.iter().zip(subscribers.iter_mut()) {
            let Some((to, next)) = subscriber else {
                continue;
            };
            let len = leg.seal(*next, marker, ts, payload, &mut out);
            *next += 1;
            // As the server: a full send buffer drops the datagram.
            if socket.send_to(&out[..len], *to).is_ok() {
                forwarded += 1;
            }
        }
    }
    println!("relay forwarded {forwarded} datagrams, rejected {rejected}");
    Ok(())
}

pub fn run(args: &RunArgs) -> Result<RunResult, String> {
    let mut seed = [0u8; 16];
    aws_lc_rs::rand::fill(&mut seed).map_err(|_| "no randomness")?;
    let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let lifetime = args.warmup + args.seconds + 40.0;
    let relay_args: Vec<String> = vec![
        "relay-serve".into(),
        "--fanout".into(),
        args.fanout.to_string(),
        "--seconds".into(),
        lifetime.to_string(),
        "--seed".into(),
        seed_hex,
    ];
    let mut relay = sys::Spawned::start(&me, &relay_args, &[], args.pin)?;
    let addr = sys::between(&relay.first_line, "relay on ", "\n")
        .and_then(sys::parse_addr)
        .ok_or_else(|| format!("unexpected line from the relay: {:?}", relay.first_line))?;
    eprintln!("conclave-bench: relay pid {} on {addr}", relay.pid());
    let runtime = crate::runtime(args)?;
    let result = runtime.block_on(generate(args, addr, relay.pid(), &seed));
    if !relay.is_running() {
        return Err("the relay exited during the run".into());
    }
    result
}

async fn generate(
    args: &RunArgs,
    relay: SocketAddr,
    relay_pid: u32,
    seed: &[u8],
) -> Result<RunResult, String> {
    let counters = Arc::new(Counters::default());
    let (go, go_rx) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for i in 1..=args.fanout {
        let leg = Leg::derive(seed, i as u32);
        let counters = counters.clone();
        let stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = receive(relay, i as u32, leg, &counters, stop).await {
                counters.fail(e);
            }
        }));
    }
    let leg = Leg::derive(seed, 0);
    let rate = args.pps as f64 / args.fanout as f64;
    let payload_len = args.size.saturating_sub(HEADER + TAG);
    {
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = publish(relay, leg, rate, payload_len, &counters, go_rx, stop_rx).await
            {
                counters.fail(e);
            }
        }));
    }
    let window = Window {
        fanout: args.fanout,
        warmup: Duration::from_secs_f64(args.warmup),
        seconds: Duration::from_secs_f64(args.seconds),
        forwarder_pid: relay_pid,
        forwarder_port: relay.port(),
    };
    // The subscribers count as connected once registered; the publisher needs nothing.
    let measured = load::measure(&counters, &window, args.fanout, &go).await;
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    Ok(measured?.into_result(
        "relay",
        args,
        counters.wire_bytes.load(Relaxed),
        "AES-256-GCM (aws-lc-rs), RFC 7714 IV".into(),
    ))
}

async fn bound_socket(counters: &Counters) -> Result<UdpSocket, String> {
    let socket = sys::udp_socket().map_err(|e| e.to_string())?;
    counters.add_port(socket.local_addr().map_err(|e| e.to_string())?.port());
    UdpSocket::from_std(socket).map_err(|e| e.to_string())
}

async fn receive(
    relay: SocketAddr,
    index: u32,
    leg: Leg,
    counters: &Counters,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let socket = bound_socket(counters).await?;
    let mut hello = [HELLO, 0, 0, 0, 0];
    hello[1..].copy_from_slice(&index.to_be_bytes());
    let mut buf = vec![0u8; 2048];
    let mut registered = false;
    let mut receiving = false;
    let mut roc = Roc::default();
    let mut retry = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = retry.tick(), if !registered => {
                let _ = socket.send_to(&hello, relay).await;
            }
            r = socket.recv_from(&mut buf) => {
                let (n, _) = r.map_err(|e| e.to_string())?;
                let mut got = 0;
                let mut take = |n: usize, buf: &mut [u8]| {
                    if n == 1 && buf[0] == HELLO_ACK {
                        if !registered {
                            registered = true;
                            counters.connected.fetch_add(1, Relaxed);
                        }
                    } else if leg.open(&mut roc, &mut buf[..n]).is_some() {
                        counters.wire_bytes.store(n, Relaxed);
                        got += 1;
                    }
                };
                take(n, &mut buf);
                for _ in 1..64 {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, _)) => take(n, &mut buf),
                        Err(_) => break,
                    }
                }
                if got > 0 {
                    counters.received.fetch_add(got, Relaxed);
                    if !receiving {
                        receiving = true;
                        counters.receiving.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }
}

async fn publish(
    relay: SocketAddr,
    leg: Leg,
    rate: f64,
    payload_len: usize,
    counters: &Counters,
    mut go: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let socket = bound_socket(counters).await?;
    while !*go.borrow() {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            r = go.changed() => if r.is_err() { return Ok(()) },
        }
    }
    let mut source = Vp8Source::new(rate, payload_len);
    let mut out = vec![0u8; 2048];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tick.tick() => {
                let n = load::due(start, rate, sent);
                for _ in 0..n {
                    let packet = source.next_packet();
                    let len = leg.seal(sent, packet.marker, packet.rtp_time, &packet.payload, &mut out);
                    let _ = socket.try_send_to(&out[..len], relay);
                    sent += 1;
                }
                counters.sent.fetch_add(n, Relaxed);
            }
        }
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_datagram_opens_with_its_leg_only_and_tampering_fails() {
        let seed = [7u8; 16];
        let (a, b) = (Leg::derive(&seed, 0), Leg::derive(&seed, 1));
        let mut out = [0u8; 1200];
        let len = a.seal(70_000, true, 3000, &[0x5a; 1172], &mut out);
        assert_eq!(len, 1200);
        let mut roc = Roc { last: Some(69_990) };
        let mut copy = out;
        assert_eq!(a.open(&mut roc, &mut copy[..len]), Some(1172));
        assert_eq!(copy[HEADER..HEADER + 1172], [0x5a; 1172]);
        let mut copy = out;
        let mut other = Roc { last: Some(69_990) };
        assert_eq!(b.open(&mut other, &mut copy[..len]), None);
        out[40] ^= 1;
        assert_eq!(a.open(&mut roc, &mut out[..len]), None);
    }
}
