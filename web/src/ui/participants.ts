// The participants panel: everyone in the room with their media state.

import type { Participant } from '../room';
import { h, hueFor, initials } from './dom';
import { icon } from './icons';

export class ParticipantsPanel {
  readonly el: HTMLElement;
  private list: HTMLUListElement;
  private title: HTMLElement;

  constructor(close: () => void) {
    this.list = h('ul', { class: 'people-list', 'data-testid': 'participant-list' });
    this.title = h('h2', { id: 'people-title' }, 'People');
    this.el = h(
      'aside',
      { class: 'panel people-panel', 'aria-labelledby': 'people-title', 'data-testid': 'participants-panel' },
      h('header', { class: 'panel-header' },
        this.title,
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close participants', onclick: close }, icon('close')),
      ),
      this.list,
    );
  }

  render(people: Participant[]): void {
    this.title.textContent = `People (${people.length})`;
    this.list.replaceChildren(
      ...people.map((p) => {
        const avatar = h('span', { class: 'avatar small', 'aria-hidden': 'true' }, initials(p.name));
        avatar.style.setProperty('--hue', String(hueFor(p.id)));
        const states = [
          p.media.microphone ? 'microphone on' : 'muted',
          p.media.camera ? 'camera on' : 'camera off',
          ...(p.media.screen ? ['sharing screen'] : []),
        ];
        return h(
          'li',
          {
            class: 'person',
            'data-testid': 'participant-item',
            'data-participant-id': p.id,
            'data-muted': String(!p.media.microphone),
            'aria-label': `${p.name}${p.isLocal ? ' (You)' : ''}: ${states.join(', ')}`,
          },
          avatar,
          h('span', { class: 'person-name', 'data-testid': 'participant-name' }, p.name, p.isLocal ? h('span', { class: 'you' }, ' (You)') : null),
          h('span', { class: 'person-icons', 'aria-hidden': 'true' },
            p.media.screen ? icon('screen') : null,
            h('span', { class: p.media.camera ? 'state on' : 'state off' }, icon('camera', !p.media.camera)),
            h('span', { class: p.media.microphone ? 'state on' : 'state off' }, icon('mic', !p.media.microphone)),
          ),
        );
      }),
    );
  }
}
