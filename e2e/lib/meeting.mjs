// Driving the Conclave web client the way a user does, and reading WebRTC
// statistics from the pages' peer connections.

import { randomBytes } from 'node:crypto';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor(fn, { timeoutMs = 15_000, intervalMs = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await sleep(intervalMs);
  }
}

export function uniqueRoom(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

const secrets = new Map();

/**
 * The invite link's fragment for `room` (`#s=<32 random bytes, base64url>`),
 * the same for every participant of one room in this test process.
 */
export function inviteFragment(room) {
  if (!secrets.has(room)) secrets.set(room, `#s=${randomBytes(32).toString('base64url')}`);
  return secrets.get(room);
}

/**
 * Opens `/<room>` with the room's invite secret (or `fragment`; '' = no
 * secret, the participant knocks), types the name, presses Join, waits for
 * the own tile.
 */
export async function join(participant, baseUrl, room, name, { fragment = inviteFragment(room) } = {}) {
  const { page } = participant;
  await page.goto(`${baseUrl}/${encodeURIComponent(room)}${fragment}`);
  await page.getByTestId('name-input').fill(name);
  // The preview shows once camera permission (fake UI) is granted.
  await page.locator('[data-testid="preview-video"]:not([hidden])').waitFor({ timeout: 10_000 });
  await page.getByTestId('join-button').click();
  await page.locator('[data-testid="tile"][data-local="true"]').waitFor({ timeout: 15_000 });
  participant.id = Number(await page.locator('[data-testid="tile"][data-local="true"]').getAttribute('data-participant-id'));
  participant.name = name;
  return participant;
}

/** Ids of the tiles shown on `page`, sorted. */
export async function tileIds(page) {
  const ids = await page.locator('[data-testid="tile"]').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-participant-id'))));
  return ids.sort((a, b) => a - b);
}

export async function participantListIds(page) {
  const ids = await page
    .locator('[data-testid="participant-list"] [data-testid="participant-item"]')
    .evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-participant-id'))));
  return ids.sort((a, b) => a - b);
}

/**
 * inbound-rtp statistics of the page's (last) peer connection. A counter the
 * browser does not report is null, never 0: a default of 0 would pass an
 * "=== 0" or "<= n" assertion on a statistic that does not exist.
 */
export async function inboundStats(page) {
  return page.evaluate(async () => {
    const peers = window.__e2ePeers ?? [];
    const pc = peers[peers.length - 1];
    if (!pc) return [];
    const report = await pc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        out.push({
          kind: s.kind,
          mid: s.mid ?? null,
          ssrc: s.ssrc,
          trackIdentifier: s.trackIdentifier ?? null,
          packetsReceived: s.packetsReceived ?? null,
          bytesReceived: s.bytesReceived ?? null,
          framesDecoded: s.framesDecoded ?? null,
          frameWidth: s.frameWidth ?? null,
          totalAudioEnergy: s.totalAudioEnergy ?? null,
        });
      }
    });
    return out;
  });
}

/** outbound-rtp statistics (what this page actually sends), for diagnostics. */
export async function outboundStats(page) {
  return page.evaluate(async () => {
    const peers = window.__e2ePeers ?? [];
    const pc = peers[peers.length - 1];
    if (!pc) return [];
    const report = await pc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type === 'outbound-rtp') out.push({ kind: s.kind, mid: s.mid ?? null, packetsSent: s.packetsSent ?? 0, framesEncoded: s.framesEncoded ?? 0 });
    });
    return out;
  });
}

export async function connectionSummary(page) {
  return page.evaluate(() => {
    const peers = window.__e2ePeers ?? [];
    const pc = peers[peers.length - 1];
    if (!pc) return null;
    // Transceivers counted by kind and direction: a full list per m-line
    // made failure reports too long to read (CI shows only their ends).
    const transceivers = {};
    for (const t of pc.getTransceivers()) {
      const key = `${t.receiver.track.kind} ${t.direction}/${t.currentDirection}`;
      transceivers[key] = (transceivers[key] ?? 0) + 1;
    }
    return {
      peerConnections: peers.length,
      connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState,
      signalingState: pc.signalingState,
      transceivers,
    };
  });
}

/** The chat as `page` shows it: [{seq, from, name, text}] in display order. */
export async function chatMessages(page) {
  return page.locator('[data-testid="chat-message"]').evaluateAll((els) =>
    els.map((e) => ({
      seq: Number(e.getAttribute('data-seq')),
      from: Number(e.getAttribute('data-from')),
      name: e.querySelector('[data-testid="chat-sender"]')?.getAttribute('data-name') ?? '',
      text: e.querySelector('[data-testid="chat-text"]')?.textContent ?? '',
    })),
  );
}

/** Everything useful when a test fails. */
export async function diagnostics(participants, server) {
  const parts = [];
  for (const p of participants) {
    try {
      parts.push(`--- ${p.label} (id ${p.id ?? '?'})`);
      // The page's own log first: it says most about what went wrong.
      parts.push(...p.log.slice(-30));
      parts.push('connection: ' + JSON.stringify(await connectionSummary(p.page)));
      parts.push('inbound: ' + JSON.stringify(await inboundStats(p.page)));
      parts.push('outbound: ' + JSON.stringify(await outboundStats(p.page)));
    } catch (err) {
      parts.push(`(could not read stats: ${err.message})`);
    }
  }
  if (server) parts.push('--- server output (tail)', server.output().slice(-6000));
  return parts.join('\n');
}

/** The page's end-to-end encryption state (window.__conclave.e2ee, without stats). */
export async function e2eeState(page) {
  return page.evaluate(() => {
    const e = window.__conclave?.e2ee;
    if (!e) return null;
    const { stats, ...rest } = e;
    return JSON.parse(JSON.stringify(rest));
  });
}

/** The media Worker's statistics (frames encrypted/decrypted, per sender leaf). */
export async function e2eeStats(page) {
  return page.evaluate(async () => (await window.__conclave?.e2ee?.stats()) ?? null);
}

/** Waits until `page` is in the MLS group; returns its state. */
export async function waitSecured(page, what = 'the call to be secured', timeoutMs = 20_000) {
  return waitFor(async () => {
    const s = await e2eeState(page);
    return s?.state === 'joined' ? s : null;
  }, { what, timeoutMs });
}

/** Video frames decoded per inbound video stream (only streams that got packets). */
export async function decodedVideo(page) {
  return (await inboundStats(page)).filter((s) => s.kind === 'video' && s.packetsReceived > 0);
}

/**
 * Joins `room` (with its invite secret) past pre-join and resolves with the
 * ms from the Join click to the first decoded remote video frame, measured
 * inside the page so test round trips do not count.
 */
export async function timedJoin(p, url, room, name) {
  const { page } = p;
  await page.goto(`${url}/${encodeURIComponent(room)}${inviteFragment(room)}`);
  await page.getByTestId('name-input').fill(name);
  await page.locator('[data-testid="preview-video"]:not([hidden])').waitFor({ timeout: 10_000 });
  await page.evaluate(() => {
    window.__firstFrame = new Promise((resolve) => {
      const start = performance.now();
      const poll = async () => {
        const pc = (window.__e2ePeers ?? []).at(-1);
        if (pc) {
          let decoded = false;
          (await pc.getStats()).forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video' && (s.framesDecoded ?? 0) > 0) decoded = true;
          });
          if (decoded) return resolve(performance.now() - start);
        }
        setTimeout(poll, 10);
      };
      window.__startPoll = poll;
    });
  });
  await page.evaluate(() => {
    document.querySelector('[data-testid="join-button"]').click();
    window.__startPoll();
  });
  return page.evaluate(() => window.__firstFrame);
}
