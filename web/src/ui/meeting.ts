// The in-meeting screen: tile grid, screen-share stage, toolbar, chat and
// participants panels, connection banner. It renders a Room and turns the
// user's clicks and shortcuts into Room actions.

import { describeProblem, classifyMediaError } from '../media';
import type { Participant, Room, RoomEvent } from '../room';
import { announce, h, modKey } from './dom';
import { icon, type IconName } from './icons';
import { ChatPanel } from './chat';
import { ParticipantsPanel } from './participants';
import { SettingsPanel } from './settings';
import { Tile, attachTrack } from './tile';

export interface MeetingCallbacks {
  /** The user pressed Leave. */
  leave(): void;
  /** The user pressed Rejoin after the connection was lost. */
  rejoin(): void;
}

type Panel = 'chat' | 'people' | 'settings' | null;

interface ToggleButton {
  el: HTMLButtonElement;
  set(on: boolean): void;
}

function toggleButton(opts: {
  testid: string;
  iconName: IconName;
  labelOn: string;
  labelOff: string;
  shortcut?: string;
  slashWhenOff?: boolean;
  onClick: () => void;
}): ToggleButton {
  const el = h('button', { type: 'button', class: 'tool-btn', 'data-testid': opts.testid });
  el.addEventListener('click', opts.onClick);
  return {
    el,
    set(on: boolean) {
      const label = on ? opts.labelOn : opts.labelOff;
      el.replaceChildren(icon(opts.iconName, opts.slashWhenOff !== false && !on));
      el.setAttribute('aria-label', label);
      el.setAttribute('aria-pressed', String(on));
      el.title = opts.shortcut ? `${label} (${opts.shortcut})` : label;
      el.classList.toggle('off', !on && opts.slashWhenOff !== false);
      el.classList.toggle('active', on && opts.slashWhenOff === false);
    },
  };
}

export class MeetingView {
  readonly el: HTMLElement;
  private room: Room | null = null;
  private unsubscribe: (() => void) | null = null;
  private tiles = new Map<number, Tile>();
  private audios = new Map<number, HTMLAudioElement>();
  private grid: HTMLElement;
  private stage: HTMLElement;
  private stageVideo: HTMLVideoElement;
  private stageLabel: HTMLElement;
  private stageStop: HTMLButtonElement;
  private banner: HTMLElement;
  private audioSinks: HTMLElement;
  private audioUnlock: HTMLButtonElement;
  private toast: HTMLElement;
  private chat: ChatPanel;
  private people: ParticipantsPanel;
  private settings: SettingsPanel;
  private settingsBtn: HTMLButtonElement;
  private side: HTMLElement;
  private panel: Panel = null;
  private unread = 0;
  private unreadBadge: HTMLElement;
  private peopleCount: HTMLElement;
  private micBtn: ToggleButton;
  private camBtn: ToggleButton;
  private screenBtn: ToggleButton;
  private chatBtn: HTMLButtonElement;
  private peopleBtn: HTMLButtonElement;
  private inviteBtn: HTMLButtonElement;
  private busy = false;
  private rejoining = false;
  /** Audio output chosen in settings ('' = system default). */
  private sinkId = '';
  private toastTimer: number | undefined;
  private keyHandler = (ev: KeyboardEvent): void => this.onKey(ev);

  constructor(
    private readonly roomName: string,
    private readonly callbacks: MeetingCallbacks,
  ) {
    this.grid = h('section', { class: 'grid', 'aria-label': 'Participants', 'data-testid': 'grid' });
    this.stageVideo = h('video', { class: 'stage-video', autoplay: true, playsinline: true, 'data-testid': 'screen-video' });
    this.stageVideo.muted = true;
    this.stageLabel = h('p', { class: 'stage-label', 'data-testid': 'screen-label' });
    this.stageStop = h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'stop-share' }, 'Stop presenting');
    this.stageStop.addEventListener('click', () => void this.toggleScreen());
    this.stage = h(
      'section',
      { class: 'stage', 'aria-label': 'Screen share', 'data-testid': 'screen-stage' },
      this.stageVideo,
      h('div', { class: 'stage-bar' }, this.stageLabel, this.stageStop),
    );
    this.stage.hidden = true;

    this.banner = h('div', { class: 'banner', role: 'status', 'data-testid': 'connection-banner' });
    this.banner.hidden = true;
    this.toast = h('div', { class: 'toast', role: 'status', 'aria-live': 'polite', 'data-testid': 'toast' });
    this.toast.hidden = true;

    this.audioSinks = h('div', { class: 'audio-sinks', 'aria-hidden': 'true' });
    this.audioUnlock = h('button', { type: 'button', class: 'btn btn-primary audio-unlock', 'data-testid': 'enable-audio' }, 'Click to enable sound');
    this.audioUnlock.hidden = true;
    this.audioUnlock.addEventListener('click', () => {
      for (const a of this.audios.values()) a.play().catch(() => undefined);
      this.audioUnlock.hidden = true;
    });

    this.chat = new ChatPanel((text) => this.room?.sendChat(text) ?? false, () => this.openPanel(null));
    this.people = new ParticipantsPanel(() => this.openPanel(null));
    this.settings = new SettingsPanel(
      () => this.room?.media ?? null,
      (kind, deviceId) => void this.run(async () => {
        await this.room?.switchDevice(kind, deviceId);
        this.showToast(kind === 'microphone' ? 'Microphone switched' : 'Camera switched');
      }, kind),
      {
        get: () => this.sinkId,
        set: (deviceId) => {
          this.sinkId = deviceId;
          for (const a of this.audios.values()) this.applySink(a);
        },
      },
      () => this.openPanel(null),
    );
    this.side = h('div', { class: 'side' });
    this.side.hidden = true;

    this.micBtn = toggleButton({
      testid: 'toggle-mic', iconName: 'mic', labelOn: 'Mute microphone', labelOff: 'Unmute microphone',
      shortcut: `${modKey}+D`, onClick: () => void this.toggleMic(),
    });
    this.camBtn = toggleButton({
      testid: 'toggle-camera', iconName: 'camera', labelOn: 'Turn camera off', labelOff: 'Turn camera on',
      shortcut: `${modKey}+E`, onClick: () => void this.toggleCamera(),
    });
    this.screenBtn = toggleButton({
      testid: 'toggle-screen', iconName: 'screen', labelOn: 'Stop presenting', labelOff: 'Present your screen',
      slashWhenOff: false, onClick: () => void this.toggleScreen(),
    });
    if (!navigator.mediaDevices?.getDisplayMedia) {
      this.screenBtn.el.disabled = true;
      this.screenBtn.el.title = 'This browser cannot share its screen';
    }

    this.unreadBadge = h('span', { class: 'badge', 'data-testid': 'unread-badge', 'aria-hidden': 'true' });
    this.unreadBadge.hidden = true;
    this.chatBtn = h('button', {
      type: 'button', class: 'tool-btn', 'data-testid': 'toggle-chat', 'aria-label': 'Chat',
      'aria-pressed': 'false', title: `Chat with everyone (${modKey}+Alt+C)`,
    }, icon('chat'), this.unreadBadge);
    this.chatBtn.addEventListener('click', () => this.openPanel(this.panel === 'chat' ? null : 'chat'));

    this.peopleCount = h('span', { class: 'count', 'aria-hidden': 'true' });
    this.peopleBtn = h('button', {
      type: 'button', class: 'tool-btn', 'data-testid': 'toggle-participants', 'aria-label': 'Participants',
      'aria-pressed': 'false', title: `Show everyone (${modKey}+Alt+P)`,
    }, icon('people'), this.peopleCount);
    this.peopleBtn.addEventListener('click', () => this.openPanel(this.panel === 'people' ? null : 'people'));

    this.inviteBtn = h('button', {
      type: 'button', class: 'tool-btn', 'data-testid': 'copy-invite', 'aria-label': 'Copy invite link', title: 'Copy invite link',
    }, icon('link'));
    this.inviteBtn.addEventListener('click', () => void this.copyInvite());

    this.settingsBtn = h('button', {
      type: 'button', class: 'tool-btn', 'data-testid': 'toggle-settings', 'aria-label': 'Settings',
      'aria-pressed': 'false', title: 'Devices and keyboard shortcuts',
    }, icon('settings'));
    this.settingsBtn.addEventListener('click', () => this.openPanel(this.panel === 'settings' ? null : 'settings'));

    const leaveBtn = h('button', {
      type: 'button', class: 'tool-btn leave', 'data-testid': 'leave', 'aria-label': 'Leave meeting', title: 'Leave meeting',
    }, icon('leave'));
    leaveBtn.addEventListener('click', () => this.callbacks.leave());

    const toolbar = h(
      'footer',
      { class: 'toolbar', role: 'toolbar', 'aria-label': 'Meeting controls' },
      h('div', { class: 'toolbar-info' }, h('span', { class: 'toolbar-room', title: this.roomName }, this.roomName)),
      h('div', { class: 'toolbar-main' }, this.micBtn.el, this.camBtn.el, this.screenBtn.el, leaveBtn),
      h('div', { class: 'toolbar-extra' }, this.settingsBtn, this.inviteBtn, this.peopleBtn, this.chatBtn),
    );

    // Arrow keys move between toolbar buttons (ARIA toolbar pattern); Tab still works.
    toolbar.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight' && ev.key !== 'Home' && ev.key !== 'End') return;
      const buttons = [...toolbar.querySelectorAll<HTMLButtonElement>('button:not(:disabled)')].filter((b) => b.offsetParent !== null);
      const index = buttons.indexOf(document.activeElement as HTMLButtonElement);
      if (index < 0) return;
      ev.preventDefault();
      const next =
        ev.key === 'Home' ? 0
        : ev.key === 'End' ? buttons.length - 1
        : (index + (ev.key === 'ArrowRight' ? 1 : -1) + buttons.length) % buttons.length;
      buttons[next]?.focus();
    });

    this.el = h(
      'div',
      { class: 'meeting', 'data-testid': 'meeting' },
      h('h1', { class: 'visually-hidden' }, `Meeting ${this.roomName}`),
      this.banner,
      h('div', { class: 'meeting-body' },
        h('main', { class: 'stage-area' }, this.stage, this.grid),
        this.side,
      ),
      toolbar,
      this.toast,
      this.audioUnlock,
      this.audioSinks,
    );
    document.addEventListener('keydown', this.keyHandler);
    this.updateToolbar();
  }

  /** Shows `room`; called again with a new Room after a rejoin (chat is kept). */
  bind(room: Room, rejoining = false): void {
    this.unsubscribe?.();
    this.room = room;
    this.rejoining = rejoining;
    for (const t of this.tiles.values()) t.destroy();
    this.tiles.clear();
    for (const a of this.audios.values()) a.remove();
    this.audios.clear();
    this.unsubscribe = room.on((ev) => this.onRoomEvent(ev));
    this.showState();
    this.updateToolbar();
  }

  destroy(): void {
    this.unsubscribe?.();
    document.removeEventListener('keydown', this.keyHandler);
    for (const t of this.tiles.values()) t.destroy();
    for (const a of this.audios.values()) {
      a.srcObject = null;
      a.remove();
    }
    this.el.remove();
  }

  /** Shows a lost connection with a Rejoin button, or the automatic retry. */
  showReconnecting(attempt: number | null): void {
    if (attempt === null) {
      this.setBanner('Connection lost.', 'error', 'Rejoin');
    } else {
      this.setBanner(attempt > 1 ? `Reconnecting… (attempt ${attempt})` : 'Reconnecting…', 'warn');
    }
  }

  // ---- room events ------------------------------------------------------

  private onRoomEvent(ev: RoomEvent): void {
    switch (ev.type) {
      case 'state':
        this.showState();
        break;
      case 'welcome':
        this.addTile(ev.me);
        for (const p of ev.others) this.addTile(p);
        this.layout();
        this.refreshPeople();
        this.updateToolbar();
        break;
      case 'participant_joined':
        this.addTile(ev.participant);
        this.layout();
        this.refreshPeople();
        announce(`${ev.participant.name} joined`);
        break;
      case 'participant_left': {
        this.tiles.get(ev.participant.id)?.destroy();
        this.tiles.delete(ev.participant.id);
        const audio = this.audios.get(ev.participant.id);
        if (audio) {
          audio.srcObject = null;
          audio.remove();
          this.audios.delete(ev.participant.id);
        }
        this.layout();
        this.refreshPeople();
        announce(`${ev.participant.name} left`);
        break;
      }
      case 'participant_changed':
        this.tiles.get(ev.participant.id)?.update(ev.participant);
        if (!ev.participant.isLocal) this.updateAudio(ev.participant);
        this.layout();
        this.refreshPeople();
        if (ev.participant.isLocal) this.updateToolbar();
        break;
      case 'chat':
        if (this.chat.add(ev.entry) && !ev.entry.isLocal) {
          if (this.panel !== 'chat') {
            this.unread += 1;
            this.updateUnread();
          }
          const text = ev.entry.text.length > 200 ? `${ev.entry.text.slice(0, 200)}…` : ev.entry.text;
          announce(`${ev.entry.name} says: ${text}`);
        }
        break;
      case 'server_error':
        this.showToast(serverErrorText(ev.code, ev.message));
        break;
    }
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

  private everyone(): Participant[] {
    const room = this.room;
    if (!room?.me) return [];
    return [room.me, ...room.participants.values()];
  }

  private addTile(p: Participant): void {
    if (this.tiles.has(p.id)) {
      this.tiles.get(p.id)?.update(p);
      return;
    }
    const tile = new Tile(p);
    this.tiles.set(p.id, tile);
    if (p.isLocal) this.grid.prepend(tile.el);
    else this.grid.appendChild(tile.el);
    if (!p.isLocal) this.updateAudio(p);
  }

  private updateAudio(p: Participant): void {
    const track = p.tracks.microphone ?? null;
    let audio = this.audios.get(p.id);
    if (!track) {
      if (audio) {
        audio.srcObject = null;
        audio.remove();
        this.audios.delete(p.id);
      }
      return;
    }
    if (!audio) {
      audio = h('audio', { autoplay: true, 'data-testid': 'remote-audio', 'data-participant-id': p.id });
      this.applySink(audio);
      this.audios.set(p.id, audio);
      this.audioSinks.appendChild(audio);
    }
    const current = audio.srcObject instanceof MediaStream ? audio.srcObject.getTracks()[0] : undefined;
    if (current !== track) {
      audio.srcObject = new MediaStream([track]);
      audio.play().catch(() => {
        this.audioUnlock.hidden = false;
      });
    }
  }

  private applySink(audio: HTMLAudioElement): void {
    if (!this.sinkId || !('setSinkId' in audio)) return;
    audio.setSinkId(this.sinkId).catch(() => this.showToast('That speaker could not be used.'));
  }

  /** Grid columns from the tile count; the screen share takes the stage. */
  private layout(): void {
    const people = this.everyone();
    const presenter =
      [...people].reverse().find((p) => p.media.screen && p.tracks.screen && !p.isLocal) ??
      people.find((p) => p.isLocal && p.tracks.screen);
    if (presenter?.tracks.screen) {
      attachTrack(this.stageVideo, presenter.tracks.screen);
      this.stageLabel.textContent = presenter.isLocal ? 'You are presenting to everyone' : `${presenter.name} is presenting`;
      this.stage.dataset.participantId = String(presenter.id);
      this.stageStop.hidden = !presenter.isLocal;
      this.stage.hidden = false;
      this.el.classList.add('presenting');
    } else {
      attachTrack(this.stageVideo, null);
      this.stage.hidden = true;
      delete this.stage.dataset.participantId;
      this.el.classList.remove('presenting');
    }
    const n = Math.max(1, this.tiles.size);
    const cols = n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : n <= 16 ? 4 : 5;
    this.grid.style.setProperty('--cols', String(cols));
    this.grid.style.setProperty('--rows', String(Math.ceil(n / cols)));
    this.grid.dataset.count = String(n);
  }

  private refreshPeople(): void {
    const people = this.everyone();
    this.people.render(people);
    this.peopleCount.textContent = String(people.length || '');
    this.peopleBtn.setAttribute('aria-label', `Participants (${people.length})`);
  }

  private updateToolbar(): void {
    const state = this.room?.localMediaState() ?? { microphone: false, camera: false, screen: false };
    this.micBtn.set(state.microphone);
    this.camBtn.set(state.camera);
    this.screenBtn.set(state.screen);
  }

  private updateUnread(): void {
    document.title = this.unread ? `(${this.unread}) ${this.roomName} · Conclave` : `${this.roomName} · Conclave`;
    this.unreadBadge.hidden = this.unread === 0;
    this.unreadBadge.textContent = this.unread > 99 ? '99+' : String(this.unread);
    this.chatBtn.setAttribute('aria-label', this.unread ? `Chat, ${this.unread} unread` : 'Chat');
  }

  private openPanel(panel: Panel): void {
    const previous = this.panel;
    this.panel = panel;
    const panelEl = panel === 'chat' ? this.chat.el : panel === 'people' ? this.people.el : panel === 'settings' ? this.settings.el : null;
    this.side.replaceChildren(...(panelEl ? [panelEl] : []));
    this.side.hidden = panel === null;
    this.el.classList.toggle('panel-open', panel !== null);
    this.chatBtn.setAttribute('aria-pressed', String(panel === 'chat'));
    this.peopleBtn.setAttribute('aria-pressed', String(panel === 'people'));
    this.chatBtn.classList.toggle('active', panel === 'chat');
    this.peopleBtn.classList.toggle('active', panel === 'people');
    this.settingsBtn.setAttribute('aria-pressed', String(panel === 'settings'));
    this.settingsBtn.classList.toggle('active', panel === 'settings');
    if (panel === 'chat') {
      this.unread = 0;
      this.updateUnread();
      this.chat.focusInput();
    } else if (panel === 'people') {
      this.refreshPeople();
    } else if (panel === 'settings') {
      void this.settings.refresh();
    } else if (previous === 'chat') {
      this.chatBtn.focus();
    } else if (previous === 'people') {
      this.peopleBtn.focus();
    } else if (previous === 'settings') {
      this.settingsBtn.focus();
    }
  }

  // ---- actions ----------------------------------------------------------

  private async run(action: () => Promise<void>, kind: 'microphone' | 'camera' | 'screen'): Promise<void> {
    if (this.busy || !this.room) return;
    this.busy = true;
    try {
      await action();
    } catch (err) {
      const problem = classifyMediaError(err);
      if (!(kind === 'screen' && problem === 'denied')) this.showToast(describeProblem(kind, problem));
    } finally {
      this.busy = false;
      this.updateToolbar();
    }
  }

  private toggleMic(): Promise<void> {
    return this.run(async () => {
      const room = this.room;
      if (!room) return;
      const on = !room.localMediaState().microphone;
      await room.setMicrophone(on);
      announce(on ? 'Microphone on' : 'Microphone muted');
    }, 'microphone');
  }

  private toggleCamera(): Promise<void> {
    return this.run(async () => {
      const room = this.room;
      if (!room) return;
      const on = !room.localMediaState().camera;
      await room.setCamera(on);
      announce(on ? 'Camera on' : 'Camera off');
    }, 'camera');
  }

  private toggleScreen(): Promise<void> {
    return this.run(async () => {
      const room = this.room;
      if (!room) return;
      const on = !room.localMediaState().screen;
      await room.setScreenShare(on);
      announce(on ? 'You are presenting' : 'You stopped presenting');
    }, 'screen');
  }

  private async copyInvite(): Promise<void> {
    const url = location.href;
    let ok = false;
    try {
      await navigator.clipboard.writeText(url);
      ok = true;
    } catch {
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
    if (ok) {
      this.inviteBtn.replaceChildren(icon('check'));
      this.inviteBtn.classList.add('active');
      this.showToast('Copied — invite link is on your clipboard');
      window.setTimeout(() => {
        this.inviteBtn.replaceChildren(icon('link'));
        this.inviteBtn.classList.remove('active');
      }, 2000);
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

export function serverErrorText(code: string, message: string): string {
  switch (code) {
    case 'invalid_room':
      return `That room name can't be used: ${message}`;
    case 'invalid_name':
      return `That name can't be used: ${message}`;
    case 'room_full':
      return 'This meeting is full. Try again later or ask the host for another room.';
    case 'too_large':
      return 'That message is too long to send.';
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
