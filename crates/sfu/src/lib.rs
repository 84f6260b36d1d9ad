//! The selective forwarding unit, as a sans-IO state machine.
//!
//! [`Sfu`] owns one [`str0m::Rtc`] per participant (ICE-lite, DTLS-SRTP, RTP
//! mode) and forwards every RTP packet a participant publishes to every other
//! participant in the same room, without depacketizing it: payloads are moved
//! as shared `Arc<[u8]>`, so end-to-end encrypted frames pass through
//! untouched. Only RTP header fields (sequence numbers, timestamps, the RFC
//! 6464 audio level) and, for a subscriber still waiting for its first
//! keyframe, the VP8 descriptor and the frame tag SFrame leaves in clear are
//! looked at.
//!
//! Like str0m, the SFU owns no socket and reads no clock: the caller feeds
//! datagrams and time in ([`Sfu::handle_datagram`], [`Sfu::handle_timeout`])
//! and drains [`Output`]s (datagrams to send, SDP offers to signal, speaking
//! changes) with [`Sfu::poll_output`].
//!
//! Negotiation: the server is always the SDP offerer, and negotiates once per
//! participant. Each gets three publish m-lines (microphone, camera, screen;
//! recvonly here) and a fixed set of receive slots (sendonly here; see
//! [`slots`]): the SFU maps other participants' tracks onto the slots and
//! tells the client with [`Output::Tracks`], so joins, leaves and a change of
//! speaker never renegotiate, and a participant's cost does not grow with
//! the room.
//!
//! Panic policy: nothing a remote peer sends may panic. Malformed datagrams are
//! dropped with a [`DropReason`]; a participant whose `Rtc` errors is
//! disconnected alone.

mod demux;
mod participant;
mod seq;
pub mod slots;
mod speaking;
mod vp8;

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use conclave_protocol::{ParticipantId, TrackMapping, TrackSource};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Event, IceConnectionState, Input};

pub use demux::{participant_of_ufrag, stun_local_ufrag, stun_request_for_tests};
/// How a keyframe is asked for (PLI or FIR), as relayed between shards.
pub use str0m::media::KeyframeRequestKind;

use demux::Demux;
use participant::Participant;
use speaking::SpeakingDetector;

/// How often the speaking set of each room is recomputed.
const SPEAKING_INTERVAL: Duration = Duration::from_millis(200);
/// At most one keyframe request per source per this interval, however many
/// subscribers ask: a keyframe is large, and one serves them all.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
/// A new subscriber that got no keyframe this long after its video opened
/// asks again (a PLI lost on the way, a publisher that missed it)…
const KEYFRAME_RETRY_AFTER: Duration = Duration::from_millis(600);
/// …until this long: then the publisher's periodic keyframes will do.
const KEYFRAME_RETRY_FOR: Duration = Duration::from_secs(5);
/// A video source counts as sending (and can take a slot in a full room, or
/// any screen slot) if a packet arrived this recently.
const SENDING_WINDOW: Duration = Duration::from_secs(3);

/// After a commit that adds members, when every video publisher of the
/// room is asked for a keyframe (see [`Sfu::request_room_keyframes`]): late
/// enough that most publishers have the new epoch's key, and once more for
/// those that took longer.
/// How long a participant's ICE may stay disconnected before the SFU gives
/// up on it: time for the client to notice, ask for an ICE restart and
/// check its new path (web client: within ~30 s), a few times over.
pub const ICE_DOWN_GRACE: Duration = Duration::from_secs(40);

const KEYFRAMES_AFTER_ADD: [Duration; 2] = [Duration::from_millis(150), Duration::from_millis(450)];

/// How recently someone spoke, for slot ranking: lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SpeakingTier {
    /// Within `SPEAKING_RECENT`.
    Now,
    Before,
    Never,
}

/// Speaking this recently counts as speaking now, for slot ranking: long
/// enough to span the pauses of normal speech.
const SPEAKING_RECENT: Duration = Duration::from_secs(2);

impl SpeakingTier {
    fn of(last_loud: Option<Instant>, now: Instant) -> Self {
        match last_loud {
            Some(t) if now.saturating_duration_since(t) < SPEAKING_RECENT => SpeakingTier::Now,
            Some(_) => SpeakingTier::Before,
            None => SpeakingTier::Never,
        }
    }
}

/// Where the SFU's media ports are reachable.
#[derive(Debug, Clone, Copy)]
pub struct SfuConfig {
    /// The address announced to browsers as the ICE host candidate (UDP).
    pub candidate_addr: SocketAddr,
    /// The address announced as a passive ICE-TCP host candidate (RFC
    /// 6544), for browsers whose UDP is blocked; `None`: UDP only.
    pub tcp_candidate_addr: Option<SocketAddr>,
}

/// How a datagram travels between the SFU and a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// The SFU's UDP port.
    Udp,
    /// The TCP connection (RFC 4571 framing) from the remote address: ICE
    /// over TCP, with the SFU's passive candidate.
    Tcp,
}

/// Something the caller must act on.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes: from the SFU's UDP socket to `destination`, or
    /// (one RFC 4571 frame) on the TCP connection from `destination`.
    Transmit {
        transport: Transport,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// Signal this SDP offer to the participant; it must answer with
    /// [`Sfu::handle_answer`].
    Offer {
        participant: ParticipantId,
        sdp: String,
        tracks: Vec<TrackMapping>,
    },
    /// What the participant's m-lines carry changed (a slot got another
    /// source, or none), without renegotiation: signal it.
    Tracks {
        participant: ParticipantId,
        tracks: Vec<TrackMapping>,
    },
    /// The set of speaking participants in a room changed.
    Speaking {
        room: String,
        ids: Vec<ParticipantId>,
    },
    /// The participant's media connection failed, or ICE stayed
    /// disconnected for `ICE_DOWN_GRACE` (no ICE restart brought it back).
    Disconnected { participant: ParticipantId },
    /// An ICE restart gave the participant a new local ufrag (and made an
    /// older one obsolete): STUN naming it is the participant's. Before
    /// the [`Output::Offer`] that carries it.
    IceUfrag {
        participant: ParticipantId,
        ufrag: String,
        dropped: Option<String>,
    },
    /// A packet a local member published that members on other shards
    /// subscribe to: give it to each shard whose bit is set in `shards`
    /// ([`Sfu::handle_relayed`]).
    Relay {
        shards: u64,
        packet: Arc<RelayedPacket>,
    },
    /// A keyframe request for a source another shard owns: give it to that
    /// shard ([`Sfu::handle_keyframe_request`]).
    KeyframeRequest {
        shard: usize,
        source: ParticipantId,
        track: TrackSource,
        kind: KeyframeRequestKind,
    },
}

/// A published RTP packet (authenticated and decrypted from its sender's
/// SRTP; the payload is still the sender's SFrame ciphertext) on its way to
/// another shard's subscribers.
#[derive(Debug)]
pub struct RelayedPacket {
    source: ParticipantId,
    track: TrackSource,
    packet: RtpPacket,
}

/// Shards one SFU state machine can relay to (bits of [`Output::Relay`]).
pub const MAX_SHARDS: usize = 64;

/// A member of a room whose `Rtc` another shard owns: this shard forwards
/// its packets (relayed to it) to local subscribers and ranks it for slots.
#[derive(Debug)]
struct Remote {
    shard: usize,
    room: Arc<str>,
    last_published: [Option<Instant>; 3],
}

/// Why a datagram was not processed. Never fatal: the caller counts and moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not STUN, DTLS, RTP or RTCP.
    Unparseable,
    /// From an address, or with an ICE username, that belongs to no participant.
    UnknownSender,
    /// The participant's `Rtc` did not accept it (e.g. bad STUN credentials).
    NotAccepted,
}

/// Errors the signaling layer reports back to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuError {
    UnknownParticipant,
    AlreadyPresent,
    /// An answer arrived with no offer outstanding.
    NoPendingOffer,
    /// The answer could not be parsed or applied.
    BadSdp(String),
}

impl std::fmt::Display for SfuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SfuError::UnknownParticipant => f.write_str("unknown participant"),
            SfuError::AlreadyPresent => f.write_str("participant already present"),
            SfuError::NoPendingOffer => f.write_str("no offer is waiting for an answer"),
            SfuError::BadSdp(e) => write!(f, "the SDP answer was not accepted: {e}"),
        }
    }
}

impl std::error::Error for SfuError {}

pub struct Sfu {
    config: SfuConfig,
    /// Members whose `Rtc` this SFU owns.
    participants: HashMap<ParticipantId, Participant>,
    /// Members another shard owns (see [`Sfu::add_remote`]).
    remote: HashMap<ParticipantId, Remote>,
    /// Every room's members, local and remote, in join order (the same on
    /// every shard: control tells each shard of joins in one order).
    rooms: HashMap<Arc<str>, Vec<ParticipantId>>,
    demux: Demux,
    /// When each participant's `Rtc` next wants a timeout, ordered.
    timeouts: BTreeSet<(Instant, ParticipantId)>,
    speaking: SpeakingDetector,
    next_speaking_tick: Option<Instant>,
    outputs: VecDeque<Output>,
    /// Participants written to since they were last polled (each once:
    /// polling an `Rtc` scans all its streams, so it is done once per batch
    /// of input, not once per packet).
    dirty: Vec<ParticipantId>,
    dirty_set: HashSet<ParticipantId>,
    /// The time of the latest input, for flushing on [`Sfu::poll_output`].
    last_now: Option<Instant>,
    /// Video subscriptions (subscriber, source, track) opened at the given
    /// time that have not had a keyframe yet.
    awaiting_keyframe: Vec<(ParticipantId, ParticipantId, TrackSource, Instant)>,
    /// Rooms whose local video publishers are to be asked for a keyframe
    /// at the given time (see [`Sfu::request_room_keyframes`]).
    room_keyframes: Vec<(Instant, Arc<str>)>,
    /// Participants whose ICE is disconnected, with when the SFU gives up
    /// on them (see `ICE_DOWN_GRACE`).
    ice_down: Vec<(Instant, ParticipantId)>,
}

static INSTALL_CRYPTO: Once = Once::new();

impl Sfu {
    pub fn new(config: SfuConfig) -> Self {
        INSTALL_CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
        Sfu {
            config,
            participants: HashMap::new(),
            remote: HashMap::new(),
            rooms: HashMap::new(),
            demux: Demux::default(),
            timeouts: BTreeSet::new(),
            speaking: SpeakingDetector::default(),
            next_speaking_tick: None,
            outputs: VecDeque::new(),
            dirty: Vec::new(),
            dirty_set: HashSet::new(),
            last_now: None,
            awaiting_keyframe: Vec::new(),
            room_keyframes: Vec::new(),
            ice_down: Vec::new(),
        }
    }

    /// Whether ICE has checked `source` as one of this SFU's participants'
    /// addresses.
    pub fn knows_address(&self, source: SocketAddr) -> bool {
        self.demux.knows(source)
    }

    /// Whether the TCP connection from `source` is one a participant's
    /// `Rtc` accepted a datagram on.
    pub fn knows_tcp_address(&self, source: SocketAddr) -> bool {
        self.demux.knows_tcp(source)
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// Adds a participant to `room` and emits its first [`Output::Offer`]; every
    /// other member of the room gets a renegotiation offer for the new tracks.
    pub fn add_participant(
        &mut self,
        now: Instant,
        id: ParticipantId,
        room: &str,
    ) -> Result<(), SfuError> {
        if self.participants.contains_key(&id) {
            return Err(SfuError::AlreadyPresent);
        }
        let room: Arc<str> = Arc::from(room);
        let participant = Participant::new(
            now,
            id,
            room.clone(),
            self.config.candidate_addr,
            self.config.tcp_candidate_addr,
        );
        self.rooms.entry(room.clone()).or_default().push(id);
        for ufrag in participant.ufrags() {
            self.demux.add(ufrag.clone(), id);
        }
        self.participants.insert(id, participant);
        // The newcomer's slots are filled before its first offer, so the
        // offer's track map already says who is on them.
        self.reassign(now, &room, Some(id));
        self.negotiate(id);
        self.mark_dirty(id);
        self.flush(now);
        Ok(())
    }

    /// Adds a member of `room` whose `Rtc` shard `shard` owns: its packets
    /// come relayed from there, and local members get slots for its tracks.
    /// With several shards, each is told of every join (local on one, remote
    /// on the rest), in the same order.
    pub fn add_remote(
        &mut self,
        now: Instant,
        id: ParticipantId,
        room: &str,
        shard: usize,
    ) -> Result<(), SfuError> {
        if self.participants.contains_key(&id) || self.remote.contains_key(&id) {
            return Err(SfuError::AlreadyPresent);
        }
        if shard >= MAX_SHARDS {
            return Err(SfuError::UnknownParticipant);
        }
        let room: Arc<str> = Arc::from(room);
        self.rooms.entry(room.clone()).or_default().push(id);
        self.remote.insert(
            id,
            Remote {
                shard,
                room: room.clone(),
                last_published: [None; 3],
            },
        );
        self.reassign(now, &room, None);
        self.flush(now);
        Ok(())
    }

    /// Removes a participant, local or remote; its slots in the others'
    /// connections are freed or given to someone else.
    pub fn remove_participant(&mut self, now: Instant, id: ParticipantId) {
        let room = if let Some(mut participant) = self.participants.remove(&id) {
            participant.disconnect();
            self.demux.remove(id, participant.ufrags());
            self.ice_down.retain(|&(_, p)| p != id);
            self.timeouts.retain(|&(_, p)| p != id);
            participant.room().clone()
        } else if let Some(remote) = self.remote.remove(&id) {
            remote.room
        } else {
            return;
        };
        self.speaking.forget(id);
        let mut remaining = Vec::new();
        if let Some(members) = self.rooms.get_mut(&room) {
            members.retain(|&m| m != id);
            remaining.clone_from(members);
            if members.is_empty() {
                self.rooms.remove(&room);
            }
        }
        if !remaining.is_empty() {
            self.reassign(now, &room, None);
        }
        self.flush(now);
    }

    /// Applies a participant's SDP answer to the outstanding offer.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        id: ParticipantId,
        sdp: &str,
    ) -> Result<(), SfuError> {
        let participant = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant)?;
        let opened = participant.accept_answer(sdp)?;
        // New subscribers need a keyframe before they can show anything.
        for (source, track) in opened {
            self.await_keyframe(now, id, source, track);
        }
        self.negotiate(id);
        self.mark_dirty(id);
        self.flush(now);
        Ok(())
    }

    /// Feeds one UDP datagram received on the SFU's port.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<(), DropReason> {
        self.receive(now, Transport::Udp, source, data)
    }

    /// Feeds one RFC 4571 frame read from the TCP connection from `source`
    /// (ICE over TCP: the SFU's passive candidate).
    pub fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<(), DropReason> {
        self.receive(now, Transport::Tcp, source, data)
    }

    #[inline]
    fn receive(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<(), DropReason> {
        let (proto, destination) = match transport {
            Transport::Udp => (Protocol::Udp, self.config.candidate_addr),
            Transport::Tcp => (
                Protocol::Tcp,
                self.config
                    .tcp_candidate_addr
                    .ok_or(DropReason::UnknownSender)?,
            ),
        };
        let id = self
            .demux
            .lookup(transport, source, data)
            .ok_or(DropReason::UnknownSender)?;
        let contents = DatagramRecv::try_from(data).map_err(|_| DropReason::Unparseable)?;
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        let participant = self
            .participants
            .get_mut(&id)
            .ok_or(DropReason::UnknownSender)?;
        if !participant.accepts(&input) {
            return Err(DropReason::NotAccepted);
        }
        participant.handle_input(input);
        self.demux.learn(transport, source, id);
        // The sender's Rtc is polled at once (str0m wants its events taken
        // before the next input); what it published leaves at once too,
        // protected for each subscriber (`Participant::forward`).
        self.drain(now, id);
        self.last_now = Some(now);
        Ok(())
    }

    /// When [`Sfu::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rtc = self.timeouts.first().map(|&(t, _)| t);
        let keyframes = self.room_keyframes.iter().map(|&(t, _)| t).min();
        let ice_down = self.ice_down.iter().map(|&(t, _)| t).min();
        [rtc, self.next_speaking_tick, keyframes, ice_down]
            .into_iter()
            .flatten()
            .min()
    }

    /// A commit added members to `room`: they can decrypt nothing sealed
    /// before it, and what the SFU asked for when their slots opened was
    /// likely sealed under the previous epoch. So every video publisher of
    /// the room this SFU owns is asked for a keyframe shortly after the
    /// commit (`KEYFRAMES_AFTER_ADD`), whatever it was asked before. The
    /// server calls this on every shard.
    pub fn request_room_keyframes(&mut self, now: Instant, room: &str) {
        let Some((room, _)) = self.rooms.get_key_value(room) else {
            return;
        };
        let room = room.clone();
        for after in KEYFRAMES_AFTER_ADD {
            self.room_keyframes.push((now + after, room.clone()));
        }
    }

    fn send_room_keyframe_requests(&mut self, now: Instant) {
        if !self.room_keyframes.iter().any(|&(t, _)| t <= now) {
            return;
        }
        let (due, later) = std::mem::take(&mut self.room_keyframes)
            .into_iter()
            .partition(|&(t, _)| t <= now);
        self.room_keyframes = later;
        for (_, room) in due {
            let members = self.rooms.get(&room).cloned().unwrap_or_default();
            for member in members {
                for track in [TrackSource::Camera, TrackSource::Screen] {
                    if !self.publishes(member, track, now, SENDING_WINDOW) {
                        continue;
                    }
                    let Some(p) = self.participants.get_mut(&member) else {
                        continue;
                    };
                    if p.force_keyframe_request(now, track, KeyframeRequestKind::Pli) {
                        self.mark_dirty(member);
                    }
                }
            }
        }
    }

    fn give_up_on_ice_down(&mut self, now: Instant) {
        let (due, later) = std::mem::take(&mut self.ice_down)
            .into_iter()
            .partition(|&(t, _)| t <= now);
        self.ice_down = later;
        for (_, participant) in due {
            self.outputs.push_back(Output::Disconnected { participant });
        }
    }

    /// Drives time forward for every participant whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timeouts.first() {
            if at > now {
                break;
            }
            self.timeouts.pop_first();
            if let Some(p) = self.participants.get_mut(&id) {
                p.handle_input(Input::Timeout(now));
                self.mark_dirty(id);
            }
        }
        self.send_room_keyframe_requests(now);
        self.give_up_on_ice_down(now);
        if self.next_speaking_tick.is_some_and(|t| t <= now) {
            self.next_speaking_tick = None;
            self.retry_keyframe_requests(now);
            let rooms: Vec<Arc<str>> = self.rooms.keys().cloned().collect();
            for room in rooms {
                self.reassign(now, &room, None);
            }
            for (room, ids) in self.speaking.tick(now) {
                // Every shard with members in a room sees its packets and
                // tracks who speaks; one reports it: the shard that owns the
                // room's first member.
                let reports = self
                    .rooms
                    .get(&room)
                    .and_then(|m| m.first())
                    .is_some_and(|first| self.participants.contains_key(first));
                if reports {
                    self.outputs.push_back(Output::Speaking {
                        room: room.to_string(),
                        ids,
                    });
                }
            }
        }
        if self.next_speaking_tick.is_none() && !self.rooms.is_empty() {
            self.next_speaking_tick = Some(now + SPEAKING_INTERVAL);
        }
        self.flush(now);
    }

    /// The next output; first runs the participants that input since the
    /// last call left with work (see [`Sfu::handle_datagram`]).
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() && !self.dirty.is_empty() {
            if let Some(now) = self.last_now {
                self.flush(now);
            }
        }
        self.outputs.pop_front()
    }

    fn mark_dirty(&mut self, id: ParticipantId) {
        if self.dirty_set.insert(id) {
            self.dirty.push(id);
        }
    }

    /// Recomputes who is on every slot of every member of `room` (see
    /// [`slots`]) and signals the changes; `quiet` is a newcomer whose first
    /// offer will carry its map instead.
    fn reassign(&mut self, now: Instant, room: &Arc<str>, quiet: Option<ParticipantId>) {
        let Some(members) = self.rooms.get(room).cloned() else {
            return;
        };
        let mut changed: Vec<ParticipantId> = Vec::new();
        for track in TrackSource::ALL {
            let ranked = self.rank(now, &members, track);
            let capacity = slots::slot_count(track);
            for &member in &members {
                let Some(p) = self.participants.get_mut(&member) else {
                    continue;
                };
                // Everyone else fits: all of them, in join order, so a small
                // meeting never switches a slot (a camera turned on later is
                // already there). Otherwise the ranked ones that send.
                let everyone = track != TrackSource::Screen && members.len() - 1 <= capacity;
                let current = p.holders(track);
                let candidates: Vec<ParticipantId> = if everyone {
                    members.iter().copied().filter(|&m| m != member).collect()
                } else {
                    // Best first: a higher tier wins; within a tier whoever
                    // holds a slot keeps it (so a room where everyone talks
                    // does not reshuffle every tick), then the latest
                    // speaker, then join order.
                    let mut others: Vec<_> = ranked.iter().filter(|r| r.3 != member).collect();
                    others.sort_by_key(|&&(tier, last, order, m)| {
                        (tier, !current.contains(&Some(m)), Reverse(last), order)
                    });
                    others.into_iter().map(|r| r.3).collect()
                };
                let holders = slots::assign(&current, &candidates);
                let (moved, started) = p.set_holders(track, &holders);
                if moved && !changed.contains(&member) {
                    changed.push(member);
                }
                for source in started {
                    self.await_keyframe(now, member, source, track);
                }
            }
        }
        for member in changed {
            if Some(member) == quiet {
                continue;
            }
            if let Some(p) = self.participants.get(&member) {
                self.outputs.push_back(Output::Tracks {
                    participant: member,
                    tracks: p.track_mappings(),
                });
            }
        }
    }

    /// The members of a room that could fill a slot for `track` when not
    /// everyone fits, with what ranks them: how recently they spoke (see
    /// [`SpeakingTier`]) and their join order; for video only those sending it.
    fn rank(
        &self,
        now: Instant,
        members: &[ParticipantId],
        track: TrackSource,
    ) -> Vec<(SpeakingTier, Option<Instant>, usize, ParticipantId)> {
        members
            .iter()
            .enumerate()
            .filter(|&(_, &m)| track.is_audio() || self.publishes(m, track, now, SENDING_WINDOW))
            .map(|(order, &m)| {
                let last = self.speaking.last_loud(m);
                (SpeakingTier::of(last, now), last, order, m)
            })
            .collect()
    }

    fn negotiate(&mut self, id: ParticipantId) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let Some((sdp, tracks)) = participant.negotiate() else {
            return;
        };
        // An ICE restart's ufrag (str0m's choice, not `c<id>x…`) must route
        // STUN here before the client, answering this offer, uses it.
        if let Some((ufrag, dropped)) = participant.take_new_ufrag() {
            if let Some(old) = &dropped {
                self.demux.forget_ufrag(old);
            }
            self.demux.add(ufrag.clone(), id);
            self.outputs.push_back(Output::IceUfrag {
                participant: id,
                ufrag,
                dropped,
            });
        }
        self.outputs.push_back(Output::Offer {
            participant: id,
            sdp,
            tracks,
        });
    }

    /// Participant `id` does not display the video of `hidden` now (tiles
    /// out of view, page hidden): none of it is forwarded to it. Video it
    /// shows again restarts on a keyframe, asked for at once.
    pub fn set_hidden_video(&mut self, now: Instant, id: ParticipantId, hidden: &[ParticipantId]) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        for (source, track) in p.set_hidden_video(hidden) {
            self.await_keyframe(now, id, source, track);
        }
        self.last_now = Some(now);
    }

    /// The participant's network path changed or broke: its next offer
    /// restarts ICE (new credentials; the browser gathers new candidates
    /// and checks them), sent at once unless another offer is outstanding,
    /// in which case it follows that offer's answer. DTLS, SRTP, the
    /// m-lines and the meeting's keys go on as they are.
    pub fn restart_ice(&mut self, now: Instant, id: ParticipantId) -> Result<(), SfuError> {
        let participant = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant)?;
        if participant.request_ice_restart() {
            self.negotiate(id);
            self.flush(now);
        }
        Ok(())
    }

    /// Polls every participant that has input or writes pending until each
    /// is idle, forwarding what they produce.
    fn flush(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            self.dirty_set.remove(&id);
            self.drain(now, id);
        }
    }

    fn drain(&mut self, now: Instant, id: ParticipantId) {
        loop {
            let Some(participant) = self.participants.get_mut(&id) else {
                return;
            };
            let Some(output) = participant.poll_output() else {
                // The Rtc failed; it is already disconnected.
                self.outputs
                    .push_back(Output::Disconnected { participant: id });
                return;
            };
            match output {
                str0m::Output::Timeout(at) => {
                    if let Some(old) = participant.set_next_timeout(at) {
                        self.timeouts.remove(&(old, id));
                    }
                    self.timeouts.insert((at, id));
                    return;
                }
                str0m::Output::Transmit(t) => self.outputs.push_back(transmit(t)),
                str0m::Output::Event(event) => self.handle_event(now, id, event),
            }
        }
    }

    fn handle_event(&mut self, now: Instant, id: ParticipantId, event: Event) {
        match event {
            Event::RtpPacket(packet) => {
                let Some(participant) = self.participants.get_mut(&id) else {
                    return;
                };
                let Some(source) = participant.published_source(packet.header.ssrc, now) else {
                    return;
                };
                let room = participant.room().clone();
                let shards = self.publish(now, &room, id, source, &packet);
                if shards != 0 {
                    self.outputs.push_back(Output::Relay {
                        shards,
                        packet: Arc::new(RelayedPacket {
                            source: id,
                            track: source,
                            packet,
                        }),
                    });
                }
            }
            Event::KeyframeRequest(request) => {
                let Some(participant) = self.participants.get(&id) else {
                    return;
                };
                if let Some((source, track)) = participant.subscription_source(request.mid) {
                    self.request_keyframe(now, source, track, request.kind);
                }
            }
            // A broken path may come back by itself or with an ICE restart
            // the client asks for: only if it stays down is it the end.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if !self.ice_down.iter().any(|&(_, p)| p == id) =>
            {
                self.ice_down.push((now + ICE_DOWN_GRACE, id));
            }
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) => {
                self.ice_down.retain(|&(_, p)| p != id);
                self.after_ice_restart(now, id);
            }
            _ => {}
        }
    }

    /// ICE is back after a restart: what crossed the gap is lost both ways,
    /// so the participant's subscriptions wait for keyframes (asked of their
    /// sources, and again until one passes), and its own video is asked for
    /// one for everyone else, rather than waiting for decoders to notice.
    fn after_ice_restart(&mut self, now: Instant, id: ParticipantId) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let sources = participant.take_recovered_video();
        if sources.is_empty() {
            return;
        }
        // (A track it does not publish has no stream to ask on: no request.)
        let asked = [TrackSource::Camera, TrackSource::Screen]
            .map(|track| participant.force_keyframe_request(now, track, KeyframeRequestKind::Pli));
        if asked.contains(&true) {
            self.mark_dirty(id);
        }
        for (source, track) in sources {
            self.await_keyframe(now, id, source, track);
        }
    }

    /// Asks again for keyframes that new subscribers still wait for.
    /// Asks `source` for a keyframe of `track` for `subscriber`, and again
    /// while the subscriber waits for one (`retry_keyframe_requests`): one
    /// wait per subscriber and source, restarted by a new ask, so a client
    /// flipping `hidden_video` cannot grow the list.
    fn await_keyframe(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        source: ParticipantId,
        track: TrackSource,
    ) {
        self.request_keyframe(now, source, track, KeyframeRequestKind::Pli);
        let wait = self
            .awaiting_keyframe
            .iter_mut()
            .find(|(s, p, t, _)| (*s, *p, *t) == (subscriber, source, track));
        match wait {
            Some(wait) => wait.3 = now,
            None => self
                .awaiting_keyframe
                .push((subscriber, source, track, now)),
        }
    }

    fn retry_keyframe_requests(&mut self, now: Instant) {
        let mut waits = std::mem::take(&mut self.awaiting_keyframe);
        waits.retain(|&(subscriber, source, track, since)| {
            now.saturating_duration_since(since) < KEYFRAME_RETRY_FOR
                && self
                    .participants
                    .get(&subscriber)
                    .is_some_and(|p| p.awaits_keyframe(source, track))
        });
        for &(_, source, track, since) in &waits {
            // A track nobody sends on (a screen not shared) has no keyframe to give.
            let sending = self.publishes(source, track, now, KEYFRAME_RETRY_AFTER);
            if sending && now.saturating_duration_since(since) >= KEYFRAME_RETRY_AFTER {
                self.request_keyframe(now, source, track, KeyframeRequestKind::Pli);
            }
        }
        self.awaiting_keyframe = waits;
    }

    fn request_keyframe(
        &mut self,
        now: Instant,
        source: ParticipantId,
        track: TrackSource,
        kind: KeyframeRequestKind,
    ) {
        if track.is_audio() {
            return;
        }
        if let Some(p) = self.participants.get_mut(&source) {
            if p.request_keyframe(now, track, kind) {
                self.mark_dirty(source);
            }
        } else if let Some(remote) = self.remote.get(&source) {
            // Throttled by the shard that owns the source.
            self.outputs.push_back(Output::KeyframeRequest {
                shard: remote.shard,
                source,
                track,
                kind,
            });
        }
    }

    /// Forwards a packet a member published to the local members subscribed
    /// to it, notes its audio level and that the track is in use; returns
    /// the shards (bits) whose members need it too.
    fn publish(
        &mut self,
        now: Instant,
        room: &Arc<str>,
        id: ParticipantId,
        source: TrackSource,
        packet: &RtpPacket,
    ) -> u64 {
        if source.is_audio() {
            if let Some(level) = packet.header.ext_vals.audio_level {
                self.speaking.observe(room, id, level, now);
                if self.next_speaking_tick.is_none() {
                    self.next_speaking_tick = Some(now + SPEAKING_INTERVAL);
                }
            }
        }
        let Some(members) = self.rooms.get(room) else {
            return 0;
        };
        let mut shards = 0u64;
        for &member in members {
            if member == id {
                continue;
            }
            if let Some(subscriber) = self.participants.get_mut(&member) {
                if let Some(sent) = subscriber.forward(now, id, source, packet) {
                    self.outputs.push_back(transmit(sent));
                }
            } else if let Some(remote) = self.remote.get(&member) {
                shards |= 1 << remote.shard;
            }
        }
        shards
    }

    /// Whether member `id` (local or remote) sent on its `track` within
    /// `window` of `now`.
    fn publishes(
        &self,
        id: ParticipantId,
        track: TrackSource,
        now: Instant,
        window: Duration,
    ) -> bool {
        let last = match self.participants.get(&id) {
            Some(p) => p.last_published(track),
            None => self
                .remote
                .get(&id)
                .and_then(|r| r.last_published[track_index(track)]),
        };
        last.is_some_and(|t| now.saturating_duration_since(t) < window)
    }

    /// Forwards a packet another shard relayed ([`Output::Relay`]) to the
    /// local members subscribed to it. Like datagrams, the writes are sent
    /// on the next [`Sfu::poll_output`].
    pub fn handle_relayed(&mut self, now: Instant, relayed: &RelayedPacket) {
        let Some(remote) = self.remote.get_mut(&relayed.source) else {
            return;
        };
        remote.last_published[track_index(relayed.track)] = Some(now);
        let room = remote.room.clone();
        self.publish(now, &room, relayed.source, relayed.track, &relayed.packet);
        self.last_now = Some(now);
    }

    /// A keyframe request another shard relayed ([`Output::KeyframeRequest`])
    /// for a source this one owns.
    pub fn handle_keyframe_request(
        &mut self,
        now: Instant,
        source: ParticipantId,
        track: TrackSource,
        kind: KeyframeRequestKind,
    ) {
        if self.participants.contains_key(&source) {
            self.request_keyframe(now, source, track, kind);
            self.last_now = Some(now);
        }
    }
}

/// A datagram str0m produced, as an [`Output`].
fn transmit(t: str0m::net::Transmit) -> Output {
    Output::Transmit {
        transport: match t.proto {
            Protocol::Tcp => Transport::Tcp,
            _ => Transport::Udp,
        },
        destination: t.destination,
        contents: t.contents.into(),
    }
}

fn track_index(track: TrackSource) -> usize {
    match track {
        TrackSource::Microphone => 0,
        TrackSource::Camera => 1,
        TrackSource::Screen => 2,
    }
}
