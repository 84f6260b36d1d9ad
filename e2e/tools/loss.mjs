// What each side of a call gets under random packet loss (issue 11 §3):
// Ada in a Chromium on the host, Bob in a Chromium inside e2e/run.sh's test
// namespace; nftables drops N% of the UDP leaving and N% of the UDP entering
// the namespace (Bob's uplink and downlink), for N in 0, 5, 20. Over 20 s
// each receiver reports the other's video frame rate, freezes (Chromium's
// freezeCount / totalFreezesDuration), NACKs and PLIs it sent, and the share
// of audio it had to conceal. A measurement, not a test: it prints a table.
//
//   sudo bash e2e/run.sh tools/loss.mjs      (needs the namespace run.sh makes)
import { spawnSync } from 'node:child_process';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { join, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';
import { inNetns, launchBrowserInNetns, namespaceInterface, netns, netnsMissing, NFT, startHostServer } from '../lib/netns.mjs';

const TABLE = 'conclave_e2e_loss';
const WINDOW_MS = 20_000;

function impair(percent) {
  spawnSync('ip', ['netns', 'exec', netns, NFT, 'delete', 'table', 'netdev', TABLE]);
  if (percent === 0) return;
  const dev = namespaceInterface();
  inNetns([NFT, '-f', '-'], `table netdev ${TABLE} {
  chain out { type filter hook egress device "${dev}" priority 0; policy accept; meta l4proto udp numgen random mod 100 < ${percent} drop; }
  chain in { type filter hook ingress device "${dev}" priority 0; policy accept; meta l4proto udp numgen random mod 100 < ${percent} drop; }
}
`);
}

/** The receiving side's totals for the other participant's video and audio. */
async function received(page) {
  return page.evaluate(async () => {
    const pc = (window.__e2ePeers ?? []).at(-1);
    const out = { frames: 0, freezes: 0, freezeSeconds: 0, nacks: 0, plis: 0, videoLost: 0, videoPackets: 0, retransmitted: 0, audioLost: 0, audioPackets: 0, concealed: 0, samples: 0 };
    if (!pc) return out;
    (await pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp' || !(s.packetsReceived > 0)) return;
      const video = s.kind === 'video';
      out[video ? 'videoPackets' : 'audioPackets'] += s.packetsReceived;
      out[video ? 'videoLost' : 'audioLost'] += Math.max(0, s.packetsLost ?? 0);
      if (video) {
        out.retransmitted += s.retransmittedPacketsReceived ?? 0;
        out.frames += s.framesDecoded ?? 0;
        out.freezes += s.freezeCount ?? 0;
        out.freezeSeconds += s.totalFreezesDuration ?? 0;
        out.nacks += s.nackCount ?? 0;
        out.plis += s.pliCount ?? 0;
      } else {
        out.concealed += s.concealedSamples ?? 0;
        out.samples += s.totalSamplesReceived ?? 0;
      }
    });
    return out;
  });
}

function delta(a, b) {
  return Object.fromEntries(Object.keys(a).map((k) => [k, b[k] - a[k]]));
}

async function main() {
  const missing = netnsMissing({ needNft: true });
  if (missing) throw new Error(missing);
  const rows = [];
  const hostBrowser = await launchBrowser();
  const nsBrowser = await launchBrowserInNetns();
  try {
    for (const percent of [0, 5, 20]) {
      impair(0);
      const server = await startHostServer();
      const https = { ignoreHTTPSErrors: true };
      const ada = await newParticipant(hostBrowser, 'Ada', undefined, https);
      const bob = await newParticipant(nsBrowser, 'Bob', undefined, https);
      try {
        const room = uniqueRoom('loss');
        for (const [p, name] of [[ada, 'Ada'], [bob, 'Bob']]) {
          await join(p, server.url, room, name);
          await waitSecured(p.page, `${name} secured`, 30_000);
        }
        for (const p of [ada, bob]) {
          await waitFor(async () => (await received(p.page)).frames > 30, { what: `${p.label} decoding`, timeoutMs: 30_000 });
        }
        impair(percent);
        // Let the congestion controllers settle before measuring.
        await new Promise((r) => setTimeout(r, 5000));
        const before = await Promise.all([received(ada.page), received(bob.page)]);
        await new Promise((r) => setTimeout(r, WINDOW_MS));
        const after = await Promise.all([received(ada.page), received(bob.page)]);
        for (const [i, who] of [[0, 'Ada receives Bob'], [1, 'Bob receives Ada']]) {
          const d = delta(before[i], after[i]);
          rows.push({
            loss: `${percent}%`,
            receiver: who,
            'video fps': (d.frames / (WINDOW_MS / 1000)).toFixed(1),
            freezes: d.freezes,
            'frozen s': d.freezeSeconds.toFixed(1),
            'NACKs sent': d.nacks,
            'PLIs sent': d.plis,
            'video packetsLost': `${((100 * d.videoLost) / Math.max(1, d.videoLost + d.videoPackets)).toFixed(1)}%`,
            'RTX received': d.retransmitted,
            'audio lost': `${((100 * d.audioLost) / Math.max(1, d.audioLost + d.audioPackets)).toFixed(1)}%`,
            'audio concealed': `${((100 * d.concealed) / Math.max(1, d.samples)).toFixed(1)}%`,
          });
        }
      } finally {
        impair(0);
        await ada.context.close().catch(() => {});
        await bob.context.close().catch(() => {});
        await server.stop();
      }
    }
  } finally {
    impair(0);
    await hostBrowser.close();
    await nsBrowser.close();
  }
  console.table(rows);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
