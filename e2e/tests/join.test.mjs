// Join time (docs/performance.md, "Join time"): the order a fast join
// relies on, and the WebSocket the pre-join screen opens ahead of Join.
//  - The joiner answers the server's SDP offer before it processes its MLS
//    Welcome (web/src/answer-gate.ts): the Welcome's openmls work on the
//    main thread would otherwise hold back the answer and the whole media
//    path. The test makes the Welcome arrive while the offer is being
//    applied, so the order is forced, not left to timing.
//  - The pre-join screen opens the WebSocket once the user types a name
//    (web/src/prepare.ts), sends nothing on it before Join, and a socket
//    that is gone by then is replaced by a fresh one.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { decodedVideo, e2eeState, inviteFragment, join, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

let server;
let browser;

/**
 * Page-side log of the join's order: the MLS Welcome received (wire format
 * 3 in the message header), the SDP answer sent, the Welcome processed (the
 * session's console line). setRemoteDescription waits until the Welcome has
 * arrived, so the Welcome always lands while the offer is being answered.
 */
function holdOfferUntilWelcome() {
  const log = [];
  Object.defineProperty(window, '__joinOrder', { value: log });
  const note = (ev) => log.push({ ev, t: performance.now() });
  let welcomeSeen = false;
  const waiting = [];
  const OrigWS = window.WebSocket;
  window.WebSocket = class extends OrigWS {
    constructor(...a) {
      super(...a);
      // Registered before the app's own listener: it runs first.
      this.addEventListener('message', (ev) => {
        try {
          const m = JSON.parse(ev.data);
          if (m.type !== 'mls') return;
          const bin = atob(String(m.data).slice(0, 8));
          if (((bin.charCodeAt(2) << 8) | bin.charCodeAt(3)) !== 3) return;
          note('welcome received');
          welcomeSeen = true;
          for (const resolve of waiting.splice(0)) resolve();
        } catch {
          // not ours
        }
      });
    }
    send(data) {
      try {
        if (JSON.parse(data).type === 'answer') note('answer sent');
      } catch {
        // not JSON
      }
      return super.send(data);
    }
  };
  const info = console.info.bind(console);
  console.info = (...a) => {
    if (a.some((x) => typeof x === 'string' && x.includes('waiting for its members to prove'))) note('welcome processed');
    return info(...a);
  };
  const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = async function (...a) {
    note('offer applying');
    if (!welcomeSeen) await new Promise((resolve) => {
      waiting.push(resolve);
      setTimeout(resolve, 10_000);
    });
    // The app's handler of the Welcome message runs in this pause.
    await new Promise((r) => setTimeout(r, 100));
    return setRemote.apply(this, a);
  };
}

/** Every WebSocket of the page with what was sent on it (message types only). */
function recordSockets() {
  const sockets = [];
  Object.defineProperty(window, '__sockets', { value: sockets });
  const OrigWS = window.WebSocket;
  window.WebSocket = class extends OrigWS {
    constructor(...a) {
      super(...a);
      sockets.push(this);
      this.sentTypes = [];
      this.openedAt = null;
      this.addEventListener('open', () => {
        this.openedAt = performance.now();
      });
    }
    send(data) {
      try {
        this.sentTypes.push(JSON.parse(data).type);
      } catch {
        this.sentTypes.push('?');
      }
      return super.send(data);
    }
  };
}

const socketsOf = (page) => page.evaluate(() => window.__sockets.map((s) => ({ state: s.readyState, sent: [...s.sentTypes], openedAt: s.openedAt })));

describe('join order and the pre-join WebSocket (Chromium)', { timeout: 300_000 }, () => {
  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('a third member whose MLS Welcome arrives while it answers the offer sends the answer first, then joins the group and sees both others', { timeout: 120_000 }, async () => {
    const room = uniqueRoom('joinorder');
    const ada = await newParticipant(browser, 'Ada');
    const bob = await newParticipant(browser, 'Bob');
    const cy = await newParticipant(browser, 'Cy');
    try {
      await join(ada, server.url, room, 'Ada');
      await waitSecured(ada.page);
      await join(bob, server.url, room, 'Bob');
      await waitSecured(bob.page);
      await cy.context.addInitScript(holdOfferUntilWelcome);
      await join(cy, server.url, room, 'Cy');
      await waitSecured(cy.page);
      await waitFor(() => cy.page.evaluate(() => window.__joinOrder.some((e) => e.ev === 'answer sent')), { what: 'Cy\'s answer' });
      const order = await cy.page.evaluate(() => window.__joinOrder.slice());
      const at = (ev) => order.find((e) => e.ev === ev)?.t ?? null;
      const text = JSON.stringify(order.map((e) => `${e.ev} ${Math.round(e.t)}`));
      for (const ev of ['offer applying', 'welcome received', 'answer sent', 'welcome processed']) assert.notEqual(at(ev), null, `${ev} missing: ${text}`);
      assert.ok(at('offer applying') < at('welcome received') && at('welcome received') < at('answer sent'), `the Welcome arrived while the offer was being answered: ${text}`);
      assert.ok(at('answer sent') < at('welcome processed'), `the answer went out before the Welcome was processed: ${text}`);
      assert.equal((await e2eeState(cy.page)).roster.length, 3);
      await waitFor(async () => (await decodedVideo(cy.page)).filter((s) => s.framesDecoded > 0).length >= 2, {
        what: 'Cy to decode Ada\'s and Bob\'s video',
        timeoutMs: 20_000,
      });
    } finally {
      for (const p of [ada, bob, cy]) await p.context.close();
    }
  });

  test('the pre-join screen opens the WebSocket once a name is typed and sends nothing on it before Join; a socket gone by then is replaced', { timeout: 120_000 }, async () => {
    const room = uniqueRoom('joinsocket');
    const ada = await newParticipant(browser, 'Ada');
    const dan = await newParticipant(browser, 'Dan');
    const eve = await newParticipant(browser, 'Eve');
    try {
      await join(ada, server.url, room, 'Ada');
      await waitSecured(ada.page);
      for (const p of [dan, eve]) {
        await p.context.addInitScript(recordSockets);
        await p.page.goto(`${server.url}/${encodeURIComponent(room)}${inviteFragment(room)}`);
        await p.page.getByTestId('name-input').fill(p.label);
        await p.page.locator('[data-testid="preview-video"]:not([hidden])').waitFor({ timeout: 10_000 });
        await waitFor(async () => (await socketsOf(p.page)).some((s) => s.state === 1), { what: `${p.label}'s pre-join socket to open` });
      }
      // Open, and nothing sent: the server knows of no one new.
      for (const p of [dan, eve]) assert.deepEqual((await socketsOf(p.page)).map((s) => s.sent), [[]]);
      assert.equal(await ada.page.locator('[data-testid="tile"]').count(), 1, 'Ada sees nobody else before they join');

      // Dan joins over the socket opened before his click.
      await dan.page.getByTestId('join-button').click();
      await dan.page.locator('[data-testid="tile"][data-local="true"]').waitFor({ timeout: 15_000 });
      await waitSecured(dan.page);
      const danSockets = await socketsOf(dan.page);
      assert.equal(danSockets.length, 1, 'no second socket');
      assert.equal(danSockets[0].sent[0], 'join');

      // Eve's prepared socket is gone before she clicks (as if the server had
      // dropped it): she joins on a fresh one.
      await eve.page.evaluate(() => window.__sockets[0].close());
      await waitFor(async () => (await socketsOf(eve.page))[0].state === 3, { what: 'Eve\'s prepared socket to close' });
      await eve.page.getByTestId('join-button').click();
      await eve.page.locator('[data-testid="tile"][data-local="true"]').waitFor({ timeout: 15_000 });
      await waitSecured(eve.page);
      const eveSockets = await socketsOf(eve.page);
      assert.deepEqual(eveSockets[0].sent, [], 'nothing went out on the closed socket');
      assert.equal(eveSockets.at(-1).sent[0], 'join');
      assert.equal(eveSockets.at(-1).state, 1);

      await waitFor(async () => (await e2eeState(ada.page)).roster.length === 3, { what: 'a group of three' });
      await waitFor(async () => (await decodedVideo(eve.page)).filter((s) => s.framesDecoded > 0).length >= 2, {
        what: 'Eve to decode Ada\'s and Dan\'s video',
        timeoutMs: 20_000,
      });
    } finally {
      for (const p of [ada, dan, eve]) await p.context.close();
    }
  });
});
