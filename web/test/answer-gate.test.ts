// src/answer-gate.ts: server messages wait while an offer is being answered
// (the MLS Welcome must not hold back the SDP answer), then come in order.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { AnswerGate, type GateTimers } from '../src/answer-gate';

function fakeTimers(): GateTimers & { fire(): void; pending(): number } {
  const due = new Map<number, () => void>();
  let next = 1;
  return {
    set: (fn) => {
      due.set(next, fn);
      return next++;
    },
    clear: (id) => {
      if (id !== undefined) due.delete(id);
    },
    fire: () => {
      const fns = [...due.values()];
      due.clear();
      for (const fn of fns) fn();
    },
    pending: () => due.size,
  };
}

test('answer gate: messages pass at once when no offer is being answered', () => {
  const got: string[] = [];
  const gate = new AnswerGate<string>((m) => got.push(m), 2000, fakeTimers());
  gate.push('welcome');
  gate.push('mls');
  assert.deepEqual(got, ['welcome', 'mls']);
  assert.equal(gate.holding, false);
});

test('answer gate: an MLS Welcome arriving while the offer is answered waits for the answer, then comes in order', () => {
  const got: string[] = [];
  const timers = fakeTimers();
  const gate = new AnswerGate<string>((m) => got.push(`handled ${m}`), 2000, timers);
  gate.answeringOffer();
  gate.push('mls welcome');
  gate.push('chat proof');
  gate.push('participant_joined');
  assert.equal(got.length, 0, 'nothing is handled before the answer');
  assert.equal(gate.holding, true);
  got.push('answer sent');
  gate.answered();
  assert.deepEqual(got, ['answer sent', 'handled mls welcome', 'handled chat proof', 'handled participant_joined']);
  assert.equal(gate.holding, false);
  assert.equal(timers.pending(), 0, 'the hold timer is cleared');
  gate.push('later');
  assert.equal(got.at(-1), 'handled later');
});

test('answer gate: with two offers in flight, messages wait for both answers', () => {
  const got: string[] = [];
  const gate = new AnswerGate<string>((m) => got.push(m), 2000, fakeTimers());
  gate.answeringOffer();
  gate.answeringOffer();
  gate.push('a');
  gate.answered();
  assert.deepEqual(got, []);
  gate.answered();
  assert.deepEqual(got, ['a']);
});

test('answer gate: an answer that never comes holds messages no longer than the limit', () => {
  const got: string[] = [];
  const timers = fakeTimers();
  const gate = new AnswerGate<string>((m) => got.push(m), 2000, timers);
  gate.answeringOffer();
  gate.push('mls welcome');
  timers.fire();
  assert.deepEqual(got, ['mls welcome']);
  gate.push('next');
  assert.deepEqual(got, ['mls welcome', 'next'], 'after the limit messages pass again');
  gate.answered(); // the late answer changes nothing
  assert.deepEqual(got, ['mls welcome', 'next']);
});

test('answer gate: closed, it drops what it held and delivers nothing more', () => {
  const got: string[] = [];
  const gate = new AnswerGate<string>((m) => got.push(m), 2000, fakeTimers());
  gate.answeringOffer();
  gate.push('held');
  gate.close();
  gate.answered();
  gate.push('after');
  assert.deepEqual(got, []);
});

test('answer gate: a message whose handling ends the session stops the rest', () => {
  const got: string[] = [];
  let gate: AnswerGate<string> | null = null;
  gate = new AnswerGate<string>((m) => {
    got.push(m);
    if (m === 'removed') gate?.close();
  }, 2000, fakeTimers());
  gate.answeringOffer();
  gate.push('removed');
  gate.push('chat');
  gate.answered();
  assert.deepEqual(got, ['removed']);
});

test('answer gate: flush delivers what is held at once, in order (the connection closed after it)', () => {
  const got: string[] = [];
  const timers = fakeTimers();
  const gate = new AnswerGate<string>((m) => got.push(m), 2000, timers);
  gate.answeringOffer();
  gate.push('error knock_denied');
  gate.push('participant_left');
  assert.equal(got.length, 0);
  gate.flush();
  assert.deepEqual(got, ['error knock_denied', 'participant_left']);
  assert.equal(gate.holding, false);
  assert.equal(timers.pending(), 0, 'the hold timer is cleared');
  // The answer that was pending finishes later: nothing is delivered twice.
  gate.answered();
  assert.deepEqual(got, ['error knock_denied', 'participant_left']);
});
