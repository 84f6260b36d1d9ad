// src/tracks.ts: the m-line map from offers and from `tracks` messages
// (receive slots moved between participants without renegotiation).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import type { TrackMapping } from '../src/protocol.gen';
import { isTrackMapping, remapTracks, trackMap } from '../src/tracks';

const pub = (mid: string, source: TrackMapping['source'], participant = 1): TrackMapping => ({ mid, direction: 'publish', participant, source });
const sub = (mid: string, participant: number, source: TrackMapping['source']): TrackMapping => ({ mid, direction: 'subscribe', participant, source });

/** The first offer of a slot server: 3 publish m-lines, slots 3–6 of which two carry someone. */
const offered = trackMap([pub('0', 'microphone'), pub('1', 'camera'), pub('2', 'screen'), sub('3', 2, 'microphone'), sub('5', 2, 'camera')]);

test('tracks: an offer\'s list becomes a map by mid', () => {
  assert.deepEqual([...offered.keys()], ['0', '1', '2', '3', '5']);
  assert.deepEqual(offered.get('5'), sub('5', 2, 'camera'));
});

test('tracks: a slot moves to another participant, to nobody, and a free slot gets someone', () => {
  const next = remapTracks(offered, [pub('0', 'microphone'), pub('1', 'camera'), pub('2', 'screen'), sub('3', 7, 'microphone'), sub('6', 2, 'camera')]);
  assert.deepEqual(next.get('3'), sub('3', 7, 'microphone'), 'slot 3 now carries participant 7');
  assert.equal(next.has('5'), false, 'slot 5 is not listed: it carries nothing');
  assert.deepEqual(next.get('6'), sub('6', 2, 'camera'), 'participant 2\'s camera moved to slot 6');
  assert.deepEqual([...next.values()].filter((m) => m.direction === 'publish').map((m) => m.mid), ['0', '1', '2']);
});

test('tracks: an empty list frees every slot and keeps the publish m-lines', () => {
  const next = remapTracks(offered, []);
  assert.deepEqual([...next.keys()], ['0', '1', '2']);
});

test('tracks: publish m-lines cannot be changed or taken over without an offer', () => {
  const next = remapTracks(offered, [
    pub('0', 'camera', 9), // another source on the microphone's m-line
    sub('1', 4, 'camera'), // our camera's m-line as a subscription
    pub('4', 'screen'), // a new publish m-line
    sub('6', 4, 'screen'),
  ]);
  assert.deepEqual(next.get('0'), pub('0', 'microphone'));
  assert.deepEqual(next.get('1'), pub('1', 'camera'));
  assert.equal(next.has('4'), false, 'no new publish m-line');
  assert.deepEqual(next.get('6'), sub('6', 4, 'screen'));
});

test('tracks: malformed entries are left out, a mid listed twice counts once, a non-list is an empty map', () => {
  const bad: unknown[] = [
    null,
    42,
    'x',
    { mid: 3, direction: 'subscribe', participant: 1, source: 'camera' },
    { mid: '3', direction: 'both', participant: 1, source: 'camera' },
    { mid: '3', direction: 'subscribe', participant: '1', source: 'camera' },
    { mid: '3', direction: 'subscribe', participant: 1.5, source: 'camera' },
    { mid: '3', direction: 'subscribe', participant: 1, source: 'window' },
    { mid: '3', direction: 'subscribe', participant: 1 },
  ];
  for (const t of bad) assert.equal(isTrackMapping(t), false, JSON.stringify(t));
  assert.deepEqual([...trackMap([...bad, sub('3', 5, 'camera'), sub('3', 6, 'camera')]).values()], [sub('3', 5, 'camera')]);
  for (const notAList of [null, undefined, {}, 'tracks', 3]) {
    assert.equal(trackMap(notAList).size, 0);
    assert.deepEqual([...remapTracks(offered, notAList).keys()], ['0', '1', '2'], 'a broken message frees the slots rather than keep stale owners');
  }
  // Extra fields are not carried along.
  assert.deepEqual(trackMap([{ ...sub('3', 5, 'camera'), extra: true }]).get('3'), sub('3', 5, 'camera'));
});
