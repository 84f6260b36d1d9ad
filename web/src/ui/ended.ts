// The screen after leaving (or when the meeting can't continue).

import { h } from './dom';

export function renderEnded(
  root: HTMLElement,
  opts: { title: string; detail?: string; rejoinLabel?: string; onRejoin: () => void; onHome: () => void },
): void {
  const rejoin = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'rejoin' }, opts.rejoinLabel ?? 'Rejoin');
  rejoin.addEventListener('click', opts.onRejoin);
  const home = h('button', { type: 'button', class: 'btn btn-secondary', 'data-testid': 'home' }, 'Back to start');
  home.addEventListener('click', opts.onHome);
  root.replaceChildren(
    h('main', { class: 'screen center-screen', 'data-testid': 'ended' },
      h('div', { class: 'card ended-card' },
        h('h1', { 'data-testid': 'ended-title' }, opts.title),
        opts.detail ? h('p', { class: 'lead' }, opts.detail) : null,
        h('div', { class: 'button-row' }, rejoin, home),
      ),
    ),
  );
  rejoin.focus();
}
