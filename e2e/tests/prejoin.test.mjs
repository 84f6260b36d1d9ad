// The pre-join screen and the parts of the meeting around it: blocked
// devices, remembered name, invite link, leaving and rejoining.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { diagnostics, inboundStats, inviteFragment, join, tileIds, uniqueRoom, waitFor } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

let server;
let browser;

function blockDevices() {
  navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
}

describe('pre-join, invite link, leave and rejoin', { timeout: 180_000 }, () => {
  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('with camera and microphone blocked the pre-join screen says so and joining still works', { timeout: 60_000 }, async () => {
    const room = uniqueRoom('blocked');
    const blocked = await newParticipant(browser, 'blocked');
    await blocked.context.addInitScript(blockDevices);
    const other = await newParticipant(browser, 'other');
    try {
      await blocked.page.goto(`${server.url}/${room}${inviteFragment(room)}`);
      const problems = blocked.page.getByTestId('media-problem');
      await waitFor(async () => (await problems.count()) === 2, { what: 'two device problems shown' });
      const text = (await problems.allTextContents()).join(' ');
      assert.match(text, /microphone is blocked/);
      assert.match(text, /camera is blocked/);
      assert.match(text, /still join/);

      await blocked.page.getByTestId('name-input').fill('Quiet Observer');
      await blocked.page.getByTestId('join-button').click();
      await blocked.page.locator('[data-testid="tile"][data-local="true"]').waitFor({ timeout: 15_000 });
      blocked.id = Number(await blocked.page.locator('[data-testid="tile"][data-local="true"]').getAttribute('data-participant-id'));
      assert.equal(await blocked.page.getByTestId('toggle-mic').getAttribute('aria-pressed'), 'false');
      assert.equal(await blocked.page.getByTestId('toggle-camera').getAttribute('aria-pressed'), 'false');

      await join(other, server.url, room, 'Listener');
      const tile = other.page.locator(`[data-testid="tile"][data-participant-id="${blocked.id}"]`);
      await tile.waitFor({ timeout: 10_000 });
      assert.equal(await tile.getAttribute('data-muted'), 'true');
      assert.equal(await tile.getAttribute('data-camera'), 'false');
      // The blocked participant still receives the other's video.
      await waitFor(async () => (await blocked.page.locator(`[data-testid="tile"][data-participant-id="${other.id}"] video`).evaluate((v) => v.videoWidth)) > 0, {
        timeoutMs: 20_000, what: 'video from the other participant',
      });
    } catch (err) {
      err.message += '\n' + (await diagnostics([blocked, other], server));
      throw err;
    } finally {
      await blocked.context.close();
      await other.context.close();
    }
  });

  test('the invite link is copied, and after leaving Rejoin returns with the name remembered', { timeout: 60_000 }, async () => {
    const room = uniqueRoom('invite');
    const a = await newParticipant(browser, 'A');
    await a.context.grantPermissions(['camera', 'microphone', 'clipboard-read', 'clipboard-write'], { origin: server.url });
    try {
      await join(a, server.url, room, 'Host Person');
      await a.page.getByTestId('copy-invite').click();
      await waitFor(async () => /Copied/.test((await a.page.getByTestId('toast').textContent()) ?? ''), { what: 'the Copied message' });
      const copied = await a.page.evaluate(() => navigator.clipboard.readText());
      // The link carries the meeting's invite secret in its fragment.
      assert.equal(copied, `${server.url}/${room}${inviteFragment(room)}`);

      await a.page.getByTestId('leave').click();
      await a.page.getByTestId('ended').waitFor({ timeout: 5000 });
      // The camera is released after leaving.
      const live = await a.page.evaluate(() =>
        (window.__e2ePeers ?? []).flatMap((pc) => pc.getSenders()).some((s) => s.track?.readyState === 'live'),
      );
      assert.equal(live, false);
      await a.page.getByTestId('rejoin').click();
      await a.page.getByTestId('prejoin').waitFor({ timeout: 5000 });
      assert.equal(await a.page.getByTestId('name-input').inputValue(), 'Host Person');
      await a.page.locator('[data-testid="preview-video"]:not([hidden])').waitFor({ timeout: 10_000 });
      await a.page.getByTestId('join-button').click();
      await waitFor(async () => (await tileIds(a.page)).length === 1, { what: 'back in the meeting' });
    } catch (err) {
      err.message += '\n' + (await diagnostics([a], server));
      throw err;
    } finally {
      await a.context.close();
    }
  });

  test('switching camera and speaker during the meeting keeps the picture flowing and routes the sound', { timeout: 60_000 }, async () => {
    // Chromium's fake_device_1 delivers Y16 (depth) frames, which no video
    // encoder accepts; fake_device_2 (MJPEG) behaves like a real second camera.
    const threeCameras = await launchBrowser({ fakeCameras: 3 });
    const room = uniqueRoom('switch');
    const a = await newParticipant(threeCameras, 'A');
    const b = await newParticipant(browser, 'B');
    try {
      await join(a, server.url, room, 'Switcher');
      await join(b, server.url, room, 'Watcher');
      const decoded = async () => (await inboundStats(b.page)).filter((s) => s.kind === 'video').reduce((n, s) => n + s.framesDecoded, 0);
      await waitFor(async () => (await decoded()) > 0, { timeoutMs: 20_000, what: 'B to decode A\'s camera' });

      await a.page.getByTestId('toggle-settings').click();
      const select = a.page.getByTestId('settings-camera');
      await waitFor(async () => (await select.locator('option').count()) === 3, { what: 'three cameras listed' });
      const before = await a.page.evaluate(() => window.__e2ePeers.at(-1).getSenders().find((s) => s.track?.kind === 'video')?.track.label);
      assert.equal(before, 'fake_device_0');
      const other = await select.locator('option').evaluateAll((os) => os.find((o) => o.textContent === 'fake_device_2')?.value);
      await select.selectOption(other);
      await waitFor(async () => {
        const label = await a.page.evaluate(() => window.__e2ePeers.at(-1).getSenders().find((s) => s.track?.kind === 'video')?.track.label);
        return label && label !== before;
      }, { what: 'A\'s video sender to use the other camera' });
      // Same sender, same m-line, no renegotiation: B keeps decoding.
      const mark = await decoded();
      await waitFor(async () => (await decoded()) > mark + 10, { timeoutMs: 15_000, what: 'B to keep decoding after the switch' });
      assert.equal(await a.page.getByTestId('toggle-camera').getAttribute('aria-pressed'), 'true');

      // The speaker choice routes the other participant's <audio> there.
      const speakers = a.page.getByTestId('settings-speaker');
      const speaker = await speakers.locator('option').evaluateAll((os) => os.find((o) => o.textContent === 'Fake Audio Output 1')?.value);
      assert.ok(speaker, 'fake speakers listed');
      await speakers.selectOption(speaker);
      await waitFor(async () => (await a.page.locator('[data-testid="remote-audio"]').evaluateAll((as) => as.map((x) => x.sinkId))).join() === speaker, {
        what: 'the remote audio to play on the chosen speaker',
      });
    } catch (err) {
      err.message += '\n' + (await diagnostics([a, b], server));
      throw err;
    } finally {
      await a.context.close();
      await b.context.close();
      await threeCameras.close();
    }
  });

  test('the meeting is usable from the keyboard and labelled for screen readers', { timeout: 45_000 }, async () => {
    const a = await newParticipant(browser, 'A');
    try {
      await join(a, server.url, uniqueRoom('a11y'), 'Keyboard User');
      const page = a.page;
      // Every button has an accessible name; toggles say whether they are on.
      const unnamed = await page.locator('button').evaluateAll((bs) =>
        bs.filter((b) => !(b.getAttribute('aria-label') || b.textContent.trim())).map((b) => b.outerHTML.slice(0, 80)),
      );
      assert.deepEqual(unnamed, []);
      for (const id of ['toggle-mic', 'toggle-camera', 'toggle-screen', 'toggle-chat', 'toggle-participants']) {
        assert.match((await page.getByTestId(id).getAttribute('aria-pressed')) ?? '', /^(true|false)$/, id);
      }
      assert.match((await page.getByTestId('toggle-mic').getAttribute('title')) ?? '', /\+D/);
      // Shortcut opens chat with focus in the input; Escape closes and returns focus.
      await page.keyboard.press('Control+Alt+c');
      await waitFor(async () => page.getByTestId('chat-input').evaluate((el) => el === document.activeElement), { what: 'focus in the chat input' });
      await page.keyboard.press('Escape');
      await waitFor(async () => page.getByTestId('toggle-chat').evaluate((el) => el === document.activeElement), { what: 'focus back on the chat button' });
      // Arrow keys move along the toolbar.
      await page.keyboard.press('ArrowLeft');
      assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'toggle-participants');
      // The live region said that we joined.
      assert.match((await page.locator('#announcer').textContent()) ?? '', /You joined/);
    } finally {
      await a.context.close();
    }
  });

  test('on a phone-sized screen every control fits and panels open over the meeting', { timeout: 45_000 }, async () => {
    const room = uniqueRoom('phone');
    const phone = await newParticipant(browser, 'phone', { width: 375, height: 740 });
    const other = await newParticipant(browser, 'other');
    try {
      await join(phone, server.url, room, 'Pocket');
      await join(other, server.url, room, 'Desk');
      await waitFor(async () => (await tileIds(phone.page)).length === 2, { what: 'two tiles on the phone' });
      const page = phone.page;
      // All toolbar buttons are on screen, at least 40 px, in one row at the bottom.
      const boxes = await page.locator('.toolbar button').evaluateAll((bs) => bs.map((b) => b.getBoundingClientRect().toJSON()));
      assert.ok(boxes.length >= 8);
      for (const b of boxes) {
        assert.ok(b.left >= 0 && b.right <= 375 && b.bottom <= 740, `button inside the screen: ${JSON.stringify(b)}`);
        assert.ok(b.width >= 40 && b.height >= 40, 'big enough to tap');
      }
      assert.equal(new Set(boxes.map((b) => Math.round(b.top))).size, 1, 'one row');
      // Tiles stack in one column.
      const tiles = await page.locator('[data-testid="tile"]').evaluateAll((ts) => ts.map((t) => t.getBoundingClientRect().toJSON()));
      assert.equal(new Set(tiles.map((t) => Math.round(t.left))).size, 1, 'single column');
      // The chat panel covers the meeting area, and the toolbar stays usable.
      await page.getByTestId('toggle-chat').click();
      const panel = await page.getByTestId('chat-panel').evaluate((el) => el.getBoundingClientRect().toJSON());
      assert.ok(panel.width >= 340, `chat panel spans the screen (${panel.width}px)`);
      await page.getByTestId('chat-input').fill('from my phone');
      await page.getByTestId('chat-input').press('Enter');
      await waitFor(async () => (await page.locator('[data-testid="chat-text"]').allTextContents()).includes('from my phone'), { what: 'own message shown' });
      await page.getByTestId('toggle-chat').click();
      await page.getByTestId('chat-panel').waitFor({ state: 'detached' });
    } finally {
      await phone.context.close();
      await other.context.close();
    }
  });

  test('the start page refuses a room name with spaces and opens a generated room', { timeout: 30_000 }, async () => {
    const a = await newParticipant(browser, 'A');
    try {
      await a.page.goto(`${server.url}/`);
      await a.page.getByTestId('room-input').fill('team meeting');
      await a.page.getByTestId('go-button').click();
      assert.match(await a.page.getByTestId('room-error').textContent(), /no spaces/);
      await a.page.getByRole('button', { name: 'Generate' }).click();
      const room = await a.page.getByTestId('room-input').inputValue();
      assert.match(room, /^[a-z]+-[a-z]+-\d{4}$/);
      await a.page.getByTestId('go-button').click();
      await a.page.getByTestId('prejoin').waitFor({ timeout: 10_000 });
      assert.equal(new URL(a.page.url()).pathname, `/${room}`);
      assert.equal(await a.page.getByTestId('room-name').textContent(), room);
    } finally {
      await a.context.close();
    }
  });
});
