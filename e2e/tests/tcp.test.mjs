// A browser whose UDP is blocked joins over ICE-TCP (RFC 6544): one
// Chromium runs inside e2e/run.sh's test network namespace, where nftables
// drops every UDP packet; the other runs on the host. Both decode each
// other's (end-to-end encrypted) video; the blocked one's selected candidate
// pair is TCP, the other's UDP. A third, normal participant joining the same
// meeting gives the UDP figure to compare the time to first frame with.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { failIfMissing, skipOutsideCI } from '../lib/ci.mjs';
import { hostIp as lanIp, inNetns, launchBrowserInNetns, startHostServer, netns, netnsMissing, NFT } from '../lib/netns.mjs';
import { decodedVideo, diagnostics, e2eeState, join, timedJoin, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';

const TABLE = 'conclave_e2e_no_udp';
const missing = netnsMissing({ needNft: true });

/** Drops every UDP packet in and out of the namespace, counting them. */
function blockUdp() {
  inNetns([NFT, '-f', '-'], `table inet ${TABLE} {
  chain out { type filter hook output priority 0; policy accept; meta l4proto udp counter drop; }
  chain in { type filter hook input priority 0; policy accept; meta l4proto udp counter drop; }
}
`);
}

function unblockUdp() {
  spawnSync('ip', ['netns', 'exec', netns, NFT, 'delete', 'table', 'inet', TABLE]);
}

/** UDP packets dropped so far (out, in). */
function udpDropped() {
  const listing = inNetns([NFT, 'list', 'table', 'inet', TABLE]);
  return [...listing.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
}

/** The protocol and candidate types of the page's selected ICE candidate pair. */
async function selectedPair(page) {
  return page.evaluate(async () => {
    const pc = (window.__e2ePeers ?? []).at(-1);
    if (!pc) return null;
    const report = await pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) return null;
    const local = report.get(pair.localCandidateId);
    const remote = report.get(pair.remoteCandidateId);
    return {
      protocol: local?.protocol,
      localTcpType: local?.tcpType ?? null,
      remote: `${remote?.protocol} ${remote?.address}:${remote?.port} ${remote?.candidateType} ${remote?.tcpType ?? ''}`.trim(),
    };
  });
}

/** `promise`, or a failure naming `what` after `ms`. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('ICE over TCP for a browser whose UDP is blocked (Chromium)', { skip: skipOutsideCI(missing), timeout: 240_000 }, () => {
  let hostBrowser;
  let blockedBrowser;

  before(async () => {
    failIfMissing(missing);
    blockUdp();
    hostBrowser = await launchBrowser();
    blockedBrowser = await launchBrowserInNetns();
  });

  after(async () => {
    await hostBrowser?.close();
    await blockedBrowser?.close();
    if (netns && NFT) unblockUdp();
  });

  test('a participant without UDP joins over TCP; both decode each other\'s encrypted video', { timeout: 200_000 }, async () => {
    const server = await startHostServer();
    const people = [];
    try {
      const https = { ignoreHTTPSErrors: true };
      const open = await newParticipant(hostBrowser, 'Ada (UDP)', undefined, https);
      const blocked = await newParticipant(blockedBrowser, 'Bob (no UDP)', undefined, https);
      const late = await newParticipant(hostBrowser, 'Cy (UDP)', undefined, https);
      people.push(open, blocked, late);
      const room = uniqueRoom('tcp');

      // The namespace really has no UDP: a datagram to the server's UDP port is dropped.
      const before = udpDropped();
      inNetns(['bash', '-c', `echo x > /dev/udp/${lanIp}/${server.udpPort} 2>/dev/null || true`]);
      assert.ok(udpDropped()[0] > before[0], 'UDP out of the namespace is dropped');

      await join(open, server.url, room, 'Ada');
      await waitSecured(open.page);
      // Time from the Join click to the first decoded remote frame.
      const tcpFirstFrameMs = await within(30_000, 'the participant without UDP to decode a frame', timedJoin(blocked, server.url, room, 'Bob'));
      await waitSecured(blocked.page);

      for (const [p, other] of [[open, 'Bob'], [blocked, 'Ada']]) {
        await waitFor(async () => (await decodedVideo(p.page)).some((s) => s.framesDecoded > 5), {
          what: `${p.label} to decode ${other}'s video`,
          timeoutMs: 30_000,
        });
      }
      const blockedPair = await selectedPair(blocked.page);
      const openPair = await selectedPair(open.page);
      assert.equal(blockedPair?.protocol, 'tcp', `the blocked participant's media goes over TCP: ${JSON.stringify(blockedPair)}`);
      assert.match(blockedPair.remote, /tcp .* host passive/, 'to the server\'s passive TCP candidate');
      assert.equal(openPair?.protocol, 'udp', `the other's over UDP: ${JSON.stringify(openPair)}`);
      assert.equal((await e2eeState(open.page)).roster.length, 2, 'one group of two');

      // For comparison: a participant with UDP joins the same meeting.
      const udpFirstFrameMs = await within(30_000, 'the late participant to decode a frame', timedJoin(late, server.url, room, 'Cy'));
      await waitFor(async () => (await decodedVideo(late.page)).filter((s) => s.framesDecoded > 5).length >= 2, {
        what: 'the late participant to decode both videos (one of them sent over TCP)',
        timeoutMs: 30_000,
      });
      const still = await decodedVideo(blocked.page);
      assert.ok(still.length >= 2, `the blocked participant receives both others over TCP: ${JSON.stringify(still)}`);
      console.log(`ICE-TCP test: first decoded frame after Join: over TCP ${Math.round(tcpFirstFrameMs)} ms, over UDP ${Math.round(udpFirstFrameMs)} ms; UDP dropped in the namespace (out, in): ${udpDropped()}`);
    } catch (err) {
      err.message += '\n' + (await diagnostics(people, server));
      throw err;
    } finally {
      for (const p of people) await p.context.close().catch(() => {});
      await server.stop();
    }
  });
});
