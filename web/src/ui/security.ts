// End-to-end encryption in the meeting screen: the security code (panel and
// a reusable block for the participants panel), the "Securing the call…"
// status, and the prompts for people who knock.

import type { E2eeState, Knock } from '../e2ee/group';
import { announce, h } from './dom';
import { icon } from './icons';

export const CODE_SENTENCE =
  'Read these digits aloud to the others: if everyone sees the same code, nobody else is listening in.';

/** "12345 67890 …" (6 groups of 5 digits) as separate groups for display. */
export function codeGroups(code: string): string[] {
  const digits = code.replace(/\D/g, '');
  const groups: string[] = [];
  for (let i = 0; i < digits.length; i += 5) groups.push(digits.slice(i, i + 5));
  return groups;
}

/** The code with its sentence; `testid` marks the element tests read. */
export function securityCodeBlock(code: string | null, testid = 'security-code'): HTMLElement {
  if (!code) {
    return h('div', { class: 'security-code-block' }, h('p', { class: 'hint', 'data-testid': `${testid}-pending` }, 'The security code appears once the call is secured.'));
  }
  const groups = codeGroups(code);
  return h(
    'div',
    { class: 'security-code-block' },
    h(
      'p',
      { class: 'security-code', 'data-testid': testid, 'data-code': groups.join(' '), 'aria-label': `Security code: ${groups.join(', ')}` },
      ...groups.map((g) => h('span', { class: 'code-group' }, g)),
    ),
    h('p', { class: 'hint' }, CODE_SENTENCE),
  );
}

export class SecurityPanel {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private code: string | null = null;

  constructor(close: () => void) {
    // Not a live region: a code change is announced once, in a sentence (see `set`).
    this.body = h('div', { class: 'panel-body' });
    this.el = h(
      'aside',
      { class: 'panel security-panel', 'aria-labelledby': 'security-title', 'data-testid': 'security-panel' },
      h('header', { class: 'panel-header' },
        h('h2', { id: 'security-title' }, 'Security code'),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close security code', onclick: close }, icon('close')),
      ),
      this.body,
    );
    this.render();
  }

  /** Shows the current code; a change is announced politely. */
  set(code: string | null, epoch: number | null): void {
    if (code === this.code) return;
    const hadCode = this.code !== null;
    this.code = code;
    this.render(epoch);
    if (code && hadCode) announce('The security code changed because someone joined or left. Compare it again.');
  }

  private render(epoch: number | null = null): void {
    this.body.replaceChildren(
      ...[
      h('p', { class: 'lead' }, 'This call is end-to-end encrypted: only the people in the meeting can see, hear and read it.'),
      securityCodeBlock(this.code),
      h('p', { class: 'hint' }, 'The code changes whenever someone joins or leaves; compare it after the last person joined.'),
      epoch !== null ? h('p', { class: 'hint', 'data-testid': 'security-epoch' }, `Key generation ${epoch}`) : null,
      ].filter((n): n is HTMLElement => n !== null),
    );
  }
}

/** "Securing the call…" / "Waiting for someone to let you in…" over the grid. */
export class E2eeStatus {
  readonly el: HTMLElement;
  private text: HTMLElement;
  private shown = '';

  constructor() {
    this.text = h('span', { 'data-testid': 'e2ee-status-text' });
    this.el = h('div', { class: 'e2ee-status', role: 'status', 'aria-live': 'polite', 'data-testid': 'e2ee-status' }, icon('shield'), this.text);
    this.el.hidden = true;
  }

  set(state: E2eeState | null, connected: boolean, refused: boolean, waitingLong = false): void {
    let text = '';
    if (!connected) text = '';
    else if (state === 'securing') {
      text = waitingLong
        ? 'Still securing the call… If nobody in the meeting has your invite link’s key, someone there has to let you in.'
        : 'Securing the call…';
    }
    else if (state === 'verifying') {
      text = waitingLong
        ? 'Still checking that the people in this meeting hold your invite link’s key… Nothing is sent until they do.'
        : 'Checking that the meeting holds your invite link’s key…';
    }
    else if (state === 'knocking') text = 'Waiting for someone in the meeting to let you in…';
    else if (state === 'failed') {
      text = refused
        ? 'You no longer receive this call’s keys: you refused a change the others accepted.'
        : 'The call could not be secured. Leave and join again.';
    }
    if (text === this.shown) return;
    this.shown = text;
    this.text.textContent = text;
    this.el.hidden = text === '';
    this.el.dataset.state = state ?? '';
  }
}

/** One prompt per knocking person, with Admit and Deny. */
export class KnockPrompts {
  readonly el: HTMLElement;
  private shown = new Map<string, HTMLElement>();

  constructor(
    private readonly admit: (signatureKey: string) => void,
    private readonly deny: (signatureKey: string) => void,
  ) {
    this.el = h('section', { class: 'knocks', 'aria-label': 'Requests to join' });
    this.el.hidden = true;
  }

  render(knocks: Knock[]): void {
    const keys = new Set(knocks.map((k) => k.signatureKey));
    for (const [key, el] of this.shown) {
      if (!keys.has(key)) {
        el.remove();
        this.shown.delete(key);
      }
    }
    for (const knock of knocks) {
      if (this.shown.has(knock.signatureKey)) continue;
      const admit = h('button', { type: 'button', class: 'btn btn-primary btn-small', 'aria-label': `Admit ${knock.name}`, 'data-testid': 'knock-admit' }, 'Admit');
      const deny = h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `Deny ${knock.name}`, 'data-testid': 'knock-deny' }, 'Deny');
      admit.addEventListener('click', () => this.admit(knock.signatureKey));
      deny.addEventListener('click', () => this.deny(knock.signatureKey));
      const el = h(
        'div',
        { class: 'knock', role: 'group', 'aria-label': `${knock.name} wants to join`, 'data-testid': 'knock', 'data-key': knock.signatureKey },
        h('p', { class: 'knock-title' }, h('strong', {}, knock.name), ' wants to join'),
        knock.lookalike
          ? h('p', { class: 'hint knock-lookalike', 'data-testid': 'knock-lookalike' }, 'Someone with this name is or was in the meeting. Make sure it is really them.')
          : false,
        h('p', { class: 'hint' }, 'They don’t have the invite link. Let them in only if you know who they are. Key fingerprint: ', h('code', { 'data-testid': 'knock-fingerprint' }, knock.fingerprint)),
        h('div', { class: 'knock-actions' }, admit, deny),
      );
      this.shown.set(knock.signatureKey, el);
      this.el.appendChild(el);
    }
    this.el.hidden = this.shown.size === 0;
  }
}
