// Firefox for the interoperability test, driven by puppeteer-core over
// WebDriver BiDi (Playwright cannot drive Debian's Firefox).
import { existsSync } from 'node:fs';
import puppeteer from 'puppeteer-core';

export const FIREFOX = process.env.FIREFOX ?? '/usr/bin/firefox-esr';
export const haveFirefox = existsSync(FIREFOX);

/**
 * Firefox (153 ESR here) never pairs its host candidates with a 127.0.0.1
 * server candidate: it gathers no loopback candidate even with
 * media.peerconnection.ice.loopback=true, so ICE stays "new" and the server
 * drops the session. The interop test therefore announces (and binds) media
 * on another local address: e2e/run.sh creates a test-only veth pair and sets
 * CONCLAVE_E2E_FIREFOX_IP to its host end. Without it the test is skipped.
 */
export const firefoxServerIp = process.env.CONCLAVE_E2E_FIREFOX_IP ?? null;

export function launchFirefox() {
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.autoplay.default': 0,
      'media.autoplay.blocking_policy': 0,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
    },
  });
}
