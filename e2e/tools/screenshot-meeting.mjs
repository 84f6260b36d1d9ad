// Development helper: a real three-person meeting on the real server, with
// screenshots of what one participant sees (grid, screen share, chat, phone
// size) into e2e/artifacts/.   node tools/screenshot-meeting.mjs
import { mkdir } from 'node:fs/promises';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { join, uniqueRoom, waitFor } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

const out = new URL('../artifacts/', import.meta.url).pathname;
await mkdir(out, { recursive: true });
const server = await startServer();
const browser = await launchBrowser();
try {
  const room = uniqueRoom('look');
  const viewer = await newParticipant(browser, 'viewer', { width: 1280, height: 800 });
  const others = [await newParticipant(browser, 'b'), await newParticipant(browser, 'c')];
  await join(viewer, server.url, room, 'Margaret Hamilton');
  await join(others[0], server.url, room, 'Ada Lovelace');
  await join(others[1], server.url, room, 'Grace Hopper');
  await others[1].page.getByTestId('toggle-mic').click();
  await waitFor(async () => (await viewer.page.locator('[data-testid="tile"] video').evaluateAll((vs) => vs.filter((v) => v.videoWidth > 0).length)) >= 3, { timeoutMs: 20_000, what: 'video' });
  await viewer.page.waitForTimeout(1500);
  await viewer.page.screenshot({ path: `${out}real-grid.png` });
  await others[0].page.getByTestId('toggle-chat').click();
  await others[0].page.getByTestId('chat-input').fill('Morning! Agenda is in the doc.');
  await others[0].page.keyboard.press('Enter');
  await others[0].page.getByTestId('toggle-screen').click();
  await viewer.page.getByTestId('screen-stage').waitFor({ timeout: 15_000 });
  await viewer.page.waitForTimeout(2500);
  await viewer.page.screenshot({ path: `${out}real-screenshare.png` });
  await viewer.page.getByTestId('toggle-chat').click();
  await viewer.page.waitForTimeout(500);
  await viewer.page.screenshot({ path: `${out}real-screenshare-chat.png` });
  await viewer.page.setViewportSize({ width: 390, height: 844 });
  await viewer.page.getByTestId('toggle-chat').click();
  await viewer.page.waitForTimeout(800);
  await viewer.page.screenshot({ path: `${out}real-phone.png` });
  for (const p of [viewer, ...others]) console.log(p.log.join('\n'));
} finally {
  await browser.close();
  await server.stop();
}
console.log('screenshots in', out);
