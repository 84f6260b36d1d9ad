// src/e2ee/secret.ts: the invite secret in the link's fragment (`#s=…`).
import { strict as assert } from 'node:assert';
import { afterEach, test } from 'node:test';
import { toBase64, toBase64Url } from '../src/e2ee/bytes';
import { putSecretInUrl, secretFromUrl } from '../src/e2ee/secret';

const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

test('secret: a 32-byte secret comes back from the fragment, with or without the leading hash', () => {
  const secret = bytes(32);
  const value = toBase64Url(secret);
  assert.deepEqual(secretFromUrl(`#s=${value}`), secret);
  assert.deepEqual(secretFromUrl(`s=${value}`), secret);
  assert.deepEqual(secretFromUrl(`#view=grid&s=${value}&x=1`), secret);
});

test('secret: no secret, an empty one or another parameter gives null', () => {
  for (const hash of ['', '#', '#s', '#s=', '#t=AAAAAAAAAAAAAAAAAAAAAA', '#S=AAAAAAAAAAAAAAAAAAAAAA']) {
    assert.equal(secretFromUrl(hash), null, JSON.stringify(hash));
  }
});

test('secret: at least 16 bytes are needed', () => {
  assert.deepEqual(secretFromUrl(`#s=${toBase64Url(bytes(16))}`), bytes(16));
  assert.equal(secretFromUrl(`#s=${toBase64Url(bytes(15))}`), null);
  assert.equal(secretFromUrl(`#s=${toBase64Url(bytes(1))}`), null);
});

test('secret: standard base64, padding, bad lengths and non-ASCII are refused', () => {
  const padded = toBase64(bytes(16));
  assert.match(padded, /=$/);
  assert.equal(secretFromUrl(`#s=${padded}`), null, 'padding "="');
  assert.equal(secretFromUrl(`#s=${toBase64(new Uint8Array(18).fill(0xfb))}`), null, '"+" and "/"');
  assert.equal(secretFromUrl(`#s=${'A'.repeat(25)}`), null, 'length 1 mod 4 is not base64');
  assert.equal(secretFromUrl(`#s=${encodeURIComponent('é'.repeat(24))}`), null);
  assert.equal(secretFromUrl(`#s=${'A'.repeat(22)}%20`), null, 'a trailing space');
});

test('secret: only the first "s" counts', () => {
  const secret = bytes(32, 9);
  assert.deepEqual(secretFromUrl(`#s=${toBase64Url(secret)}&s=${toBase64Url(bytes(32, 5))}`), secret);
  assert.equal(secretFromUrl(`#s=short&s=${toBase64Url(secret)}`), null);
});

const realLocation = Object.getOwnPropertyDescriptor(globalThis, 'location');
const realHistory = Object.getOwnPropertyDescriptor(globalThis, 'history');
afterEach(() => {
  for (const [name, desc] of [['location', realLocation], ['history', realHistory]] as const) {
    if (desc) Object.defineProperty(globalThis, name, desc);
    else delete (globalThis as Record<string, unknown>)[name];
  }
});

test('secret: putSecretInUrl keeps the path, query and other fragment parameters', () => {
  const fakeLocation = { pathname: '/team-standup', search: '?lang=de', hash: '#view=grid&s=old' };
  const calls: { state: unknown; url: string }[] = [];
  const fakeHistory = {
    state: { page: 1 },
    replaceState(state: unknown, _title: string, url: string) {
      calls.push({ state, url });
    },
  };
  Object.defineProperty(globalThis, 'location', { value: fakeLocation, configurable: true, writable: true });
  Object.defineProperty(globalThis, 'history', { value: fakeHistory, configurable: true, writable: true });

  const secret = bytes(32, 77);
  putSecretInUrl(secret);
  assert.equal(calls.length, 1);
  const call = calls[0]!;
  assert.deepEqual(call.state, { page: 1 });
  assert.equal(call.url, `/team-standup?lang=de#view=grid&s=${toBase64Url(secret)}`);
  const hash = call.url.slice(call.url.indexOf('#'));
  assert.deepEqual(secretFromUrl(hash), secret);
});
