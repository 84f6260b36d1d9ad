// The RTCPeerConnection to the SFU. The server is always the SDP offerer;
// this side only answers, one offer at a time, so there is never glare.
// Between offers the server may move subscribe m-lines (fixed receive
// slots) to other participants with a `tracks` message: the same receiver,
// and so the same MediaStreamTrack, then carries someone else.

import type { TrackMapping, TrackSource } from './protocol.gen';
import { remapTracks, trackMap } from './tracks';

export interface RemoteTrack {
  participant: number;
  source: TrackSource;
  track: MediaStreamTrack;
  /** The m-line (receiver) it arrives on. */
  mid: string;
}

export interface PeerHandlers {
  /** The full set of live remote tracks after each negotiation or remapping. */
  onRemoteTracks(tracks: RemoteTrack[]): void;
  /** An answer to send to the server. */
  onAnswer(sdp: string): void;
  onConnectionState(state: RTCPeerConnectionState): void;
  onNegotiationError(err: unknown): void;
}

/**
 * End-to-end encryption of the media: every publish sender and every
 * receiver gets an Encoded Transform before any track is attached to it.
 */
export interface MediaTransforms {
  /** The peer connection needs `encodedInsertableStreams: true` (Chromium's older API). */
  readonly needsInsertableStreams: boolean;
  attachSender(sender: RTCRtpSender, kind: 'audio' | 'video'): void;
  attachReceiver(receiver: RTCRtpReceiver, kind: 'audio' | 'video', mid: string): void;
}

const SOURCES: readonly TrackSource[] = ['microphone', 'camera', 'screen'];

function isStopped(t: RTCRtpTransceiver): boolean {
  return t.currentDirection === 'stopped' || t.direction === 'stopped';
}

/**
 * The peer connection to the SFU, not yet negotiated. `needsInsertableStreams`
 * (Chromium's `createEncodedStreams`): with this flag set, every sender and
 * receiver must have its streams taken or media stalls.
 */
export function createPeerConnection(needsInsertableStreams: boolean): RTCPeerConnection {
  const config: RTCConfiguration & { encodedInsertableStreams?: boolean } = {
    iceServers: [],
    bundlePolicy: 'max-bundle',
    rtcpMuxPolicy: 'require',
  };
  if (needsInsertableStreams) config.encodedInsertableStreams = true;
  return new RTCPeerConnection(config);
}

export class PeerSession {
  readonly pc: RTCPeerConnection;
  private queue: Promise<void> = Promise.resolve();
  private mapping = new Map<string, TrackMapping>();
  private senders = new Map<TrackSource, RTCRtpSender>();
  private localTracks = new Map<TrackSource, MediaStreamTrack | null>();
  private closed = false;

  constructor(
    private readonly handlers: PeerHandlers,
    private readonly transforms: MediaTransforms,
    /** One made ahead of time with `createPeerConnection` (for the same transforms), or null. */
    prepared: RTCPeerConnection | null = null,
  ) {
    const usable = prepared !== null && prepared.signalingState === 'stable' && prepared.getTransceivers().length === 0;
    if (prepared && !usable) prepared.close();
    this.pc = usable ? prepared : createPeerConnection(transforms.needsInsertableStreams);
    this.pc.addEventListener('connectionstatechange', () => {
      if (!this.closed) this.handlers.onConnectionState(this.pc.connectionState);
    });
    // Remote tracks are collected from the transceivers after every offer
    // (see `reportRemoteTracks`); `track` events only say something changed.
    this.pc.addEventListener('track', () => this.reportRemoteTracks());
  }

  /**
   * Queues a server offer; offers are handled strictly in arrival order.
   * Resolves once this offer is answered (or failed).
   */
  handleOffer(sdp: string, tracks: TrackMapping[]): Promise<void> {
    return this.enqueue(() => this.negotiate(sdp, tracks));
  }

  /**
   * Queues a new m-line map without renegotiation (`tracks`): it applies
   * after every offer that came before it, in arrival order.
   */
  handleTracks(tracks: TrackMapping[]): void {
    void this.enqueue(() => {
      if (this.closed) return;
      this.mapping = remapTracks(this.mapping, tracks);
      this.reportRemoteTracks();
    });
  }

  private enqueue(step: () => void | Promise<void>): Promise<void> {
    this.queue = this.queue
      .then(step)
      .catch((err: unknown) => {
        if (!this.closed) this.handlers.onNegotiationError(err);
      });
    return this.queue;
  }

  /**
   * Sets what this participant publishes for `source`. Before the first offer
   * the track is remembered and attached when the publish m-line appears;
   * afterwards it is swapped in with replaceTrack (no renegotiation).
   */
  async setLocalTrack(source: TrackSource, track: MediaStreamTrack | null): Promise<void> {
    this.localTracks.set(source, track);
    const sender = this.senders.get(source);
    if (sender && sender.track !== track) await sender.replaceTrack(track);
  }

  /** The sender publishing `source`, once negotiated. */
  sender(source: TrackSource): RTCRtpSender | undefined {
    return this.senders.get(source);
  }

  close(): void {
    this.closed = true;
    this.pc.close();
  }

  private async negotiate(sdp: string, tracks: TrackMapping[]): Promise<void> {
    if (this.closed) return;
    // Set the mapping first: `track` events fire while the offer is applied.
    this.mapping = trackMap(tracks);
    await this.pc.setRemoteDescription({ type: 'offer', sdp });

    const attaching: Promise<void>[] = [];
    for (const transceiver of this.pc.getTransceivers()) {
      const mid = transceiver.mid;
      if (mid === null || isStopped(transceiver)) continue;
      // Every sender and receiver gets its transform, whatever the server
      // says the m-line is for, before any track is attached: nothing leaves
      // unencrypted and nothing arriving bypasses decryption. The codec
      // follows the m-line's real kind.
      const kind = transceiver.receiver.track.kind === 'audio' ? 'audio' : 'video';
      this.transforms.attachSender(transceiver.sender, kind);
      this.transforms.attachReceiver(transceiver.receiver, kind, mid);
      const m = this.mapping.get(mid);
      if (!m) continue;
      if (m.direction === 'publish') {
        transceiver.direction = 'sendonly';
        this.senders.set(m.source, transceiver.sender);
        const track = this.localTracks.get(m.source) ?? null;
        // Its transform is attached (above): the track may follow, without
        // waiting for one sender before going on to the next.
        if (transceiver.sender.track !== track) attaching.push(transceiver.sender.replaceTrack(track));
      } else {
        transceiver.direction = 'recvonly';
      }
    }
    await Promise.all(attaching);

    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    const local = this.pc.localDescription;
    if (!local) throw new Error('no local description after setLocalDescription');
    this.handlers.onAnswer(local.sdp);
    this.reportRemoteTracks();
  }

  /**
   * Every receiving m-line and the participant it carries, as the server
   * says (null: nobody now, e.g. a free receive slot). Publish m-lines are
   * left out.
   */
  receivers(): { mid: string; participant: number | null }[] {
    const out: { mid: string; participant: number | null }[] = [];
    for (const transceiver of this.pc.getTransceivers()) {
      const mid = transceiver.mid;
      if (mid === null || isStopped(transceiver)) continue;
      const m = this.mapping.get(mid);
      if (m?.direction === 'publish') continue;
      out.push({ mid, participant: m ? m.participant : null });
    }
    return out;
  }

  private reportRemoteTracks(): void {
    if (this.closed) return;
    const out: RemoteTrack[] = [];
    for (const transceiver of this.pc.getTransceivers()) {
      const mid = transceiver.mid;
      if (mid === null || isStopped(transceiver)) continue;
      const m = this.mapping.get(mid);
      if (!m || m.direction !== 'subscribe' || !SOURCES.includes(m.source)) continue;
      out.push({ participant: m.participant, source: m.source, track: transceiver.receiver.track, mid });
    }
    this.handlers.onRemoteTracks(out);
  }
}
