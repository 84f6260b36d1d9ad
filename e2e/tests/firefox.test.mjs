// Interoperability: a Firefox participant and a Chromium participant in one
// room see and hear each other through the SFU.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { capturePeers, launchBrowser, newParticipant } from '../lib/browser.mjs';
import { firefoxServerIp, haveFirefox, launchFirefox } from '../lib/firefox.mjs';
import { chatMessages, diagnostics, inboundStats, join, uniqueRoom, waitFor } from '../lib/meeting.mjs';
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

const skip = !haveFirefox
  ? 'Firefox is not installed'
  : !firefoxServerIp
    ? 'Firefox cannot do ICE with a 127.0.0.1-only server; run e2e/run.sh as root (it makes a test veth pair) or set CONCLAVE_E2E_FIREFOX_IP'
    : false;

describe('Firefox and Chromium in one meeting', { skip, timeout: 120_000 }, () => {
  before(async () => {
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

  test('a Firefox participant and a Chromium participant decode each other\'s video, hear each other and chat', { timeout: 90_000 }, async () => {
    const room = uniqueRoom('interop');
    const chrome = await newParticipant(chromium, 'Chromium');
    const fox = await firefox.newPage();
    const foxLog = [];
    fox.on('console', (m) => foxLog.push(`[Firefox] console.${m.type()}: ${m.text()}`));
    fox.on('pageerror', (e) => foxLog.push(`[Firefox] pageerror: ${e.message}`));
    // The same instrumentation as the Chromium pages.
    await fox.evaluateOnNewDocument(capturePeers);
    try {
      await join(chrome, server.url, room, 'Chrome User');
      await fox.goto(`${server.url}/${room}`);
      await fox.waitForSelector('[data-testid="name-input"]');
      await fox.type('[data-testid="name-input"]', 'Firefox User');
      await fox.waitForSelector('[data-testid="preview-video"]:not([hidden])', { timeout: 10_000 });
      await fox.click('[data-testid="join-button"]');
      await fox.waitForSelector('[data-testid="tile"][data-local="false"]', { timeout: 15_000 });

      await waitFor(async () => {
        const s = await firefoxInbound(fox);
        return s.some((x) => x.kind === 'video' && x.framesDecoded > 0) && s.some((x) => x.kind === 'audio' && x.packetsReceived > 0);
      }, { timeoutMs: 30_000, what: 'Firefox to decode Chromium\'s video and receive its audio' });
      await waitFor(async () => {
        const s = await inboundStats(chrome.page);
        return s.some((x) => x.kind === 'video' && x.framesDecoded > 0) && s.some((x) => x.kind === 'audio' && x.packetsReceived > 0);
      }, { timeoutMs: 30_000, what: 'Chromium to decode Firefox\'s video and receive its audio' });

      // Chat messages are rendered into the panel, so open it on both sides.
      await chrome.page.getByTestId('toggle-chat').click();
      await fox.click('[data-testid="toggle-chat"]');
      await fox.type('[data-testid="chat-input"]', 'hello from Firefox');
      await fox.keyboard.press('Enter');
      await waitFor(async () => (await chatMessages(chrome.page)).some((m) => m.name === 'Firefox User' && m.text === 'hello from Firefox'), {
        what: 'the Firefox chat message in Chromium',
      });
      assert.deepEqual(foxLog.filter((l) => l.includes('pageerror')), []);
    } catch (err) {
      err.message += '\n' + foxLog.slice(-30).join('\n') + '\nFirefox inbound: ' + JSON.stringify(await firefoxInbound(fox).catch(() => null)) + '\n' + (await diagnostics([chrome], server));
      throw err;
    } finally {
      await fox.close().catch(() => {});
      await chrome.context.close();
    }
  });
});
