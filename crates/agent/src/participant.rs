//! One synthetic participant: a WebSocket for signaling, a str0m `Rtc` in RTP
//! mode as the full-ICE answerer on its own UDP socket, synthetic sources on
//! the three publish m-lines, and receive statistics for everything else.
//!
//! Each participant is one tokio task. Many of them share one runtime (the
//! binary uses a single worker thread), which keeps `--participants 50`
//! cheap without a hand-written multiplexer; each has its own UDP socket, as
//! a browser would.
//!
//! Every participant is end-to-end encrypted like a browser (`group`): it
//! joins the room's MLS group, SFrame-encrypts each frame before
//! packetizing, and (unless `count_only`) decrypts and authenticates each
//! reassembled frame it receives. Nothing is sent before it has the group's
//! keys.
//!
//! Everything the network sends is untrusted: bad signaling becomes a
//! `Notice::Warning`, a lost connection an `AgentError`, never a panic.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use conclave_e2ee::Codec as FrameCodec;
use conclave_protocol::{
    ClientMessage, ErrorCode, MediaState, ParticipantId, ParticipantInfo, ServerMessage,
    TrackDirection, TrackSource,
};
use futures_util::{SinkExt, StreamExt};
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::group::{is_missing_key, Group};
use crate::media::{AudioSource, EncodedFrame, VideoClass, VideoSource};
use crate::packetize::{packetize_vp8, Vp8Reassembler};
use crate::signaling::{parse_server_message, Incoming, InviteSecret, RoomUrl};
use crate::slots::{self, SlotGuard, TrackMap, Verdict};
use crate::stats::ParticipantStats;

/// How one participant behaves.
#[derive(Debug, Clone)]
pub struct ParticipantConfig {
    pub url: RoomUrl,
    pub name: String,
    /// Camera class, or `None` for camera off.
    pub video: Option<VideoClass>,
    pub audio: bool,
    /// Publish nothing, only receive.
    pub receive_only: bool,
    /// Count received packets without reassembling, decrypting or checking frames.
    pub count_only: bool,
    /// The meeting's invite secret (defaults to the one in `url`). Without
    /// one, a participant told to create the group makes one up (and
    /// announces the invite link); one told to join knocks.
    pub invite_secret: Option<InviteSecret>,
    /// `invite_secret` was made up locally, not given by a link: announce
    /// the invite link if this participant creates the group.
    pub secret_generated: bool,
    /// Admit every participant that knocks (joins without the secret).
    pub admit_knocks: bool,
    /// Chat messages to send right after joining.
    pub chat: Vec<String>,
    /// Warn when a remote participant that should be sending has sent
    /// nothing for this long.
    pub no_media_after: Duration,
    /// Give up when signaling or ICE/DTLS has not completed within this.
    pub connect_timeout: Duration,
    /// Varies payloads and speaking phases between participants.
    pub seed: u64,
    /// Refresh our own keys this often (an MLS self-update commit, so a new
    /// epoch each time): for tests of epoch changes while media flows.
    pub key_update_every: Option<Duration>,
}

impl ParticipantConfig {
    pub fn new(url: RoomUrl, name: impl Into<String>) -> ParticipantConfig {
        let invite_secret = url.secret.clone();
        ParticipantConfig {
            url,
            name: name.into(),
            video: Some(VideoClass::P360),
            audio: true,
            receive_only: false,
            count_only: false,
            invite_secret,
            secret_generated: false,
            admit_knocks: false,
            chat: Vec::new(),
            no_media_after: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(10),
            seed: 0,
            key_update_every: None,
        }
    }

    fn media_state(&self) -> MediaState {
        MediaState {
            microphone: self.audio && !self.receive_only,
            camera: self.video.is_some() && !self.receive_only,
            screen: false,
        }
    }
}

/// Something a participant wants its operator to know.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Joined {
        id: ParticipantId,
        others: Vec<ParticipantInfo>,
    },
    /// ICE and DTLS are up; media flows.
    MediaConnected {
        after: Duration,
    },
    Chat {
        seq: u32,
        from: ParticipantId,
        name: String,
        text: String,
    },
    ParticipantJoined(ParticipantInfo),
    ParticipantLeft {
        id: ParticipantId,
        name: String,
    },
    /// A remote participant that should be sending has sent nothing recently.
    NoMedia {
        id: ParticipantId,
        name: String,
        silent_for: Duration,
    },
    MediaResumed {
        id: ParticipantId,
        name: String,
    },
    /// The group's security code changed (joined, or a new epoch): every
    /// member must show the same one.
    SecurityCode {
        epoch: u64,
        code: String,
        members: usize,
    },
    /// We created the group with a secret of our own: others join with this link.
    InviteLink(String),
    /// Someone asked to join without the invite secret.
    Knock {
        name: String,
        /// Short fingerprint of the knocker's signature key.
        fingerprint: String,
        /// The name equals or resembles a current or earlier member's.
        lookalike: bool,
        id: Option<ParticipantId>,
        admitted: bool,
    },
    /// Something about the encrypted group worth knowing (rejoins, admissions).
    E2ee(String),
    /// The server sent something unusable or reported an error; we carry on.
    Warning(String),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Joined { id, others } => {
                write!(f, "joined as #{id} with {} others", others.len())
            }
            Notice::MediaConnected { after } => {
                write!(f, "media connected after {} ms", after.as_millis())
            }
            Notice::Chat { name, text, .. } => write!(f, "[chat] {name}: {text}"),
            Notice::ParticipantJoined(p) => write!(f, "{} (#{}) joined", p.name, p.id),
            Notice::ParticipantLeft { id, name } => write!(f, "{name} (#{id}) left"),
            Notice::NoMedia {
                id,
                name,
                silent_for,
            } => write!(
                f,
                "warning: no media from {name} (#{id}) for {} s",
                silent_for.as_secs()
            ),
            Notice::MediaResumed { id, name } => write!(f, "media from {name} (#{id}) resumed"),
            Notice::SecurityCode {
                epoch,
                code,
                members,
            } => write!(
                f,
                "security code: {code} (epoch {epoch}, {members} members)"
            ),
            Notice::InviteLink(link) => write!(f, "invite link: {link}"),
            Notice::Knock {
                name,
                fingerprint,
                lookalike,
                id,
                admitted,
            } => {
                let id = id.map(|i| format!(" (#{i})")).unwrap_or_default();
                let alike = if *lookalike {
                    ", same name as a member: check who it is"
                } else {
                    ""
                };
                let id = format!("{id} [key {fingerprint}{alike}]");
                if *admitted {
                    write!(f, "{name}{id} knocked; admitting")
                } else {
                    write!(
                        f,
                        "{name}{id} knocks without the invite secret; not admitted (--admit-knocks admits)"
                    )
                }
            }
            Notice::E2ee(text) => write!(f, "e2ee: {text}"),
            Notice::Warning(w) => write!(f, "warning: {w}"),
        }
    }
}

/// A notice and the local participant it comes from.
#[derive(Debug, Clone)]
pub struct Tagged {
    pub participant: String,
    pub notice: Notice,
}

/// Why a participant stopped before being asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentError {
    /// The WebSocket could not be opened.
    Connect(String),
    /// The WebSocket closed or broke mid-session.
    SignalingLost(String),
    /// The server refused the join.
    Refused { code: ErrorCode, message: String },
    /// ICE/DTLS failed, timed out, or was lost.
    MediaFailed(String),
    /// Local trouble (sockets, addresses).
    Local(String),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Connect(e) => write!(f, "cannot connect to the server: {e}"),
            AgentError::SignalingLost(e) => write!(f, "signaling connection lost: {e}"),
            AgentError::Refused { code, message } => {
                write!(f, "the server refused to let us in ({code:?}): {message}")
            }
            AgentError::MediaFailed(e) => write!(f, "media connection failed: {e}"),
            AgentError::Local(e) => write!(f, "local error: {e}"),
        }
    }
}

impl std::error::Error for AgentError {}

/// A running participant.
pub struct ParticipantHandle {
    pub name: String,
    pub stats: Arc<Mutex<ParticipantStats>>,
    chat: mpsc::UnboundedSender<String>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl ParticipantHandle {
    /// Queues a chat message (sent once joined).
    pub fn send_chat(&self, text: impl Into<String>) {
        let _ = self.chat.send(text.into());
    }

    /// A copy of the statistics so far.
    pub fn snapshot(&self) -> ParticipantStats {
        lock(&self.stats).clone()
    }

    /// Whether the task has ended (by error or after `stop`).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks the participant to leave and waits for it (at most 2 s more).
    pub async fn stop(self) -> Result<(), AgentError> {
        let _ = self.stop.send(true);
        self.finish().await
    }

    /// Waits for the participant to end on its own.
    pub async fn finish(self) -> Result<(), AgentError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(AgentError::Local(format!("participant task failed: {e}"))),
        }
    }
}

pub(crate) fn lock(stats: &Mutex<ParticipantStats>) -> MutexGuard<'_, ParticipantStats> {
    // A poisoned lock only means a panic elsewhere; the counters are still usable.
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts a participant on the current tokio runtime.
pub fn spawn(
    config: ParticipantConfig,
    notices: mpsc::UnboundedSender<Tagged>,
) -> ParticipantHandle {
    crate::init_crypto();
    let stats = Arc::new(Mutex::new(ParticipantStats {
        name: config.name.clone(),
        ..Default::default()
    }));
    let (chat_tx, chat_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let name = config.name.clone();
    let session = Session::new(config, stats.clone(), notices);
    let task = tokio::spawn(session.run(chat_rx, stop_rx));
    ParticipantHandle {
        name,
        stats,
        chat: chat_tx,
        stop: stop_tx,
        task,
    }
}

const WS_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// More than this behind schedule and a source skips ahead instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(200);

type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

struct Outgoing {
    mid: Mid,
    pt: str0m::format::PayloadParams,
    seq: u64,
}

struct Session {
    config: ParticipantConfig,
    stats: Arc<Mutex<ParticipantStats>>,
    notices: mpsc::UnboundedSender<Tagged>,
    started: Instant,
    me: Option<ParticipantId>,
    people: HashMap<ParticipantId, ParticipantInfo>,
    /// What each m-line carries, from the latest offer or `tracks` message.
    tracks: TrackMap,
    /// Which slot and participant an incoming SSRC belongs to; cleared
    /// whenever the map changes (a slot's SSRC then carries someone else).
    ssrc_cache: HashMap<Ssrc, Option<Route>>,
    /// Participants some subscribe m-line carries now, since when.
    subscribed_since: HashMap<ParticipantId, Instant>,
    silent: HashSet<ParticipantId>,
    /// Video reassembly per SSRC, with the slot it was for: reset when the
    /// slot moves to someone else, so no frame mixes two senders' packets.
    reassemblers: HashMap<Ssrc, (Mid, Vp8Reassembler)>,
    /// Per receive slot, what judging its frames' senders needs.
    slots: HashMap<Mid, SlotGuard>,
    audio: Option<(AudioSource, Option<Outgoing>)>,
    video: Option<(VideoSource, Option<Outgoing>)>,
    picture_id: u16,
    connected_at: Option<Instant>,
    first_answer_at: Option<Instant>,
    /// The encrypted group: MLS member, SFrame keys, chat.
    group: Group,
    /// Received frames whose key we do not have yet (the commit that made
    /// it is still on its way over the WebSocket), retried on new keys.
    held: VecDeque<Held>,
    /// Scratch buffers: encrypted outgoing frame, decrypted incoming frame.
    sealed: Vec<u8>,
    plain: Vec<u8>,
}

/// Where an incoming SSRC's packets go: its slot, and who the slot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    mid: Mid,
    from: ParticipantId,
    source: TrackSource,
}

/// A received frame waiting for its epoch's key.
struct Held {
    route: Route,
    codec: FrameCodec,
    data: Vec<u8>,
    at: Instant,
    /// Failed authentication under an old epoch's key with the same low
    /// epoch bits: retried with newer keys, a failure if it never opens.
    suspect: bool,
}

/// At most this many frames wait for keys (per local participant)…
const MAX_HELD: usize = 512;
/// …for at most this long; then they count as `no_key`.
const HOLD_FOR: Duration = Duration::from_secs(2);

impl Session {
    fn new(
        config: ParticipantConfig,
        stats: Arc<Mutex<ParticipantStats>>,
        notices: mpsc::UnboundedSender<Tagged>,
    ) -> Session {
        let sending = !config.receive_only;
        let audio = (sending && config.audio).then(|| (AudioSource::new(config.seed), None));
        let video = config
            .video
            .filter(|_| sending)
            .map(|class| (VideoSource::new(class, config.seed), None));
        let group = Group::new(
            &config.name,
            config.url.clone(),
            config.invite_secret.clone(),
            config.secret_generated,
            config.admit_knocks,
        );
        Session {
            group,
            held: VecDeque::new(),
            sealed: Vec::with_capacity(2048),
            plain: Vec::with_capacity(2048),
            picture_id: (config.seed as u16) & 0x7fff,
            config,
            stats,
            notices,
            started: Instant::now(),
            me: None,
            people: HashMap::new(),
            tracks: HashMap::new(),
            ssrc_cache: HashMap::new(),
            subscribed_since: HashMap::new(),
            silent: HashSet::new(),
            reassemblers: HashMap::new(),
            slots: HashMap::new(),
            audio,
            video,
            connected_at: None,
            first_answer_at: None,
        }
    }

    /// Milliseconds since this participant started: the clock the MLS
    /// member and SFrame key retention run on.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Sends what the group produced, reports its notices, and reacts to
    /// new keys (retry held frames) and new members (a keyframe for them).
    async fn flush_group(&mut self, sink: &mut WsSink) -> Result<(), AgentError> {
        for message in self.group.take_messages() {
            send(sink, &message).await?;
        }
        for notice in self.group.take_notices() {
            self.notify(notice);
        }
        if self.group.take_members_added() {
            if let Some((video, _)) = self.video.as_mut() {
                video.request_keyframe();
            }
        }
        if self.group.take_keys_changed() {
            let mut stats = lock(&self.stats);
            stats.in_group = self.group.is_member();
            stats.epoch = self.group.epoch();
            stats.security_code = self.group.security_code().map(str::to_owned);
            stats.members = self.group.roster_len();
            stats.commits = self.group.commits;
            stats.rejoins = self.group.rejoins;
            drop(stats);
            self.retry_held(Instant::now());
        }
        Ok(())
    }

    fn notify(&self, notice: Notice) {
        let _ = self.notices.send(Tagged {
            participant: self.config.name.clone(),
            notice,
        });
    }

    async fn run(
        mut self,
        mut chat_rx: mpsc::UnboundedReceiver<String>,
        mut stop_rx: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        let url = self.config.url.clone();
        let (ws, _) = match tokio::time::timeout(
            WS_CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(url.ws_url.as_str()),
        )
        .await
        {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return Err(AgentError::Connect(format!("{}: {e}", url.ws_url))),
            Err(_) => {
                return Err(AgentError::Connect(format!(
                    "{}: no answer within {WS_CONNECT_TIMEOUT:?}",
                    url.ws_url
                )))
            }
        };
        let (mut sink, mut stream) = ws.split();
        send(
            &mut sink,
            &ClientMessage::Join {
                room: url.room.clone(),
                name: self.config.name.clone(),
                media: self.config.media_state(),
            },
        )
        .await?;

        let socket = bind_media_socket(&url.authority).await?;
        let local = socket
            .local_addr()
            .map_err(|e| AgentError::Local(format!("UDP socket address: {e}")))?;
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| AgentError::Local(format!("ICE candidate for {local}: {e}")))?;
        rtc.add_local_candidate(candidate);

        let mut buf = vec![0u8; 2048];
        let mut next_audio = now;
        let mut next_video = now;
        let mut next_check = now + CHECK_INTERVAL;
        let mut next_key_update = self.config.key_update_every.map(|d| now + d);
        let mut stopping = *stop_rx.borrow();
        let mut kick = false;

        while !stopping {
            let rtc_timeout = self.drain(&mut rtc, &socket)?;
            let mut deadline = rtc_timeout.min(next_check);
            if let Some(at) = self.group.deadline() {
                deadline = deadline.min(at);
            }
            if let Some(at) = next_key_update {
                deadline = deadline.min(at);
            }
            // Nothing is sent before we have the group's keys.
            let sending = self.connected_at.is_some() && self.group.is_member();
            if sending {
                if self.audio.is_some() {
                    deadline = deadline.min(next_audio);
                }
                if self.video.is_some() {
                    deadline = deadline.min(next_video);
                }
            }
            tokio::select! {
                changed = stop_rx.changed() => {
                    stopping = changed.is_err() || *stop_rx.borrow();
                }
                message = stream.next() => {
                    let text = match message {
                        None => return Err(AgentError::SignalingLost("the server closed the WebSocket".into())),
                        Some(Err(e)) => return Err(AgentError::SignalingLost(format!("WebSocket dropped: {e}"))),
                        Some(Ok(Message::Close(frame))) => {
                            let why = frame.map(|f| format!(" ({} {})", f.code, f.reason)).unwrap_or_default();
                            return Err(AgentError::SignalingLost(format!("the server closed the WebSocket{why}")));
                        }
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            self.notify(Notice::Warning("the server sent a binary WebSocket message; ignored".into()));
                            continue;
                        }
                        Some(Ok(_)) => continue,
                    };
                    match parse_server_message(&text) {
                        Incoming::Bad(why) => self.notify(Notice::Warning(format!("server sent a {why}"))),
                        Incoming::Message(m) => {
                            self.on_server_message(m, &mut rtc, &mut sink).await?;
                            self.flush_group(&mut sink).await?;
                            // An accepted offer changes str0m's state without
                            // moving its clock; until time is fed in, its next
                            // timeout stays "never" and ICE would not start.
                            kick = true;
                        }
                    }
                }
                received = socket.recv_from(&mut buf) => {
                    match received {
                        Ok((n, source)) => self.on_datagram(&mut rtc, &socket, source, local, &buf[..n])?,
                        Err(e) => self.notify(Notice::Warning(format!("UDP receive failed: {e}"))),
                    }
                    // Take whatever else is already queued before polling str0m.
                    for _ in 0..64 {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, source)) => self.on_datagram(&mut rtc, &socket, source, local, &buf[..n])?,
                            Err(_) => break,
                        }
                    }
                }
                Some(text) = chat_rx.recv() => {
                    self.group.queue_chat(text, Instant::now());
                    self.flush_group(&mut sink).await?;
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }

            let now = Instant::now();
            if let (Some(at), Some(every)) = (next_key_update, self.config.key_update_every) {
                if now >= at {
                    next_key_update = Some(catch_up(at, every, now));
                    if self.group.update_keys(now) {
                        self.flush_group(&mut sink).await?;
                    }
                }
            }
            if self.group.deadline().is_some_and(|at| now >= at) {
                self.group.poll(now);
                self.flush_group(&mut sink).await?;
            }
            if now >= rtc_timeout || std::mem::take(&mut kick) {
                rtc.handle_input(Input::Timeout(now))
                    .map_err(|e| AgentError::MediaFailed(e.to_string()))?;
            }
            if self.connected_at.is_some() && self.group.is_member() {
                if self.audio.is_some() && now >= next_audio {
                    next_audio = catch_up(next_audio, AudioSource::FRAME, now);
                    self.send_audio(&mut rtc, now);
                }
                if let Some(class) = self.video.as_ref().map(|(v, _)| v.class()) {
                    if now >= next_video {
                        next_video = catch_up(next_video, class.frame_interval(), now);
                        self.send_video(&mut rtc, now);
                    }
                }
                // str0m timestamps written packets on the next timeout; give
                // it one now so they leave in this turn, not the next.
                rtc.handle_input(Input::Timeout(now))
                    .map_err(|e| AgentError::MediaFailed(e.to_string()))?;
            }
            if now >= next_check {
                next_check = now + CHECK_INTERVAL;
                self.check(now)?;
                self.flush_group(&mut sink).await?;
            }
        }

        // Asked to stop: say goodbye, briefly.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = send(&mut sink, &ClientMessage::Leave).await;
            let _ = sink.close().await;
        })
        .await;
        rtc.disconnect();
        Ok(())
    }

    /// Polls str0m until it wants time to pass; returns when.
    fn drain(&mut self, rtc: &mut Rtc, socket: &UdpSocket) -> Result<Instant, AgentError> {
        loop {
            let output = rtc
                .poll_output()
                .map_err(|e| AgentError::MediaFailed(e.to_string()))?;
            match output {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(t) => {
                    if socket.try_send_to(&t.contents, t.destination).is_err() {
                        lock(&self.stats).send_drops += 1;
                    }
                }
                Output::Event(event) => self.on_rtc_event(rtc, event)?,
            }
        }
    }

    /// Feeds one datagram and polls str0m right away: in RTP mode it holds
    /// only one received packet until the next `poll_output`.
    fn on_datagram(
        &mut self,
        rtc: &mut Rtc,
        socket: &UdpSocket,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> Result<(), AgentError> {
        let Ok(contents) = data.try_into() else {
            return Ok(()); // not STUN/DTLS/RTP: ignore, as a browser would
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        if rtc.accepts(&input) {
            rtc.handle_input(input)
                .map_err(|e| AgentError::MediaFailed(e.to_string()))?;
            self.drain(rtc, socket)?;
        }
        Ok(())
    }

    fn on_rtc_event(&mut self, rtc: &mut Rtc, event: Event) -> Result<(), AgentError> {
        match event {
            Event::Connected => {
                let now = Instant::now();
                self.connected_at = Some(now);
                lock(&self.stats).connected = true;
                let since = self.first_answer_at.unwrap_or(self.started);
                self.notify(Notice::MediaConnected {
                    after: now.saturating_duration_since(since),
                });
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.connected_at.is_some() =>
            {
                return Err(AgentError::MediaFailed(
                    "ICE disconnected: the server stopped answering connectivity checks".into(),
                ));
            }
            Event::RtpPacket(packet) => self.on_rtp(rtc, packet),
            Event::KeyframeRequest(request) => {
                if let Some((video, Some(out))) = self.video.as_mut() {
                    if out.mid == request.mid {
                        video.request_keyframe();
                        lock(&self.stats).keyframe_requests += 1;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_rtp(&mut self, rtc: &mut Rtc, packet: RtpPacket) {
        let ssrc = packet.header.ssrc;
        let route = match self.ssrc_cache.get(&ssrc) {
            Some(r) => *r,
            None => {
                let mid = rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
                let route = mid.and_then(|mid| {
                    slots::carried(&self.tracks, &mid).map(|(from, source)| Route {
                        mid,
                        from,
                        source,
                    })
                });
                self.ssrc_cache.insert(ssrc, route);
                route
            }
        };
        // A slot that carries nobody: whatever still arrives on it (the
        // last packets of whoever it carried) belongs to no one.
        let Some(route) = route else {
            return;
        };
        let Route { mid, from, source } = route;
        let clock = if source.is_audio() { 48_000 } else { 90_000 };
        let arrival = packet
            .timestamp
            .saturating_duration_since(self.started)
            .as_secs_f64();
        let seq = *packet.seq_no;
        let frame = if !self.config.count_only && !source.is_audio() {
            let (slot, reassembler) = self
                .reassemblers
                .entry(ssrc)
                .or_insert_with(|| (mid, Vp8Reassembler::default()));
            if *slot != mid {
                // The SSRC now belongs to another m-line (a new offer).
                *slot = mid;
                *reassembler = Vp8Reassembler::default();
            }
            reassembler.push(
                seq,
                packet.header.timestamp,
                packet.header.marker,
                &packet.payload,
            )
        } else {
            None
        };
        // SFrame keeps the VP8 frame tag (and a keyframe's start code and
        // size) in clear, so the encrypted frame is recognised as it is.
        let complete = frame
            .as_ref()
            .map(|frame| crate::media::parse_vp8_frame(frame));
        let resumed = self.silent.remove(&from);
        {
            let mut stats = lock(&self.stats);
            let remote = stats.remotes.entry(from).or_default();
            if remote.name.is_empty() {
                if let Some(p) = self.people.get(&from) {
                    remote.name = p.name.clone();
                }
            }
            remote.last_packet = Some(packet.timestamp);
            let track = remote.track_mut(source);
            track.record(
                seq,
                packet.header.timestamp,
                clock,
                arrival,
                packet.payload.len(),
                packet.header.marker,
            );
            if let Some(Some(info)) = complete {
                track.frames_complete += 1;
                if info.keyframe {
                    track.keyframes += 1;
                }
            }
        }
        if resumed {
            let name = self.name_of(from);
            self.notify(Notice::MediaResumed { id: from, name });
        }
        if !self.config.count_only {
            if source.is_audio() {
                self.open(
                    route,
                    FrameCodec::Opus,
                    &packet.payload,
                    Instant::now(),
                    None,
                );
            } else if let Some(frame) = frame {
                self.open(route, FrameCodec::Vp8, &frame, Instant::now(), None);
            }
        }
    }

    /// Decrypts and authenticates one received frame; holds it if its key
    /// has not arrived yet. `route`: the slot it arrived on and who the
    /// slot carried then.
    /// `retry`: `None` on arrival, `Some(suspect)` for a held frame.
    fn open(
        &mut self,
        route: Route,
        codec: FrameCodec,
        data: &[u8],
        now: Instant,
        retry: Option<bool>,
    ) {
        let Route { from, source, .. } = route;
        let now_ms = self.now_ms();
        let e = match self.group.decrypt(codec, data, &mut self.plain, now_ms) {
            Ok(info) => {
                self.group.frame_decrypted();
                self.opened(route, codec, info);
                return;
            }
            Err(e) => e,
        };
        // SFrame KIDs carry only 4 epoch bits. A frame can meet a key of
        // the same low bits but another epoch (16 apart: many joins within
        // the 5 s old keys are kept) and fail authentication — or the
        // replay check of that key, which comes first — without being bad.
        let rejected = matches!(
            e,
            conclave_e2ee::Error::AuthenticationFailed | conclave_e2ee::Error::Replay
        );
        let stale_bits = rejected && self.group.maybe_stale_key(codec, data);
        let suspect = match retry {
            // On arrival: a key of the frame's epoch bits but not of our
            // current epoch failed; hold it for the newer key.
            None if stale_bits => true,
            None if rejected || !is_missing_key(&e) => {
                self.count_failure(from, source);
                return;
            }
            None => false,
            Some(suspect) if stale_bits || is_missing_key(&e) => suspect,
            // Held after failing under an old key, now failing under the
            // current one too: bad.
            Some(true) => {
                self.count_failure(from, source);
                return;
            }
            // Held for lack of a key, then not opened by the key of the same
            // bits we got since: most likely from an epoch 16 away.
            Some(false) if rejected => {
                self.count_no_key(from, source);
                return;
            }
            Some(false) => {
                self.count_failure(from, source);
                return;
            }
        };
        if !suspect {
            self.group.frame_without_key(codec, data, now);
        }
        if self.held.len() >= MAX_HELD {
            if let Some(old) = self.held.pop_front() {
                self.give_up(&old);
            }
        }
        self.held.push_back(Held {
            route,
            codec,
            data: data.to_vec(),
            at: now,
            suspect,
        });
    }

    fn count_failure(&self, from: ParticipantId, source: TrackSource) {
        let mut stats = lock(&self.stats);
        let remote = stats.remotes.entry(from).or_default();
        remote.track_mut(source).decrypt_failures += 1;
    }

    /// A held frame that never opened: lacking a key, or a real failure.
    fn give_up(&self, h: &Held) {
        if h.suspect {
            self.count_failure(h.route.from, h.route.source);
        } else {
            self.count_no_key(h.route.from, h.route.source);
        }
    }

    /// The MLS leaf of the member the server says `id` is: the key it
    /// announced for them, found in our roster (None: no key, or not a
    /// member).
    fn leaf_of(&self, id: ParticipantId) -> Option<u32> {
        self.people
            .get(&id)
            .and_then(|p| p.key.as_deref())
            .and_then(|k| self.group.leaf_of_key(k))
    }

    /// A frame decrypted: check who sent it and what it contains.
    fn opened(&mut self, route: Route, codec: FrameCodec, info: conclave_e2ee::FrameInfo) {
        let Route { mid, from, source } = route;
        // SFrame does not tell members apart (any member could use any
        // KID): as the browser does, a slot's frames count only if their
        // KID's leaf is that of the participant the slot carried when they
        // arrived (the key the server announced for them, in our roster).
        let expected = self.leaf_of(from);
        let now = Instant::now();
        let slot = self.slots.entry(mid).or_default();
        let verdict =
            if self.group.epoch() == Some(info.epoch) || expected == Some(info.sender_leaf) {
                slot.judge(expected, info.sender_leaf, from, now)
            } else if slot.recently_moved(now) {
                Verdict::Switching
            } else {
                // Our roster is the current epoch's: an older epoch's frame
                // under another leaf (its sender since rejoined with a new one,
                // or left) cannot be pinned on anyone. Dropped all the same.
                Verdict::Unattributed
            };
        let mut stats = lock(&self.stats);
        match verdict {
            Verdict::Accept => {}
            Verdict::WrongSender => {
                stats.remotes.entry(from).or_default().wrong_sender += 1;
                return;
            }
            Verdict::Switching => {
                stats.dropped_switching += 1;
                return;
            }
            Verdict::Unattributed => {
                stats.dropped_unattributed += 1;
                return;
            }
        }
        let looks_right = match codec {
            FrameCodec::Vp8 => crate::media::parse_vp8_frame(&self.plain).is_some(),
            _ => !self.plain.is_empty(),
        };
        let track = stats.remotes.entry(from).or_default().track_mut(source);
        if looks_right {
            track.decrypted += 1;
        } else {
            track.decrypt_failures += 1;
        }
    }

    fn count_no_key(&self, from: ParticipantId, source: TrackSource) {
        let mut stats = lock(&self.stats);
        stats
            .remotes
            .entry(from)
            .or_default()
            .track_mut(source)
            .no_key += 1;
    }

    /// New keys: try the held frames again; give up on the old ones.
    fn retry_held(&mut self, now: Instant) {
        for h in std::mem::take(&mut self.held) {
            if now.saturating_duration_since(h.at) > HOLD_FOR {
                self.give_up(&h);
            } else {
                self.open(h.route, h.codec, &h.data, h.at, Some(h.suspect));
            }
        }
    }

    /// Frames that waited too long for a key.
    fn expire_held(&mut self, now: Instant) {
        while self
            .held
            .front()
            .is_some_and(|h| now.saturating_duration_since(h.at) > HOLD_FOR)
        {
            if let Some(h) = self.held.pop_front() {
                self.give_up(&h);
            }
        }
    }

    fn name_of(&self, id: ParticipantId) -> String {
        self.people
            .get(&id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("participant {id}"))
    }

    async fn on_server_message(
        &mut self,
        message: ServerMessage,
        rtc: &mut Rtc,
        sink: &mut WsSink,
    ) -> Result<(), AgentError> {
        match message {
            ServerMessage::Welcome {
                you,
                participants,
                e2ee,
            } => {
                if self.me.is_some() {
                    self.notify(Notice::Warning(
                        "the server sent a second welcome; ignored".into(),
                    ));
                    return Ok(());
                }
                self.me = Some(you.id);
                self.group.set_me(you.id);
                lock(&self.stats).id = Some(you.id);
                for p in &participants {
                    self.people.insert(p.id, p.clone());
                }
                self.notify(Notice::Joined {
                    id: you.id,
                    others: participants,
                });
                let now = Instant::now();
                self.group.start(&e2ee, now, self.now_ms());
                // Sent once we are in the encrypted group.
                for text in std::mem::take(&mut self.config.chat) {
                    self.group.queue_chat(text, now);
                }
            }
            ServerMessage::CreateGroup { e2ee } => {
                self.group.start(&e2ee, Instant::now(), self.now_ms());
            }
            ServerMessage::Mls { from, data } => {
                self.group
                    .on_mls(from, &data, Instant::now(), self.now_ms());
            }
            ServerMessage::CommitRejected { reason } => {
                self.group.on_commit_rejected(&reason, Instant::now());
            }
            ServerMessage::Offer { sdp, tracks } => {
                let offer = match str0m::change::SdpOffer::from_sdp_string(&sdp) {
                    Ok(o) => o,
                    Err(e) => {
                        self.notify(Notice::Warning(format!(
                            "the server's offer has unreadable SDP ({e}); not answered"
                        )));
                        return Ok(());
                    }
                };
                let answer = match rtc.sdp_api().accept_offer(offer) {
                    Ok(a) => a,
                    Err(e) => {
                        self.notify(Notice::Warning(format!(
                            "cannot accept the server's offer ({e}); not answered"
                        )));
                        return Ok(());
                    }
                };
                self.apply_tracks(slots::offer_map(tracks), Instant::now());
                self.publish_on(rtc);
                send(
                    sink,
                    &ClientMessage::Answer {
                        sdp: answer.to_sdp_string(),
                    },
                )
                .await?;
                self.first_answer_at.get_or_insert_with(Instant::now);
            }
            ServerMessage::Tracks { tracks } => {
                // Receive slots moved, without renegotiation. Messages are
                // handled in order, so this applies after any earlier offer.
                let map = slots::remap(&self.tracks, tracks);
                self.apply_tracks(map, Instant::now());
            }
            ServerMessage::ParticipantJoined { participant } => {
                self.people.insert(participant.id, participant.clone());
                self.notify(Notice::ParticipantJoined(participant));
            }
            ServerMessage::ParticipantUpdated { participant } => {
                self.people.insert(participant.id, participant);
            }
            ServerMessage::ParticipantLeft { id } => {
                let name = self.name_of(id);
                self.people.remove(&id);
                self.subscribed_since.remove(&id);
                self.silent.remove(&id);
                self.notify(Notice::ParticipantLeft { id, name });
            }
            ServerMessage::Chat {
                seq, from, data, ..
            } => {
                let own = self.me == Some(from);
                if let Some(notice) = self.group.on_chat(seq, from, &data, own, self.now_ms()) {
                    self.notify(notice);
                }
            }
            ServerMessage::Speaking { ids } => {
                let mut stats = lock(&self.stats);
                stats.speaking_updates += 1;
                stats.speaking = ids;
            }
            // The agent does not resume sessions: a broken connection ends
            // its run (a load generator re-joins instead).
            ServerMessage::Keepalive
            | ServerMessage::Session { .. }
            | ServerMessage::Resumed { .. } => {}
            ServerMessage::Error { code, message } => {
                if self.me.is_none() {
                    return Err(AgentError::Refused { code, message });
                }
                self.notify(Notice::Warning(format!(
                    "the server reported an error ({code:?}): {message}"
                )));
            }
        }
        Ok(())
    }

    /// Takes a new m-line map (an offer's, or a `tracks` message's): who
    /// every subscribe m-line carries from now on. A slot that moved to
    /// someone else keeps its SSRC, so what was learnt per SSRC goes, and
    /// its half-reassembled frame with it; frames in flight across the
    /// move are told apart from a wrong sender's (`SlotGuard`).
    fn apply_tracks(&mut self, map: TrackMap, now: Instant) {
        let before = std::mem::replace(&mut self.tracks, map);
        self.ssrc_cache.clear();
        let moved = slots::moved(&before, &self.tracks);
        let moved_mids: HashSet<Mid> = moved.iter().map(|(mid, _)| *mid).collect();
        self.reassemblers
            .retain(|_, (mid, _)| !moved_mids.contains(mid));
        for (mid, was) in moved {
            if let Some((to, source)) = slots::carried(&self.tracks, &mid) {
                // Another slot's numbering from now on.
                let mut stats = lock(&self.stats);
                if let Some(remote) = stats.remotes.get_mut(&to) {
                    remote.track_mut(source).restart();
                }
            }
            let to_leaf = slots::carried(&self.tracks, &mid).and_then(|(p, _)| self.leaf_of(p));
            let Some((charged, count)) =
                self.slots
                    .entry(mid)
                    .or_default()
                    .moved(was.is_some(), to_leaf, now)
            else {
                continue;
            };
            // The new participant's first frames, ahead of this message.
            let mut stats = lock(&self.stats);
            if let Some(remote) = stats.remotes.get_mut(&charged) {
                remote.wrong_sender = remote.wrong_sender.saturating_sub(count);
            }
            stats.dropped_switching += count;
        }
        // Media is expected from whoever a slot carries, from when it
        // started to; someone no slot carries sends us nothing.
        let carried = slots::subscribed(&self.tracks);
        self.subscribed_since.retain(|id, _| carried.contains(id));
        self.silent.retain(|id| carried.contains(id));
        for id in carried {
            self.subscribed_since.entry(id).or_insert(now);
        }
    }

    /// Where to send our sources: the publish m-lines of the offer just
    /// accepted (set once; they do not move).
    fn publish_on(&mut self, rtc: &mut Rtc) {
        let publish = |source: TrackSource| {
            self.tracks
                .iter()
                .find(|(_, t)| t.direction == TrackDirection::Publish && t.source == source)
                .map(|(mid, _)| *mid)
        };
        let mic = publish(TrackSource::Microphone);
        let cam = publish(TrackSource::Camera);
        if let Some((_, out)) = self.audio.as_mut() {
            if out.is_none() {
                *out = mic.and_then(|mid| outgoing(rtc, mid, Codec::Opus));
            }
        }
        if let Some((_, out)) = self.video.as_mut() {
            if out.is_none() {
                *out = cam.and_then(|mid| outgoing(rtc, mid, Codec::Vp8));
            }
        }
        if self.audio.as_ref().is_some_and(|(_, o)| o.is_none())
            || self.video.as_ref().is_some_and(|(_, o)| o.is_none())
        {
            self.notify(Notice::Warning(
                "the offer has no usable publish m-line for one of our sources; it stays silent"
                    .into(),
            ));
        }
    }

    fn send_audio(&mut self, rtc: &mut Rtc, now: Instant) {
        let Some((source, Some(out))) = self.audio.as_mut() else {
            return;
        };
        let frame = source.next_frame();
        if !self
            .group
            .encrypt(FrameCodec::Opus, &frame.data, &mut self.sealed)
        {
            return;
        }
        let ext = ExtensionValues {
            audio_level: frame.audio_level,
            voice_activity: frame.voice,
            ..Default::default()
        };
        let len = self.sealed.len();
        let written = write(rtc, out, &frame, self.sealed.clone(), true, ext, false, now);
        if written {
            let mut stats = lock(&self.stats);
            stats.sent_packets += 1;
            stats.sent_bytes += len as u64;
            stats.sent_frames += 1;
        }
    }

    fn send_video(&mut self, rtc: &mut Rtc, now: Instant) {
        let Some((source, Some(out))) = self.video.as_mut() else {
            return;
        };
        let frame = source.next_frame();
        // SFrame per frame, then packetize: the VP8 payload header byte
        // (and a keyframe's first 10 bytes) stay clear for the SFU.
        if !self
            .group
            .encrypt(FrameCodec::Vp8, &frame.data, &mut self.sealed)
        {
            return;
        }
        let payloads = packetize_vp8(&self.sealed, self.picture_id);
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let (mut packets, mut bytes) = (0, 0);
        for p in payloads {
            let len = p.data.len();
            if write(
                rtc,
                out,
                &frame,
                p.data,
                p.marker,
                ExtensionValues::default(),
                true,
                now,
            ) {
                packets += 1;
                bytes += len as u64;
            }
        }
        let mut stats = lock(&self.stats);
        stats.sent_packets += packets;
        stats.sent_bytes += bytes;
        stats.sent_frames += 1;
    }

    /// Periodic checks: connection deadlines, and remote participants gone quiet.
    fn check(&mut self, now: Instant) -> Result<(), AgentError> {
        self.expire_held(now);
        self.group.check_media_ahead(now);
        let timeout = self.config.connect_timeout;
        if self.me.is_none() && now.duration_since(self.started) > timeout {
            return Err(AgentError::SignalingLost(format!(
                "no welcome from the server within {} s",
                timeout.as_secs()
            )));
        }
        let Some(connected) = self.connected_at else {
            if let Some(answered) = self.first_answer_at {
                if now.duration_since(answered) > timeout {
                    return Err(AgentError::MediaFailed(format!(
                        "ICE/DTLS did not connect within {} s of answering",
                        timeout.as_secs()
                    )));
                }
            }
            return Ok(());
        };
        let mut quiet = Vec::new();
        {
            let stats = lock(&self.stats);
            for (&id, since) in &self.subscribed_since {
                if Some(id) == self.me || self.silent.contains(&id) {
                    continue;
                }
                let Some(person) = self.people.get(&id) else {
                    continue;
                };
                if !person.media.microphone && !person.media.camera && !person.media.screen {
                    continue;
                }
                // A participant a slot carries again after a while gets
                // the same grace as a new one.
                let last = stats
                    .remotes
                    .get(&id)
                    .and_then(|r| r.last_packet)
                    .unwrap_or(connected)
                    .max(*since)
                    .max(connected);
                let silent_for = now.saturating_duration_since(last);
                if silent_for >= self.config.no_media_after {
                    quiet.push((id, person.name.clone(), silent_for));
                }
            }
        }
        for (id, name, silent_for) in quiet {
            self.silent.insert(id);
            self.notify(Notice::NoMedia {
                id,
                name,
                silent_for,
            });
        }
        Ok(())
    }
}

/// Where a source's packets go, with the payload type the offer gave its codec.
fn outgoing(rtc: &mut Rtc, mid: Mid, codec: Codec) -> Option<Outgoing> {
    let media = rtc.media(mid)?;
    let kind = if codec == Codec::Opus {
        MediaKind::Audio
    } else {
        MediaKind::Video
    };
    if media.kind() != kind {
        return None;
    }
    let remote = media.remote_pts().to_vec();
    let pt = rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec && (remote.is_empty() || remote.contains(&p.pt())))
        .cloned()?;
    rtc.direct_api().stream_tx_by_mid(mid, None)?;
    Some(Outgoing {
        mid,
        pt,
        // The SFU rebases sequence numbers per subscriber; any start works.
        seq: 1,
    })
}

#[allow(clippy::too_many_arguments)]
fn write(
    rtc: &mut Rtc,
    out: &mut Outgoing,
    frame: &EncodedFrame,
    payload: Vec<u8>,
    marker: bool,
    ext: ExtensionValues,
    nackable: bool,
    now: Instant,
) -> bool {
    let mut api = rtc.direct_api();
    let Some(stream) = api.stream_tx_by_mid(out.mid, None) else {
        return false;
    };
    let write = RtpWrite::new(out.pt.pt(), out.seq.into(), frame.rtp_time, now, payload)
        .marker(marker)
        .ext_vals(ext)
        .nackable(nackable);
    stream.write_rtp(write);
    out.seq += 1;
    true
}

/// The next tick after `at`, skipping ahead if the task fell far behind.
fn catch_up(at: Instant, interval: Duration, now: Instant) -> Instant {
    let next = at + interval;
    if now.saturating_duration_since(next) > MAX_LAG {
        now + interval
    } else {
        next
    }
}

async fn send(sink: &mut WsSink, message: &ClientMessage) -> Result<(), AgentError> {
    let json = serde_json::to_string(message)
        .map_err(|e| AgentError::Local(format!("cannot encode {message:?}: {e}")))?;
    sink.send(Message::text(json))
        .await
        .map_err(|e| AgentError::SignalingLost(format!("WebSocket send failed: {e}")))
}

/// A UDP socket on the local address that routes to the server.
async fn bind_media_socket(authority: &str) -> Result<UdpSocket, AgentError> {
    let server = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| AgentError::Connect(format!("cannot resolve {authority}: {e}")))?
        .next()
        .ok_or_else(|| AgentError::Connect(format!("{authority} has no address")))?;
    let any: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    // Connecting a UDP socket sends nothing; it only asks the OS for a route.
    let probe = std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(server).map(|_| s))
        .and_then(|s| s.local_addr())
        .map_err(|e| AgentError::Local(format!("no route to {server}: {e}")))?;
    let local = SocketAddr::new(probe.ip(), 0);
    let socket = (|| {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(local),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Many streams arrive in keyframe bursts while one thread serves
        // every participant: a larger buffer rides out the scheduling delay
        // (the kernel caps it at net.core.rmem_max).
        let _ = s.set_recv_buffer_size(RECV_BUFFER);
        s.set_nonblocking(true)?;
        s.bind(&local.into())?;
        UdpSocket::from_std(s.into())
    })();
    socket.map_err(|e| AgentError::Local(format!("cannot bind a UDP socket on {local}: {e}")))
}

const RECV_BUFFER: usize = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::test_maps::{publish, sub};

    fn session() -> Session {
        let url = RoomUrl::parse("http://127.0.0.1:9/slots").expect("a room link");
        let stats = Arc::new(Mutex::new(ParticipantStats::default()));
        let (notices, _) = mpsc::unbounded_channel();
        Session::new(ParticipantConfig::new(url, "Ada"), stats, notices)
    }

    #[test]
    fn a_tracks_message_moves_slots_and_forgets_what_was_learnt_per_ssrc() {
        let mut s = session();
        let t0 = Instant::now();
        s.apply_tracks(
            slots::offer_map(vec![
                publish("0", TrackSource::Microphone),
                publish("1", TrackSource::Camera),
                publish("2", TrackSource::Screen),
                sub("3", 7, TrackSource::Camera),
                sub("4", 8, TrackSource::Camera),
                sub("5", 8, TrackSource::Microphone),
            ]),
            t0,
        );
        assert_eq!(s.subscribed_since.get(&7), Some(&t0));
        assert_eq!(s.subscribed_since.get(&8), Some(&t0));
        let (m3, m4) = (Mid::from("3"), Mid::from("4"));
        let route = |mid, from| Route {
            mid,
            from,
            source: TrackSource::Camera,
        };
        s.ssrc_cache.insert(Ssrc::from(33), Some(route(m3, 7)));
        s.ssrc_cache.insert(Ssrc::from(44), Some(route(m4, 8)));
        s.reassemblers
            .insert(Ssrc::from(33), (m3, Vp8Reassembler::default()));
        s.reassemblers
            .insert(Ssrc::from(44), (m4, Vp8Reassembler::default()));
        s.silent.insert(7);

        // Slot 3 goes from 7 to 9; 8 keeps slot 4 and loses its microphone
        // slot; 7 is carried by no slot now.
        let t1 = t0 + Duration::from_secs(5);
        let map = slots::remap(
            &s.tracks,
            vec![
                sub("3", 9, TrackSource::Camera),
                sub("4", 8, TrackSource::Camera),
            ],
        );
        s.apply_tracks(map, t1);
        assert!(
            s.ssrc_cache.is_empty(),
            "an SSRC may carry someone else now"
        );
        assert!(
            !s.reassemblers.contains_key(&Ssrc::from(33)),
            "no frame mixes 7's packets with 9's"
        );
        assert!(
            s.reassemblers.contains_key(&Ssrc::from(44)),
            "8's slot did not move"
        );
        assert_eq!(s.subscribed_since.get(&8), Some(&t0));
        assert_eq!(s.subscribed_since.get(&9), Some(&t1));
        assert!(
            !s.subscribed_since.contains_key(&7),
            "no media expected from 7"
        );
        assert!(!s.silent.contains(&7));
        assert!(s.slots.get(&m3).is_some_and(|g| g.recently_moved(t1)));
        assert!(!s.slots.get(&m4).is_some_and(|g| g.recently_moved(t1)));
        // The publish m-lines stay as offered.
        assert_eq!(
            s.tracks.get(&Mid::from("1")).map(|t| t.direction),
            Some(TrackDirection::Publish)
        );

        // 7 back on a slot later: watched again, from then on.
        let t2 = t1 + Duration::from_secs(5);
        let map = slots::remap(&s.tracks, vec![sub("3", 7, TrackSource::Camera)]);
        s.apply_tracks(map, t2);
        assert_eq!(s.subscribed_since.get(&7), Some(&t2));
        assert!(!s.subscribed_since.contains_key(&8));
    }
}
