// Connection quality: successive RTCPeerConnection.getStats() samples turned
// into a level per remote participant (what arrives from them) and one for
// the local user's uplink (what the SFU gets from us). Pure logic (no DOM,
// no timers) apart from `QualitySampler` at the end, so it can be
// unit-tested with recorded samples.
//
// Every remote participant's media reaches us through the SFU, which
// forwards each packet unchanged in content (no simulcast, no transcoding,
// no layer switching): what a remote tile shows is the sender's uplink and
// our downlink together. Loss, jitter and freezes on their streams say "it
// looks or sounds bad"; the sender's own client is the one that can tell
// that *their* uplink is the cause, from the SFU's receiver reports about
// what it sends (remote-inbound-rtp), its encoder's limitation reason and
// the transport's estimate. That is the local tile's warning.
//
// Levels change only once two samples in a row agree (`settle`): one
// unlucky two-second window, a keyframe burst or a slot moving to another
// participant does not make a tile blink.

import type { TrackSource } from './protocol.gen';

export type QualityLevel = 'good' | 'fair' | 'poor' | 'unknown';

/** An inbound-rtp stream, reduced to what is judged. Counters are cumulative. */
export interface InboundStream {
  mid: string;
  kind: 'audio' | 'video';
  ssrc: number | null;
  packetsReceived: number;
  packetsLost: number;
  /** Interarrival jitter (RFC 3550), seconds. */
  jitter: number | null;
  framesDecoded: number | null;
  frameHeight: number | null;
  /** Seconds spent frozen so far (Chromium's freeze definition). */
  totalFreezesDuration: number | null;
}

/** An outbound-rtp stream with what the SFU reported about it (remote-inbound-rtp). */
export interface OutboundStream {
  mid: string | null;
  kind: 'audio' | 'video';
  ssrc: number | null;
  packetsSent: number;
  /** 'none' | 'bandwidth' | 'cpu' | 'other' (video only). */
  qualityLimitationReason: string | null;
  /** Cumulative seconds the encoder spent limited by each reason (video only). */
  limitedBandwidthSeconds: number | null;
  limitedCpuSeconds: number | null;
  /** From the SFU's latest receiver report: the fraction of our packets it lost, 0–1. */
  fractionLost: number | null;
  /** Seconds, from the SFU's latest receiver report. */
  roundTripTime: number | null;
}

export interface StatsSample {
  /** Milliseconds, any monotonic clock. */
  at: number;
  inbound: InboundStream[];
  outbound: OutboundStream[];
  /** The selected ICE candidate pair. */
  pair: { currentRoundTripTime: number | null; availableOutgoingBitrate: number | null } | null;
}

/** Which participant and source a receiving m-line carries now (by mid). */
export interface Receiver {
  participant: number;
  source: TrackSource;
}

export interface Verdict {
  level: QualityLevel;
  /** The main reason for a level below good, as words ("12% of packets lost"); null when good or unknown. */
  why: string | null;
}

export interface LocalVerdict extends Verdict {
  /**
   * What limits what others get from us: our network ('network': loss,
   * delay, too little bandwidth on the uplink) or our device ('cpu': the
   * encoder is short of CPU). Null when good or unknown.
   */
  cause: 'network' | 'cpu' | null;
}

export interface QualityReport {
  /** By participant id: what we receive from them. */
  remote: Map<number, Verdict>;
  /** Our uplink. */
  local: LocalVerdict;
}

// ---- thresholds ------------------------------------------------------------

/**
 * Packet loss, as a fraction. Google Congestion Control (what browsers run
 * on their uplink) keeps raising its rate below 2% loss, holds it between
 * 2% and 10%, and cuts it above 10%. Wi-Fi commonly loses a percent or two
 * in short bursts that NACK and Opus concealment hide, so "fair" starts at
 * 3%; above 10% retransmissions cannot keep up, video freezes and speech
 * breaks up, and the sender's rate is being cut: "poor". On inbound streams
 * this is the loss left after retransmission (packetsLost counts a packet
 * repaired by RTX as received).
 */
export const LOSS_FAIR = 0.03;
export const LOSS_POOR = 0.1;
/** Fewer packets than this in a window say too little about loss (one lost audio packet of 20 would be 5%). */
export const MIN_PACKETS_FOR_LOSS = 20;

/**
 * Round-trip time, seconds. ITU-T G.114 puts the comfortable limit of
 * one-way mouth-to-ear delay at 150 ms; a network RTT of 300 ms already
 * spends all of it, so people start talking over each other ("fair"). From
 * 800 ms (400 ms one way, G.114's "unacceptable") conversation breaks down
 * and every retransmission arrives too late to help: "poor".
 */
export const RTT_FAIR = 0.3;
export const RTT_POOR = 0.8;

/**
 * Audio interarrival jitter, seconds. VoIP networks aim for under 30 ms; a
 * jitter buffer absorbs more by adding that much delay, which becomes
 * noticeable past about 50 ms ("fair"); past 150 ms the buffer either adds
 * conversation-breaking delay or lets audio break up ("poor"). Audio only:
 * a video frame's packets leave in a burst, so video jitter is large on
 * healthy links.
 */
export const JITTER_FAIR = 0.05;
export const JITTER_POOR = 0.15;

/**
 * Share of the window a video was frozen (Chromium's `totalFreezesDuration`:
 * a frame later than max(3 × the mean frame interval, mean + 150 ms)). A
 * single short freeze while a lost packet is repaired happens on good links;
 * frozen a fifth of the time is visible stutter ("fair"), half the time is
 * a slide show ("poor").
 */
export const FROZEN_FAIR = 0.2;
export const FROZEN_POOR = 0.5;
/** Video packets in a window with no frame decoded at all: frozen. A camera sends dozens a second; a few could be padding or a probe. */
export const FROZEN_MIN_PACKETS = 10;

/**
 * Decoded camera frame rate. The client asks cameras for 24 fps; senders
 * short of bandwidth or CPU drop frames first. Under 5 fps motion is no
 * longer fluid (lips do not match speech): "fair". Screen shares are left
 * out: a still screen is sent at a frame or two a second by design.
 */
export const CAMERA_FPS_FAIR = 5;

/**
 * A camera received at half the height (or less) it had in the last
 * `HEIGHT_WINDOW` samples: without simulcast this is the sender's encoder
 * scaling down for lack of bandwidth or CPU, the one "layer" change there
 * is. Only once it had at least 240 lines, so a small camera is not
 * penalised.
 */
export const HEIGHT_DROP = 0.5;
export const HEIGHT_MIN_REFERENCE = 240;
export const HEIGHT_WINDOW = 15;

/**
 * The uplink estimate (the selected candidate pair's
 * availableOutgoingBitrate, bits/s), counted only while the video encoder
 * says it is limited by bandwidth for at least half the window (at the start
 * of a call every sender ramps up from about 300 kbit/s, limited by bandwidth
 * but not in trouble). Under 400 kbit/s a 360p camera is visibly soft
 * ("fair"); under 150 kbit/s there is room for audio and a thumbnail-sized
 * video only ("poor").
 */
export const UPLINK_BPS_FAIR = 400_000;
export const UPLINK_BPS_POOR = 150_000;
/** Share of the window the encoder must have been limited by a reason for it to count. */
export const LIMITED_SHARE = 0.5;

// ---- reading getStats() ----------------------------------------------------

type Raw = Record<string, unknown>;

function num(o: Raw | undefined, key: string): number | null {
  const v = o?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function str(o: Raw | undefined, key: string): string | null {
  const v = o?.[key];
  return typeof v === 'string' ? v : null;
}

function kindOf(o: Raw): 'audio' | 'video' | null {
  const k = o.kind ?? o.mediaType;
  return k === 'audio' || k === 'video' ? k : null;
}

/**
 * The sample in a getStats() report (`report.values()`), or in a list of
 * stats objects as a test records them. Unknown fields are null, never 0.
 */
export function readStats(stats: Iterable<unknown>, at: number): StatsSample {
  const byId = new Map<string, Raw>();
  const all: Raw[] = [];
  for (const s of stats) {
    if (typeof s !== 'object' || s === null) continue;
    const o = s as Raw;
    all.push(o);
    const id = str(o, 'id');
    if (id !== null) byId.set(id, o);
  }
  const inbound: InboundStream[] = [];
  const outbound: OutboundStream[] = [];
  let pairRaw: Raw | undefined;
  for (const o of all) {
    const kind = kindOf(o);
    if (o.type === 'inbound-rtp' && kind) {
      const mid = str(o, 'mid');
      if (mid === null) continue;
      inbound.push({
        mid,
        kind,
        ssrc: num(o, 'ssrc'),
        packetsReceived: num(o, 'packetsReceived') ?? 0,
        // Can be negative (duplicates counted as received); loss is never below 0.
        packetsLost: Math.max(0, num(o, 'packetsLost') ?? 0),
        jitter: num(o, 'jitter'),
        framesDecoded: num(o, 'framesDecoded'),
        frameHeight: num(o, 'frameHeight'),
        totalFreezesDuration: num(o, 'totalFreezesDuration'),
      });
    } else if (o.type === 'outbound-rtp' && kind) {
      const id = str(o, 'id');
      let remote = byId.get(str(o, 'remoteId') ?? '');
      if (!remote && id !== null) remote = all.find((r) => r.type === 'remote-inbound-rtp' && r.localId === id);
      const durations = typeof o.qualityLimitationDurations === 'object' && o.qualityLimitationDurations !== null ? (o.qualityLimitationDurations as Raw) : undefined;
      outbound.push({
        mid: str(o, 'mid'),
        kind,
        ssrc: num(o, 'ssrc'),
        packetsSent: num(o, 'packetsSent') ?? 0,
        qualityLimitationReason: str(o, 'qualityLimitationReason'),
        limitedBandwidthSeconds: num(durations, 'bandwidth'),
        limitedCpuSeconds: num(durations, 'cpu'),
        fractionLost: num(remote, 'fractionLost'),
        roundTripTime: num(remote, 'roundTripTime'),
      });
    } else if (o.type === 'transport' && !pairRaw) {
      pairRaw = byId.get(str(o, 'selectedCandidatePairId') ?? '');
    }
  }
  // Without a transport entry (older browsers): the nominated, working pair.
  pairRaw ??= all.find((o) => o.type === 'candidate-pair' && o.nominated === true && o.state === 'succeeded');
  const pair = pairRaw
    ? { currentRoundTripTime: num(pairRaw, 'currentRoundTripTime'), availableOutgoingBitrate: num(pairRaw, 'availableOutgoingBitrate') }
    : null;
  return { at, inbound, outbound, pair };
}

// ---- judging one window ------------------------------------------------------

/** What arrived from one participant between two samples. */
export interface ReceivedWindow {
  seconds: number;
  audio: { packets: number; lost: number; jitter: number | null } | null;
  video: {
    packets: number;
    lost: number;
    framesDecoded: number | null;
    frozenSeconds: number | null;
    /** Current height of the camera (null for a screen share or unknown). */
    cameraHeight: number | null;
    /** Whether this is a camera (frame rate judged) rather than a screen. */
    camera: boolean;
  }[];
  /** The highest camera height of this participant over the recent samples (null: none yet). */
  recentMaxHeight: number | null;
}

const RANK: Record<QualityLevel, number> = { unknown: 0, good: 1, fair: 2, poor: 3 };

/** The worse of two levels ('unknown' is better than anything measured). */
export function worse(a: QualityLevel, b: QualityLevel): QualityLevel {
  return RANK[b] > RANK[a] ? b : a;
}

/** Collects signals; the first reason given for the worst level wins. */
class Findings {
  level: QualityLevel = 'unknown';
  why: string | null = null;
  measured = false;

  ok(): void {
    this.measured = true;
    if (this.level === 'unknown') this.level = 'good';
  }

  bad(level: 'fair' | 'poor', why: string): void {
    this.measured = true;
    if (RANK[level] > RANK[this.level]) {
      this.level = level;
      this.why = why;
    }
  }

  verdict(): Verdict {
    return { level: this.level, why: this.level === 'fair' || this.level === 'poor' ? this.why : null };
  }
}

function pct(fraction: number): string {
  const p = fraction * 100;
  return `${p < 10 ? Math.round(p * 10) / 10 : Math.round(p)}%`;
}

function judgeLoss(f: Findings, packets: number, lost: number, what: string): void {
  const total = packets + lost;
  if (total < MIN_PACKETS_FOR_LOSS) return;
  const loss = lost / total;
  if (loss >= LOSS_POOR) f.bad('poor', `${pct(loss)} of ${what} packets lost`);
  else if (loss >= LOSS_FAIR) f.bad('fair', `${pct(loss)} of ${what} packets lost`);
  else f.ok();
}

/** What we get from one participant in one window. Nothing arriving at all: unknown (muted and camera off look the same). */
export function judgeReceived(w: ReceivedWindow): Verdict {
  const f = new Findings();
  if (w.seconds <= 0) return f.verdict();
  if (w.audio && w.audio.packets + w.audio.lost > 0) {
    judgeLoss(f, w.audio.packets, w.audio.lost, 'audio');
    const j = w.audio.jitter;
    if (j !== null && w.audio.packets > 0) {
      if (j >= JITTER_POOR) f.bad('poor', `audio delayed unevenly (jitter ${Math.round(j * 1000)} ms)`);
      else if (j >= JITTER_FAIR) f.bad('fair', `audio delayed unevenly (jitter ${Math.round(j * 1000)} ms)`);
    }
  }
  for (const v of w.video) {
    if (v.packets + v.lost === 0) continue;
    judgeLoss(f, v.packets, v.lost, 'video');
    if (v.framesDecoded !== null) {
      if (v.framesDecoded === 0) {
        if (v.packets >= FROZEN_MIN_PACKETS) f.bad('poor', 'video frozen');
      } else if (v.camera && v.framesDecoded / w.seconds < CAMERA_FPS_FAIR) {
        f.bad('fair', `video at ${Math.round((v.framesDecoded / w.seconds) * 10) / 10} frames a second`);
      }
    }
    if (v.frozenSeconds !== null) {
      const share = v.frozenSeconds / w.seconds;
      if (share >= FROZEN_POOR) f.bad('poor', 'video frozen');
      else if (share >= FROZEN_FAIR) f.bad('fair', 'video stutters');
    }
    if (v.camera && v.cameraHeight !== null && w.recentMaxHeight !== null && w.recentMaxHeight >= HEIGHT_MIN_REFERENCE && v.cameraHeight <= w.recentMaxHeight * HEIGHT_DROP) {
      f.bad('fair', `video at reduced resolution (${v.cameraHeight}p)`);
    }
  }
  return f.verdict();
}

/** What our encoder and the SFU say about our uplink between two samples. */
export interface SentWindow {
  seconds: number;
  /** Streams that sent packets in the window. */
  streams: {
    kind: 'audio' | 'video';
    packets: number;
    fractionLost: number | null;
    roundTripTime: number | null;
    limitedBandwidthSeconds: number | null;
    limitedCpuSeconds: number | null;
    qualityLimitationReason: string | null;
  }[];
  pairRoundTripTime: number | null;
  availableOutgoingBitrate: number | null;
}

export function judgeSent(w: SentWindow): LocalVerdict {
  const net = new Findings();
  let cpu = false;
  if (w.seconds <= 0) return { ...net.verdict(), cause: null };
  let rtt = w.pairRoundTripTime;
  let bandwidthLimited = false;
  for (const s of w.streams) {
    if (s.packets <= 0) continue;
    net.ok();
    const loss = s.fractionLost;
    if (loss !== null) {
      if (loss >= LOSS_POOR) net.bad('poor', `${pct(loss)} of your packets lost`);
      else if (loss >= LOSS_FAIR) net.bad('fair', `${pct(loss)} of your packets lost`);
    }
    if (s.roundTripTime !== null) rtt = Math.max(rtt ?? 0, s.roundTripTime);
    if (s.kind === 'video') {
      // The share of the window the encoder was limited; without durations, its current reason.
      const limited = (seconds: number | null, reason: string): boolean =>
        seconds !== null ? seconds / w.seconds >= LIMITED_SHARE : s.qualityLimitationReason === reason;
      if (limited(s.limitedBandwidthSeconds, 'bandwidth')) bandwidthLimited = true;
      if (limited(s.limitedCpuSeconds, 'cpu')) cpu = true;
    }
  }
  if (!net.measured) return { level: 'unknown', why: null, cause: null };
  if (rtt !== null) {
    if (rtt >= RTT_POOR) net.bad('poor', `long delay (${Math.round(rtt * 1000)} ms round trip)`);
    else if (rtt >= RTT_FAIR) net.bad('fair', `long delay (${Math.round(rtt * 1000)} ms round trip)`);
  }
  const bps = w.availableOutgoingBitrate;
  if (bandwidthLimited && bps !== null) {
    const kbps = `${Math.round(bps / 1000)} kbit/s`;
    if (bps < UPLINK_BPS_POOR) net.bad('poor', `little upload bandwidth (${kbps})`);
    else if (bps < UPLINK_BPS_FAIR) net.bad('fair', `little upload bandwidth (${kbps})`);
  }
  const v = net.verdict();
  if (v.level === 'fair' || v.level === 'poor') return { ...v, cause: 'network' };
  // The network is fine but the encoder is short of CPU: others get less, and it is not the connection.
  if (cpu) return { level: 'fair', why: 'your device is too busy to send full quality', cause: 'cpu' };
  return { ...v, cause: null };
}

/**
 * The level to show, given the one shown and the raw levels of the latest
 * windows (oldest first): it moves only when the last two agree.
 */
export function settle(shown: QualityLevel, recent: readonly QualityLevel[]): QualityLevel {
  const a = recent[recent.length - 1];
  const b = recent[recent.length - 2];
  return a !== undefined && a === b ? a : shown;
}

// ---- windows between samples -------------------------------------------------

function delta(cur: number | null, prev: number | null): number | null {
  return cur !== null && prev !== null && cur >= prev ? cur - prev : null;
}

/** The words the UI shows for a verdict: "Connection: poor — 12% of audio packets lost". */
export function describeQuality(v: Verdict | LocalVerdict, local: boolean): string {
  const who = 'cause' in v && v.cause === 'cpu' ? 'Your video' : local ? 'Your connection' : 'Connection';
  switch (v.level) {
    case 'unknown':
      return `${who}: not measured yet`;
    case 'good':
      return `${who}: good`;
    default:
      return v.why ? `${who}: ${v.level} — ${v.why}` : `${who}: ${v.level}`;
  }
}

/** The local tile's sentence when others get a degraded picture of us (null: nothing to say). */
export function uplinkWarning(v: LocalVerdict): string | null {
  if (v.cause === 'cpu') return 'Your device is overloaded: others may see you in lower quality';
  if (v.cause !== 'network') return null;
  return v.level === 'poor'
    ? 'Your connection is unstable: others may see you frozen'
    : 'Your connection is weak: others may see you in lower quality';
}

interface Shown {
  verdict: Verdict;
  recent: QualityLevel[];
}

/**
 * Keeps the previous sample and what is shown; `update` gives each new
 * sample's report. A receiving m-line whose participant (or SSRC) changed
 * since the last sample gives no window this time: its counters belong to
 * the previous source.
 */
export class QualityTracker {
  private prev: StatsSample | null = null;
  private prevReceivers = new Map<string, Receiver>();
  private heights = new Map<number, number[]>();
  private remote = new Map<number, Shown>();
  private local: Shown & { verdict: LocalVerdict } = { verdict: { level: 'unknown', why: null, cause: null }, recent: [] };

  update(sample: StatsSample, receivers: ReadonlyMap<string, Receiver>): QualityReport {
    const prev = this.prev;
    const seconds = prev ? (sample.at - prev.at) / 1000 : 0;
    const windows = new Map<number, ReceivedWindow>();
    const prevIn = new Map((prev?.inbound ?? []).map((s) => [s.mid, s]));
    for (const s of sample.inbound) {
      const r = receivers.get(s.mid);
      if (!r) continue;
      let w = windows.get(r.participant);
      if (!w) {
        w = { seconds, audio: null, video: [], recentMaxHeight: null };
        windows.set(r.participant, w);
      }
      const before = prevIn.get(s.mid);
      const was = this.prevReceivers.get(s.mid);
      if (!before || !was || was.participant !== r.participant || was.source !== r.source || before.ssrc !== s.ssrc) continue;
      const packets = delta(s.packetsReceived, before.packetsReceived);
      const lost = delta(s.packetsLost, before.packetsLost) ?? 0;
      if (packets === null) continue;
      if (s.kind === 'audio') {
        w.audio = { packets, lost, jitter: s.jitter };
      } else {
        const camera = r.source === 'camera';
        const cameraHeight = camera && packets > 0 ? s.frameHeight : null;
        if (cameraHeight !== null) this.noteHeight(r.participant, cameraHeight);
        w.video.push({
          packets,
          lost,
          framesDecoded: delta(s.framesDecoded, before.framesDecoded),
          frozenSeconds: delta(s.totalFreezesDuration, before.totalFreezesDuration),
          cameraHeight,
          camera,
        });
      }
    }
    const remote = new Map<number, Verdict>();
    for (const [id, w] of windows) {
      const heights = this.heights.get(id);
      w.recentMaxHeight = heights && heights.length ? Math.max(...heights) : null;
      const shown = this.remote.get(id) ?? { verdict: { level: 'unknown', why: null }, recent: [] };
      shown.verdict = this.step(shown, judgeReceived(w));
      this.remote.set(id, shown);
      remote.set(id, shown.verdict);
    }
    // Participants no longer received from are forgotten.
    for (const id of [...this.remote.keys()]) {
      if (!windows.has(id)) {
        this.remote.delete(id);
        this.heights.delete(id);
      }
    }

    const prevOut = new Map((prev?.outbound ?? []).map((s) => [`${s.kind}:${s.mid}:${s.ssrc}`, s]));
    const sent: SentWindow = {
      seconds,
      streams: [],
      pairRoundTripTime: sample.pair?.currentRoundTripTime ?? null,
      availableOutgoingBitrate: sample.pair?.availableOutgoingBitrate ?? null,
    };
    for (const s of sample.outbound) {
      const before = prevOut.get(`${s.kind}:${s.mid}:${s.ssrc}`);
      if (!before) continue;
      const packets = delta(s.packetsSent, before.packetsSent);
      if (packets === null) continue;
      sent.streams.push({
        kind: s.kind,
        packets,
        fractionLost: s.fractionLost,
        roundTripTime: s.roundTripTime,
        limitedBandwidthSeconds: delta(s.limitedBandwidthSeconds, before.limitedBandwidthSeconds),
        limitedCpuSeconds: delta(s.limitedCpuSeconds, before.limitedCpuSeconds),
        qualityLimitationReason: s.qualityLimitationReason,
      });
    }
    const raw = judgeSent(sent);
    if (this.stepLevel(this.local, raw.level) === raw.level) this.local.verdict = raw;

    this.prev = sample;
    this.prevReceivers = new Map(receivers);
    return { remote, local: this.local.verdict };
  }

  private noteHeight(id: number, height: number): void {
    const list = this.heights.get(id) ?? [];
    list.push(height);
    if (list.length > HEIGHT_WINDOW) list.shift();
    this.heights.set(id, list);
  }

  private stepLevel(shown: Shown, raw: QualityLevel): QualityLevel {
    shown.recent.push(raw);
    if (shown.recent.length > 2) shown.recent.shift();
    return settle(shown.verdict.level, shown.recent);
  }

  /** The verdict to show after `raw`: its reason once its level is the settled one. */
  private step(shown: Shown, raw: Verdict): Verdict {
    const level = this.stepLevel(shown, raw.level);
    // `settle` gives either the raw level (then its reason) or the one shown.
    return level === raw.level ? raw : shown.verdict;
  }
}

// ---- sampling ----------------------------------------------------------------

export interface StatsSnapshot {
  report: RTCStatsReport;
  receivers: ReadonlyMap<string, Receiver>;
}

/** Every this many ms: often enough to react within seconds, rarely enough to cost nothing. */
export const SAMPLE_INTERVAL_MS = 2_000;

/**
 * Polls `source` (getStats and the current m-line map) every
 * `SAMPLE_INTERVAL_MS` while started, one poll at a time, and hands each
 * report to `onReport`. A new `start` begins afresh (a rejoin is a new
 * peer connection, whose counters start at zero).
 */
export class QualitySampler {
  private generation = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly intervalMs = SAMPLE_INTERVAL_MS) {}

  start(source: () => Promise<StatsSnapshot | null>, onReport: (report: QualityReport) => void): void {
    this.stop();
    const generation = this.generation;
    const tracker = new QualityTracker();
    const tick = async (): Promise<void> => {
      try {
        const snap = await source();
        if (generation !== this.generation) return;
        if (snap) onReport(tracker.update(readStats(snap.report.values(), performance.now()), snap.receivers));
      } catch {
        // getStats on a closed connection: nothing to show; the next poll tries again.
      }
      if (generation === this.generation) this.timer = setTimeout(() => void tick(), this.intervalMs);
    };
    this.timer = setTimeout(() => void tick(), this.intervalMs);
  }

  stop(): void {
    this.generation += 1;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
