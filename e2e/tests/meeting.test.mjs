// A meeting through the real Conclave server: three headless Chromium
// participants with fake cameras and microphones.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import {
  chatMessages,
  diagnostics,
  e2eeState,
  inboundStats,
  inviteFragment,
  join,
  participantListIds,
  tileIds,
  uniqueRoom,
  waitFor,
} from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
let browser;
const open = [];

async function meetingOfThree(prefix) {
  const room = uniqueRoom(prefix);
  const people = [];
  for (const name of ['Ada Lovelace', 'Grace Hopper', 'Katherine Johnson']) {
    const p = await newParticipant(browser, name.split(' ')[0]);
    open.push(p);
    people.push(p);
    await join(p, server.url, room, name);
  }
  const ids = people.map((p) => p.id).sort((a, b) => a - b);
  for (const p of people) {
    await waitFor(async () => JSON.stringify(await tileIds(p.page)) === JSON.stringify(ids), {
      what: `${p.label} to show all three tiles`,
    });
  }
  return { room, people, ids };
}

// The policy crates/server/src/web.rs sends, copied here on purpose: "no
// violations" alone also holds with no policy at all, so the exact header
// is asserted (a change to the policy must change this test too).
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; " +
  "style-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; object-src 'none'; " +
  "base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

async function assertNoPageErrors(people) {
  const errors = people.flatMap((p) => p.log.filter((l) => l.includes('pageerror') || l.includes('console.error')));
  assert.deepEqual(errors, [], 'no script errors in the pages');
  for (const p of people) {
    // Every page was served under the server's Content-Security-Policy...
    const documents = await Promise.all(p.documents);
    assert.ok(documents.length > 0, `${p.label}: loaded a page`);
    for (const d of documents) {
      assert.equal(d.headers?.['content-security-policy'], CONTENT_SECURITY_POLICY, `${p.label}: CSP of ${d.url} ${d.error ?? ''}`);
    }
    // ...which never had to block anything: the meeting (WebSocket, wasm,
    // workers, media) works within it.
    assert.deepEqual(await p.page.evaluate(() => window.__e2eCspViolations), [], `${p.label}: CSP violations`);
  }
}

async function closeAll() {
  while (open.length) await open.pop().context.close().catch(() => {});
}

async function withDiagnostics(people, fn) {
  try {
    await fn();
  } catch (err) {
    err.message += '\n' + (await diagnostics(people, server));
    throw err;
  }
}

/** Video streams decoding on `page`: inbound-rtp video with framesDecoded > 0. */
async function decodingVideo(page) {
  return (await inboundStats(page)).filter((s) => s.kind === 'video' && s.framesDecoded > 0);
}

describe('a meeting in the browser through the Conclave SFU', { timeout: 240_000 }, () => {
  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await closeAll();
    await browser?.close();
    await server?.stop();
  });

  test('three participants in one room each decode the other two\'s video and receive their audio', { timeout: 90_000 }, async () => {
    const { people } = await meetingOfThree('av');
    await withDiagnostics(people, async () => {
      for (const p of people) {
        const first = await waitFor(
          async () => {
            const v = await decodingVideo(p.page);
            return v.length >= 2 ? v : null;
          },
          { timeoutMs: 30_000, what: `${p.label} to decode two remote videos` },
        );
        await waitFor(
          async () => {
            const audio = (await inboundStats(p.page)).filter((s) => s.kind === 'audio' && s.packetsReceived > 0);
            return audio.length >= 2;
          },
          { timeoutMs: 20_000, what: `${p.label} to receive two remote audio streams` },
        );
        // Decoding keeps going: every stream that decoded before decodes more later.
        await sleep(1500);
        const later = await decodingVideo(p.page);
        for (const s of first) {
          const now = later.find((l) => l.ssrc === s.ssrc);
          assert.ok(now && now.framesDecoded > s.framesDecoded, `${p.label}: video ssrc ${s.ssrc} stopped decoding (${s.framesDecoded} → ${now?.framesDecoded})`);
        }
        assert.ok(new Set(first.map((s) => s.trackIdentifier)).size >= 2, `${p.label}: two distinct remote video tracks`);
        // The tiles show it too: each remote tile's <video> has a picture.
        const widths = await p.page
          .locator('[data-testid="tile"][data-local="false"] video')
          .evaluateAll((vs) => vs.map((v) => v.videoWidth));
        assert.equal(widths.filter((w) => w > 0).length, 2, `${p.label}: remote tiles show video (${widths})`);
        const audios = await p.page.locator('[data-testid="remote-audio"]').evaluateAll((as) => as.map((a) => !a.paused));
        assert.deepEqual(audios, [true, true], `${p.label}: two <audio> elements playing`);
      }
    });
    await assertNoPageErrors(people);
    await closeAll();
  });

  test('a screen share from one participant reaches the other two, including one who joins during the share', { timeout: 90_000 }, async () => {
    const room = uniqueRoom('screen');
    const presenter = await newParticipant(browser, 'Ada');
    const early = await newParticipant(browser, 'Grace');
    const late = await newParticipant(browser, 'Katherine');
    open.push(presenter, early, late);
    const people = [presenter, early, late];
    await withDiagnostics(people, async () => {
      await join(presenter, server.url, room, 'Ada Lovelace');
      await join(early, server.url, room, 'Grace Hopper');
      // Real getDisplayMedia: the fake UI picks the (fake) entire screen.
      await presenter.page.getByTestId('toggle-screen').click();
      await waitFor(async () => (await presenter.page.getByTestId('toggle-screen').getAttribute('aria-pressed')) === 'true', {
        what: 'the presenter\'s share button to be pressed',
      });
      await presenter.page.getByTestId('screen-stage').waitFor({ state: 'visible', timeout: 10_000 });
      assert.match(await presenter.page.getByTestId('screen-label').textContent(), /You are presenting/);
      await join(late, server.url, room, 'Katherine Johnson');
      for (const v of [early, late]) {
        const stage = v.page.getByTestId('screen-stage');
        await stage.waitFor({ state: 'visible', timeout: 15_000 });
        assert.equal(Number(await stage.getAttribute('data-participant-id')), presenter.id);
        assert.match(await v.page.getByTestId('screen-label').textContent(), /Ada Lovelace is presenting/);
        // The stage <video> receives frames, and three remote videos decode
        // (two cameras and the screen).
        const frames = async () => v.page.getByTestId('screen-video').evaluate((el) => el.getVideoPlaybackQuality().totalVideoFrames);
        await waitFor(async () => (await frames()) > 0, { timeoutMs: 20_000, what: `${v.label}'s stage to show frames` });
        const before = await frames();
        await waitFor(async () => (await frames()) > before, { timeoutMs: 10_000, what: `${v.label}'s stage frames to keep coming` });
        await waitFor(async () => (await decodingVideo(v.page)).length >= 3, { timeoutMs: 20_000, what: `${v.label} to decode camera ×2 + screen` });
      }
      // Stopping the share clears the stage for everyone.
      await presenter.page.getByTestId('stop-share').click();
      for (const v of people) {
        await v.page.getByTestId('screen-stage').waitFor({ state: 'hidden', timeout: 10_000 });
      }
      assert.equal(await presenter.page.getByTestId('toggle-screen').getAttribute('aria-pressed'), 'false');
    });
    await assertNoPageErrors(people);
    await closeAll();
  });

  test('chat messages arrive in order with the right sender names on all three', { timeout: 60_000 }, async () => {
    const { people } = await meetingOfThree('chat');
    await withDiagnostics(people, async () => {
      for (const p of people) await p.page.getByTestId('toggle-chat').click();
      const sent = [];
      // Interleaved, without waiting for echoes: the server decides the order.
      for (let round = 1; round <= 3; round++) {
        await Promise.all(
          people.map(async (p) => {
            const text = `${p.label} says ${round} ✓ <b>not bold</b>`;
            sent.push({ name: p.name, text, from: p.id });
            await p.page.getByTestId('chat-input').fill(text);
            await p.page.getByTestId('chat-input').press('Enter');
          }),
        );
      }
      const views = [];
      for (const p of people) {
        views.push(await waitFor(async () => {
          const msgs = await chatMessages(p.page);
          return msgs.length >= sent.length ? msgs : null;
        }, { timeoutMs: 15_000, what: `${p.label} to show ${sent.length} chat messages` }));
      }
      // Same order everywhere, ascending seq, and the HTML stayed text.
      for (const v of views) assert.deepEqual(v, views[0]);
      const seqs = views[0].map((m) => m.seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
      assert.equal(new Set(seqs).size, seqs.length);
      // Every message appears once with its sender's name and id…
      for (const s of sent) {
        const got = views[0].filter((m) => m.text === s.text);
        assert.equal(got.length, 1, `message ${JSON.stringify(s.text)} shown once`);
        assert.equal(got[0].name, s.name);
        assert.equal(got[0].from, s.from);
      }
      // …and each sender's own messages keep the order they were typed in.
      for (const p of people) {
        const mine = views[0].filter((m) => m.from === p.id).map((m) => m.text);
        assert.deepEqual(mine, [1, 2, 3].map((r) => `${p.label} says ${r} ✓ <b>not bold</b>`));
      }
      assert.equal(await people[0].page.locator('[data-testid="chat-text"] b').count(), 0);
    });
    await assertNoPageErrors(people);
    await closeAll();
  });

  test('when one participant leaves, the others\' tiles and participant lists update within a few seconds', { timeout: 60_000 }, async () => {
    const { people, ids } = await meetingOfThree('leave');
    const [stayer1, stayer2, leaver] = people;
    await withDiagnostics(people, async () => {
      for (const p of [stayer1, stayer2]) {
        await p.page.getByTestId('toggle-participants').click();
        await waitFor(async () => (await participantListIds(p.page)).length === 3, { what: `${p.label}'s list of three` });
      }
      const leftAt = Date.now();
      await leaver.page.getByTestId('leave').click();
      await leaver.page.getByTestId('ended').waitFor({ timeout: 5000 });
      assert.match(await leaver.page.getByTestId('ended-title').textContent(), /You left the meeting/);
      const remaining = ids.filter((id) => id !== leaver.id);
      for (const p of [stayer1, stayer2]) {
        await waitFor(async () => JSON.stringify(await tileIds(p.page)) === JSON.stringify(remaining), {
          timeoutMs: 5000, what: `${p.label}'s tiles without ${leaver.label}`,
        });
        await waitFor(async () => JSON.stringify(await participantListIds(p.page)) === JSON.stringify(remaining), {
          timeoutMs: 5000, what: `${p.label}'s participant list without ${leaver.label}`,
        });
      }
      assert.ok(Date.now() - leftAt < 6000);
      // Screen readers hear about it through the live region.
      for (const p of [stayer1, stayer2]) {
        await waitFor(async () => /Katherine Johnson left/.test((await p.page.locator('#announcer').textContent()) ?? ''), {
          timeoutMs: 3000, what: `${p.label}'s live region to announce the leave`,
        });
      }
      // The leaver's camera is released (no live tracks left on its page).
      const states = await leaver.page.evaluate(() => (window.__e2ePeers ?? []).map((pc) => pc.connectionState));
      assert.ok(states.length > 0 && states.every((s) => s === 'closed'), `the leaver's peer connection is closed: ${states}`);
    });
    await assertNoPageErrors([stayer1, stayer2]);
    await closeAll();
  });

  test('six participants joining at the same moment all see and hear each other, and a camera turned on later reaches all', { timeout: 90_000 }, async () => {
    // Cameras off (joined with "camera off") keeps six encoders off two CPU cores;
    // the point is concurrent joins and back-to-back renegotiations.
    const room = uniqueRoom('crowd');
    const people = [];
    for (let i = 0; i < 6; i++) {
      const p = await newParticipant(browser, `P${i}`);
      open.push(p);
      people.push(p);
    }
    await withDiagnostics(people, async () => {
      await Promise.all(people.map(async (p, i) => {
        await p.page.goto(`${server.url}/${room}${inviteFragment(room)}`);
        await p.page.getByTestId('name-input').fill(`Person ${i}`);
        await p.page.locator('[data-testid="preview-video"]:not([hidden])').waitFor({ timeout: 10_000 });
        await p.page.getByTestId('join-camera-off').check();
        await p.page.getByTestId('join-button').click();
      }));
      for (const p of people) {
        await waitFor(async () => (await tileIds(p.page)).length === 6, { timeoutMs: 30_000, what: `${p.label} to show six tiles` });
        const cameras = await p.page.locator('[data-testid="tile"]').evaluateAll((ts) => ts.map((t) => t.getAttribute('data-camera')));
        assert.deepEqual(cameras, Array(6).fill('false'), `${p.label}: everyone shown with camera off`);
      }
      for (const p of people) {
        await waitFor(async () => (await inboundStats(p.page)).filter((s) => s.kind === 'audio' && s.packetsReceived > 0).length === 5, {
          timeoutMs: 30_000, what: `${p.label} to receive five audio streams`,
        });
        assert.equal(await p.page.locator('[data-testid="remote-audio"]').count(), 5);
      }
      // Heard, not only received: every one of the five decrypted audio
      // streams carries sound (the fake microphone's beeps: about 0.3 of
      // totalAudioEnergy a second; a silent stream adds ~1e-9), and keeps doing so.
      for (const p of people) {
        const energy = async () => new Map((await inboundStats(p.page)).filter((s) => s.kind === 'audio').map((s) => [s.ssrc, s.totalAudioEnergy]));
        const before = await energy();
        assert.equal(before.size, 5, `${p.label}: five inbound audio streams`);
        await waitFor(async () => {
          const now = await energy();
          return [...before].every(([ssrc, e]) => typeof e === 'number' && now.get(ssrc) > e + 0.01);
        }, { timeoutMs: 15_000, what: `${p.label}: totalAudioEnergy to grow audibly on all five audio streams` });
      }
      // One MLS group of six: the same security code everywhere.
      const codes = await waitFor(async () => {
        const states = await Promise.all(people.map((p) => e2eeState(p.page)));
        const c = states.map((s) => (s?.roster.length === 6 ? s.securityCode : null));
        return c[0] && c.every((x) => x === c[0]) ? c : null;
      }, { timeoutMs: 20_000, what: 'all six to show one security code for six members' });
      assert.equal(new Set(codes).size, 1);
      // Turning a camera on later uses the sender negotiated without a track:
      // everyone else starts decoding it without any renegotiation.
      const [first, ...rest] = people;
      await first.page.getByTestId('toggle-camera').click();
      const firstId = Number(await first.page.locator('[data-testid="tile"][data-local="true"]').getAttribute('data-participant-id'));
      for (const p of rest) {
        await waitFor(async () => (await p.page.locator(`[data-testid="tile"][data-participant-id="${firstId}"] video`).evaluate((v) => v.videoWidth)) > 0, {
          timeoutMs: 20_000, what: `${p.label} to see ${first.label}'s camera once it is turned on`,
        });
      }
    });
    await assertNoPageErrors(people);
    await closeAll();
  });
});
