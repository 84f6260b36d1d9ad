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
  'session',
  'resumed',
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

/**
 * A WebSocket opened ahead of `join` (during pre-join, see prepare.ts). The
 * server closes a connection that sends no `join` within 15 s, so one older
 * than this is not used.
 */
export const PREPARED_SOCKET_MAX_AGE_MS = 12_000;

export class Signaling {
  private ws: WebSocket;
  private opened = false;
  private closedLocally = false;
  private finished = false;
  private lastHeard = 0;
  private watchdog: number | undefined;
  private openTimer: number | undefined;
  /**
   * Set while the socket is one opened ahead of time and the server has not
   * answered on it yet: what was sent on it, to send again on a fresh socket
   * if it closes first (the server may have dropped it while it waited).
   */
  private unanswered: string[] | null = null;
  /**
   * Server messages received in this session, on this socket and any
   * earlier one it resumes (`resume` reports it): every one but
   * `keepalive` and `resumed`, which the server does not number either.
   */
  private count: number;

  constructor(
    private readonly url: string,
    private readonly handlers: SignalingHandlers,
    private readonly openTimeoutMs = 10_000,
    prepared: WebSocket | null = null,
    receivedBefore = 0,
  ) {
    this.count = receivedBefore;
    const usable = prepared && (prepared.readyState === WebSocket.OPEN || prepared.readyState === WebSocket.CONNECTING);
    if (prepared && !usable) prepared.close();
    if (usable) this.unanswered = [];
    this.ws = this.adopt(usable ? prepared : new WebSocket(url));
  }

  /** Makes `ws` this connection's socket (returned, for the constructor). */
  private adopt(ws: WebSocket): WebSocket {
    this.ws = ws;
    const onOpen = (): void => {
      if (this.ws !== ws || this.opened) return;
      this.opened = true;
      window.clearTimeout(this.openTimer);
      this.lastHeard = Date.now();
      this.watchdog = window.setInterval(() => {
        if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
          this.fail({ kind: 'closed', code: 4000, reason: 'the server stopped answering' });
        }
      }, 1000);
    };
    if (ws.readyState === WebSocket.OPEN) {
      onOpen();
    } else {
      this.openTimer = window.setTimeout(() => {
        if (!this.opened) this.fail({ kind: 'unreachable' });
      }, this.openTimeoutMs);
      ws.addEventListener('open', onOpen);
    }
    ws.addEventListener('message', (ev: MessageEvent) => {
      if (this.finished || this.ws !== ws) return;
      this.unanswered = null;
      this.lastHeard = Date.now();
      const msg = parseServerMessage(ev.data);
      if (msg?.type === 'keepalive') return;
      if (msg?.type !== 'resumed') this.count += 1;
      if (msg) this.handlers.onMessage(msg);
      else console.warn('conclave: ignoring unrecognised server message', ev.data);
    });
    ws.addEventListener('close', (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      window.clearTimeout(this.openTimer);
      if (this.closedLocally) {
        this.finish({ kind: 'local' });
        return;
      }
      if (this.unanswered !== null) {
        // The socket opened ahead of time died before the server answered
        // anything: start over on a fresh one, as if it had never been.
        const resend = this.unanswered;
        this.unanswered = null;
        window.clearInterval(this.watchdog);
        this.opened = false;
        this.adopt(new WebSocket(this.url));
        for (const text of resend) this.sendText(text);
        return;
      }
      if (!this.opened) this.finish({ kind: 'unreachable' });
      else this.finish({ kind: 'closed', code: ev.code, reason: ev.reason });
    });
    return ws;
  }

  /** When the server was last heard from (ms since the epoch; 0: never). */
  get heardAt(): number {
    return this.lastHeard;
  }

  /** Server messages received in this session (see `count`). */
  get received(): number {
    return this.count;
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends a message once the socket is open (queued by waiting for `open`). */
  send(msg: ClientMessage): void {
    this.sendText(JSON.stringify(msg));
  }

  private sendText(text: string): void {
    if (this.finished) return;
    const ws = this.ws;
    this.unanswered?.push(text);
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(text);
    } else if (ws.readyState === WebSocket.CONNECTING) {
      ws.addEventListener('open', () => ws.send(text), { once: true });
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
    this.unanswered = null;
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
    window.clearTimeout(this.openTimer);
    this.handlers.onClose(reason);
  }
}
