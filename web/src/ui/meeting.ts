// The in-meeting screen: it renders a Room (grid of tiles, screen-share
// stage, panels, connection banner) and turns the user's clicks and
// shortcuts into Room actions.

import { REFUSED_WARNING } from '../e2ee/group';
import { describeProblem, classifyMediaError } from '../media';
import { HiddenVideo } from '../hidden-video';
import type { ErrorCode } from '../protocol.gen';
import { describeQuality, QualitySampler, uplinkWarning, type QualityReport } from '../quality';
import type { Participant, Room, RoomEvent } from '../room';
import { AudioOutput } from './audio';
import { ChatPanel } from './chat';
import { announce, h } from './dom';
import { icon } from './icons';
import { ParticipantsPanel, type PersonRow } from './participants';
import { E2eeStatus, KnockPrompts, SecurityPanel } from './security';
import { SettingsPanel } from './settings';
import { ScreenStage } from './stage';
import { Tile } from './tile';
import { Toolbar, type Panel } from './toolbar';

export interface MeetingCallbacks {
  /** The user pressed Leave. */
  leave(): void;
  /** The user pressed Rejoin after the connection was lost. */
  rejoin(): void;
}

type MediaKind = 'microphone' | 'camera' | 'screen';

export class MeetingView {
  readonly el: HTMLElement;
  private room: Room | null = null;
  private unsubscribe: (() => void) | null = null;
  private tiles = new Map<number, Tile>();
  /** Our own tile while connecting (before `welcome` gives us an id). */
  private preview: Tile | null = null;
  private grid: HTMLElement;
  private stage: ScreenStage;
  private audio: AudioOutput;
  private toolbar: Toolbar;
  private banner: HTMLElement;
  private toast: HTMLElement;
  private chat: ChatPanel;
  private people: ParticipantsPanel;
  private settings: SettingsPanel;
  private security: SecurityPanel;
  private e2eeStatus: E2eeStatus;
  private knocks: KnockPrompts;
  private warning: HTMLElement;
  private side: HTMLElement;
  private panel: Panel = null;
  private unread = 0;
  private busy = false;
  private rejoining = false;
  /** Remote participants currently in the encrypted group (for join/leave announcements). */
  private verifiedIds = new Set<number>();
  private toastTimer: number | undefined;
  /** Connection quality of every tile, from getStats every 2 s (quality.ts). */
  private quality = new QualitySampler();
  /** The local tile's warning last announced to screen readers. */
  private uplinkSaid: string | null = null;
  private keyHandler = (ev: KeyboardEvent): void => this.onKey(ev);
  /** Video nobody looks at is not sent to us (tiles out of view, page hidden). */
  private hiddenVideo = new HiddenVideo((ids) => this.room?.setHiddenVideo(ids));
  private tileObserver: IntersectionObserver | null = null;
  private visibilityHandler = (): void => this.hiddenVideo.setPageHidden(document.visibilityState === 'hidden');

  constructor(
    private readonly roomName: string,
    private readonly callbacks: MeetingCallbacks,
  ) {
    this.grid = h('section', { class: 'grid', 'aria-label': 'Participants', 'data-testid': 'grid' });
    this.stage = new ScreenStage(() => void this.toggleScreen());
    this.audio = new AudioOutput(() => this.showToast('That speaker could not be used.'));
    this.banner = h('div', { class: 'banner', role: 'status', 'data-testid': 'connection-banner' });
    this.banner.hidden = true;
    this.toast = h('div', { class: 'toast', role: 'status', 'aria-live': 'polite', 'data-testid': 'toast' });
    this.toast.hidden = true;

    this.chat = new ChatPanel((text) => this.room?.sendChat(text) ?? false, () => this.openPanel(null));
    this.people = new ParticipantsPanel(
      () => this.openPanel(null),
      (row) => {
        if (!row.signatureKey || !this.room?.removeMember(row.signatureKey)) {
          this.showToast(`${row.name} could not be removed: they are no longer in the encrypted group.`);
        }
      },
    );
    this.settings = new SettingsPanel(
      () => this.room?.media ?? null,
      (kind, deviceId) =>
        void this.run(async () => {
          await this.room?.switchDevice(kind, deviceId);
          this.showToast(kind === 'microphone' ? 'Microphone switched' : 'Camera switched');
        }, kind),
      {
        get: () => this.audio.speaker,
        set: (deviceId) => {
          this.audio.speaker = deviceId;
        },
      },
      () => this.openPanel(null),
    );
    this.security = new SecurityPanel(() => this.openPanel(null));
    this.e2eeStatus = new E2eeStatus();
    this.knocks = new KnockPrompts(
      (key) => this.room?.admit(key),
      (key) => this.room?.deny(key),
    );
    this.warning = h('div', { class: 'e2ee-warning', role: 'alert', 'data-testid': 'e2ee-warning' });
    this.warning.hidden = true;
    this.side = h('div', { class: 'side' });
    this.side.hidden = true;

    this.toolbar = new Toolbar(roomName, {
      toggleMic: () => void this.toggleMic(),
      toggleCamera: () => void this.toggleCamera(),
      toggleScreen: () => void this.toggleScreen(),
      togglePanel: (panel) => this.openPanel(this.panel === panel ? null : panel),
      copyInvite: () => void this.copyInvite(),
      leave: () => this.callbacks.leave(),
    });

    this.el = h(
      'div',
      { class: 'meeting', 'data-testid': 'meeting' },
      h('h1', { class: 'visually-hidden' }, `Meeting ${roomName}`),
      this.banner,
      this.toolbar.securityBtn,
      this.warning,
      this.knocks.el,
      h('div', { class: 'meeting-body' }, h('main', { class: 'stage-area' }, this.e2eeStatus.el, this.stage.el, this.grid), this.side),
      this.toolbar.el,
      this.toast,
      this.audio.unlockButton,
      this.audio.el,
    );
    document.addEventListener('keydown', this.keyHandler);
    document.addEventListener('visibilitychange', this.visibilityHandler);
    this.visibilityHandler();
    if (typeof IntersectionObserver !== 'undefined') {
      this.tileObserver = new IntersectionObserver((entries) => {
        for (const entry of entries) {
          const id = Number((entry.target as HTMLElement).dataset.participantId);
          if (Number.isInteger(id)) this.hiddenVideo.setInView(id, entry.isIntersecting);
        }
      });
    }
    this.updateToolbar();
  }

  /** Shows `room`; called again with a new Room after a rejoin (chat is kept). */
  bind(room: Room, rejoining = false): void {
    this.unsubscribe?.();
    this.room = room;
    this.rejoining = rejoining;
    for (const t of this.tiles.values()) t.destroy();
    this.tiles.clear();
    this.tileObserver?.disconnect();
    this.hiddenVideo.setParticipants([]);
    this.verifiedIds.clear();
    this.audio.clear();
    this.unsubscribe = room.on((ev) => this.onRoomEvent(ev));
    this.uplinkSaid = null;
    this.quality.start(() => room.mediaStats(), (report) => this.showQuality(report));
    this.showPreview(room);
    this.showState();
    this.updateToolbar();
    this.showE2ee();
  }

  /** Until the server welcomes us, show our own camera so the screen isn't empty. */
  private showPreview(room: Room): void {
    this.preview?.destroy();
    const media = room.localMediaState();
    this.preview = new Tile({
      id: 0,
      name: room.displayName,
      media,
      isLocal: true,
      speaking: false,
      tracks: room.media.camera ? { camera: room.media.camera } : {},
      verified: false,
      knocking: false,
      leafIndex: null,
      key: null,
      serverName: room.displayName,
    });
    this.preview.el.dataset.testid = 'tile-preview';
    delete this.preview.el.dataset.participantId;
    this.grid.prepend(this.preview.el);
    this.layout();
  }

  private renderQueued = false;
  private destroyed = false;

  /**
   * Lays the grid out and rebuilds the people list once for every room event
   * of one task (a roster change updates every participant at once; in a big
   * room that was one full rebuild per participant).
   */
  private scheduleRender(): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => {
      this.renderQueued = false;
      if (this.destroyed) return;
      this.layout();
      this.refreshPeople();
    });
  }

  destroy(): void {
    this.destroyed = true;
    this.unsubscribe?.();
    this.quality.stop();
    this.hiddenVideo.dispose();
    this.tileObserver?.disconnect();
    document.removeEventListener('keydown', this.keyHandler);
    document.removeEventListener('visibilitychange', this.visibilityHandler);
    for (const t of this.tiles.values()) t.destroy();
    this.preview?.destroy();
    this.audio.clear();
    this.el.remove();
  }

  /** Shows a lost connection with a Rejoin button, or the automatic retry. */
  showReconnecting(attempt: number | null): void {
    if (attempt === null) {
      this.setBanner('Connection lost.', 'error', 'Rejoin');
    } else {
      // The page keeps trying by itself; after the first quick tries the
      // wait grows, so the person can also try at once.
      this.setBanner(attempt > 1 ? `Reconnecting… (attempt ${attempt})` : 'Reconnecting…', 'warn', attempt > 2 ? 'Retry now' : undefined);
    }
  }

  // ---- room events ------------------------------------------------------

  private onRoomEvent(ev: RoomEvent): void {
    switch (ev.type) {
      case 'state':
        this.showState();
        break;
      case 'welcome':
        this.preview?.destroy();
        this.preview = null;
        this.addTile(ev.me);
        for (const p of ev.others) this.addTile(p);
        this.hiddenVideo.newSession();
        this.updateHiddenVideo();
        this.scheduleRender();
        this.updateToolbar();
        break;
      case 'participant_joined':
        this.addTile(ev.participant);
        this.updateHiddenVideo();
        this.scheduleRender();
        if (ev.participant.verified) {
          this.verifiedIds.add(ev.participant.id);
          announce(`${ev.participant.name} joined`);
        }
        break;
      case 'participant_left': {
        const tile = this.tiles.get(ev.participant.id);
        if (tile) this.tileObserver?.unobserve(tile.el);
        tile?.destroy();
        this.tiles.delete(ev.participant.id);
        this.updateHiddenVideo();
        this.audio.remove(ev.participant.id);
        this.scheduleRender();
        if (this.verifiedIds.delete(ev.participant.id)) announce(`${ev.participant.name} left`);
        break;
      }
      case 'participant_changed':
        // Someone counts as joined once they are in the encrypted group.
        if (!ev.participant.isLocal && ev.participant.verified !== this.verifiedIds.has(ev.participant.id)) {
          if (ev.participant.verified) {
            this.verifiedIds.add(ev.participant.id);
            announce(`${ev.participant.name} joined`);
          } else {
            this.verifiedIds.delete(ev.participant.id);
          }
        }
        this.tiles.get(ev.participant.id)?.update(ev.participant);
        if (!ev.participant.isLocal) this.audio.set(ev.participant.id, ev.participant.tracks.microphone ?? null);
        this.updateHiddenVideo();
        this.scheduleRender();
        if (ev.participant.isLocal) this.updateToolbar();
        break;
      case 'chat': {
        const placed = this.chat.add(ev.entry);
        if (!ev.entry.isLocal) {
          if (this.panel !== 'chat') {
            this.unread += 1;
            this.updateUnread();
          }
          const text = ev.entry.text.length > 200 ? `${ev.entry.text.slice(0, 200)}…` : ev.entry.text;
          // With the chat open its log (role="log") reads the new item,
          // "arrived late" label included; announcing too would say it twice.
          // A held-back message is new to the reader, but not the newest:
          // say so, and that it is shown before the sender's later ones.
          if (this.panel !== 'chat') {
            announce(
              placed === 'late'
                ? `${ev.entry.name} says (arrived late, shown before their later messages): ${text}`
                : `${ev.entry.name} says: ${text}`,
            );
          }
        }
        break;
      }
      case 'server_error':
        this.showToast(serverErrorText(ev.code, ev.message));
        break;
      case 'e2ee':
        this.showE2ee();
        break;
      case 'notice':
        this.showToast(ev.text, 5000);
        announce(ev.text);
        break;
    }
  }

  /** Securing status, security code, knocks, chat availability, refusal warning. */
  private showE2ee(): void {
    const room = this.room;
    if (!room) return;
    const g = room.group;
    const connected = room.state.kind === 'connected' || room.state.kind === 'media_interrupted';
    this.e2eeStatus.set(room.me ? g.state : 'securing', connected, g.refused, g.waitingLong);
    // While the status bar explains the state, the shield would only repeat it (and cover it).
    this.toolbar.securityBtn.hidden = !this.e2eeStatus.el.hidden;
    this.security.set(g.joined ? g.securityCode : null, g.joined ? g.epoch : null);
    this.knocks.render(g.joined ? [...g.knocks.values()] : []);
    this.chat.setEnabled(g.joined && g.state === 'joined');
    this.toolbar.setSecured(g.joined && g.state === 'joined' && !g.refused);
    if (g.refused && this.warning.hidden) {
      this.warning.hidden = false;
      this.warning.replaceChildren(
        icon('warning'),
        h('span', {}, `${REFUSED_WARNING}. If the others accepted it, you will stop seeing and hearing them. Compare the security code with them before you trust this call again.`),
      );
    } else if (!g.refused) {
      this.warning.hidden = true;
    }
    this.el.dataset.e2ee = g.state;
    this.scheduleRender();
  }

  private showState(): void {
    const state = this.room?.state;
    if (!state) return;
    switch (state.kind) {
      case 'connecting':
        this.setBanner(this.rejoining ? 'Reconnecting…' : 'Connecting…', this.rejoining ? 'warn' : 'info');
        break;
      case 'connected':
        this.rejoining = false;
        this.setBanner(null);
        this.showE2ee();
        break;
      case 'media_interrupted':
        this.setBanner('Reconnecting…', 'warn');
        break;
      default:
        // lost / left / refused are handled by the app (retry or other screens)
        break;
    }
  }

  private setBanner(text: string | null, tone: 'info' | 'warn' | 'error' = 'info', action?: string): void {
    if (text === null) {
      this.banner.hidden = true;
      this.banner.replaceChildren();
      return;
    }
    this.banner.hidden = false;
    this.banner.className = `banner banner-${tone}`;
    this.banner.dataset.state = tone;
    const children: Node[] = [h('span', { 'data-testid': 'connection-text' }, text)];
    if (action) {
      const btn = h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'rejoin' }, action);
      btn.addEventListener('click', () => this.callbacks.rejoin());
      children.push(btn);
    }
    this.banner.replaceChildren(...children);
  }

  /**
   * Each tile's connection quality (nothing for someone not verified: their
   * media is not played). The local tile's warning is also said to screen
   * readers, once per change.
   */
  private showQuality(report: QualityReport): void {
    const room = this.room;
    const me = room?.me;
    if (!room || !me) return;
    for (const [id, tile] of this.tiles) {
      if (id === me.id) continue;
      const v = (room.participants.get(id)?.verified ? report.remote.get(id) : undefined) ?? { level: 'unknown', why: null };
      tile.setQuality(v.level, describeQuality(v, false));
    }
    const warning = uplinkWarning(report.local);
    this.tiles.get(me.id)?.setQuality(report.local.level, describeQuality(report.local, true), warning);
    if (warning !== this.uplinkSaid) {
      if (warning) announce(warning);
      else announce('Others see you in full quality again');
      this.uplinkSaid = warning;
    }
  }

  /** Who is in the meeting, and who presents, for `hidden_video`. */
  private updateHiddenVideo(): void {
    const others = [...(this.room?.participants.values() ?? [])];
    this.hiddenVideo.setParticipants(
      others.map((p) => p.id),
      others.filter((p) => p.media.screen).map((p) => p.id),
    );
  }

  private everyone(): Participant[] {
    const room = this.room;
    if (!room?.me) return [];
    return [room.me, ...room.participants.values()];
  }

  private addTile(p: Participant): void {
    const existing = this.tiles.get(p.id);
    if (existing) {
      existing.update(p);
      return;
    }
    const tile = new Tile(p);
    this.tiles.set(p.id, tile);
    if (p.isLocal) {
      this.grid.prepend(tile.el);
    } else {
      this.grid.appendChild(tile.el);
      this.tileObserver?.observe(tile.el);
      this.audio.set(p.id, p.tracks.microphone ?? null);
    }
  }

  /** Grid columns from the tile count; a screen share takes the stage. */
  private layout(): void {
    this.el.classList.toggle('presenting', this.stage.show(this.everyone()));
    const n = Math.max(1, this.tiles.size + (this.preview ? 1 : 0));
    const cols = n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : n <= 16 ? 4 : 5;
    this.grid.style.setProperty('--cols', String(cols));
    this.grid.style.setProperty('--rows', String(Math.ceil(n / cols)));
    this.grid.dataset.count = String(n);
  }

  /** The participant list is the MLS roster, plus unverified announced participants. */
  private refreshPeople(): void {
    const room = this.room;
    if (!room) return;
    const g = room.group;
    const rows: PersonRow[] = [];
    const remote = [...room.participants.values()];
    if (g.joined) {
      const names = new Map<string, number>();
      for (const r of g.roster) names.set(r.displayName, (names.get(r.displayName) ?? 0) + 1);
      for (const r of g.roster) {
        const isLocal = r.leafIndex === g.ownLeaf;
        const p = isLocal ? room.me : remote.find((x) => x.verified && x.leafIndex === r.leafIndex);
        rows.push({
          name: r.displayName,
          isLocal,
          verified: true,
          knocking: false,
          media: p ? p.media : null,
          participantId: p ? p.id : null,
          leafIndex: r.leafIndex,
          signatureKey: r.signatureKey,
          duplicateName: (names.get(r.displayName) ?? 0) > 1,
        });
      }
    } else if (room.me) {
      const me = room.me;
      rows.push({ name: me.name, isLocal: true, verified: false, knocking: false, media: me.media, participantId: me.id, leafIndex: null, signatureKey: null, duplicateName: false });
    }
    for (const p of remote) {
      if (p.verified) continue;
      rows.push({ name: p.serverName, isLocal: false, verified: false, knocking: p.knocking, media: p.media, participantId: p.id, leafIndex: null, signatureKey: p.key, duplicateName: false });
    }
    this.people.render(rows, g.joined ? g.securityCode : null);
    this.toolbar.setPeopleCount(rows.filter((r) => r.verified || r.isLocal).length);
  }

  private updateToolbar(): void {
    this.toolbar.setMedia(this.room?.localMediaState() ?? { microphone: false, camera: false, screen: false });
  }

  private updateUnread(): void {
    document.title = this.unread ? `(${this.unread}) ${this.roomName} · Conclave` : `${this.roomName} · Conclave`;
    this.toolbar.setUnread(this.unread);
  }

  private openPanel(panel: Panel): void {
    const previous = this.panel;
    this.panel = panel;
    const panels = { chat: this.chat.el, people: this.people.el, settings: this.settings.el, security: this.security.el };
    const panelEl = panel ? panels[panel] : null;
    this.side.replaceChildren(...(panelEl ? [panelEl] : []));
    this.side.hidden = panel === null;
    this.el.classList.toggle('panel-open', panel !== null);
    this.toolbar.setPanel(panel);
    if (panel === 'chat') {
      this.unread = 0;
      this.updateUnread();
      this.chat.focusInput();
    } else if (panel === 'people') {
      this.refreshPeople();
    } else if (panel === 'settings') {
      void this.settings.refresh();
    } else if (previous) {
      this.toolbar.focusPanelButton(previous);
    }
  }

  // ---- actions ----------------------------------------------------------

  /** Runs one media action at a time; failures become a readable toast. */
  private async run(action: () => Promise<void>, kind: MediaKind): Promise<void> {
    if (this.busy || !this.room) return;
    this.busy = true;
    try {
      await action();
    } catch (err) {
      const problem = classifyMediaError(err);
      // Cancelling the screen picker is not an error worth a message.
      if (!(kind === 'screen' && problem === 'denied')) this.showToast(describeProblem(kind, problem));
    } finally {
      this.busy = false;
      this.updateToolbar();
    }
  }

  private toggle(kind: MediaKind): Promise<void> {
    return this.run(async () => {
      const room = this.room;
      if (!room) return;
      const on = !room.localMediaState()[kind];
      if (kind === 'microphone') await room.setMicrophone(on);
      else if (kind === 'camera') await room.setCamera(on);
      else await room.setScreenShare(on);
      const messages: Record<MediaKind, [string, string]> = {
        microphone: ['Microphone on', 'Microphone muted'],
        camera: ['Camera on', 'Camera off'],
        screen: ['You are presenting', 'You stopped presenting'],
      };
      announce(messages[kind][on ? 0 : 1]);
    }, kind);
  }

  private toggleMic(): Promise<void> {
    return this.toggle('microphone');
  }

  private toggleCamera(): Promise<void> {
    return this.toggle('camera');
  }

  private toggleScreen(): Promise<void> {
    return this.toggle('screen');
  }

  private async copyInvite(): Promise<void> {
    const url = location.href;
    let ok = false;
    try {
      await navigator.clipboard.writeText(url);
      ok = true;
    } catch {
      // Older browsers / no clipboard permission: the selection-copy fallback.
      const area = h('textarea', { class: 'offscreen', readonly: true });
      area.value = url;
      document.body.appendChild(area);
      area.select();
      try {
        ok = document.execCommand('copy');
      } catch {
        ok = false;
      }
      area.remove();
    }
    const keyless = this.room ? !this.room.group.hasSecret : false;
    if (ok) {
      this.toolbar.showCopied();
      this.showToast(
        keyless
          ? 'Copied. You joined without the invite key, so people using this link will have to be let in.'
          : 'Copied — invite link is on your clipboard',
        keyless ? 6000 : 3000,
      );
    } else {
      this.showToast(`Copy this link to invite others: ${url}`, 8000);
    }
  }

  private showToast(text: string, ms = 3000): void {
    this.toast.textContent = text;
    this.toast.hidden = false;
    window.clearTimeout(this.toastTimer);
    this.toastTimer = window.setTimeout(() => {
      this.toast.hidden = true;
    }, ms);
  }

  private onKey(ev: KeyboardEvent): void {
    const mod = ev.ctrlKey || ev.metaKey;
    if (!mod) {
      if (ev.key === 'Escape' && this.panel) {
        ev.preventDefault();
        this.openPanel(null);
      }
      return;
    }
    const key = ev.key.toLowerCase();
    if (!ev.altKey && !ev.shiftKey && key === 'd') {
      ev.preventDefault();
      void this.toggleMic();
    } else if (!ev.altKey && !ev.shiftKey && key === 'e') {
      ev.preventDefault();
      void this.toggleCamera();
    } else if (ev.altKey && (key === 'c' || ev.code === 'KeyC')) {
      ev.preventDefault();
      this.openPanel(this.panel === 'chat' ? null : 'chat');
    } else if (ev.altKey && (key === 'p' || ev.code === 'KeyP')) {
      ev.preventDefault();
      this.openPanel(this.panel === 'people' ? null : 'people');
    }
  }
}

/** A sentence for an `error` message from the server. */
export function serverErrorText(code: ErrorCode, message: string): string {
  switch (code) {
    case 'invalid_room':
      return `That room name can't be used: ${message}`;
    case 'invalid_name':
      return `That name can't be used: ${message}`;
    case 'room_full':
      // The server says how many it allows ("it already has 2 participants, …").
      return `This meeting is full${message ? `: ${message}` : ''}. Try again when someone leaves, or ask the host for another room.`;
    case 'too_large':
      return 'That message is too long to send.';
    case 'too_many_connections':
      return `Too many connections from your network: ${message}. Close other Conclave tabs or windows, or try again in a moment.`;
    case 'rate_limited':
      return 'You are sending too fast — wait a moment and try again.';
    case 'already_joined':
      return 'You are already in this meeting in this window.';
    case 'media_failed':
      return 'The media connection was lost.';
    case 'bad_sdp':
      return 'The connection could not be set up with this browser.';
    default:
      return message ? `The server reported a problem: ${message}` : 'The server reported a problem.';
  }
}
