// Interop: the native Rust participant (conclave-agent, the same E2EE core
// compiled natively) and two headless Chromium participants in one
// end-to-end encrypted room: each side decrypts the other's audio and video,
// chat goes both ways, and all three show one security code.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { failIfMissing, skipOutsideCI } from '../lib/ci.mjs';
import { chatMessages, decodedVideo, diagnostics, e2eeState, e2eeStats, inviteFragment, join, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

const AGENT_BIN = process.env.CONCLAVE_AGENT_BIN ?? fileURLToPath(new URL('../../target/release/conclave-agent', import.meta.url));

let server;
let browser;

/** Runs the agent with --json; collects its notices and reports. */
function startAgent(url, extra = []) {
  const child = spawn(AGENT_BIN, ['join', url, '--name', 'Agent', '--json', '--report-every', '1', '--duration', '60', '--video', '360p', '--interactive', ...extra], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const agent = { child, notices: [], reports: [], stderr: [] };
  let buf = '';
  child.stdout.on('data', (chunk) => {
    buf += chunk.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const msg = JSON.parse(line);
        if (msg.type === 'notice') agent.notices.push(msg.message);
        else if (msg.participants) agent.reports.push(msg);
      } catch {
        agent.stderr.push(line);
      }
    }
  });
  child.stderr.on('data', (c) => agent.stderr.push(c.toString()));
  return agent;
}

function lastCode(agent) {
  const codes = agent.notices.filter((n) => n.startsWith('security code: ')).map((n) => n.slice('security code: '.length, 'security code: '.length + 35));
  return codes.at(-1) ?? null;
}

const missing = existsSync(AGENT_BIN) ? null : `agent binary not built (${AGENT_BIN}; cargo build --release -p conclave-agent)`;

describe('the Rust agent and browsers in one encrypted meeting', { skip: skipOutsideCI(missing), timeout: 150_000 }, () => {
  before(async () => {
    failIfMissing(missing);
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('two Chromium participants and the agent decrypt each other\'s media, chat both ways and share a security code', { timeout: 120_000 }, async () => {
    const room = uniqueRoom('agent-interop');
    const people = [await newParticipant(browser, 'Ada'), await newParticipant(browser, 'Bob')];
    let agent;
    try {
      await join(people[0], server.url, room, 'Ada');
      await join(people[1], server.url, room, 'Bob');
      for (const p of people) await waitSecured(p.page);
      agent = startAgent(`${server.url}/${room}${inviteFragment(room)}`, ['--chat', 'hello from the agent']);

      // All three in one group with one code.
      await waitFor(async () => {
        const states = await Promise.all(people.map((p) => e2eeState(p.page)));
        const code = lastCode(agent);
        return states.every((s) => s.roster.length === 3 && s.securityCode === code) ? states : null;
      }, { what: 'the browsers and the agent to show one security code for three members', timeoutMs: 30_000 });
      const roster = (await e2eeState(people[0].page)).roster;
      assert.deepEqual(roster.map((r) => r.displayName).sort(), ['Ada', 'Agent', 'Bob']);
      const agentLeaf = roster.find((r) => r.displayName === 'Agent').leafIndex;

      // The browsers decrypt the agent's frames (its VP8 is synthetic, so the
      // decoder is not asked to show it; decryption and authentication are).
      for (const p of people) {
        await waitFor(async () => ((await e2eeStats(p.page)).senders[String(agentLeaf)]?.frames ?? 0) > 100, {
          what: `${p.label} to decrypt the agent's audio and video`,
        });
      }
      // The agent decrypts both browsers' audio and video without failures.
      const ids = people.map((p) => String(p.id));
      const report = await waitFor(async () => {
        const r = agent.reports.at(-1)?.participants?.[0];
        if (!r) return null;
        const ok = ids.every((id) => (r.remotes[id]?.audio?.decrypted ?? 0) > 50 && (r.remotes[id]?.video?.decrypted ?? 0) > 20);
        return ok ? r : null;
      }, { what: 'the agent to decrypt both browsers\' audio and video', timeoutMs: 30_000 });
      for (const id of ids) {
        for (const kind of ['audio', 'video']) {
          assert.equal(report.remotes[id][kind].decrypt_failures, 0, `agent: ${kind} from ${id} never fails to decrypt`);
        }
      }

      // Chat both ways.
      await people[0].page.getByTestId('toggle-chat').click();
      await waitFor(async () => (await chatMessages(people[0].page)).some((m) => m.name === 'Agent' && m.text === 'hello from the agent'), {
        what: 'the agent\'s chat in the browser',
      });
      await people[0].page.getByTestId('chat-input').fill('hello agent');
      await people[0].page.getByTestId('chat-input').press('Enter');
      await waitFor(() => agent.notices.some((n) => n.includes('[chat] Ada: hello agent')), { what: 'the browser\'s chat at the agent' });
      agent.child.stdin.write('typed at the agent\n');
      await waitFor(async () => (await chatMessages(people[0].page)).some((m) => m.name === 'Agent' && m.text === 'typed at the agent'), {
        what: 'an interactive chat line from the agent',
      });
    } catch (err) {
      err.message += `\nagent notices: ${JSON.stringify(agent?.notices.slice(-20))}\nagent stderr: ${agent?.stderr.join('').slice(-2000)}\nagent report: ${JSON.stringify(agent?.reports.at(-1)).slice(0, 3000)}\n` + (await diagnostics(people, server));
      throw err;
    } finally {
      agent?.child.kill('SIGTERM');
      for (const p of people) await p.context.close();
    }
  });

  test('media keeps decrypting while the group passes more than 16 epochs (SFrame carries 4 epoch bits)', { timeout: 120_000 }, async () => {
    const room = uniqueRoom('epochs');
    const people = [await newParticipant(browser, 'Ada'), await newParticipant(browser, 'Bob')];
    let agent;
    try {
      await join(people[0], server.url, room, 'Ada');
      await join(people[1], server.url, room, 'Bob');
      for (const p of people) await waitSecured(p.page);
      // The agent commits a self-update every 0.3 s: a new epoch each time.
      agent = startAgent(`${server.url}/${room}${inviteFragment(room)}`, ['--key-update-every', '0.3']);
      const start = await waitFor(async () => {
        const s = await e2eeState(people[0].page);
        return s.roster.length === 3 ? s.epoch : null;
      }, { what: 'the agent in the group', timeoutMs: 30_000 });
      const framesAt = async (p) => Object.fromEntries((await decodedVideoOf(p)).map((v) => [v.ssrc, v.framesDecoded]));
      const before = await Promise.all(people.map(framesAt));
      await waitFor(async () => (await e2eeState(people[0].page)).epoch >= start + 20, {
        what: '20 epochs to pass (the agent updating its keys)',
        timeoutMs: 40_000,
      });
      const states = await Promise.all(people.map((p) => e2eeState(p.page)));
      for (const s of states) assert.ok(s.epoch >= start + 18, `both browsers follow the epochs: ${s.epoch} from ${start}`);
      // Through every wrap of the 4-bit epoch: video between the browsers
      // kept decoding, and the agent's frames kept decrypting.
      await sleep(1500);
      const after = await Promise.all(people.map(framesAt));
      for (const [i, p] of people.entries()) {
        const grew = Object.entries(after[i]).filter(([ssrc, n]) => n > (before[i][ssrc] ?? 0) + 30);
        assert.ok(grew.length >= 1, `${p.label} kept decoding video across the epochs: ${JSON.stringify({ before: before[i], after: after[i] })}`);
        const stats = await e2eeStats(p.page);
        const agentLeaf = states[i].roster.find((r) => r.displayName === 'Agent').leafIndex;
        assert.ok((stats.senders[String(agentLeaf)]?.frames ?? 0) > 100, `${p.label} decrypts the agent: ${JSON.stringify(stats.senders)}`);
        assert.ok(stats.receive.decryptFailed <= stats.receive.decrypted / 50, `${p.label}: few decrypt failures: ${JSON.stringify(stats.receive)}`);
        assert.ok(!p.log.some((l) => l.includes('re-securing the call')), `${p.label} never had to rejoin`);
      }
      const report = agent.reports.at(-1)?.participants?.[0];
      for (const p of people) {
        const r = report?.remotes?.[String(p.id)];
        assert.ok((r?.video?.decrypted ?? 0) > 50, `the agent decrypts ${p.label}: ${JSON.stringify(r)}`);
      }
      assert.ok(!agent.notices.some((n) => n.includes('re-securing')), `the agent never rejoined: ${agent.notices.filter((n) => n.includes('re-secur'))}`);
    } catch (err) {
      err.message += `\nagent notices: ${JSON.stringify(agent?.notices.slice(-20))}\nagent stderr: ${agent?.stderr.join('').slice(-2000)}\n` + (await diagnostics(people, server));
      throw err;
    } finally {
      agent?.child.kill('SIGTERM');
      for (const p of people) await p.context.close();
    }
  });
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Video frames decoded per inbound stream that got packets. */
async function decodedVideoOf(p) {
  return (await decodedVideo(p.page)).map((v) => ({ ssrc: v.ssrc, framesDecoded: v.framesDecoded }));
}
