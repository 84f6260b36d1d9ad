// src/hidden-video.ts: which participants' video the page does not display,
// and when the server is told.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { HiddenVideo } from '../src/hidden-video';

function tracker(hideAfterMs = 20): { hv: HiddenVideo; sent: number[][] } {
  const sent: number[][] = [];
  const hv = new HiddenVideo((ids) => sent.push(ids), hideAfterMs);
  return { hv, sent };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a tile out of view is told after a short wait; back in view, at once', async () => {
  const { hv, sent } = tracker();
  hv.setParticipants([2, 3]);
  assert.deepEqual(sent, [], 'nothing hidden, nothing to say');
  hv.setInView(3, false);
  assert.deepEqual(sent, [], 'hiding waits');
  await sleep(40);
  assert.deepEqual(sent, [[3]]);
  hv.setInView(3, true);
  assert.deepEqual(sent, [[3], []], 'shown again without waiting');
  hv.dispose();
});

test('scrolling past a tile within the wait says nothing', async () => {
  const { hv, sent } = tracker();
  hv.setParticipants([2]);
  hv.setInView(2, false);
  hv.setInView(2, true);
  await sleep(40);
  assert.deepEqual(sent, []);
});

test('a hidden page hides everyone, and a participant joining while it is hidden', async () => {
  const { hv, sent } = tracker();
  hv.setParticipants([2]);
  hv.setPageHidden(true);
  await sleep(40);
  assert.deepEqual(sent, [[2]]);
  hv.setParticipants([2, 5]);
  await sleep(40);
  assert.deepEqual(sent.at(-1), [2, 5]);
  hv.setPageHidden(false);
  assert.deepEqual(sent.at(-1), [], 'visible again: everything shown at once');
});

test('someone who left is no longer listed, and a new session is told again', async () => {
  const { hv, sent } = tracker();
  hv.setParticipants([2, 3]);
  hv.setInView(2, false);
  hv.setInView(3, false);
  await sleep(40);
  assert.deepEqual(sent, [[2, 3]]);
  hv.setParticipants([3]);
  assert.deepEqual(sent.at(-1), [3], 'a shorter list goes out at once');
  hv.newSession();
  await sleep(40);
  assert.deepEqual(sent.at(-1), [3], 'the new session hears the list');
  assert.equal(sent.length, 3);
  hv.dispose();
});

test('someone presenting a screen stays shown while their tile is out of view, not while the page is hidden', async () => {
  const { hv, sent } = tracker();
  hv.setParticipants([2, 3], [3]);
  hv.setInView(2, false);
  hv.setInView(3, false);
  await sleep(40);
  assert.deepEqual(sent, [[2]]);
  hv.setParticipants([2, 3]);
  await sleep(40);
  assert.deepEqual(sent.at(-1), [2, 3], 'the share ended: the tile counts again');
  hv.setParticipants([2, 3], [3]);
  assert.deepEqual(sent.at(-1), [2], 'a new share is shown at once');
  hv.setPageHidden(true);
  await sleep(40);
  assert.deepEqual(sent.at(-1), [2, 3]);
  hv.dispose();
});
