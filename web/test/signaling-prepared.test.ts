// src/signaling.ts with a WebSocket opened during pre-join (src/prepare.ts):
// the join goes out on it at once, and one the server dropped before it
// answered is replaced by a fresh socket without the app noticing.
import { strict as assert } from 'node:assert';
import { afterEach, test } from 'node:test';
import { Signaling, type SignalingCloseReason } from '../src/signaling';
import type { ServerMessage } from '../src/protocol.gen';

type Listener = { fn: (ev: unknown) => void; once: boolean };

class FakeSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static made: FakeSocket[] = [];
  readyState = FakeSocket.CONNECTING;
  sent: string[] = [];
  private listeners = new Map<string, Listener[]>();

  constructor(readonly url: string) {
    FakeSocket.made.push(this);
  }

  addEventListener(type: string, fn: (ev: unknown) => void, opts?: { once?: boolean }): void {
    const list = this.listeners.get(type) ?? [];
    list.push({ fn, once: !!opts?.once });
    this.listeners.set(type, list);
  }

  send(text: string): void {
    if (this.readyState !== FakeSocket.OPEN) throw new Error('not open');
    this.sent.push(text);
  }

  close(): void {
    if (this.readyState >= FakeSocket.CLOSING) return;
    this.readyState = FakeSocket.CLOSED;
    this.emit('close', { code: 1000, reason: 'bye' });
  }

  // ---- the test's side ----
  open(): void {
    this.readyState = FakeSocket.OPEN;
    this.emit('open', {});
  }

  dropped(): void {
    this.readyState = FakeSocket.CLOSED;
    this.emit('close', { code: 1006, reason: '' });
  }

  receive(msg: object): void {
    this.emit('message', { data: JSON.stringify(msg) });
  }

  private emit(type: string, ev: unknown): void {
    const list = this.listeners.get(type) ?? [];
    this.listeners.set(type, list.filter((l) => !l.once));
    for (const l of list) l.fn(ev);
  }
}

const g = globalThis as unknown as { window?: unknown; WebSocket?: unknown };
g.window = globalThis;
g.WebSocket = FakeSocket;

const URL = 'ws://conclave.test/ws';
const JOIN = { type: 'join', room: 'r', name: 'Ada', media: { microphone: true, camera: true, screen: false } } as const;
const open: Signaling[] = [];

function start(prepared: FakeSocket | null): { sig: Signaling; got: ServerMessage[]; closes: SignalingCloseReason[] } {
  const got: ServerMessage[] = [];
  const closes: SignalingCloseReason[] = [];
  const sig = new Signaling(URL, { onMessage: (m) => got.push(m), onClose: (r) => closes.push(r) }, 10_000, prepared as unknown as WebSocket);
  open.push(sig);
  return { sig, got, closes };
}

afterEach(() => {
  for (const s of open.splice(0)) s.close();
  FakeSocket.made = [];
});

test('prepared socket: the join goes out on it at once and the server answers through it', () => {
  const pre = new FakeSocket(URL);
  pre.open();
  const { sig, got } = start(pre);
  sig.send(JOIN);
  assert.equal(FakeSocket.made.length, 1, 'no other socket');
  assert.deepEqual(pre.sent.map((t) => JSON.parse(t).type), ['join']);
  pre.receive({ type: 'participant_left', id: 3 });
  assert.equal(got.length, 1);
  assert.equal(sig.isOpen, true);
});

test('prepared socket still connecting: the join waits for it to open', () => {
  const pre = new FakeSocket(URL);
  const { sig } = start(pre);
  sig.send(JOIN);
  assert.equal(pre.sent.length, 0);
  pre.open();
  assert.deepEqual(pre.sent.map((t) => JSON.parse(t).type), ['join']);
  assert.equal(FakeSocket.made.length, 1);
});

test('prepared socket dropped before the server answered: a fresh socket, the join again, and the app never sees a close', () => {
  const pre = new FakeSocket(URL);
  pre.open();
  const { sig, got, closes } = start(pre);
  sig.send(JOIN);
  pre.dropped();
  assert.deepEqual(closes, [], 'not reported as lost');
  assert.equal(FakeSocket.made.length, 2);
  const fresh = FakeSocket.made[1]!;
  assert.equal(fresh.url, URL);
  fresh.open();
  assert.deepEqual(fresh.sent.map((t) => JSON.parse(t).type), ['join'], 'the join is sent again, once');
  fresh.receive({ type: 'participant_left', id: 3 });
  assert.equal(got.length, 1);
  // From now on a close is a lost connection, as for any socket.
  fresh.dropped();
  assert.equal(FakeSocket.made.length, 2);
  assert.deepEqual(closes, [{ kind: 'closed', code: 1006, reason: '' }]);
});

test('prepared socket dropped after the server answered: a lost connection, no new socket', () => {
  const pre = new FakeSocket(URL);
  pre.open();
  const { sig, closes } = start(pre);
  sig.send(JOIN);
  pre.receive({ type: 'participant_left', id: 3 });
  pre.dropped();
  assert.equal(FakeSocket.made.length, 1);
  assert.deepEqual(closes, [{ kind: 'closed', code: 1006, reason: '' }]);
});

test('prepared socket already closed: a fresh one is opened instead', () => {
  const pre = new FakeSocket(URL);
  pre.open();
  pre.dropped();
  const { sig } = start(pre);
  sig.send(JOIN);
  assert.equal(FakeSocket.made.length, 2);
  const fresh = FakeSocket.made[1]!;
  fresh.open();
  assert.deepEqual(fresh.sent.map((t) => JSON.parse(t).type), ['join']);
  assert.equal(pre.sent.length, 0);
});

test('without a prepared socket: a fresh one, and a failure to connect is "unreachable"', () => {
  const { sig, closes } = start(null);
  sig.send(JOIN);
  assert.equal(FakeSocket.made.length, 1);
  FakeSocket.made[0]!.dropped();
  assert.deepEqual(closes, [{ kind: 'unreachable' }]);
});

test('received count: every server message but keepalive and resumed, continued from an earlier connection', () => {
  const { sig } = start(null);
  const socket = FakeSocket.made[0]!;
  socket.open();
  for (const m of [{ type: 'welcome' }, { type: 'session', resume: 'x' }, { type: 'keepalive' }, { type: 'offer' }, { type: 'nonsense' }]) socket.receive(m);
  // An unknown type still counts: the server numbered it.
  assert.equal(sig.received, 4);
  const got: ServerMessage[] = [];
  const next = new Signaling(URL, { onMessage: (m) => got.push(m), onClose: () => {} }, 10_000, null, sig.received);
  open.push(next);
  const again = FakeSocket.made[1]!;
  again.open();
  again.receive({ type: 'resumed', resume: 'y' });
  again.receive({ type: 'participant_left', id: 3 });
  assert.equal(next.received, 5, 'resumed is not numbered; what follows it is');
  assert.deepEqual(got.map((m) => m.type), ['resumed', 'participant_left']);
});
