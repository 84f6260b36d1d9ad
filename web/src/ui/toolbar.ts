// The meeting toolbar: microphone, camera, screen share, leave, and the
// buttons that open panels or copy the invite link.

import type { MediaState } from '../protocol.gen';
import { h, modKey } from './dom';
import { icon, type IconName } from './icons';

export type Panel = 'chat' | 'people' | 'settings' | 'security' | null;

export interface ToolbarActions {
  toggleMic(): void;
  toggleCamera(): void;
  toggleScreen(): void;
  togglePanel(panel: Exclude<Panel, null>): void;
  copyInvite(): void;
  leave(): void;
}

class ToggleButton {
  readonly el: HTMLButtonElement;

  constructor(
    private readonly opts: {
      testid: string;
      iconName: IconName;
      labelOn: string;
      labelOff: string;
      shortcut?: string;
      /** Off is the warning state (red, slashed icon); otherwise on is highlighted. */
      offIsWarning: boolean;
      onClick: () => void;
    },
  ) {
    this.el = h('button', { type: 'button', class: 'tool-btn', 'data-testid': opts.testid });
    this.el.addEventListener('click', opts.onClick);
  }

  set(on: boolean): void {
    const { opts, el } = this;
    const label = on ? opts.labelOn : opts.labelOff;
    el.replaceChildren(icon(opts.iconName, opts.offIsWarning && !on));
    el.setAttribute('aria-label', label);
    el.setAttribute('aria-pressed', String(on));
    if (!el.disabled) el.title = opts.shortcut ? `${label} (${opts.shortcut})` : label;
    el.classList.toggle('off', opts.offIsWarning && !on);
    el.classList.toggle('active', !opts.offIsWarning && on);
  }
}

function panelButton(testid: string, label: string, title: string, iconName: IconName, ...extra: Node[]): HTMLButtonElement {
  return h('button', { type: 'button', class: 'tool-btn', 'data-testid': testid, 'aria-label': label, 'aria-pressed': 'false', title }, icon(iconName), ...extra);
}

export class Toolbar {
  readonly el: HTMLElement;
  private mic: ToggleButton;
  private camera: ToggleButton;
  private screen: ToggleButton;
  private chatBtn: HTMLButtonElement;
  private peopleBtn: HTMLButtonElement;
  private settingsBtn: HTMLButtonElement;
  /** Shield button opening the security code; placed by the meeting view outside the toolbar row. */
  readonly securityBtn: HTMLButtonElement;
  private securityLabel: HTMLElement;
  private inviteBtn: HTMLButtonElement;
  private unreadBadge: HTMLElement;
  private peopleCount: HTMLElement;

  constructor(roomName: string, actions: ToolbarActions) {
    this.mic = new ToggleButton({
      testid: 'toggle-mic', iconName: 'mic', labelOn: 'Mute microphone', labelOff: 'Unmute microphone',
      shortcut: `${modKey}+D`, offIsWarning: true, onClick: actions.toggleMic,
    });
    this.camera = new ToggleButton({
      testid: 'toggle-camera', iconName: 'camera', labelOn: 'Turn camera off', labelOff: 'Turn camera on',
      shortcut: `${modKey}+E`, offIsWarning: true, onClick: actions.toggleCamera,
    });
    this.screen = new ToggleButton({
      testid: 'toggle-screen', iconName: 'screen', labelOn: 'Stop presenting', labelOff: 'Present your screen',
      offIsWarning: false, onClick: actions.toggleScreen,
    });
    if (!navigator.mediaDevices?.getDisplayMedia) {
      this.screen.el.disabled = true;
      this.screen.el.title = 'This browser cannot share its screen';
    }

    this.unreadBadge = h('span', { class: 'badge', 'data-testid': 'unread-badge', 'aria-hidden': 'true' });
    this.unreadBadge.hidden = true;
    this.chatBtn = panelButton('toggle-chat', 'Chat', `Chat with everyone (${modKey}+Alt+C)`, 'chat', this.unreadBadge);
    this.chatBtn.addEventListener('click', () => actions.togglePanel('chat'));

    this.peopleCount = h('span', { class: 'count', 'aria-hidden': 'true' });
    this.peopleBtn = panelButton('toggle-participants', 'Participants', `Show everyone (${modKey}+Alt+P)`, 'people', this.peopleCount);
    this.peopleBtn.addEventListener('click', () => actions.togglePanel('people'));

    this.settingsBtn = panelButton('toggle-settings', 'Settings', 'Devices and keyboard shortcuts', 'settings');
    this.settingsBtn.addEventListener('click', () => actions.togglePanel('settings'));

    this.securityLabel = h('span', { class: 'e2ee-pill-text' }, 'Securing…');
    this.securityBtn = h(
      'button',
      { type: 'button', class: 'e2ee-pill', 'data-testid': 'toggle-security', 'aria-pressed': 'false', 'aria-label': 'Security code (securing the call)', title: 'End-to-end encryption: compare the security code' },
      icon('shield'),
      this.securityLabel,
    );
    this.securityBtn.addEventListener('click', () => actions.togglePanel('security'));

    this.inviteBtn = h('button', {
      type: 'button', class: 'tool-btn', 'data-testid': 'copy-invite', 'aria-label': 'Copy invite link', title: 'Copy invite link',
    }, icon('link'));
    this.inviteBtn.addEventListener('click', actions.copyInvite);

    const leaveBtn = h('button', {
      type: 'button', class: 'tool-btn leave', 'data-testid': 'leave', 'aria-label': 'Leave meeting', title: 'Leave meeting',
    }, icon('leave'));
    leaveBtn.addEventListener('click', actions.leave);

    this.el = h(
      'footer',
      { class: 'toolbar', role: 'toolbar', 'aria-label': 'Meeting controls' },
      h('div', { class: 'toolbar-info' }, h('span', { class: 'toolbar-room', title: roomName }, roomName)),
      h('div', { class: 'toolbar-main' }, this.mic.el, this.camera.el, this.screen.el, leaveBtn),
      h('div', { class: 'toolbar-extra' }, this.settingsBtn, this.inviteBtn, this.peopleBtn, this.chatBtn),
    );
    // Arrow keys move between toolbar buttons (ARIA toolbar pattern); Tab still works.
    this.el.addEventListener('keydown', (ev) => this.onArrowKey(ev));
  }

  setMedia(state: MediaState): void {
    this.mic.set(state.microphone);
    this.camera.set(state.camera);
    this.screen.set(state.screen);
  }

  setPanel(panel: Panel): void {
    const buttons: [Exclude<Panel, null>, HTMLButtonElement][] = [
      ['chat', this.chatBtn],
      ['people', this.peopleBtn],
      ['settings', this.settingsBtn],
      ['security', this.securityBtn],
    ];
    for (const [name, btn] of buttons) {
      btn.setAttribute('aria-pressed', String(panel === name));
      btn.classList.toggle('active', panel === name);
    }
  }

  /** Gives focus back to the button of a panel that was just closed. */
  focusPanelButton(panel: Exclude<Panel, null>): void {
    const buttons = { chat: this.chatBtn, people: this.peopleBtn, settings: this.settingsBtn, security: this.securityBtn };
    buttons[panel].focus();
  }

  setUnread(count: number): void {
    this.unreadBadge.hidden = count === 0;
    this.unreadBadge.textContent = count > 99 ? '99+' : String(count);
    this.chatBtn.setAttribute('aria-label', count ? `Chat, ${count} unread` : 'Chat');
  }

  /** Shield state: secured (joined the MLS group) or not yet. */
  setSecured(secured: boolean): void {
    this.securityBtn.classList.toggle('secured', secured);
    this.securityBtn.dataset.secured = String(secured);
    this.securityLabel.textContent = secured ? 'End-to-end encrypted' : 'Securing…';
    this.securityBtn.setAttribute('aria-label', secured ? 'Security code (end-to-end encrypted)' : 'Security code (securing the call)');
  }

  setPeopleCount(count: number): void {
    this.peopleCount.textContent = count ? String(count) : '';
    this.peopleBtn.setAttribute('aria-label', `Participants (${count})`);
  }

  /** Briefly shows a check mark on the invite button. */
  showCopied(): void {
    this.inviteBtn.replaceChildren(icon('check'));
    this.inviteBtn.classList.add('active');
    window.setTimeout(() => {
      this.inviteBtn.replaceChildren(icon('link'));
      this.inviteBtn.classList.remove('active');
    }, 2000);
  }

  private onArrowKey(ev: KeyboardEvent): void {
    if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight' && ev.key !== 'Home' && ev.key !== 'End') return;
    const buttons = [...this.el.querySelectorAll<HTMLButtonElement>('button:not(:disabled)')].filter((b) => b.offsetParent !== null);
    const index = buttons.indexOf(document.activeElement as HTMLButtonElement);
    if (index < 0) return;
    ev.preventDefault();
    const next =
      ev.key === 'Home' ? 0
      : ev.key === 'End' ? buttons.length - 1
      : (index + (ev.key === 'ArrowRight' ? 1 : -1) + buttons.length) % buttons.length;
    buttons[next]?.focus();
  }
}
