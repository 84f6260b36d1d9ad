// The media Worker: one SFrame context (RFC 9605 with MLS-derived keys) for
// every sender and receiver of this page's peer connection. Frames reach it
// through WebRTC Encoded Transforms (RTCRtpScriptTransform, or transferred
// encoded streams on older Chromium). Outgoing frames are dropped until a key
// is installed, so nothing unencrypted is ever sent; incoming frames that do
// not decrypt are dropped and counted. Keys and frame contents are never logged.

import init, { SframeCtx } from '../e2ee-wasm/conclave_e2ee_wasm.js';
import { emptyStats, type FromWorker, type MediaKind, type SenderStats, type Side, type ToWorker, type TransformOptions, type WorkerStats } from './messages';
import { judge, leafOf, newBindingState, rebind, type BindingState } from './receivers';

/** The bits of DedicatedWorkerGlobalScope used here (the DOM lib is in scope, not the worker lib). */
interface WorkerScope {
  postMessage(message: FromWorker): void;
  addEventListener(type: 'message', listener: (ev: MessageEvent<ToWorker>) => void): void;
  addEventListener(type: 'rtctransform', listener: (ev: Event & { transformer: ScriptTransformer }) => void): void;
}

interface ScriptTransformer {
  readonly readable: ReadableStream<EncodedFrame>;
  readonly writable: WritableStream<EncodedFrame>;
  readonly options: unknown;
}

type EncodedFrame = RTCEncodedAudioFrame | RTCEncodedVideoFrame;

const scope = globalThis as unknown as WorkerScope;

/** SFrame codec ids of the wasm binding. The server negotiates Opus and VP8 only. */
const CODEC_OPUS = 0;
const CODEC_VP8 = 1;

let ctx: SframeCtx | null = null;
let ownLeaf: number | null = null;
let keyEpoch: number | null = null;
let wasmReady = false;

const stats: WorkerStats = emptyStats();

function codecFor(kind: MediaKind): number {
  return kind === 'audio' ? CODEC_OPUS : CODEC_VP8;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The KID of a protected frame (RFC 9605 §4.3 header after the codec's clear
 * prefix), or null if the header is malformed. KID = leaf << 4 | epoch & 15.
 */
function frameKid(data: Uint8Array, codec: number): number | null {
  let prefix = 0;
  if (codec === CODEC_VP8) {
    const tag = data[0];
    if (tag === undefined) return null;
    // P bit (bit 0) clear: key frame, whose first 10 bytes stay in the clear.
    prefix = (tag & 1) === 0 ? 10 : 1;
  }
  const config = data[prefix];
  if (config === undefined) return null;
  const k = (config >> 4) & 7;
  if ((config & 0x80) === 0) return k;
  const len = k + 1;
  if (prefix + 1 + len > data.length) return null;
  let kid = 0;
  for (let i = 0; i < len; i++) kid = kid * 256 + (data[prefix + 1 + i] ?? 0);
  return kid;
}

function encrypt(frame: EncodedFrame, codec: number, out: TransformStreamDefaultController<EncodedFrame>): void {
  if (!ctx || keyEpoch === null || ownLeaf === null) {
    stats.send.droppedNoKey++;
    return;
  }
  try {
    // `encrypt` returns a new exactly-sized Uint8Array: its buffer becomes the
    // frame's data (the one allocation per frame the API requires).
    const sealed = ctx.encrypt(codec, new Uint8Array(frame.data));
    frame.data = sealed.buffer as ArrayBuffer;
    stats.send.encrypted++;
    out.enqueue(frame);
  } catch {
    stats.send.failed++;
  }
}

/**
 * One receiver's frames that arrived under the next epoch before this
 * member applied the commit that starts it (senders switch as soon as they
 * apply it; members apply it milliseconds apart). They wait here, in order,
 * for the key instead of being dropped: a dropped video frame breaks the
 * decoder's reference chain until the next key frame.
 */
interface Receiver {
  codec: number;
  /** Its m-line (undefined: none, so it can never be bound). */
  mid: string | undefined;
  out: TransformStreamDefaultController<EncodedFrame> | null;
  held: Incoming[];
  heldSince: number;
  /**
   * Whose frames it accepts (`binding.leaf`): the verified member its m-line
   * carries now (the page binds it, and rebinds it when the server moves
   * the m-line to someone else). Without this the server could show one
   * member's video under another's name. This is the receiver's only
   * per-sender state: SFrame replay windows are per sender KID (in the
   * wasm context), wherever that sender's frames arrive.
   */
  binding: BindingState;
  /** Frames decrypted under the current binding. */
  decrypted: number;
}

/** How long and how many frames a receiver holds for a key that is on its way. */
const HOLD_MS = 1000;
const HOLD_FRAMES = 120;
const receivers = new Set<Receiver>();
/** Receivers by m-line, for binding; and bindings that arrived before their receiver. */
const byMid = new Map<string, Receiver>();
const bindings = new Map<string, { leaf: number | null | undefined; seq: number }>();
/** No key has been installed yet in this session (cleared keys do not count). */
let awaitingFirstKey = true;

/** Whether `kid`'s epoch is one or two after the newest installed key (so its key cannot be here yet). */
function isAhead(kid: number | null): boolean {
  if (kid === null || keyEpoch === null) return false;
  const ahead = (kid % 16 - (keyEpoch % 16) + 16) % 16;
  return ahead === 1 || ahead === 2;
}

/** A frame as it arrived, with its KID read once. */
interface Incoming {
  frame: EncodedFrame;
  data: Uint8Array;
  kid: number | null;
}

function hold(r: Receiver, f: Incoming, now: number): void {
  if (r.held.length === 0) r.heldSince = now;
  r.held.push(f);
}

function receive(r: Receiver, frame: EncodedFrame): void {
  const now = Date.now();
  const data = new Uint8Array(frame.data);
  const f: Incoming = { frame, data, kid: frameKid(data, r.codec) };
  if (r.held.length > 0) {
    if (now - r.heldSince <= HOLD_MS && r.held.length < HOLD_FRAMES) {
      r.held.push(f);
      return;
    }
    // The key or binding did not come: give up on what was held, then go
    // on as usual.
    if (r.binding.leaf === undefined && ctx) stats.receive.droppedUnverified += r.held.length;
    else stats.receive.decryptFailed += r.held.length;
    r.held = [];
  }
  if (r.binding.leaf === null) {
    refuse(r, f, now);
    return;
  }
  if (!ctx || keyEpoch === null || r.binding.leaf === undefined) {
    // A joiner's media often arrives just before its Welcome is processed,
    // and a new receiver's before the page binds it: keep the first key
    // frame for the key or binding instead of waiting for another.
    if (f.kid !== null && (awaitingFirstKey || r.binding.leaf === undefined)) hold(r, f, now);
    else stats.receive.droppedNoKey++;
    return;
  }
  if (isAhead(f.kid)) {
    hold(r, f, now);
    noteAhead(now);
    return;
  }
  if (r.out) decrypt(r, f);
}

/** A key was installed: decrypt what each receiver held, in order. */
function releaseHeld(): void {
  for (const r of receivers) release(r);
}

/** Decrypts (or refuses) what `r` held, in order, if nothing it holds still waits. */
function release(r: Receiver): void {
  if (r.held.length === 0 || !r.out || r.binding.leaf === undefined || !ctx) return;
  const held = r.held;
  r.held = [];
  for (const f of held) decrypt(r, f);
}

function noteAhead(now: number): void {
  stats.receive.aheadSince ??= now;
  stats.receive.aheadLast = now;
}

function decrypt(r: Receiver, f: Incoming): void {
  const out = r.out;
  const codec = r.codec;
  if (!out) return;
  if (!ctx || keyEpoch === null) {
    stats.receive.droppedNoKey++;
    return;
  }
  const now = Date.now();
  // Not the member this receiver shows: the KID is clear, but SFrame keys
  // are per sender leaf, so a frame that claims the bound leaf only
  // decrypts if that member (or the group) sealed it — never the server.
  if (!refuse(r, f, now)) return;
  if (f.data.length === 0) return; // nothing to decrypt (the decoder would drop it too)
  try {
    const opened = ctx.decrypt(codec, f.data, now);
    f.frame.data = opened.buffer as ArrayBuffer;
    stats.receive.decrypted++;
    r.decrypted++;
    if (f.kid !== null) noteSender(f.kid, now);
    if (!r.binding.flowing && r.mid !== undefined) {
      // The page shows this m-line's video under the bound member's name
      // only from now on: before, its track's last picture may be the
      // previous participant's.
      r.binding.flowing = true;
      scope.postMessage({ type: 'flowing', mid: r.mid, seq: r.binding.seq });
    }
    out.enqueue(f.frame);
  } catch (err) {
    stats.receive.decryptFailed++;
    const reason = errorText(err);
    stats.receive.failures[reason] = (stats.receive.failures[reason] ?? 0) + 1;
    if (f.kid !== null && f.kid % 16 === (keyEpoch + 1) % 16) noteAhead(Date.now());
  }
}

/**
 * Whether `f` is the bound member's frame; if not, it is counted (by why)
 * and must be dropped.
 */
function refuse(r: Receiver, f: Incoming, now: number): boolean {
  const verdict = judge(r.binding, f.kid === null ? null : Math.floor(f.kid / 16), now);
  switch (verdict) {
    case 'accept':
      return true;
    case 'wrong-sender':
      stats.receive.wrongSender++;
      break;
    case 'switching':
      stats.receive.droppedSwitching++;
      break;
    case 'unmapped':
      stats.receive.droppedUnmapped++;
      break;
  }
  return false;
}

function noteSender(kid: number, now: number): void {
  const leaf = String(Math.floor(kid / 16));
  const epoch = kid % 16;
  const entry: SenderStats | undefined = stats.senders[leaf];
  if (!entry) {
    stats.senders[leaf] = { epoch, since: now, lastAt: now, frames: 1 };
    return;
  }
  if (entry.epoch !== epoch) {
    entry.epoch = epoch;
    entry.since = now;
  }
  entry.lastAt = now;
  entry.frames++;
}

function attach(readable: ReadableStream<EncodedFrame>, writable: WritableStream<EncodedFrame>, side: Side, kind: MediaKind, mid: string | undefined): void {
  const codec = codecFor(kind);
  stats.transforms[side]++;
  const counter = `${side}-${kind}`;
  stats.frames[counter] ??= 0;
  // A receiver without an m-line id can never be bound: it drops everything.
  const bound = mid === undefined ? { leaf: null, seq: 0 } : bindings.get(mid) ?? { leaf: undefined, seq: 0 };
  const receiver: Receiver | null =
    side === 'receive' ? { codec, mid, out: null, held: [], heldSince: 0, binding: newBindingState(bound.leaf, bound.seq), decrypted: 0 } : null;
  if (receiver) {
    receivers.add(receiver);
    if (mid !== undefined) byMid.set(mid, receiver);
  }
  const transform = new TransformStream<EncodedFrame, EncodedFrame>({
    transform: (f, c) => {
      stats.frames[counter] = (stats.frames[counter] ?? 0) + 1;
      if (!receiver) return encrypt(f, codec, c);
      receiver.out = c;
      receive(receiver, f);
    },
  });
  readable
    .pipeThrough(transform)
    .pipeTo(writable)
    .catch(() => undefined) // the sender/receiver went away
    .finally(() => {
      stats.transforms[side]--;
      if (receiver) receivers.delete(receiver);
      if (receiver && mid !== undefined && byMid.get(mid) === receiver) byMid.delete(mid);
    });
}

function isOptions(v: unknown): v is TransformOptions {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (o.side === 'send' || o.side === 'receive') && (o.kind === 'audio' || o.kind === 'video') && (o.mid === undefined || typeof o.mid === 'string');
}

function installKey(leaf: number, epoch: number, baseKey: Uint8Array): void {
  if (!wasmReady) return;
  try {
    if (!ctx) ctx = new SframeCtx(leaf);
    else if (ownLeaf !== leaf) ctx.setOwnLeaf(leaf);
    ownLeaf = leaf;
    ctx.setEpochKey(epoch, baseKey, Date.now());
    keyEpoch = epoch;
    stats.receive.aheadSince = stats.receive.aheadLast = null;
  } catch (err) {
    // An older epoch or a different key for the current one: start over with this key.
    ctx?.free();
    ctx = new SframeCtx(leaf);
    ownLeaf = leaf;
    try {
      ctx.setEpochKey(epoch, baseKey, Date.now());
      keyEpoch = epoch;
    } catch {
      keyEpoch = null;
      scope.postMessage({ type: 'error', message: `could not install the epoch key: ${errorText(err)}` });
    }
  }
  if (keyEpoch !== null) awaitingFirstKey = false;
  releaseHeld();
}

/** The page bound `r` to another member, or to nobody: its m-line moved. */
function bindReceiver(r: Receiver, leaf: number | null | undefined, seq: number): void {
  const now = Date.now();
  const result = rebind(r.binding, leaf, seq, now);
  if (result.flowingNow && r.mid !== undefined) scope.postMessage({ type: 'flowing', mid: r.mid, seq });
  if (!result.changed) return;
  r.decrypted = 0;
  if (result.reclassified > 0) {
    // The new member's first frames came before the page knew of the move.
    stats.receive.wrongSender -= result.reclassified;
    stats.receive.droppedSwitching += result.reclassified;
  }
  if (leaf === null && r.held.length > 0) {
    // Held for a binding that is gone: the m-line carries nobody now.
    stats.receive.droppedSwitching += r.held.length;
    r.held = [];
  }
  // Frames held for this binding are judged against it now (the previous
  // member's, in flight across the move, are dropped); frames of an epoch
  // whose key is still on its way keep waiting for it.
  if (!r.held.some((f) => isAhead(f.kid))) release(r);
}

function clearKeys(): void {
  for (const r of receivers) r.held = [];
  stats.receive.aheadSince = stats.receive.aheadLast = null;
  ctx?.free();
  ctx = null;
  ownLeaf = null;
  keyEpoch = null;
}

function snapshot(): WorkerStats {
  const bound: WorkerStats['receivers'] = {};
  for (const [mid, r] of byMid) {
    const leaf = r.binding.leaf;
    bound[mid] = { leaf: leaf ?? null, waiting: leaf === undefined, decrypted: r.decrypted };
  }
  stats.receivers = bound;
  stats.keyEpoch = keyEpoch;
  stats.ownLeaf = ownLeaf;
  stats.at = Date.now();
  return stats;
}

/** Keys that arrive while the wasm module is still loading. */
let pendingKey: { ownLeaf: number; epoch: number; baseKey: Uint8Array } | null = null;

scope.addEventListener('message', (ev) => {
  const msg = ev.data;
  switch (msg.type) {
    case 'key':
      if (wasmReady) installKey(msg.ownLeaf, msg.epoch, msg.baseKey);
      else pendingKey = { ownLeaf: msg.ownLeaf, epoch: msg.epoch, baseKey: msg.baseKey };
      break;
    case 'clear':
      pendingKey = null;
      clearKeys();
      break;
    case 'streams':
      attach(msg.readable as ReadableStream<EncodedFrame>, msg.writable as WritableStream<EncodedFrame>, msg.side, msg.kind, msg.mid);
      break;
    case 'bind': {
      // 'unverified' from the page: frames wait as for an unbound receiver,
      // never decrypted, so a member the roster is about to add loses no
      // key frame; they are dropped if the wait runs out. 'none': the
      // m-line carries nobody now, frames are dropped.
      const leaf = leafOf(msg.leaf);
      bindings.set(msg.mid, { leaf, seq: msg.seq });
      const r = byMid.get(msg.mid);
      if (r) bindReceiver(r, leaf, msg.seq);
      break;
    }
    case 'stats':
      scope.postMessage({ type: 'stats', id: msg.id, stats: snapshot() });
      break;
  }
});

scope.addEventListener('rtctransform', (ev) => {
  const t = ev.transformer;
  const options = isOptions(t.options) ? t.options : null;
  if (!options) {
    // Unknown transform: never let its frames through.
    void t.readable.cancel();
    return;
  }
  attach(t.readable, t.writable, options.side, options.kind, options.mid);
});

/**
 * Seals and opens a few frames with throwaway contexts under a random key
 * (never a session's, and gone at once), so the first real frames find the
 * SFrame code compiled: this Worker starts during pre-join (prepare.ts).
 */
function warmUp(): void {
  const key = crypto.getRandomValues(new Uint8Array(16));
  let sender: SframeCtx | null = null;
  let receiver: SframeCtx | null = null;
  try {
    sender = SframeCtx.fromBaseKey(key, 0, 0);
    receiver = SframeCtx.fromBaseKey(key, 0, 1);
    // Opus, a VP8 key frame (P bit clear) and a VP8 inter frame.
    for (const [codec, tag] of [[CODEC_OPUS, 0], [CODEC_VP8, 0], [CODEC_VP8, 1]] as const) {
      const frame = new Uint8Array(200);
      frame[0] = tag;
      receiver.decrypt(codec, sender.encrypt(codec, frame), Date.now());
    }
  } catch {
    // only a warm-up
  } finally {
    sender?.free();
    receiver?.free();
  }
}

init()
  .then(() => {
    warmUp();
    wasmReady = true;
    if (pendingKey) installKey(pendingKey.ownLeaf, pendingKey.epoch, pendingKey.baseKey);
    pendingKey = null;
    scope.postMessage({ type: 'ready' });
  })
  .catch((err: unknown) => scope.postMessage({ type: 'error', message: `the encryption module did not load: ${errorText(err)}` }));

setInterval(() => scope.postMessage({ type: 'stats', id: null, stats: snapshot() }), 250);
