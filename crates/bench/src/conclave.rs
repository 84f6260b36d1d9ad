//! Conclave mode: the real `conclave` binary on loopback, one publisher and
//! `fanout` subscribers in one room, each a str0m peer in RTP mode with its
//! own WebSocket and UDP socket. Every leg is DTLS-SRTP; the subscribers
//! authenticate and decrypt every packet they count.
//!
//! The peers join without MLS (no `join_request`, no group): the server
//! forwards media regardless, and the E2EE work is the clients', not the SFU's.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_protocol::{
    ClientMessage, MediaState, ServerMessage, TrackDirection, TrackMapping, TrackSource,
};
use futures_util::{SinkExt, StreamExt};
use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{self, Counters, RunResult, Vp8Source, Window};
use crate::{sys, RunArgs};

/// RTP header, the header extensions on a forwarded packet, GCM tag: what a
/// datagram carries besides the payload (measured, for `--size`).
const OVERHEAD: usize = 12 + 16 + 16;
/// Datagrams read per wake-up before other work gets a turn.
const RECV_BATCH: usize = 64;

/// The SRTP profile str0m reported (it logs it when DTLS completes).
static PROFILE: Mutex<Option<String>> = Mutex::new(None);

pub fn run(args: &RunArgs) -> Result<RunResult, String> {
    watch_srtp_profile();
    let program = args.server.clone().unwrap_or_else(sys::default_server);
    if !program.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release -p conclave-server` \
             (or set CONCLAVE_BIN / --server)",
            program.display()
        ));
    }
    let flags: Vec<String> = ["--listen", "127.0.0.1:0", "--udp-port", "0"]
        .map(String::from)
        .into();
    let mut server = sys::Spawned::start(&program, &flags, &[("CONCLAVE_LOG", "warn")], args.pin)?;
    let line = server.first_line.clone();
    let http = sys::between(&line, "http://", "/").and_then(sys::parse_addr);
    let udp = sys::between(&line, "media on UDP ", ",").and_then(sys::parse_addr);
    let (Some(http), Some(udp)) = (http, udp) else {
        return Err(format!("unexpected ready line from the server: {line:?}"));
    };
    eprintln!("conclave-bench: server pid {} on {udp}", server.pid());
    let runtime = crate::runtime(args)?;
    let result = runtime.block_on(generate(args, http, udp, server.pid()));
    if !server.is_running() {
        return Err("the server exited during the run".into());
    }
    result
}

async fn generate(
    args: &RunArgs,
    http: SocketAddr,
    udp: SocketAddr,
    server_pid: u32,
) -> Result<RunResult, String> {
    let counters = Arc::new(Counters::default());
    let (go, go_rx) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let room = format!("bench-{}", std::process::id());
    let rate = args.pps as f64 / args.fanout as f64;
    let payload_len = args.size.saturating_sub(OVERHEAD);
    let mut tasks = Vec::new();
    for i in 0..=args.fanout {
        let role = if i == 0 {
            Role::Publisher { rate, payload_len }
        } else {
            Role::Subscriber
        };
        let peer = PeerTask {
            http,
            room: room.clone(),
            name: if i == 0 {
                "publisher".into()
            } else {
                format!("subscriber-{i}")
            },
            role,
            counters: counters.clone(),
            go: go_rx.clone(),
            stop: stop_rx.clone(),
            count_only: args.count_only,
        };
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = peer.run().await {
                counters.fail(e);
            }
        }));
        // The publisher first, so every subscriber's first offer has its tracks.
        tokio::time::sleep(Duration::from_millis(if i == 0 { 100 } else { 10 })).await;
    }
    let window = Window {
        fanout: args.fanout,
        warmup: Duration::from_secs_f64(args.warmup),
        seconds: Duration::from_secs_f64(args.seconds),
        forwarder_pid: server_pid,
        forwarder_port: udp.port(),
    };
    let measured = load::measure(&counters, &window, args.fanout + 1, &go).await;
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    let profile = PROFILE
        .lock()
        .ok()
        .and_then(|p| p.clone())
        .unwrap_or_else(|| "SRTP profile not reported".into());
    Ok(measured?.into_result("conclave", args, counters.wire_bytes.load(Relaxed), profile))
}

#[derive(Clone, Copy)]
enum Role {
    Publisher { rate: f64, payload_len: usize },
    Subscriber,
}

struct PeerTask {
    http: SocketAddr,
    room: String,
    name: String,
    role: Role,
    counters: Arc<Counters>,
    go: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
    /// See `RunArgs::count_only`.
    count_only: bool,
}

struct Sending {
    camera: Mid,
    pt: Pt,
    source: Vp8Source,
    start: Instant,
    sent: u64,
    seq: u64,
}

impl PeerTask {
    async fn run(mut self) -> Result<(), String> {
        let who = self.name.clone();
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.http))
            .await
            .map_err(|e| format!("{who}: websocket: {e}"))?;
        let join = ClientMessage::Join {
            room: self.room.clone(),
            name: self.name.clone(),
            media: MediaState {
                microphone: false,
                camera: matches!(self.role, Role::Publisher { .. }),
                screen: false,
            },
        };
        ws.send(Message::text(to_json(&join)))
            .await
            .map_err(|e| format!("{who}: websocket: {e}"))?;

        let socket = sys::udp_socket().map_err(|e| format!("{who}: udp: {e}"))?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        self.counters.add_port(local.port());
        let socket = UdpSocket::from_std(socket).map_err(|e| e.to_string())?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);

        let mut next_timeout = Instant::now();
        let mut camera: Option<Mid> = None;
        let mut sending: Option<Sending> = None;
        let mut receiving = false;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut buf = vec![0u8; 2048];
        let is_publisher = matches!(self.role, Role::Publisher { .. });
        // The server closes a silent WebSocket after 45 s; no run is that long
        // after its peers connect, but a bound keeps every loop finite.
        let hard_stop = Instant::now() + Duration::from_secs(600);

        loop {
            let mut received = 0u64;
            tokio::select! {
                _ = self.stop.changed() => break,
                _ = tokio::time::sleep_until(hard_stop.into()) => break,
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(message) = serde_json::from_str::<ServerMessage>(&text) else {
                            continue;
                        };
                        match message {
                            ServerMessage::Offer { sdp, tracks } => {
                                let offer = str0m::change::SdpOffer::from_sdp_string(&sdp)
                                    .map_err(|e| format!("{who}: bad offer: {e}"))?;
                                let answer = rtc
                                    .sdp_api()
                                    .accept_offer(offer)
                                    .map_err(|e| format!("{who}: cannot answer: {e}"))?;
                                let answer = ClientMessage::Answer { sdp: answer.to_sdp_string() };
                                ws.send(Message::text(to_json(&answer)))
                                    .await
                                    .map_err(|e| format!("{who}: websocket: {e}"))?;
                                if camera.is_none() {
                                    camera = own_camera(&tracks);
                                }
                            }
                            ServerMessage::Error { code, message } => {
                                return Err(format!("{who}: server error {code:?}: {message}"));
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("{who}: websocket: {e}")),
                    None => return Err(format!("{who}: the server closed the WebSocket")),
                },
                r = socket.recv_from(&mut buf) => {
                    let (n, source) = r.map_err(|e| format!("{who}: udp: {e}"))?;
                    let count_only = self.count_only && receiving;
                    received += if count_only && is_media(&buf[..n]) {
                        1
                    } else {
                        feed(&mut rtc, &socket, local, source, &buf[..n], &self.counters, &who)?
                    };
                    for _ in 1..RECV_BATCH {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, _)) if count_only && is_media(&buf[..n]) => received += 1,
                            Ok((n, source)) => {
                                received += feed(&mut rtc, &socket, local, source, &buf[..n], &self.counters, &who)?;
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_timeout.into()) => {
                    rtc.handle_input(Input::Timeout(Instant::now()))
                        .map_err(|e| format!("{who}: {e}"))?;
                }
                _ = tick.tick(), if is_publisher => {
                    if let (Role::Publisher { rate, payload_len }, Some(mid), true) =
                        (self.role, camera, *self.go.borrow())
                    {
                        let sending = match &mut sending {
                            Some(s) => s,
                            None => {
                                let pt = vp8_pt(&rtc).ok_or_else(|| format!("{who}: no VP8"))?;
                                sending.insert(Sending {
                                    camera: mid,
                                    pt,
                                    source: Vp8Source::new(rate, payload_len),
                                    start: Instant::now(),
                                    sent: 0,
                                    seq: u64::from(rand_u16()),
                                })
                            }
                        };
                        let n = load::due(sending.start, rate, sending.sent);
                        for _ in 0..n {
                            write_packet(&mut rtc, sending);
                            drain(&mut rtc, &socket, &mut next_timeout, &self.counters, &who)?;
                        }
                        sending.sent += n;
                        self.counters.sent.fetch_add(n, Relaxed);
                    }
                }
            }
            received += drain(&mut rtc, &socket, &mut next_timeout, &self.counters, &who)?;
            if received > 0 {
                self.counters.received.fetch_add(received, Relaxed);
                if !receiving && !is_publisher {
                    receiving = true;
                    self.counters.receiving.fetch_add(1, Relaxed);
                }
            }
        }
        let _ = ws.close(None).await;
        Ok(())
    }
}

/// A forwarded media datagram (RTP, not RTCP, full-sized), for `count_only`.
fn is_media(data: &[u8]) -> bool {
    data.len() > 1000 && data[0] >> 6 == 2 && !(192..=223).contains(&data[1])
}

/// Feeds one datagram to the `Rtc` and drains it; returns the RTP packets that came out.
fn feed(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    local: SocketAddr,
    source: SocketAddr,
    data: &[u8],
    counters: &Counters,
    who: &str,
) -> Result<u64, String> {
    if data.len() > 1000 {
        counters.wire_bytes.store(data.len(), Relaxed);
    }
    let Ok(contents) = data.try_into() else {
        return Ok(0);
    };
    let input = Input::Receive(
        Instant::now(),
        Receive {
            proto: Protocol::Udp,
            source,
            destination: local,
            contents,
        },
    );
    rtc.handle_input(input).map_err(|e| format!("{who}: {e}"))?;
    let mut ignored = Instant::now();
    drain(rtc, socket, &mut ignored, counters, who)
}

/// Polls the `Rtc` until it waits: sends what it transmits, counts RTP packets.
fn drain(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    next_timeout: &mut Instant,
    counters: &Counters,
    who: &str,
) -> Result<u64, String> {
    let mut packets = 0;
    loop {
        match rtc.poll_output().map_err(|e| format!("{who}: {e}"))? {
            Output::Timeout(at) => {
                *next_timeout = at;
                return Ok(packets);
            }
            Output::Transmit(t) => {
                let _ = socket.try_send_to(&t.contents, t.destination);
            }
            Output::Event(Event::Connected) => {
                counters.connected.fetch_add(1, Relaxed);
            }
            Output::Event(Event::RtpPacket(_)) => packets += 1,
            Output::Event(_) => {}
        }
    }
}

fn write_packet(rtc: &mut Rtc, sending: &mut Sending) {
    let packet = sending.source.next_packet();
    let mut api = rtc.direct_api();
    let Some(stream) = api.stream_tx_by_mid(sending.camera, None) else {
        return;
    };
    let write = RtpWrite::new(
        sending.pt,
        sending.seq.into(),
        packet.rtp_time,
        Instant::now(),
        packet.payload,
    )
    .marker(packet.marker)
    .nackable(false);
    stream.write_rtp(write);
    sending.seq += 1;
}

/// The publisher's own camera m-line, from the track list of an offer.
fn own_camera(tracks: &[TrackMapping]) -> Option<Mid> {
    tracks
        .iter()
        .find(|t| t.direction == TrackDirection::Publish && t.source == TrackSource::Camera)
        .map(|t| Mid::from(t.mid.as_str()))
}

fn vp8_pt(rtc: &Rtc) -> Option<Pt> {
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Vp8)
        .map(|p| p.pt())
}

fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u16::from_be_bytes(b)
}

fn to_json(message: &ClientMessage) -> String {
    serde_json::to_string(message).expect("client messages serialize")
}

/// Installs a tracing layer that sees only str0m's debug events (there are
/// few, all at setup) and keeps the SRTP profile its DTLS negotiated.
fn watch_srtp_profile() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    struct Profile;
    struct Visitor(Option<String>);
    impl tracing::field::Visit for Visitor {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = Some(format!("{value:?}"));
            }
        }
    }
    impl<S: tracing::Subscriber> Layer<S> for Profile {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut visitor = Visitor(None);
            event.record(&mut visitor);
            let Some(message) = visitor.0 else { return };
            if let Some(profile) =
                message.strip_prefix("DTLS set SRTP keying material and profile: ")
            {
                if let Ok(mut slot) = PROFILE.lock() {
                    *slot = Some(profile.to_owned());
                }
            }
        }
    }
    let filter =
        tracing_subscriber::filter::Targets::new().with_target("str0m", tracing::Level::DEBUG);
    let subscriber = tracing_subscriber::registry().with(Profile.with_filter(filter));
    let _ = tracing::subscriber::set_global_default(subscriber);
}
