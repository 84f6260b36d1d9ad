// src/chat-order.ts: where a received chat message is shown. Arrival order
// across senders; counter order within one sender session.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { chatInsertIndex, chatOrder, chatSession, type ChatOrder } from '../src/chat-order';

const ALICE = 'aa'.repeat(32);
const ALICE_REJOINED = 'a1'.repeat(32);
const BOB = 'bb'.repeat(32);

interface Msg {
  label: string;
  order: ChatOrder | null;
}

const alice = (counter: number): Msg => ({ label: `A${counter}`, order: chatOrder(1, ALICE, counter) });
const bob = (counter: number): Msg => ({ label: `B${counter}`, order: chatOrder(2, BOB, counter) });
/** Our own echo: no counter from the core, so only an arrival place. */
const own = (label: string): Msg => ({ label, order: null });

/** What the panel shows after these arrivals, as ChatPanel.add does it. */
function display(arrivals: Msg[]): string[] {
  const shown: Msg[] = [];
  for (const m of arrivals) {
    shown.splice(chatInsertIndex(shown.map((s) => s.order), m.order), 0, m);
  }
  return shown.map((s) => s.label);
}

test('chat order: messages arriving in their senders\' order are shown in arrival order', () => {
  assert.deepEqual(display([alice(0), bob(0), alice(1), own('me'), bob(1), alice(2)]), ['A0', 'B0', 'A1', 'me', 'B1', 'A2']);
});

test('chat order: a message arriving after a later one of its sender is shown before it', () => {
  assert.deepEqual(display([alice(1), alice(0)]), ['A0', 'A1']);
  assert.deepEqual(display([alice(2), alice(0), alice(1)]), ['A0', 'A1', 'A2']);
  assert.deepEqual(display([alice(3), alice(2), alice(1), alice(0)]), ['A0', 'A1', 'A2', 'A3']);
});

test('chat order: other senders keep their arrival places around an inserted message', () => {
  // Alice's 1 is held back by the server: it goes just before her 2, after
  // Bob's 0 (which arrived before her 2), and Bob's 1 stays last.
  assert.deepEqual(display([alice(0), bob(0), alice(2), bob(1), alice(1)]), ['A0', 'B0', 'A1', 'A2', 'B1']);
  // Our own messages are not reordered, and an older message of Alice's
  // still goes before her later one even if ours came in between.
  assert.deepEqual(display([alice(1), own('me'), alice(0)]), ['A0', 'A1', 'me']);
});

test('chat order: the index is the first later message of the same session, else the end', () => {
  const shown = [alice(0), bob(3), alice(2), bob(5), alice(4)].map((m) => m.order);
  assert.equal(chatInsertIndex(shown, alice(1).order), 2);
  assert.equal(chatInsertIndex(shown, alice(3).order), 4);
  assert.equal(chatInsertIndex(shown, alice(5).order), 5);
  assert.equal(chatInsertIndex(shown, bob(4).order), 3);
  assert.equal(chatInsertIndex(shown, bob(0).order), 1);
  assert.equal(chatInsertIndex(shown, null), 5);
  assert.equal(chatInsertIndex([], alice(0).order), 0);
});

test('chat order: a rejoined sender is a new session, not compared with the old one', () => {
  // Same leaf, same name, new signature key: counting starts again at 0.
  const rejoined = (counter: number): Msg => ({ label: `A'${counter}`, order: chatOrder(1, ALICE_REJOINED, counter) });
  assert.deepEqual(display([alice(0), alice(1), alice(2), rejoined(0), rejoined(1)]), ['A0', 'A1', 'A2', "A'0", "A'1"]);
  // A late message of the old session does not jump ahead of the new one's
  // (the core names it with the old key), nor the other way round.
  assert.deepEqual(display([alice(0), rejoined(0), alice(1), rejoined(1)]), ['A0', "A'0", 'A1', "A'1"]);
  // The same key in another leaf is another membership too.
  const elsewhere: Msg = { label: 'X0', order: chatOrder(7, ALICE, 0) };
  assert.deepEqual(display([alice(3), elsewhere]), ['A3', 'X0']);
});

test('chat order: a reused counter never hides a message; equal counters keep arrival order', () => {
  const a = { label: 'first', order: chatOrder(1, ALICE, 4) };
  const b = { label: 'second', order: chatOrder(1, ALICE, 4) };
  assert.deepEqual(display([a, b]), ['first', 'second']);
  assert.deepEqual(display([alice(5), a, b]), ['first', 'second', 'A5']);
  assert.deepEqual(display([a, alice(5), b]), ['first', 'second', 'A5']);
});

test('chat order: any arrival order shows every message once, each sender in counter order', () => {
  const msgs = [alice(0), alice(1), alice(2), alice(3), bob(0), bob(1)];
  let count = 0;
  for (const perm of permutations(msgs)) {
    const shown = display(perm);
    count += 1;
    assert.deepEqual([...shown].sort(), msgs.map((m) => m.label).sort(), 'each message exactly once');
    assert.deepEqual(shown.filter((l) => l.startsWith('A')), ['A0', 'A1', 'A2', 'A3'], perm.map((m) => m.label).join(' '));
    assert.deepEqual(shown.filter((l) => l.startsWith('B')), ['B0', 'B1'], perm.map((m) => m.label).join(' '));
  }
  assert.equal(count, 720);
});

test('chat order: the session is the leaf and the signature key; unknown parts give no order', () => {
  assert.equal(chatSession(1, ALICE), `1:${ALICE}`);
  assert.equal(chatSession(1, ALICE.toUpperCase()), `1:${ALICE}`, 'hex case does not matter');
  assert.notEqual(chatSession(1, ALICE), chatSession(2, ALICE));
  assert.notEqual(chatSession(1, ALICE), chatSession(1, ALICE_REJOINED));
  assert.deepEqual(chatOrder(3, BOB, 0), { session: `3:${BOB}`, counter: 0 });
  // Our own echo (no key, no counter), or a sender the core could not name.
  assert.equal(chatOrder(1, null, 5), null);
  assert.equal(chatOrder(1, '', 5), null);
  assert.equal(chatOrder(null, ALICE, 5), null);
  assert.equal(chatOrder(1, ALICE, null), null);
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.equal(chatOrder(1, ALICE, bad), null, String(bad));
    assert.equal(chatOrder(bad, ALICE, 0), null, String(bad));
  }
});

function* permutations<T>(items: readonly T[]): Generator<T[]> {
  if (items.length <= 1) {
    yield [...items];
    return;
  }
  for (let i = 0; i < items.length; i += 1) {
    const rest = [...items.slice(0, i), ...items.slice(i + 1)];
    for (const p of permutations(rest)) yield [items[i] as T, ...p];
  }
}
