// The chat panel: messages in the order they arrived, except that within
// one sender session they follow the sender's counter (chat-order.ts); each
// with the time its sender put inside the encryption; and a composer.

import { chatInsertIndex } from '../chat-order';
import { chatCounterText, chatParts } from '../chat-text';
import type { ChatEntry } from '../room';
import { MAX_CHAT_CHARS } from '../protocol.gen';
import { formatTime, h } from './dom';
import { icon } from './icons';

export class ChatPanel {
  readonly el: HTMLElement;
  private list: HTMLOListElement;
  private input: HTMLTextAreaElement;
  private counter: HTMLElement;
  private empty: HTMLElement;
  private entries: ChatEntry[] = [];
  private sendBtn: HTMLButtonElement;

  constructor(
    private readonly send: (text: string) => boolean,
    close: () => void,
  ) {
    this.list = h('ol', { class: 'chat-list', role: 'log', 'aria-label': 'Chat messages', 'data-testid': 'chat-list' });
    this.empty = h('p', { class: 'panel-empty' }, 'No messages yet. Messages are end-to-end encrypted, visible to everyone in the meeting, and disappear when it ends.');
    this.input = h('textarea', {
      class: 'chat-input',
      rows: 1,
      placeholder: 'Send a message to everyone',
      'aria-label': 'Chat message',
      maxlength: MAX_CHAT_CHARS,
      'data-testid': 'chat-input',
    });
    this.counter = h('span', { class: 'chat-counter', 'aria-live': 'polite' });
    const sendBtn = h('button', { type: 'submit', class: 'icon-btn', 'aria-label': 'Send message', title: 'Send (Enter)', 'data-testid': 'chat-send' }, icon('send'));
    this.sendBtn = sendBtn;
    const form = h('form', { class: 'chat-form' }, this.input, sendBtn, this.counter);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.submit();
    });
    this.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener('input', () => {
      this.counter.textContent = chatCounterText(this.input.value);
      this.input.style.height = 'auto';
      this.input.style.height = `${Math.min(this.input.scrollHeight, 120)}px`;
    });
    this.el = h(
      'aside',
      { class: 'panel chat-panel', 'aria-labelledby': 'chat-title', 'data-testid': 'chat-panel' },
      h('header', { class: 'panel-header' },
        h('h2', { id: 'chat-title' }, 'Chat'),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close chat', onclick: close }, icon('close')),
      ),
      this.empty,
      this.list,
      form,
    );
  }

  /** Chat is end-to-end encrypted: it works only once we are in the group. */
  setEnabled(enabled: boolean): void {
    this.input.disabled = !enabled;
    this.sendBtn.disabled = !enabled;
    this.input.placeholder = enabled ? 'Send a message to everyone' : 'Chat opens once the call is secured';
  }

  focusInput(): void {
    this.input.focus();
  }

  /**
   * Shows a message: at the end (arrival order), or, if a later message of
   * the same sender session is already shown (the server held this one
   * back), just before it, marked "arrived late" so that neither a sighted
   * reader nor the log's live region takes it for the newest message.
   * Returns `'late'` for such an insertion. The server's `seq` is not used
   * to order or deduplicate: a server reusing one must not hide a message
   * (MLS itself refuses a replayed one).
   */
  add(entry: ChatEntry): 'new' | 'late' {
    const index = chatInsertIndex(this.entries.map((e) => e.order), entry.order);
    const late = index < this.entries.length;
    this.entries.splice(index, 0, entry);
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    const item = h(
      'li',
      {
        class: entry.isLocal ? 'chat-message mine' : 'chat-message',
        'data-testid': 'chat-message',
        'data-seq': entry.seq,
        'data-from': entry.from,
        'data-counter': entry.order?.counter,
        'data-late': late ? 'true' : null,
      },
      h('div', { class: 'chat-meta' },
        h('span', { class: 'chat-sender', 'data-testid': 'chat-sender', 'data-name': entry.name }, entry.isLocal ? `${entry.name} (You)` : entry.name),
        h('time', { datetime: new Date(entry.sentAt).toISOString() }, formatTime(entry.sentAt)),
        late
          ? h('span', { class: 'chat-late', title: `Delivered after a later message from ${entry.name}; shown where ${entry.name} sent it` }, 'arrived late')
          : null,
      ),
      h('p', { class: 'chat-text', 'data-testid': 'chat-text' }, ...messageContent(entry.text)),
    );
    const before = this.list.children[index] ?? null;
    // Inserted above what the reader is looking at: keep their view still.
    const above = before !== null && before.getBoundingClientRect().top < this.list.getBoundingClientRect().top;
    const heightBefore = this.list.scrollHeight;
    this.list.insertBefore(item, before);
    this.empty.hidden = true;
    if (atBottom || entry.isLocal) this.list.scrollTop = this.list.scrollHeight;
    else if (above) this.list.scrollTop += this.list.scrollHeight - heightBefore;
    return late ? 'late' : 'new';
  }

  private submit(): void {
    const text = this.input.value;
    if (!text.trim()) return;
    if (this.send(text)) {
      this.input.value = '';
      this.counter.textContent = '';
      this.input.style.height = 'auto';
    }
  }
}

/**
 * A message's text with its http(s) links clickable. They open in a new
 * tab that learns nothing of this page: no opener (it cannot navigate the
 * meeting away) and no referrer (it cannot see the room's link).
 */
function messageContent(text: string): (string | HTMLAnchorElement)[] {
  return chatParts(text).map((part) =>
    part.kind === 'text'
      ? part.text
      : h('a', { href: part.href, target: '_blank', rel: 'noopener noreferrer', class: 'chat-link' }, part.text),
  );
}
