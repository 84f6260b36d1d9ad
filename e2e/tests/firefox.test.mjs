// Interoperability: a Firefox participant and two Chromium participants in one
// end-to-end encrypted room see and hear each other through the SFU.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { capturePeers, launchBrowser, newParticipant } from '../lib/browser.mjs';
import { failIfMissing, skipOutsideCI } from '../lib/ci.mjs';
import { firefoxServerIp, haveFirefox, launchFirefox } from '../lib/firefox.mjs';
import { chatMessages, diagnostics, e2eeState, inboundStats, inviteFragment, join, uniqueRoom, waitFor } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

let server;
let chromium;
let firefox;

async function firefoxInbound(page) {
  return page.evaluate(async () => {
    const peers = window.__e2ePeers ?? [];
    const pc = peers[peers.length - 1];
    if (!pc) return [];
    const out = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp') out.push({ kind: s.kind, packetsReceived: s.packetsReceived ?? 0, framesDecoded: s.framesDecoded ?? 0 });
    });
    return out;
  });
}

const missing = !haveFirefox
  ? 'Firefox is not installed'
  : !firefoxServerIp
    ? 'Firefox cannot do ICE with a 127.0.0.1-only server; run e2e/run.sh as root (it makes a test veth pair) or set CONCLAVE_E2E_FIREFOX_IP'
    : null;

describe('Firefox and Chromium in one meeting', { skip: skipOutsideCI(missing), timeout: 120_000 }, () => {
  before(async () => {
    failIfMissing(missing);
    // HTTP stays on loopback (a secure context for getUserMedia); media is bound and announced on the test veth address.
    server = await startServer({ publicIp: firefoxServerIp });
    chromium = await launchBrowser();
    firefox = await launchFirefox();
  });

  after(async () => {
    await firefox?.close().catch(() => {});
    await chromium?.close();
    await server?.stop();
  });

  test('a Firefox participant and two Chromium participants decrypt each other\'s media, chat, and show one security code', { timeout: 110_000 }, async () => {
    const room = uniqueRoom('interop');
    const chromes = [await newParticipant(chromium, 'Chromium A'), await newParticipant(chromium, 'Chromium B')];
    const fox = await firefox.newPage();
    const foxLog = [];
    fox.on('console', (m) => foxLog.push(`[Firefox] console.${m.type()}: ${m.text()}`));
    fox.on('pageerror', (e) => foxLog.push(`[Firefox] pageerror: ${e.message}`));
    // The same instrumentation as the Chromium pages.
    await fox.evaluateOnNewDocument(capturePeers);
    const foxE2ee = () => fox.evaluate(() => {
      const e = window.__conclave?.e2ee;
      return e ? { state: e.state, securityCode: e.securityCode, transformApi: e.transformApi, rosterSize: e.roster.length } : null;
    });
    try {
      await join(chromes[0], server.url, room, 'Chrome A');
      await join(chromes[1], server.url, room, 'Chrome B');
      await fox.goto(`${server.url}/${room}${inviteFragment(room)}`);
      await fox.waitForSelector('[data-testid="name-input"]');
      await fox.type('[data-testid="name-input"]', 'Firefox User');
      await fox.waitForSelector('[data-testid="preview-video"]:not([hidden])', { timeout: 10_000 });
      await fox.click('[data-testid="join-button"]');
      await waitFor(async () => (await foxE2ee())?.state === 'joined', { timeoutMs: 30_000, what: 'Firefox to join the MLS group' });
      const fx = await foxE2ee();
      // Firefox has only RTCRtpScriptTransform.
      assert.equal(fx.transformApi, 'script');

      await waitFor(async () => {
        const s = await firefoxInbound(fox);
        return s.filter((x) => x.kind === 'video' && x.framesDecoded > 10).length >= 2 && s.filter((x) => x.kind === 'audio' && x.packetsReceived > 0).length >= 2;
      }, { timeoutMs: 40_000, what: 'Firefox to decrypt and decode both Chromium videos' });
      for (const c of chromes) {
        await waitFor(async () => {
          const s = await inboundStats(c.page);
          return s.filter((x) => x.kind === 'video' && x.framesDecoded > 10).length >= 2 && s.filter((x) => x.kind === 'audio' && x.totalAudioEnergy > 0).length >= 2;
        }, { timeoutMs: 40_000, what: `${c.label} to decrypt and decode Firefox's and the other Chromium's media` });
      }
      await waitFor(async () => {
        const codes = [(await foxE2ee()).securityCode, ...(await Promise.all(chromes.map(async (c) => (await e2eeState(c.page)).securityCode)))];
        return codes[0] && codes.every((c) => c === codes[0]) && (await foxE2ee()).rosterSize === 3;
      }, { what: 'one security code on all three' });

      // Chat messages are rendered into the panel, so open it on both sides.
      await chromes[0].page.getByTestId('toggle-chat').click();
      await fox.click('[data-testid="toggle-chat"]');
      await fox.type('[data-testid="chat-input"]', 'hello from Firefox');
      await fox.keyboard.press('Enter');
      await waitFor(async () => (await chatMessages(chromes[0].page)).some((m) => m.name === 'Firefox User' && m.text === 'hello from Firefox'), {
        what: 'the Firefox chat message in Chromium',
      });
      assert.deepEqual(foxLog.filter((l) => l.includes('pageerror')), []);
      // Firefox too works within the server's Content-Security-Policy (connect-src 'self' admits its WebSocket).
      assert.deepEqual(await fox.evaluate(() => window.__e2eCspViolations), [], 'Firefox: CSP violations');
    } catch (err) {
      err.message += '\n' + foxLog.slice(-30).join('\n') + '\nFirefox: ' + JSON.stringify(await foxE2ee().catch(() => null)) + '\nFirefox inbound: ' + JSON.stringify(await firefoxInbound(fox).catch(() => null)) + '\n' + (await diagnostics(chromes, server));
      throw err;
    } finally {
      await fox.close().catch(() => {});
      for (const c of chromes) await c.context.close();
    }
  });
});
