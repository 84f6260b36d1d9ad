// Chromium for the tests: headless flags that work on these machines
// (see /work/shared/docs/toolchain.md) plus fake camera, microphone and
// screen. One browser per test file; one context (own storage, own fake
// devices) per participant.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export function chromiumArgs({ fakeCameras = 1 } = {}) {
  return [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    fakeCameras > 1 ? `--use-fake-device-for-media-stream=device-count=${fakeCameras}` : '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required',
    // getDisplayMedia picks the (fake) screen without a picker.
    '--auto-select-desktop-capture-source=Entire screen',
    // Several participants share one machine: keep hidden pages running.
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
  ];
}

/** A headless Chromium; Playwright gives it a fresh temporary profile. */
export function launchBrowser(options = {}) {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs(options) });
}

/**
 * Records every RTCPeerConnection the page creates in `window.__e2ePeers`,
 * and Content-Security-Policy violations in `window.__e2eCspViolations`
 * (test-side instrumentation; the app exposes nothing global).
 */
export function capturePeers() {
  const violations = [];
  Object.defineProperty(window, '__e2eCspViolations', { value: violations });
  document.addEventListener('securitypolicyviolation', (e) => violations.push(`${e.effectiveDirective} ${e.blockedURI}`));
  const Original = window.RTCPeerConnection;
  const peers = [];
  Object.defineProperty(window, '__e2ePeers', { value: peers });
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      peers.push(this);
    }
  };
}

/**
 * A new participant: own context and page, console errors collected, and
 * the headers of every document the page loaded (`documents`: promises of
 * `{ url, headers }`, as the browser received them).
 */
export async function newParticipant(browser, label, viewport = { width: 960, height: 640 }, contextOptions = {}) {
  const context = await browser.newContext({ viewport, permissions: ['camera', 'microphone'], ...contextOptions });
  await context.addInitScript(capturePeers);
  const page = await context.newPage();
  const log = [];
  const documents = [];
  page.on('console', (m) => log.push(`[${label}] console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`[${label}] pageerror: ${e.message}`));
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) {
      documents.push(r.allHeaders().then((headers) => ({ url: r.url(), headers }), (e) => ({ url: r.url(), error: e.message })));
    }
  });
  return { label, context, page, log, documents };
}
