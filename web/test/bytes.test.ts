// src/e2ee/bytes.ts: base64 for signaling fields, base64url for the invite
// secret, hex for keys.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { fromBase64, fromHex, toBase64, toBase64Url } from '../src/e2ee/bytes';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

test('bytes: toBase64 matches the RFC 4648 vectors, padding included', () => {
  const vectors: [string, string][] = [
    ['', ''],
    ['f', 'Zg=='],
    ['fo', 'Zm8='],
    ['foo', 'Zm9v'],
    ['foob', 'Zm9vYg=='],
    ['fooba', 'Zm9vYmE='],
    ['foobar', 'Zm9vYmFy'],
  ];
  for (const [plain, encoded] of vectors) {
    assert.equal(toBase64(ascii(plain)), encoded, plain);
    assert.deepEqual(fromBase64(encoded), ascii(plain), encoded);
  }
});

test('bytes: every byte value survives a base64 and a base64url round trip', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(fromBase64(toBase64(all)), all);
  assert.deepEqual(fromBase64(toBase64Url(all)), all);
});

test('bytes: toBase64 is right across its 32 KiB chunk boundary', () => {
  for (const length of [0x8000 - 1, 0x8000, 0x8000 + 1, 2 * 0x8000 + 3]) {
    const data = Uint8Array.from({ length }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
    const encoded = toBase64(data);
    assert.equal(encoded.length, 4 * Math.ceil(length / 3), `length ${length}`);
    assert.deepEqual(fromBase64(encoded), data, `length ${length}`);
  }
});

test('bytes: toBase64Url uses - and _ and drops the padding', () => {
  const data = new Uint8Array([0xfb, 0xff]);
  assert.equal(toBase64(data), '+/8=');
  assert.equal(toBase64Url(data), '-_8');
  assert.equal(toBase64Url(new Uint8Array(32).fill(0xff)), '_'.repeat(42) + '8');
  assert.doesNotMatch(toBase64Url(Uint8Array.from({ length: 100 }, (_, i) => 255 - i)), /[+/=]/);
});

test('bytes: fromBase64 accepts URL-safe text without padding', () => {
  assert.deepEqual(fromBase64('-_8'), new Uint8Array([0xfb, 0xff]));
  assert.deepEqual(fromBase64('Zg'), ascii('f'));
  assert.deepEqual(fromBase64('Zm8'), ascii('fo'));
});

test('bytes: fromBase64 throws on text that is not base64', () => {
  for (const bad of ['!!!!', 'Zm9v!', 'A', 'AAAAA', 'Zm9v\u00e9', '🙂🙂']) {
    assert.throws(() => fromBase64(bad), Error, JSON.stringify(bad));
  }
});

test('bytes: fromHex decodes either case and rejects odd lengths and non-hex', () => {
  assert.deepEqual(fromHex(''), new Uint8Array(0));
  assert.deepEqual(fromHex('00ff10Ab'), new Uint8Array([0, 255, 16, 171]));
  assert.deepEqual(fromHex('DEADbeef'), new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
  for (const bad of ['abc', '0', 'zz', '0x12', ' 0a', '0a ', 'é0', '٠١']) {
    assert.throws(() => fromHex(bad), /invalid hex/, JSON.stringify(bad));
  }
});
