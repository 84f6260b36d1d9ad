// The participants panel: the members of the encrypted group (names from the
// MLS roster), then anyone the server announced who is not in the group,
// marked "Not verified", and the security code. Any member can remove
// another member (after confirming in a dialog): an MLS removal the whole
// group sees, not a server decision.

import type { MediaState } from '../protocol.gen';
import { h, hueFor, initials } from './dom';
import { icon } from './icons';
import { securityCodeBlock } from './security';

export interface PersonRow {
  name: string;
  isLocal: boolean;
  /** In the MLS roster. */
  verified: boolean;
  /** Asked to join without the invite link. */
  knocking: boolean;
  /** What they send, if the server knows them (a roster member may have no connection). */
  media: MediaState | null;
  participantId: number | null;
  leafIndex: number | null;
  /** Hex signature key (roster) — shown shortened when two members share a name. */
  signatureKey: string | null;
  duplicateName: boolean;
}

export class ParticipantsPanel {
  readonly el: HTMLElement;
  private list: HTMLUListElement;
  private title: HTMLElement;
  private code: HTMLElement;
  private dialog: HTMLDialogElement;
  private dialogText: HTMLElement;
  private pendingRemoval: PersonRow | null = null;

  constructor(
    close: () => void,
    private readonly remove: (row: PersonRow) => void,
  ) {
    this.list = h('ul', { class: 'people-list', 'data-testid': 'participant-list' });
    this.title = h('h2', { id: 'people-title' }, 'People');
    this.code = h('div', { class: 'people-code' });
    this.el = h(
      'aside',
      { class: 'panel people-panel', 'aria-labelledby': 'people-title', 'data-testid': 'participants-panel' },
      h('header', { class: 'panel-header' },
        this.title,
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close participants', onclick: close }, icon('close')),
      ),
      this.list,
      this.code,
    );
    this.dialogText = h('p', { id: 'remove-dialog-text' });
    const cancel = h('button', { type: 'button', class: 'btn btn-secondary', 'data-testid': 'remove-cancel' }, 'Cancel');
    const confirm = h('button', { type: 'button', class: 'btn btn-danger', 'data-testid': 'remove-confirm' }, 'Remove');
    this.dialog = h(
      'dialog',
      { class: 'card remove-dialog', 'aria-labelledby': 'remove-dialog-title', 'aria-describedby': 'remove-dialog-text', 'data-testid': 'remove-dialog' },
      h('h2', { id: 'remove-dialog-title' }, 'Remove from the meeting?'),
      this.dialogText,
      h('div', { class: 'button-row' }, cancel, confirm),
    );
    cancel.addEventListener('click', () => this.dialog.close());
    confirm.addEventListener('click', () => {
      const row = this.pendingRemoval;
      this.dialog.close();
      if (row) this.remove(row);
    });
    // Escape closes the dialog only, not the panel under it.
    this.dialog.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') ev.stopPropagation();
    });
    this.dialog.addEventListener('close', () => {
      this.pendingRemoval = null;
    });
    this.el.append(this.dialog);
  }

  private confirmRemoval(p: PersonRow): void {
    this.pendingRemoval = p;
    this.dialogText.textContent =
      `${p.name} will leave the call and lose its keys; everyone in the meeting sees that you removed them. ` +
      'Anyone with the invite link can still join again.';
    this.dialog.showModal();
    // The safe choice has the focus.
    this.dialog.querySelector<HTMLButtonElement>('[data-testid="remove-cancel"]')?.focus();
  }

  render(rows: PersonRow[], securityCode: string | null): void {
    const members = rows.filter((r) => r.verified || r.isLocal).length;
    this.title.textContent = `People (${members})`;
    this.code.replaceChildren(h('h3', { class: 'people-code-title' }, 'Security code'), securityCodeBlock(securityCode));
    this.list.replaceChildren(...rows.map((p) => this.row(p)));
  }

  private row(p: PersonRow): HTMLElement {
    const avatar = h('span', { class: 'avatar small', 'aria-hidden': 'true' }, initials(p.name));
    avatar.style.setProperty('--hue', String(hueFor(p.participantId ?? p.leafIndex ?? 0)));
    const states: string[] = [];
    if (!p.verified && !p.isLocal) states.push(p.knocking ? 'not verified, waiting to be let in' : 'not verified');
    if (p.media) {
      states.push(p.media.microphone ? 'microphone on' : 'muted', p.media.camera ? 'camera on' : 'camera off');
      if (p.media.screen) states.push('sharing screen');
    } else if (p.verified && !p.isLocal) {
      states.push('not connected');
    }
    const fingerprint = p.duplicateName && p.signatureKey ? ` · key ${p.signatureKey.slice(0, 8)}` : '';
    const unverified = !p.verified && !p.isLocal;
    return h(
      'li',
      {
        class: unverified ? 'person unverified' : 'person',
        'data-testid': 'participant-item',
        'data-participant-id': p.participantId ?? undefined,
        'data-leaf-index': p.leafIndex ?? undefined,
        'data-verified': String(p.verified),
        'data-unverified': unverified ? 'true' : undefined,
        'data-muted': p.media ? String(!p.media.microphone) : undefined,
        'aria-label': `${p.name}${p.isLocal ? ' (You)' : ''}${fingerprint}: ${states.join(', ')}`,
      },
      avatar,
      h(
        'span',
        { class: 'person-name', 'data-testid': 'participant-name' },
        p.name,
        p.isLocal ? h('span', { class: 'you' }, ' (You)') : null,
        fingerprint ? h('span', { class: 'you' }, fingerprint) : null,
        unverified
          ? h('span', { class: 'person-unverified', 'data-testid': 'not-verified' }, p.knocking ? 'Not verified · waiting to be let in' : 'Not verified')
          : null,
      ),
      h('span', { class: 'person-icons', 'aria-hidden': 'true' },
        unverified ? h('span', { class: 'state off', title: 'Not verified' }, icon('lockOff')) : null,
        p.media?.screen ? icon('screen') : null,
        p.media ? h('span', { class: p.media.camera ? 'state on' : 'state off' }, icon('camera', !p.media.camera)) : null,
        p.media ? h('span', { class: p.media.microphone ? 'state on' : 'state off' }, icon('mic', !p.media.microphone)) : null,
      ),
      p.verified && !p.isLocal && p.signatureKey
        ? h(
            'button',
            {
              type: 'button',
              class: 'icon-btn person-remove',
              'aria-label': `Remove ${p.name} from the meeting`,
              title: 'Remove from the meeting',
              'data-testid': 'remove-participant',
              onclick: () => this.confirmRemoval(p),
            },
            icon('close'),
          )
        : null,
    );
  }
}
