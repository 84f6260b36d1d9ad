// The page's glue to the E2EE group session. The protocol itself — create or
// join, commit ranking, group proofs, knocks, chat queueing, rejoins — runs
// in the E2EE core (Rust `conclave_e2ee::Session`, here as wasm
// `MlsSession`), the same code the native agent runs. This file only moves
// bytes between it and the WebSocket, the media Worker and the UI, and keeps
// its one timer. See docs/security.md for the design.

import init, { MlsMember, MlsSession } from '../e2ee-wasm/conclave_e2ee_wasm.js';
import type { ClientMessage, E2eeStart } from '../protocol.gen';
import { chatOrder, type ChatOrder } from '../chat-order';
import { fromBase64, fromHex } from './bytes';
import { putSecretInUrl, secretFromUrl } from './secret';

let wasmLoad: Promise<void> | null = null;

/** Loads the E2EE wasm module on the main thread (once per page). */
export function loadE2ee(): Promise<void> {
  wasmLoad ??= init().then(() => undefined);
  wasmLoad.catch(() => {
    wasmLoad = null; // allow a retry on the next attempt
  });
  return wasmLoad;
}

const yieldToPage = (): Promise<void> => new Promise((resolve) => window.setTimeout(resolve, 0));

/**
 * Runs one throwaway join through the wasm module — a KeyPackage and join
 * request, a commit with its Welcome, the Welcome processed, a chat opened,
 * and a session's join request — so that the real join (during pre-join
 * this runs while the user types a name) finds that code compiled and warm
 * instead of paying for it between the server's offer and the first frame.
 * Two members of a group of their own, under a random secret and a room id
 * no real room has; nothing is kept, sent or shown. Each step is its own
 * task, so the page stays responsive, and none starts once `stop()` says
 * so (Join was pressed: the real join needs the thread now).
 */
export async function warmUpMls(stop: () => boolean = () => false): Promise<void> {
  await loadE2ee();
  if (stop()) return;
  const room = new TextEncoder().encode('conclave wasm warm-up (never a room)');
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const creator = new MlsMember('warm-up', room, secret);
  const joiner = new MlsMember('warm-up', room, secret);
  try {
    creator.createGroup(undefined, Date.now());
    const request = joiner.joinRequest();
    await yieldToPage();
    if (stop()) return;
    creator.processIncoming(request, Date.now());
    creator.commitPending();
    const welcome = creator.takeWelcome();
    creator.confirmCommit(Date.now());
    await yieldToPage();
    if (stop()) return;
    if (welcome) joiner.processIncoming(welcome, Date.now());
    joiner.processIncoming(creator.encryptChat('warm-up'), Date.now());
    joiner.sframeBaseKey();
    joiner.securityCode();
    joiner.roster();
  } finally {
    creator.free();
    joiner.free();
  }
  await yieldToPage();
  if (stop()) return;
  const session = new MlsSession('warm-up', room, secret);
  try {
    session.start(false, new Uint8Array(0), Date.now());
    session.drain();
    session.snapshot();
  } finally {
    session.free();
  }
}

export interface RosterEntry {
  leafIndex: number;
  displayName: string;
  /** Hex Ed25519 signature key of this member's session. */
  signatureKey: string;
}

/**
 * `securing`: asking to join with the invite key; `verifying`: welcomed into
 * a group that has not yet proved it knows the invite key (nothing is sent);
 * `knocking`: waiting to be admitted; `joined`: in the verified group.
 */
export type E2eeState = 'securing' | 'verifying' | 'knocking' | 'joined' | 'failed';

/** Someone without the invite secret asking to join (one per signature key). */
export interface Knock {
  signatureKey: string;
  name: string;
  /** Short fingerprint of their key, to compare with them out of band. */
  fingerprint: string;
  /** Their name equals or resembles a member's (someone may impersonate them). */
  lookalike: boolean;
  /** The server's participant id of the knocker, if known. */
  participantId: number | null;
}

/** A chat message the session opened (or our own echo). */
export interface ReceivedChat {
  name: string;
  text: string;
  /** The sender's time from inside the encryption (0: none we can show). */
  sentAt: number;
  /** Its place in its sender session's sequence; null for our own echo. */
  order: ChatOrder | null;
}

/** The wasm `onChat` JSON (see crates/e2ee-wasm). */
interface OpenedChat {
  name: string;
  text: string;
  /** Sender's leaf. */
  leaf: number | null;
  /** Sender's signature key (hex) in the message's epoch; null for our echo or if unknown. */
  key: string | null;
  sentAt: number;
  /** Sender's counter in its session; null for our echo. */
  counter: number | null;
}

export interface EpochKey {
  ownLeaf: number;
  epoch: number;
  baseKey: Uint8Array;
}

interface Snapshot {
  state: 'idle' | 'joining' | 'knocking' | 'verifying' | 'member' | 'failed' | 'removed';
  epoch: number | null;
  securityCode: string | null;
  ownLeaf: number | null;
  roster: RosterEntry[];
  knocks: Knock[];
  refused: string | null;
  hasSecret: boolean;
  waitingSince: number | null;
}

type SessionEvent =
  | { type: 'changed' }
  | { type: 'keys'; key: { epoch: number; ownLeaf: number; baseKey: string } | null }
  | { type: 'securityCode'; epoch: number; code: string; members: number }
  | { type: 'inviteSecretCreated'; secret: string }
  | { type: 'knock'; knock: Knock }
  | { type: 'admitted'; by: string | null; name: string }
  | { type: 'membersAdded' }
  | { type: 'resecuring'; reason: string }
  | { type: 'refused'; reason: string }
  | { type: 'memberRemoved'; by: string | null; name: string }
  | { type: 'removedFromMeeting'; by: string }
  | { type: 'info'; text: string }
  | { type: 'warning'; text: string };

export interface GroupHandlers {
  send(msg: ClientMessage): void;
  /** State, epoch, roster, security code or knocks changed. */
  changed(): void;
  /** A new epoch key for the media Worker; null: drop all keys. */
  keys(key: EpochKey | null): void;
  /** Something worth a short message ("Alice admitted Bob"). */
  notice(text: string): void;
  /** A member removed us from the meeting: leave, and do not come back by ourselves. */
  removed(by: string): void;
}

/** A join request unanswered this long gets the "someone has to let you in" hint. */
const WAITING_LONG_MS = 10_000;

export const REFUSED_WARNING = "A change to the meeting's membership was refused because nobody authorized it";

const STATE: Record<Snapshot['state'], E2eeState> = {
  idle: 'securing',
  joining: 'securing',
  verifying: 'verifying',
  knocking: 'knocking',
  member: 'joined',
  failed: 'failed',
  removed: 'failed',
};

export class GroupSession {
  state: E2eeState = 'securing';
  epoch: number | null = null;
  securityCode: string | null = null;
  ownLeaf: number | null = null;
  roster: RosterEntry[] = [];
  readonly knocks = new Map<string, Knock>();
  /** A membership change we refused as unauthorized (while it stands). */
  refused = false;

  private session: MlsSession | null;
  private secretHeld: boolean;
  private waitingSince: number | null = null;
  private timer: number | undefined;
  private disposed = false;

  constructor(
    roomName: string,
    displayName: string,
    private readonly handlers: GroupHandlers,
  ) {
    const secret = secretFromUrl();
    this.secretHeld = secret !== null;
    try {
      this.session = new MlsSession(displayName, new TextEncoder().encode(roomName), secret ?? undefined);
    } catch (err) {
      // The wasm module is not loaded: the Room ends the call as
      // unsupported when its own load fails; nothing here may throw.
      console.error('conclave: no MLS session', err);
      this.session = null;
      this.state = 'failed';
    }
  }

  /** Whether this page holds the invite secret (the link had `#s=…`, or the group shared its key). */
  get hasSecret(): boolean {
    return this.secretHeld;
  }

  /** In the verified group. */
  get joined(): boolean {
    return this.state === 'joined';
  }

  /** Asked to join more than a resend interval ago and still outside the group. */
  get waitingLong(): boolean {
    return !this.joined && this.waitingSince !== null && Date.now() - this.waitingSince >= WAITING_LONG_MS;
  }

  /** Our participant id, from `welcome` (to recognise our own commits coming back). */
  setMe(id: number): void {
    this.session?.setMe(id);
  }

  /** The `welcome`'s or `create_group`'s instructions: create the group or ask to join. */
  start(e2ee: E2eeStart): void {
    this.run((s) => s.start(e2ee.create, fromBase64(e2ee.external_sender), Date.now()));
  }

  /** A server `mls` message: join request, commit, proposal or our Welcome. */
  onMls(from: number | null, data: string): void {
    const bytes = decode(data);
    if (bytes) this.run((s) => s.onMls(from ?? undefined, bytes, Date.now()));
  }

  /** The media Worker keeps seeing next-epoch frames it cannot decrypt. */
  onMediaAhead(aheadSince: number, aheadLast: number): void {
    this.run((s) => s.onMediaAhead(aheadSince, aheadLast, Date.now()));
  }

  /** The server did not take our commit. */
  onCommitRejected(reason: string): void {
    this.run((s) => s.onCommitRejected(reason, Date.now()));
  }

  /** Encrypts and sends a chat message (queued while a commit is in flight). */
  sendChat(text: string): boolean {
    let ok = false;
    this.run((s) => {
      ok = s.sendChat(text, Date.now());
    });
    return ok;
  }

  /**
   * A server `chat`: decrypts it (or matches our own echo). Null when there
   * is nothing to show. `sentAt` and `order` (sender session and counter)
   * come from inside the encryption; `order` is null for our own echo.
   */
  receiveChat(from: number, data: string, ownId: number | null): ReceivedChat | null {
    const own = from === ownId;
    const bytes = own ? new Uint8Array(0) : decode(data);
    if (!bytes) return null;
    let shown: string | undefined;
    this.run((s) => {
      shown = s.onChat(bytes, own, Date.now());
    });
    if (shown === undefined) return null;
    const m = JSON.parse(shown) as OpenedChat;
    return { name: m.name, text: m.text, sentAt: m.sentAt, order: chatOrder(m.leaf, m.key, m.counter) };
  }

  /** Lets a knocking person in: their Add is committed right away. */
  admit(signatureKey: string): void {
    this.run((s) => {
      if (!s.admit(signatureKey, Date.now())) {
        const name = this.knocks.get(signatureKey)?.name ?? 'They';
        this.handlers.notice(`${name} could not be admitted. They can ask again.`);
      }
    });
  }

  /**
   * Removes a member from the meeting (after the user confirmed): a notice
   * to the group, then the commit. False if they are not in our group.
   */
  removeMember(signatureKey: string): boolean {
    let ok = false;
    this.run((s) => {
      ok = s.removeMember(signatureKey, Date.now());
    });
    return ok;
  }

  /** Refuses a knocking person: the server tells them and disconnects them. */
  deny(signatureKey: string): void {
    this.run((s) => s.deny(signatureKey));
  }

  /** The server says this participant left: forget their knock. */
  participantLeft(id: number): void {
    this.run((s) => s.participantLeft(id));
  }

  dispose(): void {
    this.disposed = true;
    window.clearTimeout(this.timer);
    this.session?.free();
    this.session = null;
  }

  // ---- internals --------------------------------------------------------

  /** Calls into the session, then sends, applies and shows what it produced. */
  private run(call: (s: MlsSession) => void): void {
    const s = this.session;
    if (!s || this.disposed) return;
    try {
      call(s);
    } catch (err) {
      console.warn('conclave: E2EE session error:', err instanceof Error ? err.message : String(err));
    }
    const { out, events } = JSON.parse(s.drain()) as { out: ClientMessage[]; events: SessionEvent[] };
    for (const msg of out) this.handlers.send(msg);
    let changed = false;
    for (const ev of events) changed = this.apply(ev) || changed;
    this.refresh(s);
    if (changed) this.handlers.changed();
    this.schedule(s);
  }

  private apply(ev: SessionEvent): boolean {
    switch (ev.type) {
      case 'changed':
        return true;
      case 'keys':
        this.handlers.keys(ev.key ? { ownLeaf: ev.key.ownLeaf, epoch: ev.key.epoch, baseKey: fromHex(ev.key.baseKey) } : null);
        return false;
      case 'inviteSecretCreated':
        putSecretInUrl(fromHex(ev.secret));
        this.secretHeld = true;
        return true;
      case 'knock':
        this.handlers.notice(`${ev.knock.name} wants to join${ev.knock.lookalike ? ' (same name as someone in the meeting: check who it is)' : ''}`);
        return true;
      case 'admitted':
        this.handlers.notice(`${ev.by ?? 'You'} admitted ${ev.name}`);
        return false;
      case 'resecuring':
        console.warn('conclave: re-securing the call:', ev.reason);
        this.handlers.notice('The call is being secured again. Once it is back, compare the security code again.');
        return true;
      case 'refused':
        console.warn('conclave: refused a membership change:', ev.reason);
        return true;
      case 'memberRemoved':
        this.handlers.notice(`${ev.by ?? 'You'} removed ${ev.name} from the meeting`);
        return true;
      case 'removedFromMeeting':
        this.handlers.removed(ev.by);
        return true;
      case 'warning':
        console.warn('conclave:', ev.text);
        return false;
      case 'info':
        console.info('conclave:', ev.text);
        return false;
      case 'securityCode':
      case 'membersAdded':
        return false;
    }
  }

  /** Copies the session's state into the fields the UI reads. */
  private refresh(s: MlsSession): void {
    const snap = JSON.parse(s.snapshot()) as Snapshot;
    this.state = STATE[snap.state];
    this.epoch = snap.epoch;
    this.securityCode = snap.securityCode;
    this.ownLeaf = snap.ownLeaf;
    this.roster = snap.roster;
    this.refused = snap.refused !== null;
    this.secretHeld ||= snap.hasSecret;
    // The session's clock is Date.now(), so its timestamps are comparable.
    this.waitingSince = snap.waitingSince;
    this.knocks.clear();
    for (const k of snap.knocks) this.knocks.set(k.signatureKey, k);
  }

  /** One timer: the session's next deadline. */
  private schedule(s: MlsSession): void {
    window.clearTimeout(this.timer);
    this.timer = undefined;
    const at = s.deadline();
    if (at === undefined || this.disposed) return;
    this.timer = window.setTimeout(() => {
      this.timer = undefined;
      this.run((x) => x.poll(Date.now()));
    }, Math.max(0, at - Date.now()));
  }
}

function decode(data: string): Uint8Array | null {
  try {
    return fromBase64(data);
  } catch {
    return null;
  }
}
