// What a user sees when the server can't be reached, goes away or turns
// them away (a full room), and the media-state indicators other participants
// see.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { decodedVideo, diagnostics, e2eeState, inviteFragment, join, participantListIds, tileIds, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';
import { startFreezableProxy, startServer } from '../lib/server.mjs';

let server;
let browser;

describe('connection problems and media state', { timeout: 180_000 }, () => {
  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('muting the microphone and turning the camera off show on the other participant\'s tile', { timeout: 60_000 }, async () => {
    const room = uniqueRoom('mute');
    const a = await newParticipant(browser, 'A');
    const b = await newParticipant(browser, 'B');
    try {
      await join(a, server.url, room, 'Alice');
      await join(b, server.url, room, 'Bob');
      const tileOfA = b.page.locator(`[data-testid="tile"][data-participant-id="${a.id}"]`);
      await tileOfA.waitFor({ timeout: 10_000 });
      assert.equal(await tileOfA.getAttribute('data-muted'), 'false');
      // The fake microphone beeps: the server reports A speaking and B shows the ring.
      await waitFor(async () => (await tileOfA.getAttribute('data-speaking')) === 'true', { timeoutMs: 10_000, what: 'B to see A speaking' });
      assert.ok(await tileOfA.evaluate((el) => el.classList.contains('speaking')));

      await a.page.keyboard.press('Control+d'); // shortcut for the microphone
      await waitFor(async () => (await a.page.getByTestId('toggle-mic').getAttribute('aria-pressed')) === 'false', { what: 'A\'s mic button to show muted' });
      await waitFor(async () => (await tileOfA.getAttribute('data-muted')) === 'true', { timeoutMs: 5000, what: 'B to see A muted' });
      assert.ok(await tileOfA.locator('[data-testid="tile-muted"]').isVisible());

      await a.page.getByTestId('toggle-camera').click();
      await waitFor(async () => (await tileOfA.getAttribute('data-camera')) === 'false', { timeoutMs: 5000, what: 'B to see A\'s camera off' });
      assert.ok(await tileOfA.locator('.avatar').isVisible(), 'avatar shown instead of video');
      // The camera is really released on A's side.
      const liveVideo = await a.page.evaluate(() =>
        (window.__e2ePeers ?? []).flatMap((pc) => pc.getSenders()).filter((s) => s.track?.kind === 'video' && s.track.readyState === 'live').length,
      );
      assert.equal(liveVideo, 0);

      await a.page.getByTestId('toggle-camera').click();
      await a.page.getByTestId('toggle-mic').click();
      await waitFor(async () => (await tileOfA.getAttribute('data-camera')) === 'true' && (await tileOfA.getAttribute('data-muted')) === 'false', {
        timeoutMs: 5000, what: 'B to see A unmuted with camera on',
      });
      await waitFor(async () => (await tileOfA.locator('video').evaluate((v) => v.videoWidth)) > 0, {
        timeoutMs: 15_000, what: 'A\'s camera picture back on B\'s tile',
      });
    } catch (err) {
      err.message += '\n' + (await diagnostics([a, b], server));
      throw err;
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('when the server restarts, the page shows Reconnecting… and both participants rejoin by themselves and see each other again', { timeout: 150_000 }, async () => {
    const room = uniqueRoom('restart');
    const a = await newParticipant(browser, 'A');
    const b = await newParticipant(browser, 'B');
    try {
      await join(a, server.url, room, 'Alice');
      await join(b, server.url, room, 'Bob');
      await waitSecured(a.page);
      await waitSecured(b.page);
      const { httpPort, udpPort, tcpPort } = server;
      await server.stop();
      await waitFor(async () => /Reconnecting/.test((await a.page.getByTestId('connection-banner').textContent()) ?? ''), {
        timeoutMs: 10_000, what: 'the Reconnecting… banner',
      });
      // Down for a while: the page first tries to resume its session (18 s),
      // then to rejoin, and from the third try offers to try at once.
      await a.page.getByRole('button', { name: 'Retry now' }).waitFor({ timeout: 45_000 });
      assert.doesNotMatch(await a.page.getByTestId('connection-banner').textContent(), /Connection lost/);

      server = await startServer({ httpPort, udpPort, env: { CONCLAVE_TCP_PORT: String(tcpPort) } });
      const back = Date.now();
      for (const p of [a, b]) {
        await waitFor(async () => (await p.page.getByTestId('connection-banner').isHidden()) && (await tileIds(p.page)).length === 2, {
          timeoutMs: 30_000, what: `${p.label} to be back in the meeting by itself`,
        });
      }
      const rejoinedMs = Date.now() - back;
      for (const p of [a, b]) {
        await waitSecured(p.page, `${p.label} to be in the new encrypted group`);
        await waitFor(async () => (await decodedVideo(p.page)).some((s) => s.framesDecoded > 5), {
          timeoutMs: 30_000, what: `${p.label} to decode the other's video after the restart`,
        });
      }
      console.log(`server restart: both pages back in the meeting ${rejoinedMs} ms after the server was up again`);
    } catch (err) {
      err.message += '\n' + (await diagnostics([a, b], server));
      throw err;
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('when the media path stalls the meeting shows Reconnecting… and recovers on its own', { timeout: 90_000 }, async () => {
    const room = uniqueRoom('stall');
    const a = await newParticipant(browser, 'A');
    const b = await newParticipant(browser, 'B');
    try {
      await join(a, server.url, room, 'Alice');
      await join(b, server.url, room, 'Bob');
      const videoOf = (p, other) => p.page.locator(`[data-testid="tile"][data-participant-id="${other.id}"] video`);
      await waitFor(async () => (await videoOf(a, b).evaluate((v) => v.videoWidth)) > 0, { timeoutMs: 20_000, what: 'video before the stall' });
      // Freeze the server: no STUN answers, no WebSocket traffic, but nothing closes.
      server.pause();
      await waitFor(async () => /Reconnecting/.test((await a.page.getByTestId('connection-banner').textContent()) ?? ''), {
        timeoutMs: 20_000, what: 'the Reconnecting… banner while ICE is disconnected',
      });
      server.resume();
      for (const p of [a, b]) {
        await waitFor(async () => await p.page.getByTestId('connection-banner').isHidden(), { timeoutMs: 40_000, what: `${p.label}'s banner to clear` });
        await waitFor(async () => (await tileIds(p.page)).length === 2, { timeoutMs: 20_000, what: `${p.label} to see two tiles` });
      }
      // Whether ICE recovered in place or the client rejoined, video flows again.
      for (const p of [a, b]) {
        await waitFor(async () => {
          const widths = await p.page.locator('[data-testid="tile"][data-local="false"] video').evaluateAll((vs) => vs.map((v) => v.videoWidth));
          return widths.length === 1 && widths[0] > 0;
        }, { timeoutMs: 30_000, what: `${p.label} to see the other's video after recovery` });
        // A width stays after the last frame: the picture must keep moving.
        // Within one 1.5 s window both new packets arrive and new frames are
        // decoded (frames alone can be a backlog drained after the sender stopped).
        const totals = async () => (await decodedVideo(p.page)).reduce((t, s) => ({ frames: t.frames + (s.framesDecoded ?? 0), packets: t.packets + s.packetsReceived }), { frames: 0, packets: 0 });
        await waitFor(async () => {
          const t0 = await totals();
          await new Promise((r) => setTimeout(r, 1500));
          const t1 = await totals();
          return t1.frames > t0.frames + 5 && t1.packets > t0.packets + 5;
        }, { timeoutMs: 12_000, what: `${p.label}: video to keep arriving and decoding (framesDecoded growing) after recovery` });
      }
    } catch (err) {
      err.message += '\n' + (await diagnostics([a, b], server));
      throw err;
    } finally {
      server.resume();
      await a.context.close();
      await b.context.close();
    }
  });

  test('when signaling goes silent while media still flows, the client notices from the missing keepalives', { timeout: 90_000 }, async () => {
    // A TCP proxy in front of the server that can stop relaying without
    // closing anything: what a dead NAT mapping or a stuck middlebox does to
    // a WebSocket. ICE keeps working (media goes straight to the server), so
    // only the server's keepalive messages can reveal the dead signaling path.
    const proxy = await startFreezableProxy(server.httpPort);
    const a = await newParticipant(browser, 'A');
    try {
      await join(a, `http://127.0.0.1:${proxy.port}`, uniqueRoom('silent'), 'Alice');
      const frozenAt = Date.now();
      proxy.freeze();
      await waitFor(async () => /Reconnecting|Connection lost/.test((await a.page.getByTestId('connection-banner').textContent()) ?? '') ||
        (await a.page.getByText('Connection lost').count()) > 0, {
        timeoutMs: 40_000, intervalMs: 500, what: 'the client to notice the silent signaling path',
      });
      const noticedAfter = Date.now() - frozenAt;
      assert.ok(noticedAfter > 10_000, `noticed after ${noticedAfter} ms: too early to be the keepalive watchdog`);
    } catch (err) {
      err.message += '\n' + (await diagnostics([a], server));
      throw err;
    } finally {
      await a.context.close();
      proxy.close();
    }
  });

  test('joining while the server is unreachable explains it on the pre-join screen', { timeout: 60_000 }, async () => {
    const a = await newParticipant(browser, 'A');
    try {
      await a.page.goto(`${server.url}/${uniqueRoom('down')}`);
      await a.page.getByTestId('name-input').fill('Alice');
      const { httpPort, udpPort } = server;
      await server.stop();
      await a.page.getByTestId('join-button').click();
      const notice = a.page.getByTestId('join-notice');
      await notice.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match(await notice.textContent(), /reach the Conclave server/);
      server = await startServer({ httpPort, udpPort });
    } finally {
      await a.context.close();
    }
  });

  test('a full room (server limit 2) tells the third person so on the pre-join screen; the two inside are unaffected, and a freed place can be taken', { timeout: 120_000 }, async () => {
    const small = await startServer({ env: { CONCLAVE_MAX_PARTICIPANTS: '2' } });
    const room = uniqueRoom('full');
    const a = await newParticipant(browser, 'A');
    const b = await newParticipant(browser, 'B');
    const c = await newParticipant(browser, 'C');
    const everyone = [a, b, c];
    try {
      await join(a, small.url, room, 'Alice');
      await join(b, small.url, room, 'Bob');
      for (const p of [a, b]) await waitSecured(p.page);
      const code = (await e2eeState(a.page)).securityCode;
      const inside = [a.id, b.id].sort((x, y) => x - y);
      await waitFor(async () => (await decodedVideo(a.page)).some((s) => s.framesDecoded > 5) && (await decodedVideo(b.page)).some((s) => s.framesDecoded > 5), {
        timeoutMs: 25_000, what: 'Alice and Bob to see each other',
      });

      // Carol has the invite link, like the others: only the size stops her.
      await c.page.goto(`${small.url}/${encodeURIComponent(room)}${inviteFragment(room)}`);
      await c.page.getByTestId('name-input').fill('Carol');
      await c.page.locator('[data-testid="preview-video"]:not([hidden])').waitFor({ timeout: 10_000 });
      await c.page.getByTestId('join-button').click();
      const notice = c.page.getByTestId('join-notice');
      await notice.waitFor({ state: 'visible', timeout: 15_000 });
      const text = (await notice.textContent()) ?? '';
      assert.match(text, /This meeting is full/, text);
      assert.match(text, /2 participants/, `says how many the server allows: ${text}`);
      assert.match(text, /Try again when someone leaves, or ask the host for another room/, `says what to do: ${text}`);
      assert.equal(await notice.getAttribute('role'), 'alert', 'read out by screen readers');
      // Carol is back on the pre-join screen, not in the meeting.
      assert.ok(await c.page.getByTestId('join-button').isVisible(), 'the Join button is offered again');
      assert.equal(await c.page.getByTestId('meeting').count(), 0, 'no meeting view');
      assert.equal(await c.page.locator('[data-testid="tile"]').count(), 0, 'no tiles');
      const carol = await e2eeState(c.page);
      assert.ok(carol === null || carol.state !== 'joined', `Carol is in no MLS group: ${JSON.stringify(carol)}`);

      // Alice and Bob never saw her and keep going: same two people, same
      // security code, video still decoding.
      await new Promise((r) => setTimeout(r, 2000));
      for (const p of [a, b]) {
        assert.deepEqual(await tileIds(p.page), inside, `${p.label}'s tiles`);
        await p.page.getByTestId('toggle-participants').click();
        await waitFor(async () => (await participantListIds(p.page)).length > 0, { what: `${p.label}'s participant list` });
        assert.deepEqual(await participantListIds(p.page), inside, `${p.label}'s participant list`);
        const s = await e2eeState(p.page);
        assert.equal(s.state, 'joined');
        assert.equal(s.roster.length, 2, `${p.label}'s group has two members`);
        assert.equal(s.securityCode, code, `${p.label}'s security code did not change`);
        assert.equal(await p.page.getByText(/Carol/).count(), 0, `${p.label} shows nothing of Carol`);
        const before = await decodedVideo(p.page);
        await new Promise((r) => setTimeout(r, 1000));
        const later = await decodedVideo(p.page);
        assert.ok(later.some((s2) => s2.framesDecoded > (before.find((x) => x.ssrc === s2.ssrc)?.framesDecoded ?? 0)), `${p.label} still decodes video`);
      }

      // The message's advice works: once Bob leaves, Carol gets in.
      await b.page.getByTestId('leave').click();
      await waitFor(async () => (await tileIds(a.page)).length === 1, { timeoutMs: 10_000, what: 'Alice to see Bob leave' });
      await c.page.getByTestId('join-button').click();
      await c.page.locator('[data-testid="tile"][data-local="true"]').waitFor({ timeout: 15_000 });
      c.id = Number(await c.page.locator('[data-testid="tile"][data-local="true"]').getAttribute('data-participant-id'));
      await waitFor(async () => (await tileIds(a.page)).includes(c.id), { timeoutMs: 10_000, what: 'Alice to see Carol' });
    } catch (err) {
      err.message += '\n' + (await diagnostics(everyone, small));
      throw err;
    } finally {
      for (const p of everyone) await p.context.close();
      await small.stop();
    }
  });

  test('a room link with characters the server refuses says so instead of joining', { timeout: 30_000 }, async () => {
    const a = await newParticipant(browser, 'A');
    try {
      // The server answers such paths with its own explanation page; the
      // client has the same check for links it builds itself.
      await a.page.goto(`${server.url}/${encodeURIComponent('bad room!')}`);
      const heading = a.page.locator('h1').first();
      await heading.waitFor({ timeout: 10_000 });
      assert.match(await heading.textContent(), /not a meeting link/);
      assert.equal(await a.page.getByTestId('join-button').count(), 0);
      // In the app's design (its stylesheet loaded under the CSP), with a
      // way back to the start page.
      const background = await a.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      assert.equal(background, 'rgb(15, 17, 21)');
      await a.page.getByRole('link', { name: 'Go to the start page' }).click();
      await a.page.waitForURL(`${server.url}/`, { timeout: 10_000 });
    } finally {
      await a.context.close();
    }
  });
});
