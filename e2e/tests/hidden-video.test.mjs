// Video nobody looks at is not sent (issue 11 §2): a page that is hidden
// tells the server (`hidden_video`), which stops forwarding the others'
// video to it while their audio flows on; visible again, video is back
// from a keyframe. Measured at the receiver, from inbound-rtp counters.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { diagnostics, inboundStats, join, tileIds, uniqueRoom, waitFor } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
let browser;
const open = [];

/** Packets received so far on the page's remote video and audio streams, and video frames decoded. */
async function received(page) {
  const stats = await inboundStats(page);
  const sum = (kind, key) => stats.filter((s) => s.kind === kind).reduce((n, s) => n + (s[key] ?? 0), 0);
  return { video: sum('video', 'packetsReceived'), audio: sum('audio', 'packetsReceived'), frames: sum('video', 'framesDecoded') };
}

/** What the browser reports when the tab goes to the background (headless pages are always visible). */
async function setPageVisibility(page, state) {
  await page.evaluate((s) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => s });
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);
}

describe('video of a hidden page', { timeout: 120_000 }, () => {
  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    while (open.length) await open.pop().context.close().catch(() => {});
    await browser?.close();
    await server?.stop();
  });

  test('is not forwarded while the page is hidden, audio is, and video is back within seconds of it showing', { timeout: 90_000 }, async () => {
    const room = uniqueRoom('hidden');
    const people = [];
    for (const name of ['Ada Lovelace', 'Grace Hopper']) {
      const p = await newParticipant(browser, name.split(' ')[0]);
      open.push(p);
      people.push(p);
      await join(p, server.url, room, name);
    }
    const [ada, grace] = people;
    const ids = people.map((p) => p.id).sort((a, b) => a - b);
    try {
      for (const p of people) {
        await waitFor(async () => JSON.stringify(await tileIds(p.page)) === JSON.stringify(ids), { what: `${p.label} to show both tiles` });
      }
      await waitFor(async () => (await received(grace.page)).frames > 30, { timeoutMs: 30_000, what: 'Grace to decode Ada\'s video' });

      await setPageVisibility(grace.page, 'hidden');
      await sleep(2000); // the page waits 0.5 s before telling; packets in flight land
      const hiddenFrom = await received(grace.page);
      await sleep(3000);
      const hiddenTo = await received(grace.page);
      const videoWhileHidden = hiddenTo.video - hiddenFrom.video;
      const audioWhileHidden = hiddenTo.audio - hiddenFrom.audio;
      console.log(`hidden 3 s: ${videoWhileHidden} video packets, ${audioWhileHidden} audio packets`);
      assert.ok(videoWhileHidden <= 5, `no video reaches a hidden page (${videoWhileHidden} packets in 3 s)`);
      assert.ok(audioWhileHidden >= 100, `audio keeps flowing (${audioWhileHidden} packets in 3 s)`);
      // Ada, who hid nothing, still gets Grace's video.
      const adaFrom = await received(ada.page);
      await sleep(1000);
      assert.ok((await received(ada.page)).frames > adaFrom.frames, 'the other page still decodes video');

      const shownAt = Date.now();
      await setPageVisibility(grace.page, 'visible');
      const before = (await received(grace.page)).frames;
      await waitFor(async () => (await received(grace.page)).frames > before + 5, { timeoutMs: 10_000, what: 'video back after the page shows' });
      console.log(`video back ${Date.now() - shownAt} ms after the page showed`);
    } catch (err) {
      err.message += '\n' + (await diagnostics(people, server));
      throw err;
    }
  });
});
