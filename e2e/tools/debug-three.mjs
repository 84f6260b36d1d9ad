// Three members; prints each page's media-Worker statistics, decoded video
// and which senders/receivers have transforms, after 15 s.
//   node e2e/tools/debug-three.mjs            (Chromium's createEncodedStreams)
//   FORCE_SCRIPT=1 node e2e/tools/debug-three.mjs
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { decodedVideo, e2eeStats, join, uniqueRoom, waitSecured } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const server = await startServer();
const browser = await launchBrowser();
const room = uniqueRoom('dbg');
const people = [];
for (const n of ['Ada', 'Grace', 'Kathy']) {
  const p = await newParticipant(browser, n);
  // FORCE_SCRIPT=1 hides createEncodedStreams so Chromium uses RTCRtpScriptTransform
  // (how the video bypass in docs/security.md §8 was seen).
  if (process.env.FORCE_SCRIPT) await p.context.addInitScript(() => { delete RTCRtpSender.prototype.createEncodedStreams; delete RTCRtpReceiver.prototype.createEncodedStreams; });
  people.push(p);
  await join(p, server.url, room, n);
  await waitSecured(p.page);
}
await sleep(15000);
for (const p of people) {
  console.log(p.label, JSON.stringify(await e2eeStats(p.page)));
  console.log(p.label, JSON.stringify((await decodedVideo(p.page)).map((s) => [s.trackIdentifier, s.packetsReceived, s.framesDecoded])));
  console.log(p.label, JSON.stringify(await p.page.evaluate(() => { const pc = window.__e2ePeers.at(-1); return { s: pc.getSenders().map((x) => [x.track?.kind ?? null, !!x.transform]), r: pc.getReceivers().map((x) => [x.track.kind, !!x.transform]), t: pc.getTransceivers().map((t) => [t.mid, t.direction, !!t.sender.transform, !!t.receiver.transform]) }; })));
  console.log(p.log.slice(-10).join('\n'));
}
await browser.close();
await server.stop();
