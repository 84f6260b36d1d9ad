// src/ui/landing.ts: room names (the same rules as the server) and the
// page path that carries them.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { MAX_ROOM_CHARS } from '../src/protocol.gen';
import { generateRoomName, roomFromPath, roomNameProblem, roomPath } from '../src/ui/landing';

test('room name: letters of any script, digits and - _ . ~ are accepted', () => {
  for (const room of ['team-standup', 'a', 'Q3_review.v2~final', 'café', 'встреча', '会議室', 'ميتنغ', '٣٤٥', 'x'.repeat(MAX_ROOM_CHARS)]) {
    assert.equal(roomNameProblem(room), null, room);
  }
});

test('room name: the length limit counts code points, not UTF-16 units', () => {
  assert.equal(MAX_ROOM_CHARS, 64);
  const astral = '𝒜'; // a letter outside the BMP: two UTF-16 units
  assert.equal(roomNameProblem(astral.repeat(64)), null);
  assert.match(roomNameProblem(astral.repeat(65)) ?? '', /at most 64 characters/);
  assert.match(roomNameProblem('a'.repeat(65)) ?? '', /at most 64 characters/);
});

test('room name: empty, "." and ".." are refused with their own message', () => {
  assert.equal(roomNameProblem(''), 'Enter a room name.');
  assert.equal(roomNameProblem('.'), 'That is not a room name.');
  assert.equal(roomNameProblem('..'), 'That is not a room name.');
});

test('room name: spaces, separators, percent signs, emoji and controls are refused', () => {
  for (const room of [' ', 'a b', 'a/b', 'a\\b', 'a%20b', 'a?b', 'a#b', 'a&b', 'a+b', 'room🎉', 'a\u0000', 'a\nb', 'a\u200bb', '<script>']) {
    assert.match(roomNameProblem(room) ?? '', /Use letters, digits/, JSON.stringify(room));
  }
});

test('room path: roomPath and roomFromPath round-trip any valid name', () => {
  for (const room of ['team-standup', 'café-会議', 'a~b.c_d', '𝒜𝒝']) {
    const path = roomPath(room);
    assert.match(path, /^\/[A-Za-z0-9\-_.~%!*'()]+$/, path);
    assert.equal(roomFromPath(path), room);
  }
  assert.equal(roomPath('café'), '/caf%C3%A9');
});

test('room path: only the first segment counts; none gives null; bad escapes stay as typed', () => {
  assert.equal(roomFromPath('/'), null);
  assert.equal(roomFromPath(''), null);
  assert.equal(roomFromPath('///'), null);
  assert.equal(roomFromPath('/standup/extra/parts'), 'standup');
  assert.equal(roomFromPath('//standup'), 'standup');
  assert.equal(roomFromPath('/%E0%A4%A'), '%E0%A4%A');
  assert.equal(roomFromPath('/100%'), '100%');
  assert.equal(roomFromPath('/a%2Fb'), 'a/b');
  assert.notEqual(roomNameProblem('a/b'), null, 'an encoded slash decodes to a refused name');
});

test('room name: generated names are valid and look like adjective-noun-NNNN', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const room = generateRoomName();
    const m = /^([a-z]+)-([a-z]+)-(\d{4})$/.exec(room);
    assert.ok(m, room);
    const n = Number(m[3]);
    assert.ok(n >= 1000 && n <= 9999, room);
    assert.equal(roomNameProblem(room), null, room);
    seen.add(room);
  }
  assert.ok(seen.size > 150, `only ${seen.size} distinct names in 200`);
});
