// A participant's network changes mid-call (Wi-Fi to mobile data): one
// Chromium runs inside e2e/run.sh's test network namespace, the other on the
// host, and the namespace's address is replaced by another one while they
// talk. The moved page notices its media path is down, shows Reconnecting…,
// asks the server for an ICE restart and gets its media back over the new
// address — in the same session (same participant, same peer connection)
// and the same MLS epoch: no rejoin. Prints how long each side went without
// a new decoded frame.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { failIfMissing, skipOutsideCI } from '../lib/ci.mjs';
import { inNetns, launchBrowserInNetns, startHostServer, namespaceInterface, netns, netnsMissing } from '../lib/netns.mjs';
import { decodedVideo, diagnostics, e2eeState, join, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';

const FIRST = '10.213.0.2/29';
const SECOND = '10.213.0.3/29';
const missing = netnsMissing();

/** Frames decoded so far from the one remote video stream of `page`. */
async function framesFromOther(page) {
  return (await decodedVideo(page)).reduce((n, s) => n + (s.framesDecoded ?? 0), 0);
}

/** The local address of the page's selected ICE candidate pair. */
async function localAddress(page) {
  return page.evaluate(async () => {
    const pc = (window.__e2ePeers ?? []).at(-1);
    if (!pc) return null;
    const report = await pc.getStats();
    let address = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = report.get(s.selectedCandidatePairId);
        address = report.get(pair?.localCandidateId)?.address ?? null;
      }
    });
    return address;
  });
}

describe('a network change mid-call (Chromium)', { skip: skipOutsideCI(missing), timeout: 240_000 }, () => {
  let hostBrowser;
  let movingBrowser;

  before(async () => {
    failIfMissing(missing);
    hostBrowser = await launchBrowser();
    movingBrowser = await launchBrowserInNetns();
  });

  after(async () => {
    await hostBrowser?.close();
    await movingBrowser?.close();
    if (!missing) {
      // Back to the address the other tests expect.
      const nsIf = namespaceInterface();
      spawnSync('ip', ['netns', 'exec', netns, 'ip', 'addr', 'del', SECOND, 'dev', nsIf]);
      spawnSync('ip', ['netns', 'exec', netns, 'ip', 'addr', 'add', FIRST, 'dev', nsIf]);
    }
  });

  test('a participant whose address changes gets its media back by an ICE restart, in the same session and MLS epoch', { timeout: 200_000 }, async () => {
    const server = await startHostServer();
    const people = [];
    try {
      const https = { ignoreHTTPSErrors: true };
      const ada = await newParticipant(hostBrowser, 'Ada (stays)', undefined, https);
      const bob = await newParticipant(movingBrowser, 'Bob (moves)', undefined, https);
      people.push(ada, bob);
      const restarts = [];
      bob.page.on('websocket', (ws) => ws.on('framesent', (f) => {
        if (String(f.payload).includes('"ice_restart"')) restarts.push(Date.now());
      }));
      bob.page.on('console', (m) => {
        if (m.text().includes('conclave:')) bob.log.push(`[+${Date.now() - (globalThis.__moved ?? Date.now())} ms] ${m.text()}`);
      });
      const room = uniqueRoom('move');
      await join(ada, server.url, room, 'Ada');
      await join(bob, server.url, room, 'Bob');
      for (const p of [ada, bob]) {
        await waitSecured(p.page);
        await waitFor(async () => (await framesFromOther(p.page)) > 10, { timeoutMs: 30_000, what: `${p.label} to decode the other's video` });
      }
      assert.equal(await localAddress(bob.page), FIRST.split('/')[0], 'Bob talks from his first address');
      const before = {
        epoch: (await e2eeState(ada.page)).epoch,
        bobId: bob.id,
        bobPeers: await bob.page.evaluate(() => window.__e2ePeers.length),
      };

      const nsIf = namespaceInterface();
      // The move: the new address first, then the old one goes (the new
      // one must outlive it: by default Linux drops the subnet's other
      // addresses with its first).
      inNetns(['sysctl', '-q', '-w', `net.ipv4.conf.${nsIf}.promote_secondaries=1`]);
      inNetns(['ip', 'addr', 'add', SECOND, 'dev', nsIf]);
      inNetns(['ip', 'addr', 'del', FIRST, 'dev', nsIf]);
      const moved = Date.now();
      globalThis.__moved = moved;

      // Per side: when decoding stalled and when it went on again. Bob's
      // banner is watched meanwhile.
      const watch = async (p) => {
        let last = await framesFromOther(p.page);
        let lastChange = Date.now();
        let stalled = false;
        for (;;) {
          await new Promise((r) => setTimeout(r, 100));
          const now = await framesFromOther(p.page);
          if (now > last) {
            if (stalled) return { resumedAfterMs: Date.now() - moved, gapMs: Date.now() - lastChange };
            lastChange = Date.now();
            last = now;
          } else if (Date.now() - lastChange > 700) {
            stalled = true;
          }
          if (Date.now() - moved > 45_000) {
            throw new Error(`${p.label}: no decoded frame from the other for ${Date.now() - lastChange} ms (stalled: ${stalled})`);
          }
        }
      };
      let sawReconnecting = false;
      let watching = true;
      const banner = (async () => {
        while (watching) {
          const text = await bob.page.getByTestId('connection-banner').textContent().catch(() => '');
          if (/Reconnecting/.test(text ?? '')) sawReconnecting = true;
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      let adaSide;
      let bobSide;
      try {
        [adaSide, bobSide] = await Promise.all([watch(ada), watch(bob)]);
      } finally {
        watching = false;
        await banner;
      }
      // And it keeps flowing.
      for (const p of [ada, bob]) {
        const n = await framesFromOther(p.page);
        await waitFor(async () => (await framesFromOther(p.page)) > n + 20, { timeoutMs: 15_000, what: `${p.label} to keep decoding after the move` });
      }
      assert.equal(await localAddress(bob.page), SECOND.split('/')[0], 'Bob\'s media now goes from his new address');
      assert.ok(restarts.length >= 1, 'Bob asked for an ICE restart');
      assert.ok(sawReconnecting, 'Bob\'s page said Reconnecting… during the gap');
      assert.equal(await bob.page.evaluate(() => window.__e2ePeers.length), before.bobPeers, 'the same peer connection (no rejoin)');
      const bobTile = Number(await bob.page.locator('[data-testid="tile"][data-local="true"]').getAttribute('data-participant-id'));
      assert.equal(bobTile, before.bobId, 'the same participant (no rejoin)');
      for (const p of [ada, bob]) {
        const s = await e2eeState(p.page);
        assert.equal(s.epoch, before.epoch, `${p.label}: the same MLS epoch (nobody left or joined)`);
        assert.equal(s.roster.length, 2);
      }
      const firstRestart = restarts[0] - moved;
      console.log(`network change: Bob asked for an ICE restart ${firstRestart} ms after the move; ` +
        `Ada decoded Bob again ${adaSide.resumedAfterMs} ms after the move (gap ${adaSide.gapMs} ms), ` +
        `Bob decoded Ada again ${bobSide.resumedAfterMs} ms after (gap ${bobSide.gapMs} ms); restarts asked: ${restarts.length}`);
      console.log(`network change: Bob's page said:\n${bob.log.filter((l) => l.includes('conclave:')).join('\n')}`);
    } catch (err) {
      err.message += '\n' + (await diagnostics(people, server));
      throw err;
    } finally {
      for (const p of people) await p.context.close().catch(() => {});
      await server.stop();
    }
  });
});
