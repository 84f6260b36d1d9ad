// src/quality.ts: getStats() samples → a connection-quality level per remote
// participant and for the local uplink. The samples are shaped like
// Chromium's (field names, units, cumulative counters), advanced two
// seconds at a time as the client's sampler sees them.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  describeQuality,
  judgeReceived,
  judgeSent,
  QualityTracker,
  readStats,
  settle,
  uplinkWarning,
  type Receiver,
  type StatsSample,
} from '../src/quality';

type Stats = Record<string, unknown>;

/** What one remote participant sends us during a window. */
interface RemoteWindow {
  audioLoss?: number;
  jitter?: number;
  /** Video packets a second (0: camera off). */
  videoPps?: number;
  videoLoss?: number;
  fps?: number;
  height?: number;
  frozen?: number;
  audio?: boolean;
}

/** What we send and what the SFU reports about it during a window. */
interface LocalWindow {
  fractionLost?: number;
  rtt?: number;
  available?: number;
  limitedBy?: 'none' | 'bandwidth' | 'cpu';
  camera?: boolean;
}

/**
 * A Chromium-like peer connection with cumulative counters: `step` advances
 * it two seconds and returns that moment's getStats() list. Audio: Opus at
 * 50 packets/s; video: VP8 360p camera at about 24 fps, 120 packets/s.
 */
class FakeConnection {
  t = 10_000;
  private remote = new Map<string, { audioR: number; audioL: number; videoR: number; videoL: number; frames: number; freezes: number; height: number }>();
  private sent = { audio: 0, video: 0, bw: 0, cpu: 0, none: 0 };

  step(remotes: Record<string, RemoteWindow>, local: LocalWindow = {}, seconds = 2): Stats[] {
    this.t += seconds * 1000;
    const out: Stats[] = [];
    for (const [key, w] of Object.entries(remotes)) {
      const [audioMid, videoMid] = key.split('/') as [string, string];
      const c = this.remote.get(key) ?? { audioR: 0, audioL: 0, videoR: 0, videoL: 0, frames: 0, freezes: 0, height: 360 };
      if (w.audio !== false) {
        const n = 50 * seconds;
        const lost = Math.round(n * (w.audioLoss ?? 0));
        c.audioR += n - lost;
        c.audioL += lost;
      }
      const pps = w.videoPps ?? 120;
      const vn = pps * seconds;
      const vlost = Math.round(vn * (w.videoLoss ?? 0));
      c.videoR += vn - vlost;
      c.videoL += vlost;
      if (pps > 0) c.frames += Math.round((w.fps ?? 24) * seconds);
      c.freezes += w.frozen ?? 0;
      c.height = w.height ?? 360;
      this.remote.set(key, c);
      out.push({
        id: `IT01A${audioMid}`, type: 'inbound-rtp', timestamp: this.t, kind: 'audio', mid: audioMid, ssrc: 1000 + Number(audioMid),
        packetsReceived: c.audioR, packetsLost: c.audioL, jitter: w.jitter ?? 0.004, totalAudioEnergy: 1.5, codecId: 'CIT01_111',
      });
      out.push({
        id: `IT01V${videoMid}`, type: 'inbound-rtp', timestamp: this.t, kind: 'video', mid: videoMid, ssrc: 2000 + Number(videoMid),
        packetsReceived: c.videoR, packetsLost: c.videoL, jitter: 0.012, framesDecoded: c.frames, framesReceived: c.frames,
        frameWidth: Math.round((c.height * 16) / 9), frameHeight: c.height, framesPerSecond: w.fps ?? 24,
        freezeCount: 0, totalFreezesDuration: c.freezes, nackCount: 3,
      });
    }
    const limitedBy = local.limitedBy ?? 'none';
    this.sent.audio += 50 * seconds;
    if (local.camera !== false) {
      this.sent.video += 240 * seconds;
      if (limitedBy === 'bandwidth') this.sent.bw += seconds;
      else if (limitedBy === 'cpu') this.sent.cpu += seconds;
      else this.sent.none += seconds;
    }
    out.push(
      { id: 'OT01A0', type: 'outbound-rtp', timestamp: this.t, kind: 'audio', mid: '0', ssrc: 11, packetsSent: this.sent.audio, remoteId: 'RI01A0' },
      {
        id: 'OT01V1', type: 'outbound-rtp', timestamp: this.t, kind: 'video', mid: '1', ssrc: 12, packetsSent: this.sent.video, remoteId: 'RI01V1',
        qualityLimitationReason: limitedBy, qualityLimitationDurations: { none: this.sent.none, cpu: this.sent.cpu, bandwidth: this.sent.bw, other: 0 },
        frameHeight: 360, framesPerSecond: 24,
      },
      // Chromium's remote-inbound-rtp: the SFU's receiver reports about our streams.
      { id: 'RI01A0', type: 'remote-inbound-rtp', kind: 'audio', ssrc: 11, localId: 'OT01A0', packetsLost: 0, fractionLost: local.fractionLost ?? 0, roundTripTime: local.rtt ?? 0.002 },
      { id: 'RI01V1', type: 'remote-inbound-rtp', kind: 'video', ssrc: 12, localId: 'OT01V1', packetsLost: 0, fractionLost: local.fractionLost ?? 0, roundTripTime: local.rtt ?? 0.002 },
      { id: 'T01', type: 'transport', selectedCandidatePairId: 'CPab' },
      { id: 'CPxx', type: 'candidate-pair', state: 'failed', nominated: false, currentRoundTripTime: 9 },
      { id: 'CPab', type: 'candidate-pair', state: 'succeeded', nominated: true, currentRoundTripTime: local.rtt ?? 0.001, availableOutgoingBitrate: local.available ?? 2_400_000 },
    );
    return out;
  }

  sample(remotes: Record<string, RemoteWindow>, local?: LocalWindow): StatsSample {
    const stats = this.step(remotes, local);
    return readStats(stats, this.t);
  }
}

/** Participant 7 on mids 3 (mic) and 5 (camera); participant 9 on 4 and 6. */
const receivers = new Map<string, Receiver>([
  ['3', { participant: 7, source: 'microphone' }],
  ['5', { participant: 7, source: 'camera' }],
  ['4', { participant: 9, source: 'microphone' }],
  ['6', { participant: 9, source: 'camera' }],
]);

/** Feeds `windows` samples of the same conditions; returns the last report. */
function run(tracker: QualityTracker, conn: FakeConnection, windows: number, remotes: Record<string, RemoteWindow>, local?: LocalWindow, map = receivers) {
  let report = tracker.update(conn.sample(remotes, local), map);
  for (let i = 1; i < windows; i++) report = tracker.update(conn.sample(remotes, local), map);
  return report;
}

test('quality: a Chromium report is read (selected pair, remote-inbound by remoteId or localId, streams without a mid left out)', () => {
  const stats: unknown[] = [
    { id: 'T', type: 'transport', selectedCandidatePairId: 'P2' },
    { id: 'P1', type: 'candidate-pair', state: 'succeeded', nominated: true, currentRoundTripTime: 0.5, availableOutgoingBitrate: 1 },
    { id: 'P2', type: 'candidate-pair', state: 'succeeded', nominated: true, currentRoundTripTime: 0.031, availableOutgoingBitrate: 850_000 },
    { id: 'O1', type: 'outbound-rtp', kind: 'video', mid: '1', ssrc: 5, packetsSent: 900, remoteId: 'R1', qualityLimitationReason: 'bandwidth', qualityLimitationDurations: { none: 3.5, bandwidth: 1.25, cpu: 0.5, other: 0 } },
    { id: 'O2', type: 'outbound-rtp', kind: 'audio', mid: '0', ssrc: 6, packetsSent: 400 },
    { id: 'R1', type: 'remote-inbound-rtp', kind: 'video', ssrc: 5, localId: 'O1', fractionLost: 0.0625, roundTripTime: 0.04 },
    { id: 'R2', type: 'remote-inbound-rtp', kind: 'audio', ssrc: 6, localId: 'O2', fractionLost: 0.125, roundTripTime: 0.05 },
    { id: 'I1', type: 'inbound-rtp', kind: 'audio', mid: '3', ssrc: 77, packetsReceived: 120, packetsLost: -2, jitter: 0.003 },
    { id: 'I2', type: 'inbound-rtp', kind: 'video', ssrc: 78, packetsReceived: 10 },
    { id: 'C', type: 'codec', mimeType: 'video/VP8' },
    null,
    'junk',
  ];
  const s = readStats(stats, 1234);
  assert.equal(s.at, 1234);
  assert.deepEqual(s.pair, { currentRoundTripTime: 0.031, availableOutgoingBitrate: 850_000 });
  assert.equal(s.outbound.length, 2);
  const video = s.outbound.find((o) => o.kind === 'video');
  assert.deepEqual(
    [video?.fractionLost, video?.roundTripTime, video?.limitedBandwidthSeconds, video?.limitedCpuSeconds, video?.qualityLimitationReason],
    [0.0625, 0.04, 1.25, 0.5, 'bandwidth'],
  );
  const audio = s.outbound.find((o) => o.kind === 'audio');
  assert.equal(audio?.fractionLost, 0.125, 'matched through the report\'s localId');
  assert.equal(audio?.limitedBandwidthSeconds, null, 'a missing field is null, not 0');
  assert.deepEqual(s.inbound, [
    { mid: '3', kind: 'audio', ssrc: 77, packetsReceived: 120, packetsLost: 0, jitter: 0.003, framesDecoded: null, frameHeight: null, totalFreezesDuration: null },
  ]);
  // No transport entry: the nominated pair that works.
  assert.deepEqual(readStats(stats.slice(1), 0).pair, { currentRoundTripTime: 0.5, availableOutgoingBitrate: 1 });
  assert.equal(readStats([], 0).pair, null);
});

test('quality: a healthy call is good everywhere, after two windows agree', () => {
  const tracker = new QualityTracker();
  const conn = new FakeConnection();
  const healthy = { '3/5': {}, '4/6': {} };
  const first = tracker.update(conn.sample(healthy), receivers);
  assert.equal(first.remote.get(7)?.level, 'unknown', 'one sample has no window yet');
  assert.equal(first.local.level, 'unknown');
  const second = tracker.update(conn.sample(healthy), receivers);
  assert.equal(second.remote.get(7)?.level, 'unknown', 'one window is not enough to show a level');
  const third = tracker.update(conn.sample(healthy), receivers);
  assert.deepEqual(third.remote.get(7), { level: 'good', why: null });
  assert.deepEqual(third.remote.get(9), { level: 'good', why: null });
  assert.deepEqual(third.local, { level: 'good', why: null, cause: null });
  assert.equal(uplinkWarning(third.local), null);
});

test('quality: packet loss from one participant makes their tile fair or poor, not the others\'', () => {
  const tracker = new QualityTracker();
  const conn = new FakeConnection();
  // 12% of 7's audio lost (Opus has no retransmission), 1% of 9's.
  let r = run(tracker, conn, 4, { '3/5': { audioLoss: 0.12 }, '4/6': { audioLoss: 0.01 } });
  assert.deepEqual(r.remote.get(7), { level: 'poor', why: '12% of audio packets lost' });
  assert.equal(r.remote.get(9)?.level, 'good', '1% is ordinary Wi-Fi loss');
  assert.equal(describeQuality(r.remote.get(7)!, false), 'Connection: poor — 12% of audio packets lost');
  assert.equal(r.local.level, 'good', 'what we receive says nothing about our uplink');
  // 5% of video left after retransmissions: fair.
  r = run(tracker, conn, 2, { '3/5': { videoLoss: 0.05 }, '4/6': {} });
  assert.deepEqual(r.remote.get(7), { level: 'fair', why: '5% of video packets lost' });
});

test('quality: a video that gets packets but decodes no frame is frozen (poor); frozen time and low frame rate count', () => {
  const tracker = new QualityTracker();
  const conn = new FakeConnection();
  run(tracker, conn, 3, { '3/5': {} });
  let r = run(tracker, conn, 2, { '3/5': { fps: 0 } });
  assert.deepEqual(r.remote.get(7), { level: 'poor', why: 'video frozen' });
  r = run(tracker, conn, 2, { '3/5': { frozen: 0.6 } });
  assert.deepEqual(r.remote.get(7), { level: 'fair', why: 'video stutters' }, '0.6 s of 2 s frozen');
  r = run(tracker, conn, 2, { '3/5': { frozen: 1.2 } });
  assert.equal(r.remote.get(7)?.level, 'poor');
  r = run(tracker, conn, 2, { '3/5': { fps: 3 } });
  assert.deepEqual(r.remote.get(7), { level: 'fair', why: 'video at 3 frames a second' });
  r = run(tracker, conn, 2, { '3/5': {} });
  assert.equal(r.remote.get(7)?.level, 'good', 'recovered');
});

test('quality: a camera scaled down to half its recent height is fair; a small camera is not penalised', () => {
  const tracker = new QualityTracker();
  const conn = new FakeConnection();
  run(tracker, conn, 3, { '3/5': { height: 360 }, '4/6': { height: 180 } });
  const r = run(tracker, conn, 2, { '3/5': { height: 180 }, '4/6': { height: 180 } });
  assert.deepEqual(r.remote.get(7), { level: 'fair', why: 'video at reduced resolution (180p)' });
  assert.equal(r.remote.get(9)?.level, 'good', 'always 180p: nothing dropped');
});

test('quality: high audio jitter is fair, then poor', () => {
  const tracker = new QualityTracker();
  const conn = new FakeConnection();
  let r = run(tracker, conn, 3, { '3/5': { jitter: 0.07 } });
  assert.deepEqual(r.remote.get(7), { level: 'fair', why: 'audio delayed unevenly (jitter 70 ms)' });
  r = run(tracker, conn, 2, { '3/5': { jitter: 0.2 } });
  assert.equal(r.remote.get(7)?.level, 'poor');
});

test('quality: muted with the camera off is unknown, not poor; a participant no longer received from is dropped', () => {
  const tracker = new QualityTracker();
  const conn = new FakeConnection();
  let r = run(tracker, conn, 3, { '3/5': { audio: false, videoPps: 0 }, '4/6': {} });
  assert.equal(r.remote.get(7)?.level, 'unknown');
  assert.equal(r.remote.get(9)?.level, 'good');
  r = run(tracker, conn, 1, { '4/6': {} }, {}, new Map([...receivers].filter(([, v]) => v.participant === 9)));
  assert.equal(r.remote.has(7), false);
});

test('quality: a slot moved to another participant gives no window for them until a second sample', () => {
  const tracker = new QualityTracker();
  const conn = new FakeConnection();
  // Participant 7's counters are full of loss; then slots 3 and 5 carry participant 11.
  run(tracker, conn, 3, { '3/5': { audioLoss: 0.3 } });
  const moved = new Map<string, Receiver>([
    ['3', { participant: 11, source: 'microphone' }],
    ['5', { participant: 11, source: 'camera' }],
  ]);
  let r = run(tracker, conn, 1, { '3/5': {} }, {}, moved);
  assert.equal(r.remote.get(11)?.level, 'unknown', 'the previous source\'s counters are not blamed on the new one');
  r = run(tracker, conn, 2, { '3/5': {} }, {}, moved);
  assert.equal(r.remote.get(11)?.level, 'good');
});

test('quality: a single bad window changes nothing; two in a row do; recovery takes two good ones', () => {
  const tracker = new QualityTracker();
  const conn = new FakeConnection();
  run(tracker, conn, 3, { '3/5': {} });
  let r = run(tracker, conn, 1, { '3/5': { audioLoss: 0.3 } });
  assert.equal(r.remote.get(7)?.level, 'good', 'one window of loss');
  r = run(tracker, conn, 1, { '3/5': {} });
  assert.equal(r.remote.get(7)?.level, 'good');
  r = run(tracker, conn, 2, { '3/5': { audioLoss: 0.3 } });
  assert.equal(r.remote.get(7)?.level, 'poor');
  r = run(tracker, conn, 1, { '3/5': { audioLoss: 0.05 } });
  assert.equal(r.remote.get(7)?.level, 'poor', 'poor, then fair once: still poor');
  r = run(tracker, conn, 1, { '3/5': {} });
  assert.equal(r.remote.get(7)?.level, 'poor');
  r = run(tracker, conn, 1, { '3/5': {} });
  assert.equal(r.remote.get(7)?.level, 'good');
  assert.equal(settle('good', []), 'good');
  assert.equal(settle('good', ['poor']), 'good');
  assert.equal(settle('good', ['fair', 'poor']), 'good');
  assert.equal(settle('good', ['poor', 'poor']), 'poor');
});

test('quality: our uplink: the SFU reports 20% of our packets lost — poor, the network, others may see us frozen', () => {
  const tracker = new QualityTracker();
  const conn = new FakeConnection();
  const r = run(tracker, conn, 3, { '3/5': {} }, { fractionLost: 0.2, limitedBy: 'bandwidth', available: 90_000 });
  assert.deepEqual(r.local, { level: 'poor', why: '20% of your packets lost', cause: 'network' });
  assert.equal(uplinkWarning(r.local), 'Your connection is unstable: others may see you frozen');
  assert.equal(describeQuality(r.local, true), 'Your connection: poor — 20% of your packets lost');
  assert.equal(r.remote.get(7)?.level, 'good', 'what we receive is fine');
});

test('quality: our uplink: loss, round-trip time, bandwidth and CPU', () => {
  const judge = (l: LocalWindow) => run(new QualityTracker(), new FakeConnection(), 3, {}, l).local;
  assert.deepEqual(judge({ fractionLost: 0.04 }), { level: 'fair', why: '4% of your packets lost', cause: 'network' });
  assert.equal(uplinkWarning(judge({ fractionLost: 0.04 })), 'Your connection is weak: others may see you in lower quality');
  assert.equal(judge({ fractionLost: 0.02 }).level, 'good', 'under 3%');
  assert.deepEqual(judge({ rtt: 0.45 }), { level: 'fair', why: 'long delay (450 ms round trip)', cause: 'network' });
  assert.equal(judge({ rtt: 0.9 }).level, 'poor');
  // Limited by bandwidth while the estimate ramps up on a good link: fine.
  assert.equal(judge({ limitedBy: 'bandwidth', available: 1_200_000 }).level, 'good');
  assert.deepEqual(judge({ limitedBy: 'bandwidth', available: 250_000 }), { level: 'fair', why: 'little upload bandwidth (250 kbit/s)', cause: 'network' });
  assert.equal(judge({ limitedBy: 'bandwidth', available: 100_000 }).level, 'poor');
  // A low estimate while the encoder is not limited by it (e.g. camera off) is no problem.
  assert.equal(judge({ available: 100_000 }).level, 'good');
  const cpu = judge({ limitedBy: 'cpu' });
  assert.deepEqual(cpu, { level: 'fair', why: 'your device is too busy to send full quality', cause: 'cpu' });
  assert.equal(uplinkWarning(cpu), 'Your device is overloaded: others may see you in lower quality');
  assert.equal(describeQuality(cpu, true), 'Your video: fair — your device is too busy to send full quality');
  // Network problems take precedence over CPU in what is said.
  assert.equal(judge({ limitedBy: 'cpu', fractionLost: 0.15 }).cause, 'network');
  // Camera off and the loss report stale: audio alone still counts.
  assert.equal(judge({ camera: false, fractionLost: 0.15 }).level, 'poor');
});

test('quality: nothing sent, nothing received, or no time passed: unknown', () => {
  assert.deepEqual(judgeSent({ seconds: 2, streams: [], pairRoundTripTime: 0.9, availableOutgoingBitrate: 1 }), { level: 'unknown', why: null, cause: null });
  assert.deepEqual(judgeReceived({ seconds: 0, audio: { packets: 100, lost: 90, jitter: null }, video: [], recentMaxHeight: null }), { level: 'unknown', why: null });
  assert.deepEqual(judgeReceived({ seconds: 2, audio: { packets: 0, lost: 0, jitter: 0.5 }, video: [], recentMaxHeight: null }), { level: 'unknown', why: null });
  // Too few packets to say anything about loss.
  assert.deepEqual(judgeReceived({ seconds: 2, audio: { packets: 8, lost: 4, jitter: null }, video: [], recentMaxHeight: null }), { level: 'unknown', why: null });
  assert.equal(describeQuality({ level: 'unknown', why: null }, false), 'Connection: not measured yet');
  assert.equal(describeQuality({ level: 'good', why: null }, true), 'Your connection: good');
});
