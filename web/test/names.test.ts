// Display names and what is derived from them: src/ui/prejoin.ts
// (nameProblem), src/ui/dom.ts (initials, hueFor), and the security code's
// grouping in src/ui/security.ts.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { MAX_NAME_CHARS } from '../src/protocol.gen';
import { hueFor, initials } from '../src/ui/dom';
import { nameProblem } from '../src/ui/prejoin';
import { codeGroups } from '../src/ui/security';

test('name: ordinary names in any script are accepted', () => {
  for (const name of ['Ada', 'Ada Lovelace', 'Zoë 李', 'Ørjan Ødegård', 'José-María', '\u00a0Ada', '🦊 Fox']) {
    assert.equal(nameProblem(name), null, name);
  }
});

test('name: an empty or blank name is refused', () => {
  for (const name of ['', ' ', '   ', '\u3000', '\u00a0\u2003']) {
    assert.match(nameProblem(name) ?? '', /Enter your name/, JSON.stringify(name));
  }
});

test('name: the length limit counts code points', () => {
  assert.equal(MAX_NAME_CHARS, 64);
  assert.equal(nameProblem('a'.repeat(64)), null);
  assert.equal(nameProblem('😀'.repeat(64)), null, '64 emoji are 128 UTF-16 units but 64 characters');
  assert.match(nameProblem('😀'.repeat(65)) ?? '', /at most 64 characters/);
  assert.match(nameProblem('a'.repeat(65)) ?? '', /at most 64 characters/);
});

test('name: C0 and C1 control characters are refused, format characters are not', () => {
  for (const name of ['Ada\u0000', '\tAda', 'A\nB', 'A\rB', 'Ada\u001b[31m', 'Ada\u007f', 'Ada\u0085', 'Ada\u009f']) {
    assert.match(nameProblem(name) ?? '', /control characters/, JSON.stringify(name));
  }
  assert.equal(nameProblem('Ada\u00a0Lovelace'), null);
});

test('initials: the first letters of the first and last word, upper-cased', () => {
  assert.equal(initials('Ada Lovelace'), 'AL');
  assert.equal(initials('  ada   king  lovelace '), 'AL');
  assert.equal(initials('ada'), 'A');
  assert.equal(initials('élodie durand'), 'ÉD');
  assert.equal(initials('Ada\tLovelace\n'), 'AL');
});

test('initials: astral characters stay whole; empty and blank names give ""', () => {
  assert.equal(initials('😀 Smile'), '😀S');
  assert.equal(initials('𝒜da'), '𝒜');
  assert.equal([...initials('🦊')].length, 1);
  assert.equal(initials(''), '');
  assert.equal(initials('   '), '');
});

test('hueFor: a stable hue in [0, 360) that differs between neighbouring ids', () => {
  assert.equal(hueFor(0), 0);
  for (let id = 0; id < 2000; id++) {
    const hue = hueFor(id);
    assert.ok(hue >= 0 && hue < 360, `id ${id}: ${hue}`);
    assert.equal(hueFor(id), hue);
    assert.ok(Math.abs(hueFor(id + 1) - hue) > 10, `ids ${id} and ${id + 1} look alike`);
  }
});

test('security code: digits in groups of five, anything else dropped', () => {
  const code = '123456789012345678901234567890';
  assert.deepEqual(codeGroups(code), ['12345', '67890', '12345', '67890', '12345', '67890']);
  assert.deepEqual(codeGroups('12345 67890'), ['12345', '67890']);
  assert.deepEqual(codeGroups('12-34-56-7'), ['12345', '67']);
  assert.deepEqual(codeGroups(''), []);
  assert.deepEqual(codeGroups('no digits'), []);
});
