// Members, not the server, decide removals: a member removes another from
// the participants panel (with a confirmation), the whole group sees who
// did it, and the removed page leaves instead of asking back in.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { decodedVideo, diagnostics, e2eeState, join, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
let browser;

describe('removing a member (Chromium)', { timeout: 300_000 }, () => {
  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('a member removes another after confirming; everyone sees who did it and the removed page leaves for good', { timeout: 150_000 }, async () => {
    const room = uniqueRoom('remove');
    const names = ['Ada', 'Grace', 'Kathy'];
    const people = [];
    for (const n of names) people.push(await newParticipant(browser, n));
    const [ada, grace, kathy] = people;
    try {
      for (const [i, p] of people.entries()) await join(p, server.url, room, names[i]);
      for (const p of people) await waitSecured(p.page);
      await waitFor(async () => (await e2eeState(ada.page)).roster.length === 3 && (await e2eeState(grace.page)).roster.length === 3, {
        what: 'a group of three',
      });
      const codeBefore = (await e2eeState(ada.page)).securityCode;

      await ada.page.getByTestId('toggle-participants').click();
      const kathyRow = ada.page.getByTestId('participant-item').filter({ hasText: 'Kathy' });
      // Nobody can remove themselves from the list (leaving is the Leave button).
      await assert.rejects(
        ada.page.getByTestId('participant-item').filter({ hasText: '(You)' }).getByTestId('remove-participant').click({ timeout: 1000 }),
      );
      await kathyRow.getByRole('button', { name: 'Remove Kathy from the meeting' }).click();
      const dialog = ada.page.getByTestId('remove-dialog');
      await dialog.waitFor();
      // Cancel is the default, and cancelling removes nobody.
      assert.equal(await ada.page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'remove-cancel');
      await ada.page.keyboard.press('Escape');
      await sleep(1500);
      assert.equal((await e2eeState(ada.page)).roster.length, 3, 'Escape removed nobody');
      assert.ok(await ada.page.getByTestId('participants-panel').isVisible(), 'Escape closed the dialog, not the panel');
      await kathyRow.getByRole('button', { name: 'Remove Kathy from the meeting' }).click();
      await dialog.getByTestId('remove-confirm').click();

      // Kathy's page says who removed her and left the call.
      await kathy.page.getByTestId('ended-title').filter({ hasText: 'Ada removed you from the meeting' }).waitFor({ timeout: 15_000 });
      // Grace is told who did it.
      await grace.page.getByTestId('toast').filter({ hasText: 'Ada removed Kathy from the meeting' }).waitFor({ timeout: 15_000 });
      // The two left share a new group of two and a new code.
      await waitFor(async () => {
        const [a, g] = [await e2eeState(ada.page), await e2eeState(grace.page)];
        return a.roster.length === 2 && g.roster.length === 2 && a.securityCode === g.securityCode && a.securityCode !== codeBefore;
      }, { what: 'Ada and Grace to share a new code without Kathy' });
      for (const p of [ada, grace]) {
        const roster = (await e2eeState(p.page)).roster.map((r) => r.displayName).sort();
        assert.deepEqual(roster, ['Ada', 'Grace']);
      }
      // Kathy does not ask back in: her page stays on the ended screen and
      // nobody sees her as a (knocking or unverified) participant.
      await sleep(4000);
      assert.ok(await kathy.page.getByTestId('ended').isVisible());
      const unverified = await ada.page.getByTestId('participant-item').filter({ hasText: 'Kathy' }).count();
      assert.equal(unverified, 0, 'Kathy is gone from the list, not shown as unverified');
      // The call goes on.
      await waitFor(async () => (await decodedVideo(grace.page)).some((s) => s.framesDecoded > 5), { what: 'Grace to keep decoding Ada' });
    } catch (err) {
      err.message += '\n' + (await diagnostics(people, server));
      throw err;
    } finally {
      for (const p of people) await p.context.close().catch(() => {});
    }
  });
});
