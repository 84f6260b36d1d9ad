// Benchmark of the wasm build in Node: per-frame SFrame cost (median of many
// single-frame runs, including the JS<->wasm copies) and time to add one
// member to groups of 2, 10 and 50. Run: node e2ee-wasm-test/bench.mjs
import { loadWasm } from './load.mjs';

const wasm = await loadWasm();
const median = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
const enc = new TextEncoder();

function frames(size, runs) {
  const key = new Uint8Array(16).fill(3);
  const a = wasm.SframeCtx.fromBaseKey(key, 1, 0);
  const b = wasm.SframeCtx.fromBaseKey(key, 1, 1);
  const frame = new Uint8Array(size).map((_, i) => i & 255);
  const out = new Uint8Array(size + 64);
  const pt = new Uint8Array(size + 64);
  for (let i = 0; i < 100; i++) a.encryptInto(0, frame, out);
  const cts = [];
  const e = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const n = a.encryptInto(0, frame, out);
    e.push(performance.now() - t);
    cts.push(out.slice(0, n));
  }
  const d = [];
  for (const ct of cts) {
    const t = performance.now();
    b.decryptInto(0, ct, pt, 0);
    d.push(performance.now() - t);
  }
  console.log(
    `wasm sframe ${String(size).padStart(6)} B: encrypt median ${(median(e) * 1e3).toFixed(2).padStart(8)} us, decrypt median ${(median(d) * 1e3).toFixed(2).padStart(8)} us (${runs} runs, encryptInto/decryptInto)`,
  );
}

const ROOM = enc.encode('bench-room');
const SECRET = enc.encode('bench-invite-secret-0123456789');

function groupOf(n) {
  const m0 = new wasm.MlsMember('m0', ROOM, SECRET);
  m0.createGroup(undefined, 0);
  const members = [m0];
  const joiners = [];
  for (let i = 1; i < n; i++) {
    const j = new wasm.MlsMember('m' + i, ROOM, SECRET);
    m0.processIncoming(j.joinRequest(), 0);
    joiners.push(j);
  }
  if (n > 1) {
    const c = m0.commitPending();
    const w = m0.takeWelcome();
    m0.processIncoming(c, 0);
    for (const j of joiners) {
      j.processIncoming(w, 0);
      members.push(j);
    }
  }
  return members;
}

function addMember(n, trials) {
  const ct = [];
  const pt = [];
  const wt = [];
  for (let t = 0; t < trials; t++) {
    // Fresh group per trial (no server key in the wasm binding's bench).
    const members = groupOf(n);
    const j = new wasm.MlsMember('joiner', ROOM, SECRET);
    const req = j.joinRequest();
    let t0 = performance.now();
    members[0].processIncoming(req, 0);
    const c = members[0].commitPending();
    const w = members[0].takeWelcome();
    members[0].processIncoming(c, 0);
    ct.push(performance.now() - t0);
    t0 = performance.now();
    members[1].processIncoming(c, 0);
    pt.push(performance.now() - t0);
    t0 = performance.now();
    j.processIncoming(w, 0);
    wt.push(performance.now() - t0);
  }
  console.log(
    `wasm add 1 to group of ${String(n).padStart(2)}: committer (verify+commit+merge) ${median(ct).toFixed(2).padStart(7)} ms, member processes commit ${median(pt).toFixed(2).padStart(7)} ms, joiner processes Welcome ${median(wt).toFixed(2).padStart(7)} ms (${trials} trials)`,
  );
}

frames(200, 20000);
frames(30000, 2000);
for (const n of [2, 10, 50]) addMember(n, 5);
