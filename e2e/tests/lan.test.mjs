// A server on a LAN address serves HTTPS and WSS with the certificate it
// generates (browsers give camera and microphone only to secure origins),
// keeps it across restarts, and makes a new one when its address changes.
// The LAN is e2e/run.sh's test-only veth pair (CONCLAVE_E2E_FIREFOX_IP),
// reachable from this machine only.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { connect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { failIfMissing, skipOutsideCI } from '../lib/ci.mjs';
import { firefoxServerIp as lanIp } from '../lib/firefox.mjs';
import { decodedVideo, diagnostics, e2eeState, join, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

const missing = lanIp ? null : 'no test LAN address: run e2e/run.sh as root (it makes a test veth pair) or set CONCLAVE_E2E_FIREFOX_IP';

/** The SHA-256 fingerprint and subject alt names of the certificate served at ip:port. */
function servedCertificate(ip, port) {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: ip, port, rejectUnauthorized: false }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve({ fingerprint: cert.fingerprint256, names: cert.subjectaltname ?? '' });
    });
    socket.on('error', reject);
  });
}

describe('HTTPS and WSS on a LAN address (Chromium)', { skip: skipOutsideCI(missing), timeout: 240_000 }, () => {
  let browser;
  let dataDir;

  before(async () => {
    failIfMissing(missing);
    dataDir = mkdtempSync(joinPath(tmpdir(), 'conclave-lan-'));
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  test('two people meet over HTTPS/WSS on a LAN address; the generated certificate is kept across restarts and renewed for a new address', { timeout: 200_000 }, async () => {
    const env = { CONCLAVE_DATA_DIR: dataDir };
    let server = await startServer({ listenIp: lanIp, publicIp: lanIp, env });
    const people = [];
    try {
      assert.ok(server.url.startsWith(`https://${lanIp}:`), `a LAN listener serves HTTPS: ${server.url}`);
      const first = await servedCertificate(lanIp, server.httpPort);
      assert.match(first.names, new RegExp(`IP Address:${lanIp.replaceAll('.', '\\.')}`), 'the certificate names the LAN address');
      assert.match(readFileSync(joinPath(dataDir, 'key.pem'), 'utf8'), /PRIVATE KEY/);

      // The certificate is self-signed: each person accepts it once (here, the context does).
      const sockets = [];
      for (const name of ['Ada', 'Grace']) {
        const p = await newParticipant(browser, name, undefined, { ignoreHTTPSErrors: true });
        p.page.on('websocket', (ws) => sockets.push(ws.url()));
        people.push(p);
      }
      const room = uniqueRoom('lan');
      for (const [i, p] of people.entries()) await join(p, server.url, room, ['Ada', 'Grace'][i]);
      for (const p of people) {
        assert.equal(await p.page.evaluate(() => window.isSecureContext), true, `${p.label}: a secure context`);
        await waitSecured(p.page);
      }
      assert.ok(sockets.length >= 2 && sockets.every((u) => u.startsWith(`wss://${lanIp}:`)), `signaling over WSS: ${sockets}`);
      await waitFor(async () => (await e2eeState(people[0].page)).roster.length === 2, { what: 'a group of two' });
      for (const p of people) {
        await waitFor(async () => (await decodedVideo(p.page)).some((s) => s.framesDecoded > 5), {
          what: `${p.label} to decode the other's video over the LAN address`,
          timeoutMs: 25_000,
        });
      }
      for (const p of people) await p.context.close();
      people.length = 0;

      // Restarted on the same address: the same certificate (accepted once, stays accepted).
      await server.stop();
      server = await startServer({ listenIp: lanIp, publicIp: lanIp, env });
      assert.equal((await servedCertificate(lanIp, server.httpPort)).fingerprint, first.fingerprint, 'kept across a restart');
      await server.stop();

      // The announced address changed (a new lease): a new certificate naming it.
      const moved = lanIp.replace(/\.\d+$/, (last) => `.${Number(last.slice(1)) + 1}`);
      server = await startServer({ listenIp: lanIp, publicIp: moved, env });
      const renewed = await servedCertificate(lanIp, server.httpPort);
      assert.notEqual(renewed.fingerprint, first.fingerprint, 'a new certificate for the new address');
      assert.match(renewed.names, new RegExp(`IP Address:${moved.replaceAll('.', '\\.')}`));
    } catch (err) {
      err.message += '\n' + (await diagnostics(people, server));
      throw err;
    } finally {
      for (const p of people) await p.context.close().catch(() => {});
      await server.stop();
    }
  });
});
