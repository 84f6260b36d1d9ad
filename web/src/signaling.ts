// The WebSocket to the Conclave server: typed send/receive of the JSON
// signaling messages defined in protocol.gen.ts.

import type { ClientMessage, ServerMessage } from './protocol.gen';
import { KEEPALIVE_SECONDS, MAX_MESSAGE_BYTES } from './protocol.gen';

export type SignalingCloseReason =
  | { kind: 'unreachable' } // never opened
  | { kind: 'closed'; code: number; reason: string } // closed after opening
  | { kind: 'local' }; // we closed it

export interface SignalingHandlers {
  onMessage(msg: ServerMessage): void;
  onClose(reason: SignalingCloseReason): void;
}

/** URL of the signaling endpoint on the same origin (`ws:` on http, `wss:` on https). */
export function signalingUrl(loc: Location = location): string {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

const MESSAGE_TYPES = new Set([
  'welcome',
  'create_group',
  'mls',
  'commit_rejected',
  'offer',
  'tracks',
  'participant_joined',
  'participant_left',
  'participant_updated',
  'chat',
  'speaking',
  'keepalive',
  'error',
]);

/**
 * The server sends something at least every KEEPALIVE_SECONDS; after this
 * long without a message it has stopped answering (frozen, or the network
 * path is gone without the TCP connection noticing).
 */
const SILENCE_LIMIT_MS = KEEPALIVE_SECONDS * 2500;

/**
 * A server message, or null for anything else: not text, longer than the
 * protocol allows, not JSON, or not an object with a known `type`.
 */
export function parseServerMessage(data: unknown): ServerMessage | null {
  if (typeof data !== 'string' || data.length > MAX_MESSAGE_BYTES) return null;
  try {
    const value: unknown = JSON.parse(data);
    if (
      typeof value === 'object' &&
      value !== null &&
      'type' in value &&
      typeof value.type === 'string' &&
      MESSAGE_TYPES.has(value.type)
    ) {
      return value as ServerMessage;
    }
  } catch {
    // fall through
  }
  return null;
}

export class Signaling {
  private ws: WebSocket;
  private opened = false;
  private closedLocally = false;
  private finished = false;
  private lastHeard = 0;
  private watchdog: number | undefined;

  constructor(
    url: string,
    private readonly handlers: SignalingHandlers,
    openTimeoutMs = 10_000,
  ) {
    this.ws = new WebSocket(url);
    const timer = window.setTimeout(() => {
      if (!this.opened) this.fail({ kind: 'unreachable' });
    }, openTimeoutMs);
    this.ws.addEventListener('open', () => {
      this.opened = true;
      window.clearTimeout(timer);
      this.lastHeard = Date.now();
      this.watchdog = window.setInterval(() => {
        if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
          this.fail({ kind: 'closed', code: 4000, reason: 'the server stopped answering' });
        }
      }, 1000);
    });
    this.ws.addEventListener('message', (ev: MessageEvent) => {
      if (this.finished) return;
      this.lastHeard = Date.now();
      const msg = parseServerMessage(ev.data);
      if (msg?.type === 'keepalive') return;
      if (msg) this.handlers.onMessage(msg);
      else console.warn('conclave: ignoring unrecognised server message', ev.data);
    });
    this.ws.addEventListener('close', (ev: CloseEvent) => {
      window.clearTimeout(timer);
      if (this.closedLocally) this.finish({ kind: 'local' });
      else if (!this.opened) this.finish({ kind: 'unreachable' });
      else this.finish({ kind: 'closed', code: ev.code, reason: ev.reason });
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends a message once the socket is open (queued by waiting for `open`). */
  send(msg: ClientMessage): void {
    const text = JSON.stringify(msg);
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(text);
    } else if (this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.addEventListener('open', () => this.ws.send(text), { once: true });
    }
  }

  /** Closes the socket; `onClose` is called with `{kind: 'local'}`. */
  close(): void {
    this.closedLocally = true;
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(1000, 'bye');
    }
    this.finish({ kind: 'local' });
  }

  private fail(reason: SignalingCloseReason): void {
    this.closedLocally = true;
    try {
      this.ws.close();
    } catch {
      // ignore
    }
    this.finish(reason);
  }

  private finish(reason: SignalingCloseReason): void {
    if (this.finished) return;
    this.finished = true;
    window.clearInterval(this.watchdog);
    this.handlers.onClose(reason);
  }
}
