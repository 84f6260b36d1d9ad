// src/media.ts: getUserMedia errors as problems a person can act on; and
// src/e2ee/messages.ts: the Worker's initial statistics.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { emptyStats } from '../src/e2ee/messages';
import { classifyMediaError, describeProblem, type MediaProblem } from '../src/media';

test('media errors: DOMException and Error names map to problems', () => {
  const cases: [string, MediaProblem][] = [
    ['NotAllowedError', 'denied'],
    ['SecurityError', 'denied'],
    ['PermissionDeniedError', 'denied'],
    ['NotFoundError', 'not_found'],
    ['DevicesNotFoundError', 'not_found'],
    ['OverconstrainedError', 'not_found'],
    ['NotReadableError', 'in_use'],
    ['TrackStartError', 'in_use'],
    ['AbortError', 'in_use'],
    ['InvalidStateError', 'other'],
  ];
  for (const [name, problem] of cases) {
    assert.equal(classifyMediaError(new DOMException('x', name)), problem, `DOMException ${name}`);
    const err = new Error('x');
    err.name = name;
    assert.equal(classifyMediaError(err), problem, `Error ${name}`);
  }
  assert.equal(classifyMediaError(new TypeError('no mediaDevices')), 'unsupported');
});

test('media errors: things that are not errors are "other"', () => {
  for (const thrown of [undefined, null, 'NotAllowedError', 42, { name: 'NotAllowedError' }, new Error('plain')]) {
    assert.equal(classifyMediaError(thrown), 'other', String(thrown));
  }
});

test('media errors: each problem gets a sentence about the right device', () => {
  assert.equal(describeProblem('screen', 'denied'), 'Screen sharing was cancelled or blocked.');
  assert.match(describeProblem('camera', 'denied'), /^Access to the camera is blocked\./);
  assert.match(describeProblem('microphone', 'not_found'), /^No microphone was found\./);
  assert.match(describeProblem('screen', 'in_use'), /^The screen sharing is in use/);
  assert.match(describeProblem('camera', 'unsupported'), /HTTPS or localhost/);
  assert.equal(describeProblem('microphone', 'other'), 'The microphone could not be started.');
  const problems: MediaProblem[] = ['denied', 'not_found', 'in_use', 'unsupported', 'other'];
  for (const kind of ['microphone', 'camera', 'screen'] as const) {
    const texts = new Set(problems.map((p) => describeProblem(kind, p)));
    assert.equal(texts.size, problems.length, `${kind}: every problem reads differently`);
  }
});

test('worker stats: emptyStats is all zero and a fresh object each time', () => {
  const a = emptyStats();
  assert.equal(a.keyEpoch, null);
  assert.equal(a.ownLeaf, null);
  assert.deepEqual(a.transforms, { send: 0, receive: 0 });
  assert.deepEqual(a.send, { encrypted: 0, droppedNoKey: 0, failed: 0 });
  assert.equal(a.receive.decrypted + a.receive.decryptFailed + a.receive.wrongSender + a.receive.droppedUnverified + a.receive.droppedUnmapped + a.receive.droppedSwitching, 0);
  assert.deepEqual(a.receivers, {});
  assert.equal(a.receive.aheadSince, null);
  const b = emptyStats();
  a.frames['send-audio'] = 5;
  a.receive.failures['bad tag'] = 1;
  a.senders['3'] = { epoch: 1, since: 1, lastAt: 1, frames: 1 };
  a.send.encrypted = 9;
  assert.deepEqual(b, emptyStats(), 'changing one snapshot must not change another');
});
