// The MLS side of a meeting, on the main thread: creating or joining the
// room's group through the server (the delivery service), committing
// membership changes without N-way races, knocks, encrypted chat, and the
// roster / security code the UI shows. Media keys go to the Worker through
// `handlers.keys`. See docs/security.md for the design.

import init, { MlsMember } from '../e2ee-wasm/conclave_e2ee_wasm.js';
import type { ClientMessage, E2eeStart } from '../protocol.gen';
import { fromBase64, fromHex, toBase64 } from './bytes';
import { createSecretInUrl, secretFromUrl } from './secret';

let wasmLoad: Promise<void> | null = null;

/** Loads the E2EE wasm module on the main thread (once per page). */
export function loadE2ee(): Promise<void> {
  wasmLoad ??= init().then(() => undefined);
  wasmLoad.catch(() => {
    wasmLoad = null; // allow a retry on the next attempt
  });
  return wasmLoad;
}

export interface RosterEntry {
  leafIndex: number;
  displayName: string;
  /** Hex Ed25519 signature key of this member's session. */
  signatureKey: string;
}

export type E2eeState = 'securing' | 'knocking' | 'joined' | 'failed';

/** Someone without the invite secret asking to join (one per signature key). */
export interface Knock {
  signatureKey: string;
  name: string;
  /** The server's participant id of the knocker, if known. */
  participantId: number | null;
  knockIds: number[];
}

export interface EpochKey {
  ownLeaf: number;
  epoch: number;
  baseKey: Uint8Array;
}

type MlsEvent =
  | { type: 'joined'; epoch: number; roster: RosterEntry[]; securityCode: string; sframeBaseKey: string }
  | {
      type: 'epochChanged';
      epoch: number;
      roster: RosterEntry[];
      securityCode: string;
      sframeBaseKey: string;
      added: RosterEntry[];
      removed: RosterEntry[];
      admittedWithoutSecret: RosterEntry[];
      committer: number;
    }
  | { type: 'removed' }
  | { type: 'chat'; sender: RosterEntry; text: string }
  | { type: 'control'; sender: RosterEntry; payload: string }
  | { type: 'joinVerified'; joiner: RosterEntry }
  | { type: 'knock'; knockId: number; joiner: RosterEntry }
  | { type: 'removeProposed'; leafIndex: number; byServer: boolean }
  | { type: 'commitDiscarded' };

export interface GroupHandlers {
  send(msg: ClientMessage): void;
  /** State, epoch, roster, security code or knocks changed. */
  changed(): void;
  /** A new epoch key for the media Worker; null: drop all keys. */
  keys(key: EpochKey | null): void;
  /** Something worth a short message ("Alice admitted Bob"). */
  notice(text: string): void;
}

/**
 * A commit that is neither echoed nor rejected within this time is given up
 * and redone. The server always answers one or the other over a reliable
 * WebSocket, so this only matters for a server too busy to answer soon; too
 * short a limit then drops commits the server later accepts (the native
 * agent saw that under load with 5 s), leaving this member an epoch behind.
 */
const COMMIT_TIMEOUT_MS = 20_000;
/** Committers after the first wait this long per rank before trying. */
const COMMIT_STAGGER_MS = 400;
/** Undecryptable media of the next epoch for this long means we missed a commit. */
const MEDIA_AHEAD_REJOIN_MS = 5_000;
/** A join request without a Welcome is sent again after this long. */
const JOIN_RESEND_MS = 10_000;

export const REFUSED_WARNING = "A change to the meeting's membership was refused because nobody authorized it";

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class GroupSession {
  state: E2eeState = 'securing';
  epoch: number | null = null;
  securityCode: string | null = null;
  ownLeaf: number | null = null;
  roster: RosterEntry[] = [];
  readonly knocks = new Map<string, Knock>();
  /**
   * Set when a membership change was refused as unauthorized: the warning
   * stays, and we never rejoin by ourselves (rejoining would accept the
   * change). If the others applied it, we fall behind: state `failed`.
   */
  refused = false;

  private member: MlsMember | null = null;
  private secret: Uint8Array | null;
  private inGroup = false;
  private joinRequest: string | null = null;
  /** When we first asked to join (for "still waiting" hints); null when not waiting. */
  private waitingSince: number | null = null;
  private resendTimer: number | undefined;
  private commitTimer: number | undefined;
  private commitWatchdog: number | undefined;
  private pendingCommit = false;
  private urgentCommit = false;
  /** After a commit the server found invalid, wait before the next try. */
  private commitBackoffUntil = 0;
  private removeProposed = new Set<number>();
  private chatQueue: string[] = [];
  private ownSent: string[] = [];
  private disposed = false;
  private readonly roomId: Uint8Array;

  constructor(
    roomName: string,
    private readonly displayName: string,
    private readonly handlers: GroupHandlers,
  ) {
    this.roomId = new TextEncoder().encode(roomName);
    this.secret = secretFromUrl();
  }

  /** Whether this page holds the invite secret (the link had `#s=…`). */
  get hasSecret(): boolean {
    return this.secret !== null;
  }

  get joined(): boolean {
    return this.inGroup;
  }

  /** Asked to join more than one resend interval ago and still outside the group. */
  get waitingLong(): boolean {
    return !this.inGroup && this.waitingSince !== null && Date.now() - this.waitingSince >= JOIN_RESEND_MS;
  }

  /** The `welcome`'s instructions: create the group or ask to join it. */
  start(e2ee: E2eeStart): void {
    if (e2ee.create) this.create(e2ee);
    else this.requestJoin();
  }

  /** Creates the room's group (first participant, or the group emptied while we waited). */
  create(e2ee: E2eeStart): void {
    if (this.disposed) return;
    this.reset();
    if (!this.secret) this.secret = createSecretInUrl();
    const member = new MlsMember(this.displayName, this.roomId, this.secret);
    this.member = member;
    try {
      const events = JSON.parse(member.createGroup(fromBase64(e2ee.external_sender), Date.now())) as MlsEvent[];
      this.handleEvents(events, null);
      this.handlers.send({ type: 'group_created', group_info: toBase64(member.groupInfo()) });
    } catch (err) {
      console.error('conclave: could not create the encrypted group:', errorText(err));
      this.state = 'failed';
      this.handlers.changed();
    }
  }

  /** A server `mls` message: join request, commit, proposal or our Welcome. */
  onMls(from: number | null, data: string): void {
    const member = this.member;
    if (!member || this.disposed) return;
    let bytes: Uint8Array;
    try {
      bytes = fromBase64(data);
    } catch {
      return;
    }
    let events: MlsEvent[];
    try {
      events = JSON.parse(member.processIncoming(bytes, Date.now())) as MlsEvent[];
    } catch (err) {
      this.onMlsError(errorText(err));
      return;
    }
    this.handleEvents(events, from);
    this.afterProcessing();
  }

  /**
   * The media Worker keeps seeing frames of the epoch after ours that it
   * cannot decrypt: everyone else moved on and we missed the commit (the
   * server withheld or lost it). Rejoin, as for an epoch mismatch.
   */
  onMediaAhead(aheadSince: number, aheadLast: number): void {
    const now = Date.now();
    if (!this.inGroup || this.pendingCommit || this.state === 'failed') return;
    if (now - aheadSince < MEDIA_AHEAD_REJOIN_MS || now - aheadLast > 1_000) return;
    console.warn('conclave: media is a key generation ahead of us');
    this.fellBehind();
  }

  /** The group moved on without us: rejoin, unless we refused what moved it. */
  private fellBehind(): void {
    if (this.refused) {
      if (this.state !== 'failed') {
        this.state = 'failed';
        this.handlers.changed();
      }
      return;
    }
    console.warn('conclave: missed a membership change; rejoining the encrypted group');
    this.rejoin();
  }

  /** The server did not take our commit (another one won the epoch, or it was malformed). */
  onCommitRejected(reason: string): void {
    if (!this.pendingCommit) return;
    try {
      this.member?.discardPendingCommit();
    } catch {
      // already discarded when the winning commit arrived
    }
    this.commitSettled();
    if (reason !== 'epoch_moved') {
      console.warn('conclave: commit rejected by the server:', reason);
      this.commitBackoffUntil = Date.now() + 2_000;
    }
    this.afterProcessing();
  }

  /** Encrypts and sends a chat message (queued while a commit is in flight). */
  sendChat(text: string): boolean {
    if (!this.inGroup || !this.member || this.state === 'failed') return false;
    this.chatQueue.push(text);
    this.flushChat();
    return true;
  }

  /**
   * A server `chat`: decrypts it (or matches our own echo, which MLS cannot
   * decrypt). Null when it cannot be read.
   */
  receiveChat(from: number, data: string, ownId: number | null): { name: string; text: string } | null {
    if (from === ownId) {
      const text = this.ownSent.shift();
      return text === undefined ? null : { name: this.ownName(), text };
    }
    const member = this.member;
    if (!member || !this.inGroup) return null;
    let events: MlsEvent[];
    try {
      events = JSON.parse(member.processIncoming(fromBase64(data), Date.now())) as MlsEvent[];
    } catch (err) {
      this.onMlsError(errorText(err));
      return null;
    }
    let out: { name: string; text: string } | null = null;
    for (const ev of events) {
      if (ev.type === 'chat') out = { name: ev.sender.displayName, text: ev.text };
    }
    this.handleEvents(
      events.filter((e) => e.type !== 'chat'),
      from,
    );
    this.afterProcessing();
    return out;
  }

  /** Lets a knocking person in: queue their Add and commit right away. */
  admit(signatureKey: string): void {
    const knock = this.knocks.get(signatureKey);
    const member = this.member;
    if (!knock || !member) return;
    this.knocks.delete(signatureKey);
    const [latest, ...older] = [...knock.knockIds].reverse();
    for (const id of older) {
      try {
        member.reject(id);
      } catch {
        // already gone
      }
    }
    try {
      if (latest !== undefined) member.admit(latest);
    } catch (err) {
      console.warn('conclave: admit failed:', errorText(err));
      this.handlers.notice(`${knock.name} could not be admitted. They can ask again.`);
    }
    this.urgentCommit = true;
    this.handlers.changed();
    this.commitNow();
  }

  /** Refuses a knocking person: the server tells them and disconnects them. */
  deny(signatureKey: string): void {
    const knock = this.knocks.get(signatureKey);
    if (!knock) return;
    this.knocks.delete(signatureKey);
    for (const id of knock.knockIds) {
      try {
        this.member?.reject(id);
      } catch {
        // already gone
      }
    }
    if (knock.participantId !== null) this.handlers.send({ type: 'deny_knock', id: knock.participantId });
    this.handlers.changed();
  }

  /** The server says this participant left: forget their knock. */
  participantLeft(id: number): void {
    for (const [key, knock] of this.knocks) {
      if (knock.participantId === id) {
        this.knocks.delete(key);
        this.handlers.changed();
      }
    }
  }

  dispose(): void {
    this.disposed = true;
    this.clearTimers();
    this.member?.free();
    this.member = null;
  }

  // ---- internals --------------------------------------------------------

  private ownName(): string {
    return this.roster.find((r) => r.leafIndex === this.ownLeaf)?.displayName ?? this.displayName;
  }

  private clearTimers(): void {
    window.clearInterval(this.resendTimer);
    window.clearTimeout(this.commitTimer);
    window.clearTimeout(this.commitWatchdog);
    this.resendTimer = this.commitTimer = this.commitWatchdog = undefined;
  }

  /** Forget the group (a new one is created or joined from scratch). */
  private reset(): void {
    this.clearTimers();
    this.refused = false;
    this.member?.free();
    this.member = null;
    this.inGroup = false;
    this.pendingCommit = false;
    this.urgentCommit = false;
    this.removeProposed.clear();
    this.knocks.clear();
    this.epoch = this.securityCode = this.ownLeaf = null;
    this.roster = [];
    this.handlers.keys(null);
  }

  private requestJoin(): void {
    if (this.disposed) return;
    this.reset();
    const member = new MlsMember(this.displayName, this.roomId, this.secret);
    this.member = member;
    this.sendJoinRequest(toBase64(member.joinRequest()));
  }

  /** Our group state is broken (missed commit, removed): start over with a new leaf. */
  private rejoin(): void {
    const member = this.member;
    if (!member || this.disposed) return;
    this.clearTimers();
    this.inGroup = false;
    this.pendingCommit = false;
    this.removeProposed.clear();
    this.knocks.clear();
    this.handlers.keys(null);
    let request: Uint8Array;
    try {
      request = member.rejoinRequest();
    } catch (err) {
      console.error('conclave: could not make a new join request:', errorText(err));
      this.state = 'failed';
      this.handlers.changed();
      return;
    }
    this.sendJoinRequest(toBase64(request));
  }

  private sendJoinRequest(data: string): void {
    this.joinRequest = data;
    this.waitingSince ??= Date.now();
    this.state = this.secret ? 'securing' : 'knocking';
    this.handlers.send({ type: 'join_request', data });
    // No Welcome yet: send the same request again (members ignore duplicates).
    this.resendTimer = window.setInterval(() => {
      if (!this.inGroup && this.joinRequest) {
        this.handlers.send({ type: 'join_request', data: this.joinRequest });
        this.handlers.changed();
      }
    }, JOIN_RESEND_MS);
    this.handlers.changed();
  }

  private onMlsError(message: string): void {
    // Before we are in the group, handshakes and chat for it are not ours to read.
    if (!this.inGroup) return;
    const mismatch = /epoch mismatch: we are at (\d+), message is for (\d+)/.exec(message);
    if (mismatch) {
      if (Number(mismatch[2]) > Number(mismatch[1])) this.fellBehind();
      return;
    }
    if (/refused/i.test(message)) {
      console.warn('conclave: refused an MLS message:', message);
      this.refused = true;
      this.handlers.changed();
      return;
    }
    console.warn('conclave: ignored an MLS message:', message);
  }

  private handleEvents(events: MlsEvent[], from: number | null): void {
    let changed = false;
    for (const ev of events) {
      switch (ev.type) {
        case 'joined':
          this.inGroup = true;
          this.waitingSince = null;
          window.clearInterval(this.resendTimer);
          this.resendTimer = undefined;
          this.joinRequest = null;
          this.state = 'joined';
          this.applyEpoch(ev.epoch, ev.roster, ev.securityCode, ev.sframeBaseKey);
          changed = true;
          break;
        case 'epochChanged': {
          this.commitSettled();
          this.removeProposed.clear();
          this.applyEpoch(ev.epoch, ev.roster, ev.securityCode, ev.sframeBaseKey);
          const committer = ev.roster.find((r) => r.leafIndex === ev.committer);
          for (const a of ev.admittedWithoutSecret) {
            const who = ev.committer === this.ownLeaf ? 'You' : committer?.displayName ?? 'A member';
            this.handlers.notice(`${who} admitted ${a.displayName}`);
          }
          for (const [key] of this.knocks) {
            if (ev.roster.some((r) => r.signatureKey === key)) this.knocks.delete(key);
          }
          changed = true;
          break;
        }
        case 'removed':
          this.inGroup = false;
          this.handlers.keys(null);
          changed = true;
          if (!this.disposed && !this.refused) {
            console.warn('conclave: removed from the encrypted group; asking to rejoin');
            this.rejoin();
          }
          break;
        case 'knock': {
          const key = ev.joiner.signatureKey;
          const existing = this.knocks.get(key);
          if (existing) {
            existing.knockIds.push(ev.knockId);
            if (from !== null) existing.participantId = from;
          } else {
            this.knocks.set(key, { signatureKey: key, name: ev.joiner.displayName, participantId: from, knockIds: [ev.knockId] });
            this.handlers.notice(`${ev.joiner.displayName} wants to join`);
          }
          changed = true;
          break;
        }
        case 'removeProposed':
          this.removeProposed.add(ev.leafIndex);
          break;
        case 'commitDiscarded':
          this.commitSettled();
          break;
        case 'joinVerified':
        case 'chat':
        case 'control':
          break;
      }
    }
    if (changed) this.handlers.changed();
  }

  private applyEpoch(epoch: number, roster: RosterEntry[], code: string, baseKeyHex: string): void {
    this.epoch = epoch;
    this.roster = [...roster].sort((a, b) => a.leafIndex - b.leafIndex);
    this.securityCode = code;
    const member = this.member;
    if (!member) return;
    try {
      this.ownLeaf = member.ownLeaf();
      this.handlers.keys({ ownLeaf: this.ownLeaf, epoch, baseKey: fromHex(baseKeyHex) });
    } catch (err) {
      console.error('conclave: could not read our leaf:', errorText(err));
    }
  }

  private commitSettled(): void {
    this.pendingCommit = false;
    window.clearTimeout(this.commitWatchdog);
    this.commitWatchdog = undefined;
  }

  private afterProcessing(): void {
    this.flushChat();
    this.scheduleCommit();
  }

  /**
   * Members commit queued changes in rank order (own leaf among the roster's
   * leaves not being removed): rank 0 at once, rank r after 400 ms × r, so
   * usually exactly one commit per change reaches the server.
   */
  private scheduleCommit(): void {
    const member = this.member;
    if (!member || !this.inGroup || this.refused || this.pendingCommit || !member.hasPending()) return;
    if (this.commitTimer !== undefined) return;
    const leaves = this.roster
      .map((r) => r.leafIndex)
      .filter((l) => !this.removeProposed.has(l))
      .sort((a, b) => a - b);
    const index = this.ownLeaf === null ? -1 : leaves.indexOf(this.ownLeaf);
    const rank = index < 0 ? leaves.length : index;
    const ranked = this.urgentCommit || rank === 0 ? 0 : COMMIT_STAGGER_MS * rank + Math.random() * 100;
    const delay = Math.max(ranked, this.commitBackoffUntil - Date.now());
    this.commitTimer = window.setTimeout(() => {
      this.commitTimer = undefined;
      this.commitNow();
    }, delay);
  }

  private commitNow(): void {
    const member = this.member;
    if (!member || !this.inGroup || this.refused || this.pendingCommit || !member.hasPending()) return;
    let commit: Uint8Array | undefined;
    try {
      commit = member.commitPending();
    } catch (err) {
      console.warn('conclave: could not commit:', errorText(err));
      return;
    }
    if (!commit) return;
    const welcome = member.takeWelcome();
    this.urgentCommit = false;
    this.pendingCommit = true;
    this.handlers.send({ type: 'commit', commit: toBase64(commit), welcome: welcome ? toBase64(welcome) : null });
    this.commitWatchdog = window.setTimeout(() => {
      if (!this.pendingCommit) return;
      try {
        member.discardPendingCommit();
      } catch {
        // nothing pending any more
      }
      this.commitSettled();
      this.afterProcessing();
    }, COMMIT_TIMEOUT_MS);
  }

  private flushChat(): void {
    const member = this.member;
    while (this.chatQueue.length > 0 && member && this.inGroup && !this.pendingCommit) {
      const text = this.chatQueue[0] ?? '';
      let data: Uint8Array;
      try {
        data = member.encryptChat(text);
      } catch (err) {
        const message = errorText(err);
        if (/pending/i.test(message)) return; // retried after the commit settles
        this.chatQueue.shift();
        console.warn('conclave: could not encrypt a chat message:', message);
        this.handlers.notice('A message could not be encrypted and was not sent.');
        continue;
      }
      this.chatQueue.shift();
      this.ownSent.push(text);
      this.handlers.send({ type: 'chat', data: toBase64(data) });
    }
  }
}
