//! One participant's side of the SFU: its `Rtc`, the m-lines it publishes on,
//! and its receive slots, each carrying one other participant's track at a time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use conclave_protocol::{ParticipantId, TrackDirection, TrackMapping, TrackSource};
use rand::distr::{Alphanumeric, SampleString};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::TcpType;
use str0m::net::Transmit;
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, IceCreds, Input, Rtc};

use crate::seq::SlotRewrite;
use crate::slots::slot_count;
use crate::{SfuError, KEYFRAME_REQUEST_INTERVAL};

fn media_kind(source: TrackSource) -> MediaKind {
    if source.is_audio() {
        MediaKind::Audio
    } else {
        MediaKind::Video
    }
}

fn source_index(source: TrackSource) -> usize {
    match source {
        TrackSource::Microphone => 0,
        TrackSource::Camera => 1,
        TrackSource::Screen => 2,
    }
}

/// Resends a video slot may spend, as a share of what it sends (str0m's
/// default is 0.15): at 20% random loss on a subscriber's link the repairs
/// alone are ~0.2, and with the default cap most were dropped (measured:
/// 18% of video lost after repair, 17 of 20 s frozen; e2e/tools/loss.mjs).
/// Until the SFU has congestion control (issue 11 §2) this is the guard
/// against resends feeding a congested link.
const RTX_RATIO_CAP: f32 = 0.35;
/// str0m's defaults for the resend cache: packets, and how old a NACK may ask for.
const RTX_CACHE_PACKETS: usize = 2000;
const RTX_CACHE_AGE: std::time::Duration = std::time::Duration::from_secs(3);

/// Local ufrags a participant is known by at once (see `Participant::ufrags`).
const UFRAGS_KEPT: usize = 2;

/// One receive slot: a send m-line towards this participant that carries
/// one source's track of its kind at a time (see `slots`).
#[derive(Debug)]
struct Slot {
    track: TrackSource,
    /// Set when the m-line is added to an offer.
    mid: Option<Mid>,
    /// The answer to the offer that added the m-line was accepted.
    open: bool,
    /// The m-line's send stream, looked up by `mid` on the first packet.
    ssrc: Option<Ssrc>,
    source: Option<ParticipantId>,
    rewrite: SlotRewrite,
    /// Video: nothing of the current source forwarded yet that starts a
    /// keyframe (the SFU asks the source again while this lasts).
    awaiting_keyframe: bool,
    /// Video: the slot carried another source before, so the new source's
    /// packets are dropped until its keyframe: the receiver's decoder must
    /// not get delta frames it has no reference for.
    gated: bool,
}

pub struct Participant {
    id: ParticipantId,
    room: Arc<str>,
    rtc: Rtc,
    /// Local ICE ufrags STUN may name this participant by: the first
    /// (`c<id>x…`), then each ICE restart's (str0m picks those), at most
    /// `UFRAGS_KEPT` (the latest, and the one before it for requests still
    /// in flight while the restart's answer travels).
    ufrags: Vec<String>,
    /// An ICE restart is to go into the next offer.
    ice_restart: bool,
    /// A restart's ufrag not yet handed to the SFU (see `take_new_ufrag`).
    new_ufrag: Option<String>,
    /// An ICE restart was offered and ICE has not connected since: what
    /// was sent meanwhile is lost, so its video needs keyframes once it has.
    recovering: bool,
    /// Mids this participant publishes on, by `source_index`; set by the first offer.
    publish: Option<[Mid; 3]>,
    /// Its receive slots, by kind in `TrackSource::ALL` order.
    slots: Vec<Slot>,
    /// Which slot carries a source's track, and which slot an m-line is.
    by_source: HashMap<(ParticipantId, TrackSource), usize>,
    by_mid: HashMap<Mid, usize>,
    /// The outstanding offer, with its m-lines' mids in order.
    pending: Option<(SdpPendingOffer, Vec<String>)>,
    next_timeout: Option<Instant>,
    last_keyframe_request: [Option<Instant>; 3],
    /// When a packet last arrived on each of this participant's own tracks.
    last_published: [Option<Instant>; 3],
    /// Sources whose video this participant does not display now (its
    /// `hidden_video`): not forwarded; audio always is.
    hidden_video: HashSet<ParticipantId>,
}

impl Participant {
    pub fn new(
        now: Instant,
        id: ParticipantId,
        room: Arc<str>,
        candidate: SocketAddr,
        tcp_candidate: Option<SocketAddr>,
    ) -> Self {
        // The ufrag routes STUN to this participant (see demux), so it must be
        // unique; the id prefix guarantees that (and tells a server with
        // several shards which one owns it), the random part keeps it unguessable.
        let ufrag = format!("c{id}x{}", Alphanumeric.sample_string(&mut rand::rng(), 8));
        let pass = Alphanumeric.sample_string(&mut rand::rng(), 24);
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass,
            })
            .build(now);
        match Candidate::host(candidate, "udp") {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => tracing::error!("cannot use {candidate} as an ICE candidate: {e}"),
        }
        // ICE over TCP (RFC 6544): the browser connects to us, so ours is
        // passive; its priority is below the UDP one's, so UDP wins when
        // both work.
        if let Some(addr) = tcp_candidate {
            match Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(TcpType::Passive)
                .build()
            {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::error!("cannot use {addr} as an ICE-TCP candidate: {e}"),
            }
        }
        Participant {
            id,
            room,
            rtc,
            ufrags: vec![ufrag],
            ice_restart: false,
            new_ufrag: None,
            recovering: false,
            publish: None,
            slots: new_slots(),
            by_source: HashMap::new(),
            by_mid: HashMap::new(),
            pending: None,
            next_timeout: None,
            last_keyframe_request: [None; 3],
            last_published: [None; 3],
            hidden_video: HashSet::new(),
        }
    }

    /// The ufrags STUN may name this participant by (see `ufrags`).
    pub fn ufrags(&self) -> &[String] {
        &self.ufrags
    }

    /// Puts an ICE restart (new local credentials) into the next offer: the
    /// client's network path changed. Returns whether one was not already due.
    pub fn request_ice_restart(&mut self) -> bool {
        !std::mem::replace(&mut self.ice_restart, true)
    }

    /// ICE connected again after a restart: the video sources of its slots,
    /// each now waiting for a keyframe (nothing else can be decoded after
    /// the gap). Empty unless it was recovering, and only once.
    pub fn take_recovered_video(&mut self) -> Vec<(ParticipantId, TrackSource)> {
        if !std::mem::take(&mut self.recovering) {
            return Vec::new();
        }
        let mut sources = Vec::new();
        for slot in &mut self.slots {
            if let (Some(source), true, false) = (slot.source, slot.open, slot.track.is_audio()) {
                slot.awaiting_keyframe = true;
                sources.push((source, slot.track));
            }
        }
        sources
    }

    /// The ufrag of an ICE restart just offered, once; and the one it makes
    /// obsolete, if any (to forget).
    pub fn take_new_ufrag(&mut self) -> Option<(String, Option<String>)> {
        let ufrag = self.new_ufrag.take()?;
        self.ufrags.push(ufrag.clone());
        let dropped = (self.ufrags.len() > UFRAGS_KEPT).then(|| self.ufrags.remove(0));
        Some((ufrag, dropped))
    }

    pub fn room(&self) -> &Arc<str> {
        &self.room
    }

    pub fn accepts(&self, input: &Input) -> bool {
        self.rtc.accepts(input)
    }

    pub fn handle_input(&mut self, input: Input) {
        if !self.rtc.is_alive() {
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::info!(participant = self.id, "media connection failed: {e}");
            self.rtc.disconnect();
        }
    }

    /// The next output, or `None` if the `Rtc` failed (and is now disconnected).
    pub fn poll_output(&mut self) -> Option<str0m::Output> {
        if !self.rtc.is_alive() {
            return None;
        }
        match self.rtc.poll_output() {
            Ok(output) => Some(output),
            Err(e) => {
                tracing::info!(participant = self.id, "media connection failed: {e}");
                self.rtc.disconnect();
                None
            }
        }
    }

    /// Records the next timeout; returns the previous one so the caller can unindex it.
    pub fn set_next_timeout(&mut self, at: Instant) -> Option<Instant> {
        self.next_timeout.replace(at)
    }

    pub fn disconnect(&mut self) {
        self.rtc.disconnect();
    }

    /// Who each of this participant's slots for `track` carries.
    pub fn holders(&self, track: TrackSource) -> Vec<Option<ParticipantId>> {
        self.slots
            .iter()
            .filter(|s| s.track == track)
            .map(|s| s.source)
            .collect()
    }

    /// Puts new holders into the slots for `track` (as from [`Self::holders`]).
    /// Returns whether anything changed, and the video sources that now
    /// reach this participant on an open slot (each needs a keyframe).
    pub fn set_holders(
        &mut self,
        track: TrackSource,
        holders: &[Option<ParticipantId>],
    ) -> (bool, Vec<ParticipantId>) {
        let mut changed = false;
        let mut started = Vec::new();
        let indices: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].track == track)
            .collect();
        for (&i, &holder) in indices.iter().zip(holders) {
            let slot = &mut self.slots[i];
            if slot.source == holder {
                continue;
            }
            changed = true;
            if let Some(old) = slot.source {
                if self.by_source.get(&(old, track)) == Some(&i) {
                    self.by_source.remove(&(old, track));
                }
            }
            slot.source = holder;
            slot.rewrite.restart();
            let video = !track.is_audio();
            slot.gated = video && slot.rewrite.has_sent();
            slot.awaiting_keyframe = video && holder.is_some() && slot.open;
            if let Some(new) = holder {
                self.by_source.insert((new, track), i);
                if slot.awaiting_keyframe {
                    started.push(new);
                }
            }
        }
        (changed, started)
    }

    /// Builds the next offer if anything changed and no offer is outstanding.
    /// The first one has every m-line this participant will ever have (its
    /// publish m-lines and its slots), so later ones are rare.
    pub fn negotiate(&mut self) -> Option<(String, Vec<TrackMapping>)> {
        if self.pending.is_some() || !self.rtc.is_alive() {
            return None;
        }
        let mut api = self.rtc.sdp_api();
        let mut publish_new = None;
        if self.publish.is_none() {
            let mut add =
                |source| api.add_media(media_kind(source), Direction::RecvOnly, None, None, None);
            publish_new = Some([
                add(TrackSource::Microphone),
                add(TrackSource::Camera),
                add(TrackSource::Screen),
            ]);
        }
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.mid.is_none() {
                // Each slot its own stream: what plays together is the
                // client's decision, from the track map.
                let mid = api.add_media(
                    media_kind(slot.track),
                    Direction::SendOnly,
                    Some(format!("slot{i}")),
                    Some(format!("slot{i}")),
                    None,
                );
                slot.mid = Some(mid);
                self.by_mid.insert(mid, i);
            }
        }
        let restart = std::mem::take(&mut self.ice_restart).then(|| api.ice_restart(true));
        if !api.has_changes() {
            return None;
        }
        let (offer, pending) = api.apply()?;
        if let Some(creds) = restart {
            self.new_ufrag = Some(creds.ufrag);
            self.recovering = true;
        }
        if let Some(mids) = publish_new {
            self.publish = Some(mids);
        }
        let sdp = offer.to_sdp_string();
        self.pending = Some((pending, sdp_mids(&sdp)));
        Some((sdp, self.track_mappings()))
    }

    /// What every m-line carries now: the publish m-lines, then each slot
    /// that has a source.
    pub fn track_mappings(&self) -> Vec<TrackMapping> {
        let mut tracks = Vec::new();
        if let Some(mids) = self.publish {
            for track in TrackSource::ALL {
                tracks.push(TrackMapping {
                    mid: mids[source_index(track)].to_string(),
                    direction: TrackDirection::Publish,
                    participant: self.id,
                    source: track,
                });
            }
        }
        for slot in &self.slots {
            if let (Some(mid), Some(participant)) = (slot.mid, slot.source) {
                tracks.push(TrackMapping {
                    mid: mid.to_string(),
                    direction: TrackDirection::Subscribe,
                    participant,
                    source: slot.track,
                });
            }
        }
        tracks
    }

    /// Applies the answer; returns the video sources newly opened towards this
    /// participant (they need a keyframe).
    pub fn accept_answer(
        &mut self,
        sdp: &str,
    ) -> Result<Vec<(ParticipantId, TrackSource)>, SfuError> {
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let (_, offered) = self.pending.as_ref().ok_or(SfuError::NoPendingOffer)?;
        // An answer has the offer's m-lines, in order (RFC 3264 §6). One that
        // does not (a duplicate of an earlier answer, one that crossed a newer
        // offer) answers another offer: refuse it without consuming this one,
        // which stays open for its own answer.
        if sdp_mids(sdp) != *offered {
            return Err(SfuError::BadSdp(
                "its m-lines are not those of the outstanding offer".into(),
            ));
        }
        let (pending, _) = self.pending.take().ok_or(SfuError::NoPendingOffer)?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let mut opened = Vec::new();
        for slot in &mut self.slots {
            if slot.open || slot.mid.is_none() {
                continue;
            }
            slot.open = true;
            if slot.track.is_audio() {
                continue;
            }
            if let Some(mid) = slot.mid {
                let mut api = self.rtc.direct_api();
                if let Some(stream) = api.stream_tx_by_mid(mid, None) {
                    stream.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(RTX_RATIO_CAP));
                }
            }
            if let Some(source) = slot.source {
                slot.awaiting_keyframe = true;
                opened.push((source, slot.track));
            }
        }
        Ok(opened)
    }

    /// Which of this participant's own tracks an incoming SSRC carries
    /// (noting that the track is in use).
    pub fn published_source(&mut self, ssrc: Ssrc, now: Instant) -> Option<TrackSource> {
        let mids = self.publish?;
        let mid = self.rtc.direct_api().stream_rx(&ssrc)?.mid();
        let track = TrackSource::ALL
            .into_iter()
            .find(|&t| mids[source_index(t)] == mid)?;
        self.last_published[source_index(track)] = Some(now);
        Some(track)
    }

    /// When a packet last arrived on this participant's own `track`.
    pub fn last_published(&self, track: TrackSource) -> Option<Instant> {
        self.last_published[source_index(track)]
    }

    /// The source behind one of this participant's subscribe m-lines.
    pub fn subscription_source(&self, mid: Mid) -> Option<(ParticipantId, TrackSource)> {
        let slot = &self.slots[*self.by_mid.get(&mid)?];
        Some((slot.source?, slot.track))
    }

    /// The packet from `source`'s `track` for this participant, rewritten
    /// onto its slot and SRTP-protected at once (str0m's `send_rtp_now`, a
    /// Conclave patch: no queue, no poll per subscriber); `None` if it is
    /// not subscribed, the slot waits for a keyframe, or the transport is
    /// not up yet.
    pub fn forward(
        &mut self,
        now: Instant,
        source: ParticipantId,
        track: TrackSource,
        packet: &RtpPacket,
    ) -> Option<Transmit> {
        if !track.is_audio() && !self.hidden_video.is_empty() && self.hidden_video.contains(&source)
        {
            return None;
        }
        let &i = self.by_source.get(&(source, track))?;
        let slot = &mut self.slots[i];
        let (Some(mid), true) = (slot.mid, slot.open) else {
            return None;
        };
        // The payload is looked at only while the slot waits for a keyframe
        // (gated or awaiting), not for every packet of every subscriber.
        let keyframe = (slot.gated || slot.awaiting_keyframe)
            && !track.is_audio()
            && crate::vp8::starts_keyframe(&packet.payload);
        if slot.gated && !keyframe {
            return None;
        }
        let (seq_no, rtp_time) =
            slot.rewrite
                .map(packet.seq_no, packet.header.timestamp, packet.timestamp)?;
        let from = &packet.header.ext_vals;
        // Only what describes the media travels on; transport fields (mid,
        // rid, transport-cc, send times) belong to the inbound leg.
        let ext_vals = ExtensionValues {
            audio_level: from.audio_level,
            voice_activity: from.voice_activity,
            video_orientation: from.video_orientation,
            video_content_type: from.video_content_type,
            ..Default::default()
        };
        // Every Rtc is built with the same codec configuration and is the
        // offerer, so payload type numbers agree across participants.
        let write = RtpWrite::new(
            packet.header.payload_type,
            seq_no,
            rtp_time,
            packet.timestamp,
            packet.payload.clone(),
        )
        .marker(packet.header.marker)
        .ext_vals(ext_vals)
        .nackable(!track.is_audio());
        let ssrc = match slot.ssrc {
            Some(ssrc) => ssrc,
            None => {
                let ssrc = self.rtc.direct_api().stream_tx_by_mid(mid, None)?.ssrc();
                *slot.ssrc.insert(ssrc)
            }
        };
        let sent = self.rtc.send_rtp_now(now, ssrc, write)?;
        // A keyframe that could not be sent (transport not up) still gates.
        slot.gated = false;
        if keyframe {
            slot.awaiting_keyframe = false;
        }
        Some(sent)
    }

    /// Replaces the set of sources whose video this participant does not
    /// display. Returns the video this makes shown again on its open slots:
    /// each waits for a keyframe (its decoder missed the frames between),
    /// which the caller asks the source for.
    pub fn set_hidden_video(
        &mut self,
        hidden: &[ParticipantId],
    ) -> Vec<(ParticipantId, TrackSource)> {
        let hidden: HashSet<ParticipantId> = hidden.iter().copied().collect();
        let mut shown = Vec::new();
        for slot in &mut self.slots {
            let Some(source) = slot.source else {
                continue;
            };
            let was_hidden = self.hidden_video.contains(&source);
            if slot.track.is_audio() || !slot.open || !was_hidden || hidden.contains(&source) {
                continue;
            }
            slot.gated = true;
            slot.awaiting_keyframe = true;
            shown.push((source, slot.track));
        }
        self.hidden_video = hidden;
        shown
    }

    /// Whether video from `source`'s `track` is open towards this participant
    /// and no keyframe of it has been forwarded yet.
    pub fn awaits_keyframe(&self, source: ParticipantId, track: TrackSource) -> bool {
        self.by_source
            .get(&(source, track))
            .is_some_and(|&i| self.slots[i].awaiting_keyframe && self.slots[i].open)
    }

    /// Asks this participant for a keyframe on its own `track`, at most once
    /// per `KEYFRAME_REQUEST_INTERVAL`. Returns whether a request was queued.
    pub fn request_keyframe(
        &mut self,
        now: Instant,
        track: TrackSource,
        kind: KeyframeRequestKind,
    ) -> bool {
        self.ask_keyframe(now, track, kind, false)
    }

    /// Asks for a keyframe whenever the last request was: for a keyframe
    /// that must be made after a given moment (see `Sfu::request_room_keyframes`).
    pub fn force_keyframe_request(
        &mut self,
        now: Instant,
        track: TrackSource,
        kind: KeyframeRequestKind,
    ) -> bool {
        self.ask_keyframe(now, track, kind, true)
    }

    fn ask_keyframe(
        &mut self,
        now: Instant,
        track: TrackSource,
        kind: KeyframeRequestKind,
        force: bool,
    ) -> bool {
        let Some(mids) = self.publish else {
            return false;
        };
        let last = &mut self.last_keyframe_request[source_index(track)];
        if !force
            && last.is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return false;
        }
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_rx_by_mid(mids[source_index(track)], None) else {
            return false;
        };
        stream.request_keyframe(kind);
        // A forced request leaves the throttle alone: a subscriber that
        // still cannot decode after it must be heard at once.
        if !force {
            *last = Some(now);
        }
        true
    }
}

fn new_slots() -> Vec<Slot> {
    let mut slots = Vec::new();
    for track in TrackSource::ALL {
        let clock_rate = if track.is_audio() { 48_000 } else { 90_000 };
        for _ in 0..slot_count(track) {
            slots.push(Slot {
                track,
                mid: None,
                open: false,
                ssrc: None,
                source: None,
                rewrite: SlotRewrite::new(rand::random(), clock_rate),
                awaiting_keyframe: false,
                gated: false,
            });
        }
    }
    slots
}

/// The `a=mid` values of an SDP, in m-line order.
fn sdp_mids(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=mid:"))
        .map(str::to_owned)
        .collect()
}
