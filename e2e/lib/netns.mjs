// The test network namespace e2e/run.sh makes (a veth pair: 10.213.0.1 on
// the host, 10.213.0.2/29 inside): running commands and a Chromium in it.
// The server listens on the host end (CONCLAVE_E2E_FIREFOX_IP), so a browser
// in the namespace reaches it over the veth, where the tests can block,
// impair or move its traffic.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, chromiumArgs } from './browser.mjs';
import { firefoxServerIp } from './firefox.mjs';
import { startServer } from './server.mjs';

export const netns = process.env.CONCLAVE_E2E_NETNS ?? null;
/** The host end's address, where the tests' server listens. */
export const hostIp = firefoxServerIp;
export const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => existsSync(p)) ?? null;

/** Why the namespace cannot be used (for `skipOutsideCI`), or null. */
export function netnsMissing({ needNft = false } = {}) {
  if (!hostIp || !netns) return 'no test network namespace: run e2e/run.sh as root (it makes one with a veth pair)';
  if (needNft && !NFT) return 'nftables is not installed (apt-get install nftables)';
  return null;
}

/** Runs a command in the namespace; its stdout, or an error saying what failed. */
export function inNetns(args, input) {
  const r = spawnSync('ip', ['netns', 'exec', netns, ...args], { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip netns exec ${netns} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}

/** The namespace's end of the veth pair (CONCLAVE_E2E_NETNS_IF, or the namespace's one veth). */
export function namespaceInterface() {
  if (process.env.CONCLAVE_E2E_NETNS_IF) return process.env.CONCLAVE_E2E_NETNS_IF;
  const links = inNetns(['ip', '-o', 'link', 'show', 'type', 'veth']);
  const name = links.match(/^\d+:\s*([^@:\s]+)/m)?.[1];
  if (!name) throw new Error(`no veth interface in namespace ${netns}: ${links}`);
  return name;
}

/**
 * A headless Chromium (the tests' flags) inside the namespace. Playwright
 * talks to it over pipes, which `ip netns exec` passes on. `close()` also
 * removes the wrapper script it runs through.
 */
export async function launchBrowserInNetns() {
  return withTempDir('conclave-netns-', 'close', (dir) => {
    const wrapper = joinPath(dir, 'chromium-in-netns');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec '${netns}' '${CHROMIUM}' "$@"\n`);
    chmodSync(wrapper, 0o755);
    return chromium.launch({ executablePath: wrapper, headless: true, args: chromiumArgs() });
  });
}

/**
 * The server on the host end of the veth (so it serves HTTPS with a
 * self-signed certificate for that address), with a data directory of its
 * own that `stop()` removes.
 */
export async function startHostServer(options = {}) {
  return withTempDir('conclave-netns-server-', 'stop', (dataDir) =>
    startServer({ listenIp: hostIp, publicIp: hostIp, ...options, env: { CONCLAVE_DATA_DIR: dataDir, ...options.env } }),
  );
}

/**
 * `start(dir)` with a new temporary directory, removed when the started
 * thing's `method` (close/stop) has run, or at once if starting fails.
 */
async function withTempDir(prefix, method, start) {
  const dir = mkdtempSync(joinPath(tmpdir(), prefix));
  try {
    const started = await start(dir);
    const original = started[method].bind(started);
    started[method] = async () => {
      await original();
      rmSync(dir, { recursive: true, force: true });
    };
    return started;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
