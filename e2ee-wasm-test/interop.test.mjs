// wasm <-> native interoperability of conclave-e2ee (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loadWasm, nativeExample, hex, unhex } from './load.mjs';

const wasm = await loadWasm();
const KEY = '00112233445566778899aabbccddeeff';
const EPOCH = 7;
const tmp = mkdtempSync(join(tmpdir(), 'e2ee-interop-'));

test('frames encrypted natively decrypt in wasm', () => {
  const file = join(tmp, 'native.json');
  execFileSync(nativeExample('sframe_interop'), ['gen', KEY, String(EPOCH), '3', file]);
  const frames = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(frames.length, 5);
  const ctx = wasm.SframeCtx.fromBaseKey(unhex(KEY), EPOCH, 4);
  for (const f of frames) {
    const ct = unhex(f.ciphertext);
    assert.equal(wasm.SframeCtx.senderLeaf(f.codec, ct), 3);
    const pt = ctx.decrypt(f.codec, ct, 0);
    assert.equal(hex(pt), f.plaintext);
    assert.throws(() => ctx.decrypt(f.codec, ct, 0), /replay/);
  }
});

test('frames encrypted in wasm decrypt natively', () => {
  const ctx = wasm.SframeCtx.fromBaseKey(unhex(KEY), EPOCH, 4);
  const key = new Uint8Array(30000).map((_, i) => (i * 13) % 256);
  key.set([0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
  const samples = [
    [0, new Uint8Array(200).fill(9)],
    [1, key],
    [1, new Uint8Array(700).fill(0x31)],
    [2, new TextEncoder().encode('wasm data')],
  ];
  const out = new Uint8Array(40000);
  const items = samples.map(([codec, pt], i) => {
    // Exercise both the allocating and the caller-buffer variants.
    const ct = i % 2 ? ctx.encrypt(codec, pt) : out.slice(0, ctx.encryptInto(codec, pt, out));
    return { codec, plaintext: hex(pt), ciphertext: hex(ct) };
  });
  const file = join(tmp, 'wasm.json');
  writeFileSync(file, JSON.stringify(items));
  const res = execFileSync(nativeExample('sframe_interop'), ['check', KEY, String(EPOCH), '3', file]);
  assert.match(res.toString(), /decrypted 4 frames/);
});

test('a tampered clear prefix is rejected by wasm', () => {
  const a = wasm.SframeCtx.fromBaseKey(unhex(KEY), EPOCH, 1);
  const b = wasm.SframeCtx.fromBaseKey(unhex(KEY), EPOCH, 2);
  const frame = new Uint8Array(100).fill(7);
  frame.set([0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
  const ct = a.encrypt(1, frame);
  const bad = ct.slice();
  bad[5] ^= 1;
  assert.throws(() => b.decrypt(1, bad, 0), /authentication failed/);
  assert.deepEqual(b.decrypt(1, ct, 0), frame);
});

test('a wasm member joins a native group and they exchange chat and frames', async () => {
  const SECRET = 'interop-invite-secret-0123456789';
  const proc = spawn(nativeExample('mls_peer'), [SECRET], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  const next = async () => (await lines.next()).value;
  const call = async (cmd) => {
    proc.stdin.write(cmd + '\n');
    const out = {};
    for (let l = await next(); l !== 'done'; l = await next()) {
      const [k, ...rest] = l.split(' ');
      if (k === 'error') throw new Error(rest.join(' '));
      out[k] = rest.join(' ');
    }
    return out;
  };
  try {
    assert.equal(await next(), 'ready');
    const me = new wasm.MlsMember('Wasm', new TextEncoder().encode('interop-room'), new TextEncoder().encode(SECRET));
    const r = await call('join ' + hex(me.joinRequest()));
    const ev = JSON.parse(me.processIncoming(unhex(r.welcome), 0));
    assert.equal(ev[0].type, 'joined');
    assert.deepEqual(ev[0].roster.map((x) => x.displayName), ['Native', 'Wasm']);
    assert.equal(ev[0].securityCode, r.code);
    assert.equal(me.securityCode(), r.code);
    const chat = JSON.parse(me.processIncoming(unhex(r.chat), 0));
    assert.equal(chat[0].type, 'chat');
    assert.equal(chat[0].text, 'hello from native');
    assert.equal(chat[0].sender.displayName, 'Native');
    assert.equal(new TextDecoder().decode(me.sframeDecrypt(0, unhex(r.frame), 0)), 'native frame');
    // Media Worker path: a standalone context fed with the exported base key.
    const worker = new wasm.SframeCtx(me.ownLeaf());
    worker.setEpochKey(me.epoch(), me.sframeBaseKey(), 0);
    const back = await call('chat ' + hex(me.encryptChat('hello from wasm')));
    assert.equal(back['got-chat'], 'hello from wasm');
    const fr = await call('frame ' + hex(worker.encrypt(0, new TextEncoder().encode('wasm frame'))));
    assert.equal(fr['got-frame'], 'wasm frame');
  } finally {
    proc.stdin.end('quit\n');
  }
});

test('bad input throws errors instead of crashing the module', () => {
  const ctx = new wasm.SframeCtx(0);
  assert.throws(() => ctx.encrypt(0, new Uint8Array(3)), /no sending key|no key/);
  assert.throws(() => ctx.decrypt(9, new Uint8Array(3), 0), /codec/);
  assert.throws(() => wasm.SframeCtx.fromBaseKey(new Uint8Array(3), 1, 0), /16 bytes/);
  const m = new wasm.MlsMember('X', new Uint8Array([1]), undefined);
  assert.throws(() => m.processIncoming(new Uint8Array([0, 1, 2]), 0));
  assert.throws(() => m.epoch(), /not in a group/);
  // Still usable after errors.
  m.createGroup(undefined, 0);
  assert.equal(m.epoch(), 0);
});
