// Starts the real Conclave server binary on free loopback ports and stops it.
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createWriteStream, existsSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { join as joinPath } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SERVER_BIN =
  process.env.CONCLAVE_BIN ?? fileURLToPath(new URL('../../target/release/conclave', import.meta.url));

/**
 * The server built with the `test-modes` feature (scripts/build-test-modes.sh),
 * for tests that need a misbehaving server (CONCLAVE_TEST_GHOST_ADDS). The
 * normal binary has no test modes.
 */
export const TEST_MODES_BIN =
  process.env.CONCLAVE_TEST_MODES_BIN ?? fileURLToPath(new URL('../../target/release/conclave-test-modes', import.meta.url));

function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      const { port } = sock.address();
      sock.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Whether `GET url/` answers 200 (HTTPS: any certificate, it is ours). */
function answersGet(url) {
  return new Promise((resolve) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet;
    const req = get(url + '/', { rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

/**
 * Runs `conclave --listen 127.0.0.1:<tcp> --udp-port <udp> --public-ip 127.0.0.1`
 * and resolves once `GET /` answers. `stop()` kills it.
 *
 * The server gets a minimal environment: PATH, HOME and the CONCLAVE_*
 * variables in `env`, nothing inherited from the test run (a CONCLAVE_*
 * variable set in the shell must not change what a test tests).
 */
export async function startServer({ timeoutMs = 20_000, httpPort: wantHttp, udpPort: wantUdp, listenIp = '127.0.0.1', publicIp = '127.0.0.1', env = {}, bin = SERVER_BIN } = {}) {
  if (!existsSync(bin)) {
    throw new Error(`server binary not found at ${bin} (build it with cargo build --release -p conclave-server, or set CONCLAVE_BIN)`);
  }
  for (const name of Object.keys(env)) {
    if (!name.startsWith('CONCLAVE_')) throw new Error(`startServer: only CONCLAVE_* variables are passed to the server, not ${name}`);
  }
  const httpPort = wantHttp ?? (await freeTcpPort());
  const udpPort = wantUdp ?? (await freeUdpPort());
  // ICE-TCP's port defaults to the UDP port's number, which may be taken on
  // TCP: a free one, as a variable (a binary older than --tcp-port ignores it).
  const tcpPort = env.CONCLAVE_TCP_PORT ? Number(env.CONCLAVE_TCP_PORT) : await freeTcpPort();
  const args = ['--listen', `${listenIp}:${httpPort}`, '--udp-port', String(udpPort), '--public-ip', publicIp];
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', CONCLAVE_TCP_PORT: String(tcpPort), ...env },
  });
  const output = [];
  const keep = (chunk) => {
    output.push(chunk.toString());
    if (output.length > 2000) output.splice(0, output.length - 2000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  // CONCLAVE_E2E_SERVER_LOG=<dir>: every server's whole output also goes to
  // a file there (the failure reports keep only its tail).
  if (process.env.CONCLAVE_E2E_SERVER_LOG) {
    const file = createWriteStream(joinPath(process.env.CONCLAVE_E2E_SERVER_LOG, `server-${httpPort}.log`));
    child.stdout.pipe(file, { end: false });
    child.stderr.pipe(file, { end: false });
  }
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });

  // Off loopback the server serves HTTPS (a self-signed certificate unless
  // one is given): its ready line says which.
  const deadline = Date.now() + timeoutMs;
  let url = null;
  for (;;) {
    if (exited) throw new Error(`server exited early (${JSON.stringify(exited)}):\n${output.join('')}`);
    if (!url) {
      const ready = output.join('').match(/open (https?):\/\//);
      if (ready) url = `${ready[1]}://${listenIp}:${httpPort}`;
    }
    if (url && (await answersGet(url))) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not answer GET / within ${timeoutMs} ms:\n${output.join('')}`);
    }
    await sleep(150);
  }

  return {
    url,
    httpPort,
    udpPort,
    tcpPort,
    pid: child.pid,
    output: () => output.join(''),
    get exited() {
      return exited;
    },
    /** Freezes (SIGSTOP) or resumes (SIGCONT) the process: sockets stay open but nothing answers. */
    pause() {
      child.kill('SIGSTOP');
    },
    resume() {
      child.kill('SIGCONT');
    },
    async stop() {
      if (!exited) child.kill('SIGCONT');
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(timer);
    },
  };
}

/**
 * A loopback TCP proxy to `127.0.0.1:targetPort` whose `freeze()` stops
 * relaying in both directions while keeping every connection open.
 */
export async function startFreezableProxy(targetPort) {
  const { createServer, connect } = await import('node:net');
  let frozen = false;
  const sockets = new Set();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d) => frozen || upstream.write(d));
    upstream.on('data', (d) => frozen || client.write(d));
    client.on('end', () => frozen || upstream.end());
    upstream.on('end', () => frozen || client.end());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    freeze() {
      frozen = true;
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
