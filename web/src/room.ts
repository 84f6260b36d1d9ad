// The meeting as this browser sees it: who is in the room, what each person
// sends, the chat, and the connection. One Room is one signaling session
// (one WebSocket + one RTCPeerConnection); rejoining creates a new Room with
// the same local media.

import { AnswerGate } from './answer-gate';
import type { ChatOrder } from './chat-order';
import { chatSentAt, sendableChatText } from './chat-text';
import { GroupSession, loadE2ee, type RosterEntry } from './e2ee/group';
import { detectTransformApi, MediaCrypto } from './e2ee/media';
import type { WorkerStats } from './e2ee/messages';
import { LocalMedia } from './media';
import { PeerSession, type RemoteTrack } from './peer';
import type {
  ClientMessage,
  ErrorCode,
  MediaState,
  ParticipantInfo,
  ServerMessage,
  TrackSource,
} from './protocol.gen';
import type { Prepared } from './prepare';
import { Signaling, signalingUrl, type SignalingCloseReason } from './signaling';

export interface Participant {
  id: number;
  /** From the MLS roster once verified; until then the name the server claims. */
  name: string;
  media: MediaState;
  isLocal: boolean;
  speaking: boolean;
  /** Empty for a remote participant that is not verified: nothing of theirs is played. */
  tracks: Partial<Record<TrackSource, MediaStreamTrack>>;
  /** In the MLS group under the signature key the server announced for them. */
  verified: boolean;
  /** Asked to join without the invite secret and waits for a member's decision. */
  knocking: boolean;
  /** Their MLS leaf index, once verified. */
  leafIndex: number | null;
  /** Signature key (hex) the server claims for them. */
  key: string | null;
  /** The name given to the server (a claim). */
  serverName: string;
}

export interface ChatEntry {
  /** The server's number for the message (shown in tests only; never trusted). */
  seq: number;
  from: number;
  name: string;
  text: string;
  sentAt: number;
  isLocal: boolean;
  /**
   * Sender session and counter from inside the encryption: where the chat
   * panel puts it among that session's messages (null: arrival place only).
   */
  order: ChatOrder | null;
}

export type RoomState =
  | { kind: 'connecting' }
  | { kind: 'connected' }
  /** Media path interrupted; ICE may still recover on its own. */
  | { kind: 'media_interrupted' }
  /** The session is over and cannot recover; the app may rejoin. */
  | { kind: 'lost'; why: 'signaling' | 'media' | 'negotiation' }
  | { kind: 'unreachable' }
  | { kind: 'refused'; code: ErrorCode; message: string }
  /** A member of the meeting declined our request to join. */
  | { kind: 'denied' }
  /** A member removed us from the meeting (an authenticated MLS removal). */
  | { kind: 'removed'; by: string }
  /** End-to-end encryption cannot run here (no Encoded Transforms, wasm failed). */
  | { kind: 'unsupported'; message: string }
  | { kind: 'left' };

export type RoomEvent =
  | { type: 'state'; state: RoomState }
  | { type: 'welcome'; me: Participant; others: Participant[] }
  | { type: 'participant_joined'; participant: Participant }
  | { type: 'participant_left'; participant: Participant }
  | { type: 'participant_changed'; participant: Participant }
  | { type: 'chat'; entry: ChatEntry }
  /** E2EE state, roster, epoch, security code or knocks changed. */
  | { type: 'e2ee' }
  | { type: 'notice'; text: string }
  | { type: 'server_error'; code: ErrorCode; message: string };

export type RoomListener = (ev: RoomEvent) => void;

/**
 * While the media path is down (network change, outage), the page asks the
 * server for an ICE restart at once and again this often: the new offer
 * makes the browser gather candidates on whatever network it has now.
 */
const ICE_RESTART_EVERY_MS = 5_000;
/** How long media may stay down, restarts included, before the session is given up (the app then rejoins). */
const ICE_RECOVERY_MS = 30_000;
/**
 * After the signaling connection breaks, how long the page keeps trying to
 * resume the session on a new one (the server keeps it 20 s), one try per
 * RESUME_RETRY_MS, before it gives up and rejoins.
 */
const RESUME_FOR_MS = 18_000;
/** Silence after an ICE restart request that means the signaling connection is gone too. */
const SIGNALING_PROBE_MS = 1_500;
const RESUME_RETRY_MS = 1_000;
/** A resume's socket that has not opened by then is given up for the next try. */
const RESUME_OPEN_TIMEOUT_MS = 4_000;
/** Messages kept for the server while no connection carries the session. */
const MAX_WAITING_SENDS = 200;
/** The longest server messages wait for an offer's answer (see `onMessage`). */
const HOLD_FOR_ANSWER_MS = 2_000;

export class Room {
  readonly participants = new Map<number, Participant>();
  me: Participant | null = null;
  state: RoomState = { kind: 'connecting' };

  private listeners = new Set<RoomListener>();
  private signaling: Signaling | null = null;
  private peer: PeerSession | null = null;
  /** What the server says each participant's m-lines carry (shown once verified, video once flowing). */
  private remoteTracks = new Map<number, Partial<Record<TrackSource, RemoteTrack>>>();
  /** Gives the session up if media stays down (ICE_RECOVERY_MS). */
  private iceTimer: number | undefined;
  /** Asks for ICE restarts while media is down (ICE_RESTART_EVERY_MS). */
  private restartTimer: number | undefined;
  /**
   * The browser saw the device's network change (an address came or went:
   * Wi-Fi to mobile data). The old paths may be gone with it: check new
   * candidates now, and the signaling connection (see `probeSignaling`),
   * rather than wait seconds for ICE and TCP to notice by themselves.
   */
  private readonly onNetworkChange = (): void => {
    if (this.ended || this.me === null || this.resumingSince !== null) return;
    console.info('conclave: the network changed; restarting ICE');
    this.requestIceRestart();
    this.probeSignaling();
  };
  private readonly onOnline = (): void => {
    // A network came back: no need to wait for the next scheduled restart.
    if (this.state.kind === 'media_interrupted') this.requestIceRestart();
  };
  private ended = false;
  private url = signalingUrl();
  /** Single use: resumes this session on a new connection (`session`, `resumed`). */
  private resumeToken: string | null = null;
  /** Since when the session is being resumed on a new connection (null: it is not). */
  private resumingSince: number | null = null;
  private resumeTimer: number | undefined;
  private probeTimer: number | undefined;
  /** Since when the media path is down (for the console's account of a recovery). */
  private mediaDownSince: number | null = null;
  /** What the page said meanwhile, sent once the session is resumed. */
  private waitingSends: ClientMessage[] = [];
  /** Server messages wait here while an offer is being answered (answer-gate.ts). */
  private readonly gate = new AnswerGate<ServerMessage>((msg) => {
    if (!this.ended) this.handle(msg);
  }, HOLD_FOR_ANSWER_MS);
  /** MLS: group membership, roster, chat encryption. */
  readonly group: GroupSession;
  /** The media Worker (null if this browser has no Encoded Transforms). */
  crypto: MediaCrypto | null = null;

  constructor(
    readonly roomName: string,
    readonly displayName: string,
    readonly media: LocalMedia,
    /** Made during pre-join (prepare.ts): used by the first `start` only. */
    private prepared: Prepared | null = null,
  ) {
    this.group = new GroupSession(roomName, displayName, {
      send: (msg) => this.send(msg),
      changed: () => this.onGroupChanged(),
      keys: (key) => {
        if (key) this.crypto?.setKey(key.ownLeaf, key.epoch, key.baseKey);
        else this.crypto?.clearKeys();
      },
      notice: (text) => this.emit({ type: 'notice', text }),
      removed: (by) => {
        // Our keys are gone; leave rather than ask back in.
        this.signaling?.send({ type: 'leave' });
        this.end({ kind: 'removed', by });
      },
    });
  }

  /** Media encryption statistics (for tests and diagnostics). */
  stats(): Promise<WorkerStats | null> {
    return this.crypto ? this.crypto.stats() : Promise.resolve(null);
  }

  on(listener: RoomListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Loads the E2EE module, then opens the signaling connection and asks to
   * join. Calls are always end-to-end encrypted: without Encoded Transforms
   * or the wasm module there is no call.
   */
  start(url: string = signalingUrl()): void {
    networkInformation()?.addEventListener('change', this.onNetworkChange);
    const api = detectTransformApi();
    if (!api) {
      this.end({ kind: 'unsupported', message: 'This browser cannot encrypt calls end to end; use a current Chrome, Edge, Firefox or Safari.' });
      return;
    }
    loadE2ee().then(
      () => {
        if (!this.ended) this.connect(url, api);
        else this.dropPrepared();
      },
      (err: unknown) => {
        console.error('conclave: the encryption module did not load', err);
        this.dropPrepared();
        this.end({ kind: 'unsupported', message: 'The end-to-end encryption module could not be loaded. Reload the page to try again.' });
      },
    );
  }

  private dropPrepared(): void {
    const p = this.prepared;
    this.prepared = null;
    p?.socket?.close();
    p?.crypto?.dispose();
    p?.pc?.close();
  }

  private connect(url: string, api: 'script' | 'streams'): void {
    this.url = url;
    const prepared = this.prepared;
    this.prepared = null;
    // `join` first: on a socket opened during pre-join it leaves at once.
    this.signaling = this.openSignaling(url, undefined, prepared?.socket ?? null, 0);
    this.signaling.send({
      type: 'join',
      room: this.roomName,
      name: this.displayName,
      media: this.localMediaState(),
    });

    const preparedCrypto = prepared?.crypto && prepared.crypto.api === api ? prepared.crypto : null;
    if (prepared?.crypto && !preparedCrypto) {
      prepared.crypto.dispose();
      prepared.pc?.close();
    }
    this.crypto = preparedCrypto ?? new MediaCrypto(api, (message) => console.error(`conclave: ${message}`));
    this.crypto.onStats = (s) => {
      if (s.receive.aheadSince !== null && s.receive.aheadLast !== null) this.group.onMediaAhead(s.receive.aheadSince, s.receive.aheadLast);
    };
    // A receiver's first frame from the member it now carries: show its video.
    this.crypto.onFlowing = () => {
      if (!this.ended) this.reverifyAll();
    };
    this.peer = new PeerSession({
      onAnswer: (sdp) => this.send({ type: 'answer', sdp }),
      onRemoteTracks: (tracks) => this.applyRemoteTracks(tracks),
      onConnectionState: (s) => this.onPeerState(s),
      onNegotiationError: (err) => {
        console.error('conclave: negotiation failed', err);
        this.end({ kind: 'lost', why: 'negotiation' });
      },
    }, this.crypto, preparedCrypto ? prepared?.pc ?? null : null); // made for that Worker's transform API
    this.crypto.guardAgainstBypass(this.peer.pc, () => {
      console.error('conclave: video frames bypassed the encryption transform; ending the call');
      this.end({
        kind: 'unsupported',
        message: 'This browser sent video without passing it through end-to-end encryption, so the call was stopped to protect it. Please use another browser.',
      });
    });
    void this.peer.setLocalTrack('microphone', this.watch(this.media.mic));
    void this.peer.setLocalTrack('camera', this.watch(this.media.camera));
    void this.peer.setLocalTrack('screen', this.watchScreen(this.media.screen));
  }

  localMediaState(): MediaState {
    const m = this.media;
    return {
      microphone: !!m.mic && m.mic.readyState === 'live' && m.micEnabled,
      camera: !!m.camera && m.camera.readyState === 'live',
      screen: !!m.screen && m.screen.readyState === 'live',
    };
  }

  // ---- local actions ----------------------------------------------------

  /** Mutes/unmutes; the track stays on its sender, only `enabled` flips. */
  async setMicrophone(on: boolean): Promise<void> {
    if (on && !this.media.mic) {
      this.media.setMicEnabled(true);
      const track = await this.media.startMic();
      await this.peer?.setLocalTrack('microphone', this.watch(track));
    } else {
      this.media.setMicEnabled(on);
    }
    this.localMediaChanged();
  }

  async setCamera(on: boolean): Promise<void> {
    if (on) {
      if (!this.media.camera) {
        const track = await this.media.startCamera();
        await this.peer?.setLocalTrack('camera', this.watch(track));
      }
    } else {
      await this.peer?.setLocalTrack('camera', null);
      this.media.stopCamera();
    }
    this.localMediaChanged();
  }

  async setScreenShare(on: boolean): Promise<void> {
    if (on) {
      if (this.media.screen) return;
      const track = await this.media.startScreen();
      await this.peer?.setLocalTrack('screen', this.watchScreen(track));
    } else {
      await this.peer?.setLocalTrack('screen', null);
      this.media.stopScreen();
    }
    this.localMediaChanged();
  }

  /** Switches the microphone or camera to another device, keeping mute state. */
  async switchDevice(kind: 'microphone' | 'camera', deviceId: string): Promise<void> {
    if (kind === 'microphone') {
      const enabled = this.media.micEnabled;
      const track = await this.media.startMic(deviceId);
      this.media.setMicEnabled(enabled);
      await this.peer?.setLocalTrack('microphone', this.watch(track));
    } else {
      if (this.media.camera) {
        const track = await this.media.startCamera(deviceId);
        await this.peer?.setLocalTrack('camera', this.watch(track));
      } else {
        this.media.chooseCamera(deviceId); // used when the camera is turned on
      }
    }
    this.localMediaChanged();
  }

  /** Whose video this page does not display now (see hidden-video.ts). */
  setHiddenVideo(participants: number[]): void {
    if (this.me) this.send({ type: 'hidden_video', participants });
  }

  /** Encrypts and sends a chat message; false if it cannot be sent (yet). */
  sendChat(text: string): boolean {
    const trimmed = sendableChatText(text);
    if (trimmed === null || !this.signaling?.isOpen) return false;
    return this.group.sendChat(trimmed);
  }

  admit(signatureKey: string): void {
    this.group.admit(signatureKey);
  }

  deny(signatureKey: string): void {
    this.group.deny(signatureKey);
  }

  /** Removes a member of the encrypted group from the meeting. */
  removeMember(signatureKey: string): boolean {
    return this.group.removeMember(signatureKey);
  }

  leave(): void {
    if (this.ended) return;
    this.signaling?.send({ type: 'leave' });
    this.end({ kind: 'left' });
  }

  /** Tears the session down without telling listeners (used before a rejoin). */
  dispose(): void {
    this.ended = true;
    this.dropPrepared();
    this.stopIceRecovery();
    window.clearTimeout(this.resumeTimer);
    window.clearTimeout(this.probeTimer);
    networkInformation()?.removeEventListener('change', this.onNetworkChange);
    this.gate.close();
    this.signaling?.close();
    this.peer?.close();
    this.group.dispose();
    this.crypto?.dispose();
    this.listeners.clear();
  }

  // ---- internals --------------------------------------------------------

  private emit(ev: RoomEvent): void {
    for (const l of [...this.listeners]) l(ev);
  }

  private setState(state: RoomState): void {
    this.state = state;
    this.emit({ type: 'state', state });
  }

  private end(state: RoomState): void {
    if (this.ended) return;
    this.ended = true;
    // Why a session ended, in the console: a rejoin after 'lost' gets a new
    // participant id, and without this line nothing says why it happened.
    if (state.kind !== 'left') console.info(`conclave: session ended: ${state.kind}${'why' in state ? ` (${state.why})` : ''}`);
    this.dropPrepared();
    this.stopIceRecovery();
    window.clearTimeout(this.resumeTimer);
    window.clearTimeout(this.probeTimer);
    networkInformation()?.removeEventListener('change', this.onNetworkChange);
    this.gate.close();
    this.signaling?.close();
    this.peer?.close();
    this.group.dispose();
    this.crypto?.dispose();
    this.setState(state);
  }

  /** The browser's own "Stop sharing" button ends the track: stop presenting. */
  private watchScreen(track: MediaStreamTrack | null): MediaStreamTrack | null {
    track?.addEventListener('ended', () => {
      if (!this.ended && this.media.screen === track) void this.setScreenShare(false);
    });
    return track;
  }

  /** A device that disappears (unplugged, revoked) updates what others see. */
  private watch(track: MediaStreamTrack | null): MediaStreamTrack | null {
    track?.addEventListener('ended', () => {
      if (!this.ended) this.localMediaChanged();
    });
    return track;
  }

  private localMediaChanged(): void {
    const media = this.localMediaState();
    if (this.me) {
      this.me.media = media;
      this.me.tracks = this.localTracks();
      this.emit({ type: 'participant_changed', participant: this.me });
    }
    this.send({ type: 'media_state', media });
  }

  private localTracks(): Participant['tracks'] {
    const tracks: Participant['tracks'] = {};
    if (this.media.camera) tracks.camera = this.media.camera;
    if (this.media.screen) tracks.screen = this.media.screen;
    return tracks;
  }

  private makeParticipant(info: ParticipantInfo, isLocal: boolean): Participant {
    const p: Participant = {
      id: info.id,
      name: info.name,
      media: { ...info.media },
      isLocal,
      speaking: false,
      tracks: isLocal ? this.localTracks() : {},
      verified: false,
      knocking: false,
      leafIndex: null,
      key: info.key?.toLowerCase() ?? null,
      serverName: info.name,
    };
    this.verify(p);
    return p;
  }

  /** The roster entry the server's key for `p` points to (null: not in the group). */
  private rosterEntry(p: Participant): RosterEntry | null {
    if (!this.group.joined) return null;
    if (p.isLocal) return this.group.roster.find((r) => r.leafIndex === this.group.ownLeaf) ?? null;
    if (!p.key) return null;
    // Two participants claiming one key: the server lies about one of them,
    // and we cannot tell which, so neither is shown as that member.
    for (const other of this.participants.values()) {
      if (other !== p && other.key === p.key) return null;
    }
    const own = this.group.roster.find((r) => r.leafIndex === this.group.ownLeaf);
    if (own && own.signatureKey.toLowerCase() === p.key) return null;
    return this.group.roster.find((r) => r.signatureKey.toLowerCase() === p.key) ?? null;
  }

  /**
   * Binds every receiver to the MLS leaf of the participant its m-line
   * carries, so the Worker decrypts on it only that member's frames: the
   * server cannot show one member's media under another's name. A receiver
   * whose m-line carries nobody (a free receive slot) is bound to nobody.
   * Called whenever the m-line map or the roster changes: with receive
   * slots, the server moves m-lines between participants.
   */
  private bindReceivers(): void {
    const crypto = this.crypto;
    const peer = this.peer;
    if (!crypto || !peer) return;
    for (const { mid, participant } of peer.receivers()) {
      if (participant === null) {
        crypto.bindReceiver(mid, 'none');
        continue;
      }
      const p = this.participants.get(participant);
      const entry = p ? this.rosterEntry(p) : null;
      crypto.bindReceiver(mid, entry ? entry.leafIndex : 'unverified');
    }
  }

  /**
   * What of `id`'s tracks to play, for the member at `leaf`: audio as it
   * comes; video only once its receiver passed a frame of that member.
   * With receive slots one track carries several people in turn, and until
   * the new one's first frame it still holds the previous one's picture,
   * which must not appear under the new one's name.
   */
  private playable(id: number, leaf: number): Participant['tracks'] {
    const remote = this.remoteTracks.get(id);
    const out: Participant['tracks'] = {};
    if (!remote) return out;
    for (const source of ['microphone', 'camera', 'screen'] as const) {
      const r = remote[source];
      if (!r) continue;
      if (source === 'microphone' || !this.crypto || this.crypto.isFlowing(r.mid, leaf)) out[source] = r.track;
    }
    return out;
  }

  private reverifyAll(): void {
    for (const p of this.participants.values()) {
      if (this.verify(p)) this.emit({ type: 'participant_changed', participant: p });
    }
  }

  /**
   * Updates `p` from the MLS roster: verified, name, leaf, knocking, and
   * which of their tracks may be played. Returns whether anything changed.
   */
  private verify(p: Participant): boolean {
    const entry = this.rosterEntry(p);
    const verified = entry !== null;
    const name = entry ? entry.displayName : p.serverName;
    const leafIndex = entry ? entry.leafIndex : null;
    const knocking =
      !verified &&
      !p.isLocal &&
      [...this.group.knocks.values()].some((k) => k.participantId === p.id || (p.key !== null && k.signatureKey.toLowerCase() === p.key));
    let tracks = p.tracks;
    if (!p.isLocal) {
      const remote = entry ? this.playable(p.id, entry.leafIndex) : {};
      const same = remote.microphone === p.tracks.microphone && remote.camera === p.tracks.camera && remote.screen === p.tracks.screen;
      if (!same) tracks = { ...remote };
    }
    const changed =
      verified !== p.verified || name !== p.name || leafIndex !== p.leafIndex || knocking !== p.knocking || tracks !== p.tracks;
    Object.assign(p, { verified, name, leafIndex, knocking, tracks });
    return changed;
  }

  private onGroupChanged(): void {
    if (this.ended) return;
    // Bindings first: which video may show depends on them.
    this.bindReceivers();
    const everyone = this.me ? [this.me, ...this.participants.values()] : [...this.participants.values()];
    for (const p of everyone) {
      if (this.verify(p)) this.emit({ type: 'participant_changed', participant: p });
    }
    this.emit({ type: 'e2ee' });
  }

  /** Participants the server announced whose key is not in the MLS roster. */
  unverified(): Participant[] {
    return [...this.participants.values()].filter((p) => !p.verified);
  }

  /**
   * While an offer is being answered, every other server message waits
   * until the answer is sent (answer-gate.ts): the MLS Welcome then no
   * longer holds back the answer.
   */
  private onMessage(msg: ServerMessage): void {
    if (this.ended) return;
    // The session's own bookkeeping, never held back.
    if (msg.type === 'session') {
      this.resumeToken = msg.resume;
      return;
    }
    if (msg.type === 'resumed') {
      this.onResumed(msg.resume);
      return;
    }
    if (msg.type === 'error' && msg.code === 'resume_failed') {
      console.info(`conclave: the session could not be resumed (${msg.message}); rejoining`);
      this.end({ kind: 'lost', why: 'signaling' });
      return;
    }
    if (msg.type === 'offer' || msg.type === 'tracks') this.handle(msg);
    else this.gate.push(msg);
  }

  private handle(msg: ServerMessage): void {
    switch (msg.type) {
      case 'welcome': {
        this.me = this.makeParticipant(msg.you, true);
        this.me.media = this.localMediaState();
        this.participants.clear();
        for (const info of msg.participants) {
          if (info.id !== msg.you.id) this.participants.set(info.id, this.makeParticipant(info, false));
        }
        // The join request first: the MLS exchange it starts is the longest
        // part of a join, and the screen can be drawn while it travels.
        this.group.setMe(msg.you.id);
        this.group.start(msg.e2ee);
        this.setState({ kind: 'connected' });
        this.emit({ type: 'welcome', me: this.me, others: [...this.participants.values()] });
        // The server may have clamped what we announced; tell it the truth.
        const announced = this.localMediaState();
        if (JSON.stringify(announced) !== JSON.stringify(msg.you.media)) {
          this.send({ type: 'media_state', media: announced });
        }
        break;
      }
      case 'offer': {
        const peer = this.peer;
        if (!peer) break;
        this.gate.answeringOffer();
        void peer.handleOffer(msg.sdp, msg.tracks).then(() => this.gate.answered());
        break;
      }
      case 'tracks':
        // Receive slots moved to other participants (or to nobody): after
        // any earlier offer, the peer re-reports its tracks, which rebinds
        // the receivers and updates the tiles.
        this.peer?.handleTracks(msg.tracks);
        break;
      case 'create_group':
        // Ignored by the session while we are in a group.
        this.group.start(msg.e2ee);
        break;
      case 'mls':
        this.group.onMls(msg.from, msg.data);
        break;
      case 'commit_rejected':
        this.group.onCommitRejected(msg.reason);
        break;
      case 'participant_joined': {
        if (this.me && msg.participant.id === this.me.id) break;
        const existing = this.participants.get(msg.participant.id);
        if (existing) {
          existing.serverName = msg.participant.name;
          existing.key = msg.participant.key?.toLowerCase() ?? null;
          existing.media = { ...msg.participant.media };
          this.verify(existing);
          this.emit({ type: 'participant_changed', participant: existing });
        } else {
          const p = this.makeParticipant(msg.participant, false);
          this.participants.set(p.id, p);
          this.emit({ type: 'participant_joined', participant: p });
        }
        // A new claim on a key already claimed unverifies both.
        this.onGroupChanged();
        break;
      }
      case 'participant_left': {
        const p = this.participants.get(msg.id);
        this.remoteTracks.delete(msg.id);
        this.group.participantLeft(msg.id);
        if (p) {
          this.participants.delete(msg.id);
          this.emit({ type: 'participant_left', participant: p });
        }
        break;
      }
      case 'participant_updated': {
        if (this.me && msg.participant.id === this.me.id) break; // our own state is local truth
        const p = this.participants.get(msg.participant.id);
        if (p) {
          p.serverName = msg.participant.name;
          p.key = msg.participant.key?.toLowerCase() ?? null;
          p.media = { ...msg.participant.media };
          this.bindReceivers();
          this.verify(p);
          this.emit({ type: 'participant_changed', participant: p });
        }
        break;
      }
      case 'chat': {
        const opened = this.group.receiveChat(msg.from, msg.data, this.me?.id ?? null);
        if (!opened) break; // not for us (sent before we joined) or unreadable
        this.emit({
          type: 'chat',
          entry: {
            seq: msg.seq,
            from: msg.from,
            name: opened.name,
            text: opened.text,
            // The sender's time from inside the encryption; the server's only if
            // none was given; our own clock if neither is a date we can show.
            sentAt: chatSentAt(opened.sentAt, msg.sent_at, Date.now()),
            isLocal: this.me?.id === msg.from,
            order: opened.order,
          },
        });
        break;
      }
      case 'speaking': {
        const ids = new Set(msg.ids);
        const everyone = this.me ? [this.me, ...this.participants.values()] : [...this.participants.values()];
        for (const p of everyone) {
          const speaking = ids.has(p.id);
          if (p.speaking !== speaking) {
            p.speaking = speaking;
            this.emit({ type: 'participant_changed', participant: p });
          }
        }
        break;
      }
      case 'error':
        if (msg.code === 'knock_denied') {
          this.end({ kind: 'denied' });
        } else if (msg.code === 'bad_mls') {
          console.warn('conclave: the server did not accept an MLS message:', msg.message);
        } else if (msg.code === 'media_failed') {
          // The server dropped our media session; the app rejoins.
          this.end({ kind: 'lost', why: 'media' });
        } else if (this.me === null) {
          // Refused before joining: the server closes the socket next.
          this.end({ kind: 'refused', code: msg.code, message: msg.message });
        } else {
          this.emit({ type: 'server_error', code: msg.code, message: msg.message });
        }
        break;
    }
  }

  private onSignalingClose(reason: SignalingCloseReason): void {
    // Messages that arrived before the close come first (see AnswerGate.flush).
    this.gate.flush();
    if (this.ended) return;
    if (this.resumingSince !== null) {
      this.retryResume();
      return;
    }
    if (reason.kind === 'closed' && this.me !== null && this.resumeToken !== null) {
      this.startResume();
      return;
    }
    if (reason.kind === 'unreachable') this.end({ kind: 'unreachable' });
    else this.end({ kind: 'lost', why: 'signaling' });
  }

  /**
   * The media path broke ('disconnected': no answers to ICE checks for a
   * few seconds; 'failed': none at all): ask for ICE restarts until it is
   * back, for up to ICE_RECOVERY_MS. The call, its keys and its MLS group
   * stay as they are; only if that does not work does the app rejoin.
   */
  private onPeerState(s: RTCPeerConnectionState): void {
    if (this.ended) return;
    if (s === 'connected') {
      if (this.mediaDownSince !== null) console.info(`conclave: media path back after ${Date.now() - this.mediaDownSince} ms`);
      this.mediaDownSince = null;
      this.stopIceRecovery();
      if (this.state.kind === 'media_interrupted' && this.resumingSince === null) this.setState({ kind: 'connected' });
    } else if (s === 'disconnected' || s === 'failed') {
      if (this.state.kind !== 'media_interrupted') this.setState({ kind: 'media_interrupted' });
      if (this.iceTimer === undefined) {
        console.info(`conclave: media path ${s}; asking for an ICE restart`);
        this.mediaDownSince = Date.now();
        this.iceTimer = window.setTimeout(() => this.end({ kind: 'lost', why: 'media' }), ICE_RECOVERY_MS);
        window.addEventListener('online', this.onOnline);
        this.requestIceRestart();
        this.probeSignaling();
        this.restartTimer = window.setInterval(() => this.requestIceRestart(), ICE_RESTART_EVERY_MS);
      } else if (s === 'failed') {
        // Checks gave up on the current candidates: new ones now.
        this.requestIceRestart();
      }
    }
  }

  private requestIceRestart(): void {
    // While the session is being resumed, `resumed` asks for one.
    if (this.resumingSince === null) this.signaling?.send({ type: 'ice_restart' });
  }

  /** Sends now, or once the session is resumed on a new connection. */
  private send(msg: ClientMessage): void {
    if (this.resumingSince === null) {
      this.signaling?.send(msg);
    } else if (this.waitingSends.length < MAX_WAITING_SENDS) {
      this.waitingSends.push(msg);
    }
  }

  /**
   * The signaling connection broke while in the meeting (network change,
   * outage): keep the call — peer connection, keys, MLS group — and
   * resume the session on a new connection. Messages meanwhile wait.
   */
  private startResume(): void {
    console.info('conclave: the signaling connection broke; resuming the session');
    this.resumingSince = Date.now();
    if (this.state.kind === 'connected') this.setState({ kind: 'media_interrupted' });
    this.resume();
  }

  private resume(): void {
    if (this.ended || this.resumeToken === null) return;
    const received = this.signaling?.received ?? 0;
    const old = this.signaling;
    this.signaling = this.openSignaling(this.url, RESUME_OPEN_TIMEOUT_MS, null, received);
    old?.close(); // if it still looked open (see `probeSignaling`)
    this.signaling.send({ type: 'resume', token: this.resumeToken, received });
  }

  /** A signaling connection whose events count only while it is the current one. */
  private openSignaling(url: string, openTimeoutMs: number | undefined, prepared: WebSocket | null, received: number): Signaling {
    const sig: Signaling = new Signaling(url, {
      onMessage: (msg) => {
        if (this.signaling === sig) this.onMessage(msg);
      },
      onClose: (reason) => {
        if (this.signaling === sig) this.onSignalingClose(reason);
      },
    }, openTimeoutMs, prepared, received);
    return sig;
  }

  /**
   * The media path broke and an ICE restart was just asked for, which the
   * server answers with an offer at once. If nothing at all comes back, the
   * signaling connection most likely broke too (a network change takes the
   * TCP connection with it, and nothing may say so for many seconds):
   * resume the session on a new one now.
   */
  private probeSignaling(): void {
    const sig = this.signaling;
    if (!sig || this.resumingSince !== null || this.resumeToken === null) return;
    const asked = Date.now();
    window.clearTimeout(this.probeTimer);
    this.probeTimer = window.setTimeout(() => {
      if (this.ended || this.signaling !== sig || this.resumingSince !== null) return;
      if (sig.heardAt < asked) this.startResume();
    }, SIGNALING_PROBE_MS);
  }

  /** A resume's connection failed: another try soon, or the session is over. */
  private retryResume(): void {
    if (this.resumingSince === null || Date.now() - this.resumingSince > RESUME_FOR_MS) {
      this.end({ kind: 'lost', why: 'signaling' });
      return;
    }
    window.clearTimeout(this.resumeTimer);
    this.resumeTimer = window.setTimeout(() => this.resume(), RESUME_RETRY_MS);
  }

  private onResumed(token: string): void {
    this.resumeToken = token;
    const since = this.resumingSince;
    this.resumingSince = null;
    console.info(`conclave: session resumed after ${since === null ? '?' : Date.now() - since} ms`);
    const waiting = this.waitingSends;
    this.waitingSends = [];
    for (const msg of waiting) this.signaling?.send(msg);
    // The media path most likely broke with it: new candidates now.
    if (this.peer?.pc.connectionState === 'connected') {
      if (this.state.kind === 'media_interrupted') this.setState({ kind: 'connected' });
    } else {
      this.requestIceRestart();
    }
  }

  private stopIceRecovery(): void {
    window.clearTimeout(this.iceTimer);
    window.clearInterval(this.restartTimer);
    this.iceTimer = undefined;
    this.restartTimer = undefined;
    window.removeEventListener('online', this.onOnline);
  }

  /**
   * The m-line map changed (an offer, or a `tracks` message): a track may
   * now be someone else's. Receivers are rebound first, then every tile
   * gets its participant's tracks: one whose track went elsewhere, or to
   * nobody, drops it (and shows its avatar), and the new owner shows it
   * once its first frame came through (see `playable`).
   */
  private applyRemoteTracks(list: RemoteTrack[]): void {
    const next = new Map<number, Partial<Record<TrackSource, RemoteTrack>>>();
    for (const r of list) {
      const entry = next.get(r.participant) ?? {};
      entry[r.source] = r;
      next.set(r.participant, entry);
    }
    this.remoteTracks = next;
    this.bindReceivers();
    this.reverifyAll();
  }

  /**
   * The peer connection's statistics and, by mid, which participant and
   * source each receiving m-line carries now (connection quality,
   * quality.ts); null without a peer connection or once the session ended.
   */
  async mediaStats(): Promise<{ report: RTCStatsReport; receivers: Map<string, { participant: number; source: TrackSource }> } | null> {
    const peer = this.peer;
    if (!peer || this.ended) return null;
    const receivers = new Map<string, { participant: number; source: TrackSource }>();
    for (const [participant, bySource] of this.remoteTracks) {
      for (const r of Object.values(bySource)) if (r) receivers.set(r.mid, { participant, source: r.source });
    }
    return { report: await peer.pc.getStats(), receivers };
  }
}

/** `navigator.connection` (Chromium: fires `change` when the network changes), where there is one. */
function networkInformation(): EventTarget | null {
  const connection = (navigator as Navigator & { connection?: EventTarget }).connection;
  return connection ?? null;
}
