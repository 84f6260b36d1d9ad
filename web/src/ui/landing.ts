// The screen at `/`: pick or generate a room name and go to `/<room>`.

import { MAX_ROOM_CHARS } from '../protocol.gen';
import { h } from './dom';

const ROOM_RE = /^[\p{Alphabetic}\p{N}\-_.~]+$/u;

/** Same rules as the server: one URL path segment of letters, digits, - _ . ~ */
export function roomNameProblem(room: string): string | null {
  const n = [...room].length;
  if (n === 0) return 'Enter a room name.';
  if (n > MAX_ROOM_CHARS) return `Room names are at most ${MAX_ROOM_CHARS} characters.`;
  if (room === '.' || room === '..') return 'That is not a room name.';
  if (!ROOM_RE.test(room)) return 'Use letters, digits, “-”, “_”, “.” or “~” (no spaces).';
  return null;
}

const ADJECTIVES = ['amber', 'brisk', 'calm', 'clever', 'cosy', 'daring', 'eager', 'gentle', 'lively', 'lucky', 'merry', 'quiet', 'rapid', 'sunny', 'swift', 'tidy', 'vivid', 'witty'];
const NOUNS = ['badger', 'comet', 'falcon', 'harbor', 'lantern', 'maple', 'meadow', 'otter', 'pebble', 'river', 'summit', 'thistle', 'walrus', 'willow', 'zephyr'];

function pick<T>(list: readonly T[]): T {
  const buf = new Uint32Array(1);
  crypto.getRandomValues(buf);
  return list[(buf[0] ?? 0) % list.length] as T;
}

export function generateRoomName(): string {
  const buf = new Uint16Array(1);
  crypto.getRandomValues(buf);
  return `${pick(ADJECTIVES)}-${pick(NOUNS)}-${1000 + ((buf[0] ?? 0) % 9000)}`;
}

export function roomPath(room: string): string {
  return '/' + encodeURIComponent(room);
}

/** The room a page path names (its first segment, decoded), or null at `/`. */
export function roomFromPath(pathname: string): string | null {
  const segment = pathname.split('/').filter(Boolean)[0];
  if (!segment) return null;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

export function renderLanding(root: HTMLElement, go: (room: string) => void): void {
  const input = h('input', {
    id: 'room-name',
    type: 'text',
    name: 'room',
    autocomplete: 'off',
    spellcheck: 'false',
    maxlength: MAX_ROOM_CHARS,
    placeholder: 'e.g. team-standup',
    'aria-describedby': 'room-hint room-error',
    'data-testid': 'room-input',
  });
  const error = h('p', { id: 'room-error', class: 'form-error', role: 'alert', 'data-testid': 'room-error' });
  const form = h(
    'form',
    { class: 'card landing-card', novalidate: true },
    h('h1', { class: 'brand' }, 'Conclave'),
    h('p', { class: 'lead' }, 'Video meetings on your own server. No accounts, no downloads.'),
    h('label', { for: 'room-name' }, 'Room name'),
    h(
      'div',
      { class: 'input-row' },
      input,
      h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => {
        input.value = generateRoomName();
        error.textContent = '';
        input.focus();
      } }, 'Generate'),
    ),
    h('p', { id: 'room-hint', class: 'hint' }, 'Anyone with the link to the room can join it.'),
    error,
    h('button', { type: 'submit', class: 'btn btn-primary btn-wide', 'data-testid': 'go-button' }, 'Start or join meeting'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const room = input.value.trim();
    const problem = roomNameProblem(room);
    if (problem) {
      error.textContent = problem;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    go(room);
  });
  root.replaceChildren(h('main', { class: 'screen center-screen' }, form));
  input.focus();
}
