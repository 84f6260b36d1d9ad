// Main-thread side of media encryption: one module Worker (worker.ts) per
// session, attached to every publish sender and every receiver of the peer
// connection with WebRTC Encoded Transforms, and fed one SFrame base key per
// MLS epoch.

import { emptyStats, type FromWorker, type MediaKind, type Side, type ToWorker, type TransformOptions, type WorkerStats } from './messages';
import type { Binding } from './receivers';

export type { Binding } from './receivers';

export type TransformApi = 'script' | 'streams';

interface EncodedStreams {
  readable: ReadableStream;
  writable: WritableStream;
}

type WithEncodedStreams = { createEncodedStreams?: () => EncodedStreams };

/**
 * Which Encoded Transform API to use: Chromium's `createEncodedStreams` where
 * it exists, else `RTCRtpScriptTransform` (Firefox, Safari).
 * Null: this browser cannot encrypt media end to end.
 *
 * Why Chromium does not get `RTCRtpScriptTransform` although it has it:
 * measured in Chromium 156 (e2e/tools/debug-three.mjs), a script transform
 * set on a video sender, or on a receiver created by the first offer, was
 * silently bypassed: video left the browser unencrypted while the transform
 * was attached and running. With `encodedInsertableStreams` every frame must
 * pass through our streams or media stops, so a mistake fails closed.
 */
export function detectTransformApi(): TransformApi | null {
  if (typeof RTCRtpSender !== 'undefined' && 'createEncodedStreams' in RTCRtpSender.prototype) return 'streams';
  if (typeof RTCRtpScriptTransform !== 'undefined') return 'script';
  return null;
}

export const UNSUPPORTED_BROWSER_TEXT =
  'This browser cannot encrypt calls end to end; use a current Chrome, Edge, Firefox or Safari.';


export class MediaCrypto {
  private worker: Worker;
  private attached = new WeakSet<RTCRtpSender | RTCRtpReceiver>();
  private latest: WorkerStats = emptyStats();
  private nextId = 1;
  private waiting = new Map<number, (s: WorkerStats) => void>();
  private disposed = false;
  private guardTimer = 0;
  /** The latest binding of each receiver m-line, and whether its frames flow yet. */
  private bound = new Map<string, { to: Binding; seq: number; flowing: boolean }>();
  private nextBindSeq = 1;

  /** Called with every statistics update from the Worker. */
  onStats: ((stats: WorkerStats) => void) | null = null;
  /** Called when a receiver passed its first frame under its current binding. */
  onFlowing: ((mid: string) => void) | null = null;

  constructor(
    readonly api: TransformApi,
    onError: (message: string) => void,
  ) {
    this.worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'conclave-media-e2ee' });
    this.worker.addEventListener('message', (ev: MessageEvent<FromWorker>) => {
      const msg = ev.data;
      if (msg.type === 'stats') {
        this.latest = msg.stats;
        this.onStats?.(msg.stats);
        if (msg.id !== null) {
          this.waiting.get(msg.id)?.(msg.stats);
          this.waiting.delete(msg.id);
        }
      } else if (msg.type === 'flowing') {
        const b = this.bound.get(msg.mid);
        if (b && b.seq === msg.seq && !b.flowing) {
          b.flowing = true;
          this.onFlowing?.(msg.mid);
        }
      } else if (msg.type === 'error') {
        onError(msg.message);
      }
    });
    this.worker.addEventListener('error', (ev) => onError(`the media encryption worker failed: ${ev.message || 'unknown error'}`));
  }

  /** Whether the peer connection must be created with `encodedInsertableStreams: true`. */
  get needsInsertableStreams(): boolean {
    return this.api === 'streams';
  }

  /** Encrypts everything `sender` sends. Call before a track is attached to it. */
  attachSender(sender: RTCRtpSender, kind: MediaKind): void {
    this.attach(sender, 'send', kind);
  }

  /** Decrypts everything `receiver` (of m-line `mid`) receives, once bound to a sender. */
  attachReceiver(receiver: RTCRtpReceiver, kind: MediaKind, mid: string): void {
    this.attach(receiver, 'receive', kind, mid);
  }

  /**
   * The receiver of m-line `mid` shows member `leaf` ('unverified': a
   * participant not in the group, show nothing; 'none': the m-line carries
   * nobody). Only changes reach the Worker.
   */
  bindReceiver(mid: string, leaf: Binding): void {
    if (this.bound.get(mid)?.to === leaf) return;
    const seq = this.nextBindSeq++;
    this.bound.set(mid, { to: leaf, seq, flowing: false });
    this.post({ type: 'bind', mid, leaf, seq });
  }

  /**
   * Whether the receiver of `mid` is bound to `leaf` and has passed on a
   * frame of it since: its track then shows that member, not the last
   * picture of whoever the m-line carried before.
   */
  isFlowing(mid: string, leaf: number): boolean {
    const b = this.bound.get(mid);
    return !!b && b.to === leaf && b.flowing;
  }

  setKey(ownLeaf: number, epoch: number, baseKey: Uint8Array): void {
    this.post({ type: 'key', ownLeaf, epoch, baseKey });
  }

  clearKeys(): void {
    this.post({ type: 'clear' });
  }

  /** The latest statistics (the Worker posts them every 250 ms). */
  get lastStats(): WorkerStats {
    return this.latest;
  }

  /** Fresh statistics from the Worker. */
  stats(): Promise<WorkerStats> {
    if (this.disposed) return Promise.resolve(this.latest);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.post({ type: 'stats', id });
      window.setTimeout(() => {
        if (this.waiting.delete(id)) resolve(this.latest);
      }, 2000);
    });
  }

  /**
   * Fails closed if the browser bypasses the sender transform: every 2 s it
   * compares what the encoders produced with what the Worker saw — video
   * frames (camera and screen) from `framesEncoded`, audio frames from
   * `packetsSent` (one Opus frame per packet). Two windows in a row where a
   * kind produced at least 20 frames and the Worker saw fewer than half of
   * them call `onBypass` (the caller ends the call). Chromium's script
   * transform did exactly this for video (see above); audio is watched too,
   * so a participant with the camera off is not exempt.
   */
  guardAgainstBypass(pc: RTCPeerConnection, onBypass: () => void): void {
    type Counts = { video: number; audio: number; seenVideo: number; seenAudio: number };
    let last: Counts | null = null;
    let strikes = 0;
    this.guardTimer = window.setInterval(() => {
      void (async () => {
        let video = 0;
        let audio = 0;
        (await pc.getStats()).forEach((s: { type?: string; kind?: string; framesEncoded?: number; packetsSent?: number }) => {
          if (s.type !== 'outbound-rtp') return;
          if (s.kind === 'video') video += s.framesEncoded ?? 0;
          if (s.kind === 'audio') audio += s.packetsSent ?? 0;
        });
        const frames = (await this.stats()).frames;
        const now: Counts = { video, audio, seenVideo: frames['send-video'] ?? 0, seenAudio: frames['send-audio'] ?? 0 };
        if (this.disposed) return;
        if (last) {
          const bypassed = (made: number, passed: number) => made >= 20 && passed * 2 < made;
          const leak =
            bypassed(now.video - last.video, now.seenVideo - last.seenVideo) ||
            bypassed(now.audio - last.audio, now.seenAudio - last.seenAudio);
          strikes = leak ? strikes + 1 : 0;
          if (strikes >= 2) {
            window.clearInterval(this.guardTimer);
            onBypass();
          }
        }
        last = now;
      })();
    }, 2000);
  }

  dispose(): void {
    window.clearInterval(this.guardTimer);
    this.disposed = true;
    this.worker.terminate();
    for (const resolve of this.waiting.values()) resolve(this.latest);
    this.waiting.clear();
  }

  private attach(target: RTCRtpSender | RTCRtpReceiver, side: Side, kind: MediaKind, mid?: string): void {
    if (this.attached.has(target)) return;
    if (this.api === 'script') {
      const options: TransformOptions = mid === undefined ? { side, kind } : { side, kind, mid };
      target.transform = new RTCRtpScriptTransform(this.worker, options);
    } else {
      const create = (target as unknown as WithEncodedStreams).createEncodedStreams;
      if (!create) throw new Error('createEncodedStreams is missing');
      const { readable, writable } = create.call(target);
      const msg: ToWorker = mid === undefined ? { type: 'streams', side, kind, readable, writable } : { type: 'streams', side, kind, mid, readable, writable };
      this.worker.postMessage(msg, [readable as unknown as Transferable, writable as unknown as Transferable]);
    }
    this.attached.add(target);
  }

  private post(msg: ToWorker): void {
    if (!this.disposed) this.worker.postMessage(msg);
  }
}
