// Connection-quality indicators on real, impaired traffic. Three people:
// Ada and Cy in a Chromium on the host, Bob in a Chromium inside e2e/run.sh's
// test network namespace. While nobody is impaired every tile is good. Then
// nftables drops a fifth of the UDP leaving the namespace (Bob's uplink,
// media and RTCP alike; his downlink is untouched): Ada's tile for Bob must
// go fair or poor, Bob's own tile must say that his connection is the
// problem (and tell screen readers once), while Ada and Cy keep seeing each
// other as good and get no warning of their own. Lifting the impairment
// clears Bob's warning.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { failIfMissing, skipOutsideCI } from '../lib/ci.mjs';
import { inNetns, launchBrowserInNetns, startHostServer, namespaceInterface, netns, netnsMissing, NFT } from '../lib/netns.mjs';
import { decodedVideo, diagnostics, join, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';

const TABLE = 'conclave_e2e_quality';
/** Percent of the namespace's outgoing UDP dropped while impaired. */
const DROP_PERCENT = 20;

const missing = netnsMissing({ needNft: true });

/**
 * Drops DROP_PERCENT% of the UDP leaving the namespace at random, as a lossy
 * network would (tc netem is not available on every test machine;
 * nftables' numgen is). On the interface's egress hook, not the output
 * hook: a packet dropped at output fails the sender's send() with EPERM,
 * so the browser knows and copes, whereas from egress it is gone silently.
 * The first rule counts every outgoing UDP packet, the second the dropped
 * ones.
 */
function impairUplink() {
  inNetns([NFT, '-f', '-'], `table netdev ${TABLE} {
  chain out {
    type filter hook egress device "${namespaceInterface()}" priority 0; policy accept;
    meta l4proto udp counter
    meta l4proto udp numgen random mod 100 < ${DROP_PERCENT} counter drop
  }
}
`);
}

function removeImpairment() {
  spawnSync('ip', ['netns', 'exec', netns, NFT, 'delete', 'table', 'netdev', TABLE]);
}

/** [UDP packets out of the namespace, of which dropped]. */
function udpCounters() {
  const listing = inNetns([NFT, 'list', 'table', 'netdev', TABLE]);
  return [...listing.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
}

/** Every tile's quality as the page shows it. */
async function tiles(page) {
  return page.locator('[data-testid="tile"]').evaluateAll((els) =>
    els.map((e) => {
      const bars = e.querySelector('[data-testid="tile-quality"]');
      const warning = e.querySelector('[data-testid="tile-uplink-warning"]');
      return {
        id: Number(e.getAttribute('data-participant-id')),
        local: e.getAttribute('data-local') === 'true',
        quality: e.getAttribute('data-quality'),
        barsShown: !!bars && !bars.hidden,
        label: bars?.getAttribute('aria-label') ?? null,
        warning: warning && !warning.hidden ? warning.textContent : null,
      };
    }),
  );
}

async function tile(page, id) {
  return (await tiles(page)).find((t) => t.id === id) ?? null;
}

/** Records what the page says to screen readers (its polite live region). */
async function recordAnnouncements(page) {
  await page.evaluate(() => {
    const said = [];
    window.__e2eSaid = said;
    const region = document.getElementById('announcer');
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) said.push(n.textContent);
    }).observe(region, { childList: true });
  });
}

const announcements = (page) => page.evaluate(() => window.__e2eSaid ?? []);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('connection-quality indicators under real packet loss (Chromium)', { skip: skipOutsideCI(missing), timeout: 300_000 }, () => {
  let hostBrowser;
  let nsBrowser;

  before(async () => {
    failIfMissing(missing);
    removeImpairment();
    hostBrowser = await launchBrowser();
    nsBrowser = await launchBrowserInNetns();
  });

  after(async () => {
    await hostBrowser?.close();
    await nsBrowser?.close();
    if (netns && NFT) removeImpairment();
  });

  test('the impaired uplink shows on the others\' tiles for that person and as a warning on their own', { timeout: 280_000 }, async () => {
    const server = await startHostServer();
    const people = [];
    try {
      const https = { ignoreHTTPSErrors: true };
      const ada = await newParticipant(hostBrowser, 'Ada', undefined, https);
      const cy = await newParticipant(hostBrowser, 'Cy', undefined, https);
      const bob = await newParticipant(nsBrowser, 'Bob (impaired)', undefined, https);
      people.push(ada, cy, bob);
      const room = uniqueRoom('quality');
      for (const [p, name] of [[ada, 'Ada'], [cy, 'Cy'], [bob, 'Bob']]) {
        await join(p, server.url, room, name);
        await waitSecured(p.page, `${name} to be in the encrypted call`, 30_000);
      }
      for (const p of people) {
        await waitFor(async () => (await decodedVideo(p.page)).filter((s) => s.framesDecoded > 10).length >= 2, {
          what: `${p.label} to decode both others' video`,
          timeoutMs: 45_000,
        });
      }
      await recordAnnouncements(bob.page);

      // Unimpaired: every remote tile is measured and good, nobody is warned.
      for (const p of people) {
        await waitFor(async () => {
          const all = await tiles(p.page);
          return all.length === 3 && all.every((t) => t.quality === 'good' && !t.barsShown && t.warning === null) ? all : null;
        }, { what: `${p.label} to show every tile good`, timeoutMs: 45_000 });
      }

      // Bob's uplink loses a fifth of its packets.
      impairUplink();
      // A fifth of Bob's audio never arrives (Opus is not retransmitted):
      // well past the 10% that makes a connection poor.
      const lossy = await waitFor(async () => {
        const seen = await tile(ada.page, bob.id);
        return seen?.quality === 'poor' ? seen : null;
      }, { what: 'Ada\'s tile for Bob to go poor', timeoutMs: 60_000 });
      assert.ok(lossy.barsShown, 'the bars show');
      assert.match(lossy.label, /^Connection: poor — \d+(\.\d)?% of (audio|video) packets lost$/, `an accessible name that says why: ${lossy.label}`);
      // The SFU's receiver reports tell Bob's browser what it lost. (The
      // first report after the loss began covers a partly clean interval:
      // on the way the tile may say "weak" first.)
      const own = await waitFor(async () => {
        const t = await tile(bob.page, bob.id);
        return t?.quality === 'poor' && t.warning ? t : null;
      }, { what: 'Bob\'s own tile to warn him that his connection is poor', timeoutMs: 60_000 });
      assert.equal(own.warning, 'Your connection is unstable: others may see you frozen');
      assert.equal(own.quality, 'poor');
      assert.match(own.label, /^Your connection: poor — \d+(\.\d)?% of your packets lost$/, own.label);
      const [out, dropped] = udpCounters();
      assert.ok(out > 500 && dropped > out * 0.1 && dropped < out * 0.3, `about ${DROP_PERCENT}% of Bob's UDP dropped: ${dropped} of ${out}`);

      // A few samples later: Ada and Cy still see each other as good, and
      // neither is warned about their own connection.
      await sleep(6_000);
      for (const [p, other] of [[ada, cy], [cy, ada]]) {
        const seen = await tile(p.page, other.id);
        assert.equal(seen?.quality, 'good', `${p.label} sees ${other.label} good: ${JSON.stringify(seen)}`);
        const self = await tile(p.page, p.id);
        assert.equal(self?.warning, null, `${p.label} is not warned: ${JSON.stringify(self)}`);
      }
      const cySeesBob = await tile(cy.page, bob.id);
      assert.ok(cySeesBob?.quality === 'poor' || cySeesBob?.quality === 'fair', `Cy sees Bob impaired too: ${JSON.stringify(cySeesBob)}`);
      // Bob's downlink is whole: he sees the others as good.
      for (const other of [ada, cy]) {
        const seen = await tile(bob.page, other.id);
        assert.equal(seen?.quality, 'good', `Bob sees ${other.label} good: ${JSON.stringify(seen)}`);
      }
      const said = await announcements(bob.page);
      const warnings = said.filter((s) => s.startsWith('Your connection is') || s.startsWith('Your device'));
      assert.ok(warnings.length >= 1, `Bob's screen reader heard the warning: ${JSON.stringify(said)}`);
      for (let i = 1; i < warnings.length; i++) {
        assert.notEqual(warnings[i], warnings[i - 1], `said once per change, not per sample: ${JSON.stringify(said)}`);
      }

      // Impairment lifted: Bob's warning clears and Ada stops seeing him poor.
      removeImpairment();
      await waitFor(async () => {
        const t = await tile(bob.page, bob.id);
        return t && t.warning === null ? t : null;
      }, { what: 'Bob\'s warning to clear once his uplink is whole again', timeoutMs: 60_000 });
      await waitFor(async () => {
        const seen = await tile(ada.page, bob.id);
        return seen && seen.quality !== 'poor' ? seen : null;
      }, { what: 'Ada to stop seeing Bob poor', timeoutMs: 60_000 });
      assert.deepEqual((await announcements(bob.page)).at(-1), 'Others see you in full quality again', 'the recovery is said too');
      console.log(`quality test: Bob's UDP dropped ${dropped} of ${out}; Ada saw Bob "${lossy.label}"; Bob saw "${own.warning}" (${own.label})`);
    } catch (err) {
      const states = [];
      for (const p of people) states.push(`${p.label} tiles: ${JSON.stringify(await tiles(p.page).catch((e) => e.message))}`);
      err.message += '\n' + states.join('\n') + '\n' + (await diagnostics(people, server));
      throw err;
    } finally {
      removeImpairment();
      for (const p of people) await p.context.close().catch(() => {});
      await server.stop();
    }
  });
});
