// src/e2ee/receivers.ts: which member's frames a receiver accepts when the
// server moves its m-line (receive slot) from one participant to another.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { judge, leafOf, newBindingState, rebind, SWITCH_MS } from '../src/e2ee/receivers';

const A = 3;
const B = 5;
const C = 8;

test('receivers: the page\'s bindings as the Worker holds them', () => {
  assert.equal(leafOf(4), 4);
  assert.equal(leafOf(0), 0);
  assert.equal(leafOf('unverified'), undefined);
  assert.equal(leafOf('none'), null);
});

test('receivers: only the bound member\'s frames are accepted; others are wrong senders', () => {
  const s = newBindingState(A, 1);
  assert.equal(judge(s, A, 10_000), 'accept');
  assert.equal(judge(s, B, 10_000), 'wrong-sender');
  assert.equal(judge(s, null, 10_000), 'wrong-sender', 'an unreadable KID is nobody\'s');
  const none = newBindingState(null, 0);
  assert.equal(judge(none, A, 10_000), 'unmapped');
  assert.equal(judge(none, null, 10_000), 'unmapped');
});

test('receivers: moving A\'s slot to B accepts only B from then on; A\'s frames in flight are switching, not wrong senders', () => {
  const s = newBindingState(A, 1);
  const t = 50_000;
  assert.equal(judge(s, A, t - 5), 'accept');
  const r = rebind(s, B, 2, t);
  assert.deepEqual(r, { changed: true, reclassified: 0, flowingNow: false });
  assert.equal(s.flowing, false, 'the new binding has passed nothing yet');
  assert.equal(judge(s, A, t + 20), 'switching');
  assert.equal(judge(s, B, t + 30), 'accept');
  assert.equal(judge(s, A, t + SWITCH_MS), 'switching');
  assert.equal(judge(s, A, t + SWITCH_MS + 1), 'wrong-sender', 'later, A on B\'s slot is the server lying');
});

test('receivers: B\'s first frames before the page learns of the move are reclassified when it binds B', () => {
  const s = newBindingState(A, 1);
  const t = 80_000;
  for (let i = 0; i < 4; i++) assert.equal(judge(s, B, t + i), 'wrong-sender');
  const r = rebind(s, B, 2, t + 40);
  assert.equal(r.reclassified, 4);
  assert.equal(judge(s, B, t + 50), 'accept');
  // Once only: a later rebinding does not move them again.
  rebind(s, A, 3, t + 60);
  assert.equal(rebind(s, B, 4, t + 70).reclassified, 0);
});

test('receivers: a long run of another member\'s frames is not excused by binding to that member later', () => {
  const s = newBindingState(A, 1);
  const t = 100_000;
  judge(s, B, t);
  judge(s, B, t + SWITCH_MS / 2);
  judge(s, B, t + SWITCH_MS + 200);
  assert.equal(rebind(s, B, 2, t + SWITCH_MS + 300).reclassified, 0);
  // Nor frames of a third member.
  const u = newBindingState(A, 1);
  judge(u, C, t);
  assert.equal(rebind(u, B, 2, t + 10).reclassified, 0);
  // A run restarts when another member's frames come in between.
  const v = newBindingState(A, 1);
  judge(v, B, t);
  judge(v, C, t + 1);
  judge(v, B, t + 2);
  assert.equal(rebind(v, B, 2, t + 3).reclassified, 1);
});

test('receivers: a slot that goes to nobody drops everything; A\'s frames in flight are switching', () => {
  const s = newBindingState(A, 1);
  const t = 200_000;
  rebind(s, null, 2, t);
  assert.equal(judge(s, A, t + 10), 'switching');
  assert.equal(judge(s, A, t + SWITCH_MS + 1), 'unmapped');
  // It gets someone again: only them.
  rebind(s, C, 3, t + 5000);
  assert.equal(judge(s, C, t + 5001), 'accept');
  assert.equal(judge(s, A, t + 5002), 'wrong-sender', 'the switch away from A was long ago; from nobody to C is no switch from a member');
});

test('receivers: rebinding to the same member changes nothing but the number, and reports flowing again if it flowed', () => {
  const s = newBindingState(A, 1);
  assert.deepEqual(rebind(s, A, 2, 1000), { changed: false, reclassified: 0, flowingNow: false });
  s.flowing = true;
  assert.deepEqual(rebind(s, A, 3, 2000), { changed: false, reclassified: 0, flowingNow: true });
  assert.equal(s.seq, 3);
  assert.equal(s.switchedAt, -Infinity);
  assert.equal(judge(s, B, 2001), 'wrong-sender');
});

test('receivers: an unverified binding in between still counts as a move away from the member', () => {
  const s = newBindingState(A, 1);
  rebind(s, undefined, 2, 5000);
  assert.equal(s.leaf, undefined);
  rebind(s, B, 3, 5100);
  assert.equal(judge(s, A, 5200), 'switching', 'A left less than SWITCH_MS ago');
  assert.equal(judge(s, B, 5200), 'accept');
});
