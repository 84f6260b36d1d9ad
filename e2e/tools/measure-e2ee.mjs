// Measures the cost of end-to-end encryption against the real binary on
// loopback with headless Chromium (issue 4's report):
//  1. join: a fourth member joins a three-member call; ms from pressing Join
//     (past pre-join) to its first decoded remote video frame, MLS included;
//  2. rekey: a member leaves; ms from closing its page until every remaining
//     member receives every remaining sender's frames under the new epoch
//     (from the media Worker's per-sender statistics);
//  3. cpu: CPU of one Chromium participant (its whole browser process tree)
//     in a three-person 720p call, with the transforms and with them replaced
//     by pass-through streams (a measurement-only page script; the app itself
//     cannot turn encryption off).
//
//   node e2e/tools/measure-e2ee.mjs [runs=10] [cpuSeconds=20]   (cpuSeconds 0 skips part 3)
// Prints one JSON object (medians and all samples). Needs target/release/conclave.
import { readFileSync, readdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { CHROMIUM, chromiumArgs, launchBrowser, newParticipant } from '../lib/browser.mjs';
import { decodedVideo, e2eeState, e2eeStats, join, timedJoin, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

const runs = Number(process.argv[2] ?? 10);
const cpuSeconds = Number(process.argv[3] ?? 20);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};


/** ms from `leftAt` until every remaining page gets every other remaining sender under the new epoch. */
async function rekeyTime(remaining, leftAt, oldEpoch) {
  const states = await waitFor(async () => {
    const s = await Promise.all(remaining.map((p) => e2eeState(p.page)));
    return s.every((x) => x.epoch > oldEpoch && x.roster.length === remaining.length) ? s : null;
  }, { what: 'the remaining members to apply the removal', timeoutMs: 15_000 });
  const epochBits = states[0].epoch & 15;
  const leaves = states.map((s) => s.ownLeaf);
  return waitFor(async () => {
    let worst = 0;
    for (const [i, p] of remaining.entries()) {
      const stats = await e2eeStats(p.page);
      for (const leaf of leaves) {
        if (leaf === leaves[i]) continue;
        const s = stats.senders[String(leaf)];
        if (!s || s.epoch !== epochBits || s.lastAt < leftAt) return null;
        worst = Math.max(worst, s.since - leftAt);
      }
    }
    return worst;
  }, { what: 'every sender to use the new epoch', timeoutMs: 15_000, intervalMs: 100 });
}

async function joinAndRekey(server, browser) {
  const joins = [];
  const rekeys = [];
  for (let i = 0; i < runs; i++) {
    const room = uniqueRoom('measure-e2ee');
    const people = [];
    for (const name of ['A', 'B', 'C']) {
      const p = await newParticipant(browser, name);
      people.push(p);
      await join(p, server.url, room, name);
      await waitSecured(p.page);
    }
    await waitFor(async () => (await decodedVideo(people[2].page)).filter((s) => s.framesDecoded > 0).length >= 2, { what: 'the three to see each other' });
    const fourth = await newParticipant(browser, 'D');
    people.push(fourth);
    joins.push(Math.round(await timedJoin(fourth, server.url, room, 'D')));
    await waitFor(async () => (await Promise.all(people.map((p) => e2eeState(p.page)))).every((s) => s.roster.length === 4), { what: 'four members' });
    await sleep(1500);
    const oldEpoch = (await e2eeState(people[0].page)).epoch;
    const leaving = people.splice(1, 1)[0];
    const leftAt = Date.now();
    await leaving.context.close();
    rekeys.push(Math.round(await rekeyTime(people, leftAt, oldEpoch)));
    for (const p of people) await p.context.close();
  }
  return { joins, rekeys };
}

/** Pass-through Encoded Streams: frames are sent and decoded as they are (measurement only). */
function passThrough() {
  for (const proto of [RTCRtpSender.prototype, RTCRtpReceiver.prototype]) {
    const original = proto.createEncodedStreams;
    if (!original) continue;
    proto.createEncodedStreams = function () {
      const real = original.call(this);
      real.readable.pipeTo(real.writable).catch(() => {});
      return { readable: new ReadableStream(), writable: new WritableStream() };
    };
  }
}

/** 720p from the fake camera whatever the app asks for (measurement only). */
function force720p() {
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => {
    if (c && c.video) c = { ...c, video: { ...(typeof c.video === 'object' ? c.video : {}), width: { exact: 1280 }, height: { exact: 720 }, frameRate: { ideal: 30 } } };
    return gum(c);
  };
}

function processTree(rootPid) {
  const parent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const tree = new Set([rootPid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent) if (tree.has(ppid) && !tree.has(pid)) { tree.add(pid); grew = true; }
  }
  return [...tree];
}

function cpuTicks(pids) {
  let t = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      t += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return t;
}

function findBrowserPid(tag) {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(tag) && !readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('--type=')) return Number(d);
    } catch {
      // gone
    }
  }
  throw new Error(`browser with ${tag} not found`);
}

async function cpuOfOne(server, encrypted) {
  const room = uniqueRoom(encrypted ? 'cpu-e2ee' : 'cpu-plain');
  const browsers = [];
  const people = [];
  for (let i = 0; i < 3; i++) {
    const tag = `--conclave-measure-${process.pid}-${i}-${encrypted}`;
    const b = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...chromiumArgs(), tag] });
    browsers.push({ b, tag });
    const p = await newParticipant(b, `P${i}`, { width: 1280, height: 720 });
    await p.context.addInitScript(force720p);
    if (!encrypted) await p.context.addInitScript(passThrough);
    people.push(p);
    await join(p, server.url, room, `P${i}`);
  }
  await waitFor(async () => (await decodedVideo(people[0].page)).filter((s) => s.framesDecoded > 0).length >= 2, {
    what: 'participant 0 to decode two videos', timeoutMs: 30_000,
  });
  await sleep(5000);
  const pids = processTree(findBrowserPid(browsers[0].tag));
  const hz = 100;
  const t0 = cpuTicks(pids);
  const w0 = Date.now();
  await sleep(cpuSeconds * 1000);
  const share = (cpuTicks(pids) - t0) / hz / ((Date.now() - w0) / 1000);
  const widths = (await decodedVideo(people[0].page)).map((s) => s.frameWidth);
  for (const { b } of browsers) await b.close();
  return { percentOfOneCore: Math.round(share * 1000) / 10, decodedWidths: widths };
}

const server = await startServer();
try {
  const browser = await launchBrowser();
  const { joins, rekeys } = await joinAndRekey(server, browser);
  await browser.close();
  const cpu = { withTransforms: [], passThrough: [] };
  const widths = [];
  for (let i = 0; i < (cpuSeconds > 0 ? 3 : 0); i++) {
    for (const [encrypted, list] of [[true, cpu.withTransforms], [false, cpu.passThrough]]) {
      const r = await cpuOfOne(server, encrypted);
      list.push(r.percentOfOneCore);
      widths.push(...r.decodedWidths);
    }
  }
  console.log(JSON.stringify({
    machine: '2 vCPU VM, headless Chromium, loopback',
    fourthJoinToFirstRemoteVideoMs: { median: median(joins), samples: joins },
    leaveToAllSendersOnNewEpochMs: { median: median(rekeys), samples: rekeys },
    chromiumCpu720pThreePerson: {
      withE2eeMedianPercent: median(cpu.withTransforms),
      passThroughMedianPercent: median(cpu.passThrough),
      samples: cpu,
      decodedWidths: [...new Set(widths)],
    },
  }, null, 2));
} finally {
  await server.stop();
}
