// Messages between the main thread and the media Worker (src/e2ee/worker.ts),
// and the statistics the Worker reports. No keys ever travel the other way,
// and nothing here is logged.

import type { Binding } from './receivers';

export type Side = 'send' | 'receive';
export type MediaKind = 'audio' | 'video';

/** Options given to `new RTCRtpScriptTransform(worker, options)`. */
export interface TransformOptions {
  side: Side;
  kind: MediaKind;
  /** The m-line of a receiver (so the page can bind it to one sender). */
  mid?: string;
}

export type ToWorker =
  /** Install the SFrame base key of an MLS epoch (after joined / epochChanged). */
  | { type: 'key'; ownLeaf: number; epoch: number; baseKey: Uint8Array }
  /** Forget every key (removed, rejoining): senders drop frames again. */
  | { type: 'clear' }
  /** Fallback for browsers without RTCRtpScriptTransform: transferred encoded streams. */
  | { type: 'streams'; side: Side; kind: MediaKind; mid?: string; readable: ReadableStream; writable: WritableStream }
  /**
   * The receiver of m-line `mid` accepts only frames of this MLS leaf (the
   * verified member the tile shows); 'unverified': frames wait a moment,
   * undecrypted, then are dropped; 'none': the m-line carries nobody, frames
   * are dropped. `seq` numbers the page's bindings (echoed by `flowing`).
   */
  | { type: 'bind'; mid: string; leaf: Binding; seq: number }
  /** Post the statistics now (answered with the same id). */
  | { type: 'stats'; id: number };

export interface SenderStats {
  /** Low 4 bits of the MLS epoch (KID & 15) of the last frame decrypted from this leaf. */
  epoch: number;
  /** When (ms since the Unix epoch, Worker clock) a frame with that epoch was first decrypted. */
  since: number;
  /** Last successfully decrypted frame (ms since the Unix epoch). */
  lastAt: number;
  /** Frames decrypted from this leaf. */
  frames: number;
}

export interface WorkerStats {
  /** Epoch of the newest key installed (null: none). */
  keyEpoch: number | null;
  ownLeaf: number | null;
  /** Transforms attached, per side. */
  transforms: { send: number; receive: number };
  /** Frames that reached the Worker, per side and kind ("send-audio", "receive-video", …). */
  frames: Record<string, number>;
  send: { encrypted: number; droppedNoKey: number; failed: number };
  receive: {
    decrypted: number;
    decryptFailed: number;
    droppedNoKey: number;
    /** Decryption failures by reason (fixed error texts, never frame contents). */
    failures: Record<string, number>;
    /**
     * Frames of another member than the one the receiver is bound to
     * (dropped). Frames that turn out to be a new participant's first ones,
     * ahead of the page learning that the server moved the m-line to them,
     * are moved to `droppedSwitching` when it does.
     */
    wrongSender: number;
    /**
     * Frames on a receiver of a participant who is not a verified member,
     * dropped when the wait for their verification ran out.
     */
    droppedUnverified: number;
    /** Frames on a receiver whose m-line carries nobody (dropped). */
    droppedUnmapped: number;
    /**
     * Frames in flight across a move of their m-line to another participant
     * (the previous one's last, the next one's first; dropped).
     */
    droppedSwitching: number;
    /**
     * Frames for the epoch after ours that we cannot decrypt: first and last
     * time seen since our latest key (null: none). Persisting, they mean we
     * missed a commit.
     */
    aheadSince: number | null;
    aheadLast: number | null;
  };
  /** Per sender leaf index (as a string key). */
  senders: Record<string, SenderStats>;
  /**
   * Per receiver m-line: the leaf it is bound to (null: nobody, or waiting
   * for a verified member) and frames decrypted since it was bound to it.
   */
  receivers: Record<string, { leaf: number | null; waiting: boolean; decrypted: number }>;
  /** Worker time of this snapshot. */
  at: number;
}

export type FromWorker =
  | { type: 'stats'; id: number | null; stats: WorkerStats }
  /** The receiver of `mid` passed on its first frame under the page's binding `seq`. */
  | { type: 'flowing'; mid: string; seq: number }
  | { type: 'ready' }
  | { type: 'error'; message: string };

/** Statistics before anything happened (the Worker's start, the page's placeholder). */
export function emptyStats(): WorkerStats {
  return {
    keyEpoch: null,
    ownLeaf: null,
    transforms: { send: 0, receive: 0 },
    frames: {},
    send: { encrypted: 0, droppedNoKey: 0, failed: 0 },
    receive: {
      decrypted: 0,
      decryptFailed: 0,
      droppedNoKey: 0,
      wrongSender: 0,
      droppedUnverified: 0,
      droppedUnmapped: 0,
      droppedSwitching: 0,
      failures: {},
      aheadSince: null,
      aheadLast: null,
    },
    senders: {},
    receivers: {},
    at: 0,
  };
}
