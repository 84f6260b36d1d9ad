// The meeting as this browser sees it: who is in the room, what each person
// sends, the chat, and the connection. One Room is one signaling session
// (one WebSocket + one RTCPeerConnection); rejoining creates a new Room with
// the same local media.

import { LocalMedia } from './media';
import { PeerSession, type RemoteTrack } from './peer';
import type {
  ErrorCode,
  MediaState,
  ParticipantInfo,
  ServerMessage,
  TrackSource,
} from './protocol.gen';
import { MAX_CHAT_CHARS } from './protocol.gen';
import { Signaling, signalingUrl, type SignalingCloseReason } from './signaling';

export interface Participant {
  id: number;
  name: string;
  media: MediaState;
  isLocal: boolean;
  speaking: boolean;
  tracks: Partial<Record<TrackSource, MediaStreamTrack>>;
}

export interface ChatEntry {
  seq: number;
  from: number;
  name: string;
  text: string;
  sentAt: number;
  isLocal: boolean;
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
  | { kind: 'left' };

export type RoomEvent =
  | { type: 'state'; state: RoomState }
  | { type: 'welcome'; me: Participant; others: Participant[] }
  | { type: 'participant_joined'; participant: Participant }
  | { type: 'participant_left'; participant: Participant }
  | { type: 'participant_changed'; participant: Participant }
  | { type: 'chat'; entry: ChatEntry }
  | { type: 'server_error'; code: ErrorCode; message: string };

export type RoomListener = (ev: RoomEvent) => void;

const ICE_RECOVERY_MS = 8_000;

export class Room {
  readonly participants = new Map<number, Participant>();
  me: Participant | null = null;
  state: RoomState = { kind: 'connecting' };

  private listeners = new Set<RoomListener>();
  private signaling: Signaling | null = null;
  private peer: PeerSession | null = null;
  private remoteTracks = new Map<number, Partial<Record<TrackSource, MediaStreamTrack>>>();
  private iceTimer: number | undefined;
  private ended = false;

  constructor(
    readonly roomName: string,
    readonly displayName: string,
    readonly media: LocalMedia,
  ) {}

  on(listener: RoomListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Opens the signaling connection and asks to join. */
  start(url: string = signalingUrl()): void {
    this.peer = new PeerSession({
      onAnswer: (sdp) => this.signaling?.send({ type: 'answer', sdp }),
      onRemoteTracks: (tracks) => this.applyRemoteTracks(tracks),
      onConnectionState: (s) => this.onPeerState(s),
      onNegotiationError: (err) => {
        console.error('conclave: negotiation failed', err);
        this.end({ kind: 'lost', why: 'negotiation' });
      },
    });
    void this.peer.setLocalTrack('microphone', this.watch(this.media.mic));
    void this.peer.setLocalTrack('camera', this.watch(this.media.camera));
    void this.peer.setLocalTrack('screen', this.watchScreen(this.media.screen));

    this.signaling = new Signaling(url, {
      onMessage: (msg) => this.onMessage(msg),
      onClose: (reason) => this.onSignalingClose(reason),
    });
    this.signaling.send({
      type: 'join',
      room: this.roomName,
      name: this.displayName,
      media: this.localMediaState(),
    });
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

  sendChat(text: string): boolean {
    const trimmed = text.trim();
    if (!trimmed || [...trimmed].length > MAX_CHAT_CHARS || !this.signaling?.isOpen) return false;
    this.signaling.send({ type: 'chat', text: trimmed });
    return true;
  }

  leave(): void {
    if (this.ended) return;
    this.signaling?.send({ type: 'leave' });
    this.end({ kind: 'left' });
  }

  /** Tears the session down without telling listeners (used before a rejoin). */
  dispose(): void {
    this.ended = true;
    window.clearTimeout(this.iceTimer);
    this.signaling?.close();
    this.peer?.close();
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
    window.clearTimeout(this.iceTimer);
    this.signaling?.close();
    this.peer?.close();
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
    this.signaling?.send({ type: 'media_state', media });
  }

  private localTracks(): Participant['tracks'] {
    const tracks: Participant['tracks'] = {};
    if (this.media.camera) tracks.camera = this.media.camera;
    if (this.media.screen) tracks.screen = this.media.screen;
    return tracks;
  }

  private makeParticipant(info: ParticipantInfo, isLocal: boolean): Participant {
    return {
      id: info.id,
      name: info.name,
      media: { ...info.media },
      isLocal,
      speaking: false,
      tracks: isLocal ? this.localTracks() : { ...(this.remoteTracks.get(info.id) ?? {}) },
    };
  }

  private onMessage(msg: ServerMessage): void {
    if (this.ended) return;
    switch (msg.type) {
      case 'welcome': {
        this.me = this.makeParticipant(msg.you, true);
        this.me.media = this.localMediaState();
        this.participants.clear();
        for (const info of msg.participants) {
          if (info.id !== msg.you.id) this.participants.set(info.id, this.makeParticipant(info, false));
        }
        this.setState({ kind: 'connected' });
        this.emit({ type: 'welcome', me: this.me, others: [...this.participants.values()] });
        // The server may have clamped what we announced; tell it the truth.
        const announced = this.localMediaState();
        if (JSON.stringify(announced) !== JSON.stringify(msg.you.media)) {
          this.signaling?.send({ type: 'media_state', media: announced });
        }
        break;
      }
      case 'offer':
        this.peer?.handleOffer(msg.sdp, msg.tracks);
        break;
      case 'participant_joined': {
        if (this.me && msg.participant.id === this.me.id) break;
        const existing = this.participants.get(msg.participant.id);
        if (existing) {
          existing.name = msg.participant.name;
          existing.media = { ...msg.participant.media };
          this.emit({ type: 'participant_changed', participant: existing });
        } else {
          const p = this.makeParticipant(msg.participant, false);
          this.participants.set(p.id, p);
          this.emit({ type: 'participant_joined', participant: p });
        }
        break;
      }
      case 'participant_left': {
        const p = this.participants.get(msg.id);
        this.remoteTracks.delete(msg.id);
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
          p.name = msg.participant.name;
          p.media = { ...msg.participant.media };
          this.emit({ type: 'participant_changed', participant: p });
        }
        break;
      }
      case 'chat':
        this.emit({
          type: 'chat',
          entry: {
            seq: msg.seq,
            from: msg.from,
            name: msg.name,
            text: msg.text,
            sentAt: msg.sent_at,
            isLocal: this.me?.id === msg.from,
          },
        });
        break;
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
        if (msg.code === 'media_failed') {
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
    if (this.ended) return;
    if (reason.kind === 'unreachable') this.end({ kind: 'unreachable' });
    else this.end({ kind: 'lost', why: 'signaling' });
  }

  private onPeerState(s: RTCPeerConnectionState): void {
    if (this.ended) return;
    if (s === 'connected') {
      window.clearTimeout(this.iceTimer);
      this.iceTimer = undefined;
      if (this.state.kind === 'media_interrupted') this.setState({ kind: 'connected' });
    } else if (s === 'disconnected') {
      this.setState({ kind: 'media_interrupted' });
      window.clearTimeout(this.iceTimer);
      this.iceTimer = window.setTimeout(() => this.end({ kind: 'lost', why: 'media' }), ICE_RECOVERY_MS);
    } else if (s === 'failed') {
      this.end({ kind: 'lost', why: 'media' });
    }
  }

  private applyRemoteTracks(list: RemoteTrack[]): void {
    const next = new Map<number, Partial<Record<TrackSource, MediaStreamTrack>>>();
    for (const r of list) {
      const entry = next.get(r.participant) ?? {};
      entry[r.source] = r.track;
      next.set(r.participant, entry);
    }
    this.remoteTracks = next;
    for (const p of this.participants.values()) {
      const tracks = next.get(p.id) ?? {};
      const same =
        tracks.microphone === p.tracks.microphone &&
        tracks.camera === p.tracks.camera &&
        tracks.screen === p.tracks.screen;
      if (!same) {
        p.tracks = { ...tracks };
        this.emit({ type: 'participant_changed', participant: p });
      }
    }
  }
}
