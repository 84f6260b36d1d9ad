// Development helper: screenshots of the landing, pre-join and meeting
// screens (against the mock or the real server) into e2e/artifacts/.
//   node tools/screenshot.mjs http://127.0.0.1:8099 [width height]
import { mkdir } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import { chromiumArgs } from '../lib/browser.mjs';

const base = process.argv[2] ?? 'http://127.0.0.1:8099';
const width = Number(process.argv[3] ?? 1280);
const height = Number(process.argv[4] ?? 800);
const out = new URL('../artifacts/', import.meta.url).pathname;
await mkdir(out, { recursive: true });
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: chromiumArgs() });
const ctx = await browser.newContext({ viewport: { width, height }, permissions: ['camera', 'microphone'] });
const page = await ctx.newPage();
page.on('console', (m) => console.log('console:', m.type(), m.text()));
page.on('pageerror', (e) => console.log('pageerror:', e.message));
const tag = `${width}x${height}`;
await page.goto(base + '/');
await page.screenshot({ path: `${out}landing-${tag}.png` });
await page.goto(base + '/design-review');
await page.getByTestId('name-input').fill('Margaret Hamilton');
await page.waitForTimeout(1500);
await page.screenshot({ path: `${out}prejoin-${tag}.png` });
await page.getByTestId('join-button').click();
await page.waitForTimeout(2500);
await page.screenshot({ path: `${out}meeting-${tag}.png` });
await page.getByTestId('toggle-chat').click();
await page.getByTestId('chat-input').fill('Hi all — sharing the agenda in a minute.');
await page.keyboard.press('Enter');
await page.waitForTimeout(500);
await page.screenshot({ path: `${out}meeting-chat-${tag}.png` });
await page.getByTestId('toggle-participants').click();
await page.waitForTimeout(300);
await page.screenshot({ path: `${out}meeting-people-${tag}.png` });
await browser.close();
console.log('screenshots in', out);
