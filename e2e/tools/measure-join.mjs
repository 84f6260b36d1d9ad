// Measures, against the real binary on loopback with headless Chromium:
//  1. time from pressing Join on the room page (past pre-join) to the first
//     decoded remote video frame, for a third participant joining two others
//     (median of N runs, default 10);
//  2. the server's CPU and memory while three participants send camera video.
//
//   node e2e/tools/measure-join.mjs [runs]
// Prints one JSON object. Needs target/release/conclave (or CONCLAVE_BIN).
import { readFileSync } from 'node:fs';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { join, timedJoin, uniqueRoom } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

const runs = Number(process.argv[2] ?? 10);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};


function cpuTicks(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime (clock ticks)
}

function rssKiB(pid) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]);
}

const server = await startServer();
const browser = await launchBrowser();
try {
  const room = uniqueRoom('measure');
  const a = await join(await newParticipant(browser, 'A'), server.url, room, 'Ada');
  const b = await join(await newParticipant(browser, 'B'), server.url, room, 'Bob');
  const joinMs = [];
  for (let i = 0; i < runs; i++) {
    const c = await newParticipant(browser, `C${i}`);
    joinMs.push(await timedJoin(c, server.url, room, `Cy ${i}`));
    if (i < runs - 1) {
      await c.context.close();
      await sleep(1500);
    }
  }
  // Three participants sending camera video now; let it settle, then sample.
  await sleep(3000);
  const seconds = 20;
  const hz = 100; // USER_HZ on Linux
  const t0 = cpuTicks(server.pid);
  await sleep(seconds * 1000);
  const cpuPercent = ((cpuTicks(server.pid) - t0) / hz / seconds) * 100;
  console.log(
    JSON.stringify({
      joinToFirstRemoteFrameMs: { median: Math.round(median(joinMs)), runs: joinMs.map(Math.round) },
      serverWith3Participants: { cpuPercentOfOneCore: Number(cpuPercent.toFixed(1)), rssMiB: Number((rssKiB(server.pid) / 1024).toFixed(1)), sampledSeconds: seconds },
    }),
  );
  void a;
  void b;
} finally {
  await browser.close();
  await server.stop();
}
