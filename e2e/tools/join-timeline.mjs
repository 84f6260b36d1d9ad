// Where the time of a fourth member's join goes (issue 10, goal 4): the
// timeline, phase by phase, from pressing Join to the first remote video
// frame shown in a tile, against the real binary on loopback with headless
// Chromium, E2EE included. Measurement only: nothing in the app changes.
//
//   node e2e/tools/join-timeline.mjs [runs=6] [options]
//     --separate-browser      the joiner in its own Chromium (default: one for all four, as
//                             measure-e2ee.mjs does)
//     --server-log=FILTER     the server's log (CONCLAVE_LOG=FILTER, e.g. info,str0m=debug: ICE,
//                             DTLS, answer applied) from the click on, per run; with
//                             JOIN_TIMELINE_SERVER_LOG=file the whole log is written there
//     --profile               V8 CPU profile of the joiner's page from the click to the first
//                             tile frame: self/inclusive time and coarse buckets (MLS, SDP, UI)
//     --named-wasm=FILE       serve the joiner this E2EE wasm (the same build with its name
//                             section, `wasm-bindgen --target web` without
//                             --remove-name-section) so profiles name Rust functions
//     --trace                 Chromium trace of the joiner (implies --separate-browser): its
//                             renderer main thread's tasks by posting site and slices by name
//     --joiner-client=DIR     serve the joiner (only) the web client built in DIR (a web/dist:
//                             index.html and assets/), e.g. an older build: the members and the
//                             server stay the same, so two clients' joins compare on one server
//     --json                  everything as JSON (timelines included) instead of tables
//
// Every page gets an init script that timestamps (wall clock, ms, the same
// for every page of this machine) what it can see from outside the app:
//  - WebSocket traffic: each message's `type` (for `mls`, the MLS wire
//    format read from the message header: 3 = Welcome, 1 = public
//    message), never contents;
//  - the app's `conclave:` console lines (Welcome processed, group proved);
//  - the peer connection: setRemoteDescription / createAnswer /
//    setLocalDescription, ICE and connection state changes;
//  - the media Worker: `key` posted (time, epoch and own leaf only, never the
//    key), receiver bindings, the Worker's `flowing` messages and its stats;
//  - getStats polling (20 ms): the joiner's inbound video (first packet,
//    first frame out of the Worker into the jitter buffer = framesReceived,
//    first decoded frame, keyframes decoded, PLIs it sent) and every other
//    member's outbound camera (keyframes encoded, PLIs and FIRs received);
//  - the joiner's remote tile videos (requestVideoFrameCallback: first frame
//    presented in a tile).
// Prints a per-run table of phase times relative to the Join click, the
// medians, spans between phases, the MLS exchange as the members saw it, the
// keyframe story of each run, the joiner's long main-thread frames and the
// machine's load (load average and /proc/pressure/cpu).
// Precision: page-side times are when the page's main thread handled the
// event; getStats-polled firsts (packet, framesReceived, framesDecoded) lag
// by up to one poll, and more when the main thread is busy (each carries
// `prev`/`tick` in --json). The Worker's first decryption (its own clock) and
// the tile's requestVideoFrameCallback are the sharp ones.
import { execSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { launchBrowser, newParticipant } from '../lib/browser.mjs';
import { decodedVideo, inviteFragment, join, uniqueRoom, waitFor, waitSecured } from '../lib/meeting.mjs';
import { startServer } from '../lib/server.mjs';

const args = process.argv.slice(2);
const runs = Number(args.find((a) => /^\d+$/.test(a)) ?? 6);
const jsonOut = args.includes('--json');
const profile = args.includes('--profile');
const namedWasm = args.find((a) => a.startsWith('--named-wasm='))?.slice('--named-wasm='.length) ?? null;
const joinerClient = args.find((a) => a.startsWith('--joiner-client='))?.slice('--joiner-client='.length) ?? null;
const CONTENT_TYPES = { js: 'text/javascript', css: 'text/css', wasm: 'application/wasm', html: 'text/html; charset=utf-8' };

/**
 * Serves the web client in `dir` to `context`'s pages: each /assets/ file the
 * server's page asks for is answered with `dir`'s file of the same kind
 * (index-*.js, index-*.css, worker-*.js, the wasm). The document itself
 * comes from the server (a routed document would lose its loopback address
 * space, and with it the WebSocket to 127.0.0.1), and the two builds'
 * index.html differ only in those names.
 */
async function serveClient(context, dir) {
  const files = readdirSync(`${dir}/assets`);
  const kind = (name) => name.replace(/-[A-Za-z0-9_-]{8}(?=\.[a-z]+$)/, '');
  await context.route(/\/assets\/[^/?#]+$/, async (route) => {
    const name = new URL(route.request().url()).pathname.split('/').pop();
    const mine = files.find((f) => kind(f) === kind(name));
    if (!mine) return route.continue();
    return route.fulfill({ status: 200, contentType: CONTENT_TYPES[mine.split('.').pop()] ?? 'application/octet-stream', body: readFileSync(`${dir}/assets/${mine}`) });
  });
}
const trace = args.includes('--trace');
const separateBrowser = args.includes('--separate-browser') || trace;
const serverLog = args.find((a) => a.startsWith('--server-log='))?.slice('--server-log='.length) ?? null;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Page-side instrumentation (runs before the app's scripts). */
function instrument() {
  const now = () => performance.timeOrigin + performance.now();
  const tl = [];
  Object.defineProperty(window, '__tl', { value: tl });
  const note = (ev, info) => tl.push({ t: now(), ev, ...(info ?? {}) });
  window.__tlNote = note;

  // The MLS wire format from the message header (RFC 9420 §6: version u16, wire_format u16).
  const wireFormat = (b64) => {
    try {
      const bin = atob(String(b64).slice(0, 8));
      return (bin.charCodeAt(2) << 8) | bin.charCodeAt(3);
    } catch {
      return null;
    }
  };

  const OrigWS = window.WebSocket;
  window.WebSocket = class extends OrigWS {
    constructor(...a) {
      super(...a);
      note('ws_new');
      this.addEventListener('open', () => note('ws_open'));
      this.addEventListener('message', (ev) => {
        try {
          const m = JSON.parse(ev.data);
          const info = { type: m.type };
          if (m.type === 'mls') {
            info.from = m.from;
            info.wire = wireFormat(m.data);
            info.bytes = m.data.length;
          }
          if (m.type === 'chat') info.from = m.from;
          if (m.type === 'offer' || m.type === 'tracks') info.n = m.tracks.length;
          if (m.type === 'participant_updated' || m.type === 'participant_joined') info.id = m.participant?.id;
          if (m.type === 'welcome') info.you = m.you?.id;
          note('recv', info);
        } catch {
          // not JSON
        }
      });
    }
    send(data) {
      try {
        const m = JSON.parse(data);
        const info = { type: m.type };
        if (m.type === 'commit') info.welcome = !!m.welcome;
        note('send', info);
      } catch {
        // not JSON
      }
      return super.send(data);
    }
  };

  for (const level of ['info', 'warn', 'error']) {
    const orig = console[level].bind(console);
    console[level] = (...a) => {
      const text = a.map((x) => (typeof x === 'string' ? x : x instanceof Error ? x.message : '')).join(' ');
      if (text.startsWith('conclave')) note('console', { level, text: text.slice(0, 120) });
      return orig(...a);
    };
  }

  const OrigPC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends OrigPC {
    constructor(...a) {
      super(...a);
      note('pc_new');
      this.addEventListener('connectionstatechange', () => note('pc_state', { state: this.connectionState }));
      this.addEventListener('iceconnectionstatechange', () => note('ice_state', { state: this.iceConnectionState }));
    }
  };
  for (const name of ['setRemoteDescription', 'createAnswer', 'setLocalDescription']) {
    const orig = OrigPC.prototype[name];
    OrigPC.prototype[name] = function (...a) {
      note(`${name}_call`);
      const p = orig.apply(this, a);
      p.then(() => note(`${name}_done`), () => note(`${name}_failed`));
      return p;
    };
  }

  const OrigWorker = window.Worker;
  window.Worker = class extends OrigWorker {
    constructor(...a) {
      super(...a);
      note('worker_new');
      this.addEventListener('message', (ev) => {
        const m = ev.data;
        if (m?.type === 'flowing') note('flowing', { mid: m.mid, seq: m.seq });
        else if (m?.type === 'ready') note('worker_ready');
        else if (m?.type === 'error') note('worker_error', { message: String(m.message).slice(0, 120) });
        else if (m?.type === 'stats') {
          const s = m.stats;
          const r = s.receive;
          const key = [s.frames['receive-video'] ?? 0, r.decrypted, r.droppedNoKey, r.decryptFailed, r.droppedUnverified, r.droppedSwitching, r.wrongSender, r.droppedUnmapped, s.keyEpoch].join(',');
          if (key !== window.__tlLastWorker) {
            window.__tlLastWorker = key;
            note('worker_stats', {
              at: s.at,
              framesIn: s.frames['receive-video'] ?? 0,
              audioIn: s.frames['receive-audio'] ?? 0,
              decrypted: r.decrypted,
              droppedNoKey: r.droppedNoKey,
              decryptFailed: r.decryptFailed,
              droppedUnverified: r.droppedUnverified,
              droppedSwitching: r.droppedSwitching,
              wrongSender: r.wrongSender,
              droppedUnmapped: r.droppedUnmapped,
              failures: { ...r.failures },
              keyEpoch: s.keyEpoch,
              senders: JSON.parse(JSON.stringify(s.senders)),
            });
          }
        }
      });
    }
    postMessage(msg, transfer) {
      if (msg?.type === 'key') note('key_posted', { epoch: msg.epoch, ownLeaf: msg.ownLeaf });
      else if (msg?.type === 'bind') note('bind', { mid: msg.mid, leaf: msg.leaf });
      else if (msg?.type === 'clear') note('keys_cleared');
      return transfer === undefined ? super.postMessage(msg) : super.postMessage(msg, transfer);
    }
  };

  // Long animation frames (main thread busy > 50 ms), with what ran in them.
  const loaf = [];
  Object.defineProperty(window, '__tlLoaf', { value: loaf });
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        loaf.push({
          t: performance.timeOrigin + e.startTime,
          duration: Math.round(e.duration),
          blocking: Math.round(e.blockingDuration ?? 0),
          scripts: (e.scripts ?? []).map((x) => ({
            invoker: x.invoker,
            fn: x.sourceFunctionName,
            src: (x.sourceURL ?? '').split('/').pop(),
            duration: Math.round(x.duration),
          })),
        });
      }
    }).observe({ type: 'long-animation-frame', buffered: true });
  } catch {
    // not supported
  }

  /** Starts the getStats poller: `role` 'joiner' (inbound video, tiles) or 'member' (outbound camera). */
  window.__tlPoll = (role, intervalMs) => {
    const firsts = new Set();
    // Each first is seen between the previous poll and this one: `prev`
    // says how sharp the time is (the main thread may be busy).
    let prevTick = now();
    let thisTick = now();
    const once = (ev, info) => {
      if (firsts.has(ev)) return;
      firsts.add(ev);
      note(ev, { ...(info ?? {}), prev: prevTick, tick: thisTick });
    };
    const last = new Map();
    const watched = new WeakSet();
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      prevTick = thisTick;
      thisTick = now();
      const pc = (window.__e2ePeers ?? []).at(-1);
      if (pc) {
        const t = now();
        const report = await pc.getStats();
        report.forEach((s) => {
          if (role === 'joiner' && s.type === 'inbound-rtp' && s.kind === 'video') {
            const mid = s.mid ?? '?';
            if (s.packetsReceived > 0) {
              once('first_video_packet', { mid });
              once(`first_video_packet_mid_${mid}`, { mid });
            }
            if ((s.framesReceived ?? 0) > 0) once('first_frame_received', { mid });
            if ((s.framesDecoded ?? 0) > 0) {
              once('first_frame_decoded', { mid, sample: t });
              once(`first_frame_decoded_mid_${mid}`, { mid });
            }
            if ((s.keyFramesDecoded ?? 0) > 0) once('first_keyframe_decoded', { mid });
            const k = `pli:${mid}`;
            const pli = (s.pliCount ?? 0) + (s.firCount ?? 0);
            if (pli !== (last.get(k) ?? 0)) {
              note('joiner_pli_sent', { mid, count: pli, packets: s.packetsReceived, framesReceived: s.framesReceived ?? 0 });
              last.set(k, pli);
            }
          }
          if (role === 'member' && s.type === 'outbound-rtp' && s.kind === 'video' && (s.framesEncoded ?? 0) > 0) {
            const mid = s.mid ?? '?';
            for (const [field, ev] of [['keyFramesEncoded', 'keyframe_encoded'], ['pliCount', 'pli_received'], ['firCount', 'fir_received']]) {
              const k = `${field}:${mid}`;
              const v = s[field] ?? 0;
              if (!last.has(k)) last.set(k, v);
              else if (v !== last.get(k)) {
                note(ev, { mid, count: v });
                last.set(k, v);
              }
            }
          }
        });
      }
      if (role === 'joiner') {
        for (const tile of document.querySelectorAll('[data-testid="tile"][data-local="false"]')) {
          const v = tile.querySelector('video');
          if (!v || v.hidden || !v.srcObject) continue;
          once('tile_video_attached', { id: tile.dataset.participantId });
          if (!watched.has(v) && v.requestVideoFrameCallback) {
            watched.add(v);
            v.requestVideoFrameCallback((_, meta) => once('tile_frame_presented', { id: tile.dataset.participantId, expected: performance.timeOrigin + meta.expectedDisplayTime }));
          }
        }
      }
      setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
    };
  };
}

/**
 * Inclusive and self time (ms) per function of a V8 CPU profile, and the
 * inclusive time of each function between its first and last sample.
 */
function summarizeProfile(p) {
  const nodes = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n) => {
    const f = n.callFrame;
    const file = (f.url ?? '').split('/').pop();
    return `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
  };
  const self = new Map();
  const incl = new Map();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    total += dt;
    let id = p.samples[i];
    const leaf = nodes.get(id);
    self.set(name(leaf), (self.get(name(leaf)) ?? 0) + dt);
    const seen = new Set();
    while (id !== undefined) {
      const key = name(nodes.get(id));
      if (!seen.has(key)) {
        seen.add(key);
        incl.set(key, (incl.get(key) ?? 0) + dt);
      }
      id = parent.get(id);
    }
  }
  const top = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${Math.round(v)} ${k}`);
  // Coarse buckets by function name (inclusive; a sample counts once per bucket).
  const BUCKETS = {
    'MLS (GroupSession.run: wasm + glue)': /^run index/,
    'SDP answer (PeerSession.negotiate)': /^negotiate index/,
    'UI (Room.emit listeners)': /^emit index/,
    'tile/track updates (reverifyAll)': /^reverifyAll index/,
    'measurement (getStats poll tick)': /^tick :/,
    'native, no JS on stack ((program))': /^\(program\)/,
    'idle': /^\(idle\)/,
    'GC': /^\(garbage collector\)/,
  };
  const buckets = {};
  for (const [label, re] of Object.entries(BUCKETS)) {
    let ms = 0;
    for (const [k, v] of incl) if (re.test(k)) ms = Math.max(ms, v);
    buckets[label] = Math.round(ms);
  }
  return { totalMs: Math.round(total), buckets, self: top(self, 25), inclusive: top(incl, 45) };
}

/**
 * The joiner's renderer main thread in a Chromium trace: top-level tasks by
 * where they were posted from, and the slices inside them by name (ms), over
 * the whole trace (the click to the first tile frame, plus a little).
 */
function summarizeTrace(t) {
  const events = t.traceEvents ?? t;
  // The renderer whose main thread ran our page: the one with the most FunctionCall/EventDispatch time.
  const names = new Map();
  for (const e of events) if (e.ph === 'M' && e.name === 'thread_name') names.set(`${e.pid}:${e.tid}`, e.args.name);
  const perThread = new Map();
  for (const e of events) {
    if (e.ph !== 'X' || names.get(`${e.pid}:${e.tid}`) !== 'CrRendererMain') continue;
    const k = `${e.pid}:${e.tid}`;
    if (!perThread.has(k)) perThread.set(k, []);
    perThread.get(k).push(e);
  }
  let best = null;
  let bestMs = -1;
  for (const [k, es] of perThread) {
    const ms = es.filter((e) => e.name === 'ThreadControllerImpl::RunTask').reduce((a, e) => a + (e.dur ?? 0), 0);
    if (ms > bestMs) {
      best = k;
      bestMs = ms;
    }
  }
  if (!best) return null;
  const es = perThread.get(best).sort((a, b) => a.ts - b.ts);
  const tasks = es.filter((e) => e.name === 'ThreadControllerImpl::RunTask');
  const byPost = new Map();
  for (const e of tasks) {
    const where = e.args?.src_func ? `${e.args.src_file?.split('/').slice(-2).join('/')}:${e.args.src_func}` : '(unknown)';
    byPost.set(where, (byPost.get(where) ?? 0) + e.dur / 1000);
  }
  // Slices nested in tasks, by name (self time would need a stack walk; inclusive is enough to rank).
  const byName = new Map();
  for (const e of es) {
    if (e.name === 'ThreadControllerImpl::RunTask') continue;
    const key = e.name + (e.args?.data?.functionName ? ` ${e.args.data.functionName}` : '') + (e.args?.data?.type ? ` ${e.args.data.type}` : '');
    byName.set(key, (byName.get(key) ?? 0) + (e.dur ?? 0) / 1000);
  }
  const top = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${Math.round(v)} ${k}`);
  const first = tasks[0]?.ts ?? 0;
  const last = tasks.at(-1) ? tasks.at(-1).ts + tasks.at(-1).dur : 0;
  return { spanMs: Math.round((last - first) / 1000), busyMs: Math.round(tasks.reduce((a, e) => a + e.dur, 0) / 1000), byPost: top(byPost, 30), byName: top(byName, 40) };
}

function loadNow() {
  return `${loadavg().map((x) => x.toFixed(2)).join(' ')} psi-cpu-some-avg10=${psi()}`;
}

/** Runs one fourth join; returns the four pages' timelines. */
async function oneRun(server, browsers) {
  const room = uniqueRoom('timeline');
  const people = [];
  for (const name of ['A', 'B', 'C']) {
    const p = await newParticipant(browsers.members, name);
    await p.context.addInitScript(instrument);
    people.push(p);
    await join(p, server.url, room, name);
    await waitSecured(p.page);
  }
  await waitFor(async () => (await decodedVideo(people[2].page)).filter((s) => s.framesDecoded > 0).length >= 2, { what: 'the three to see each other' });
  // Let the three settle (their own joins' keyframe requests and commits done).
  await sleep(2000);
  const d = await newParticipant(browsers.joiner, 'D');
  await d.context.addInitScript(instrument);
  if (joinerClient) await serveClient(d.context, joinerClient);
  if (namedWasm) {
    const body = readFileSync(namedWasm);
    await d.context.route(/conclave_e2ee_wasm_bg[^/]*\.wasm$/, (route) => route.fulfill({ status: 200, contentType: 'application/wasm', body }));
  }
  await d.page.goto(`${server.url}/${encodeURIComponent(room)}${inviteFragment(room)}`);
  await d.page.getByTestId('name-input').fill('D');
  await d.page.locator('[data-testid="preview-video"]:not([hidden])').waitFor({ timeout: 10_000 });
  await sleep(300);
  for (const p of people) await p.page.evaluate(() => window.__tlPoll('member', 40));
  const loadBefore = loadNow();
  if (trace) {
    await browsers.joiner.startTracing(d.page, {
      categories: ['toplevel', 'blink', 'v8', 'v8.wasm', 'devtools.timeline', 'disabled-by-default-devtools.timeline', 'webrtc', 'renderer.scheduler', 'sequence_manager'],
    });
  }
  let cdp = null;
  if (profile) {
    cdp = await d.context.newCDPSession(d.page);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 1000 });
    await cdp.send('Profiler.start');
  }
  await d.page.evaluate(() => {
    window.__tlPoll('joiner', 20);
    window.__tlNote('click');
    document.querySelector('[data-testid="join-button"]').click();
  });
  await waitFor(() => d.page.evaluate(() => window.__tl.some((e) => e.ev === 'tile_frame_presented')), {
    what: 'D to show a remote video in a tile', timeoutMs: 20_000, intervalMs: 100,
  });
  let traceSummary = null;
  if (trace) traceSummary = summarizeTrace(JSON.parse((await browsers.joiner.stopTracing()).toString()), d.page);
  let cpuProfile = null;
  if (cdp) {
    cpuProfile = (await cdp.send('Profiler.stop')).profile;
    await cdp.detach();
  }
  // A little more, to see the other two senders and the members' proofs.
  await sleep(1500);
  const timelines = {};
  for (const p of [...people, d]) timelines[p.label] = await p.page.evaluate(() => window.__tl.slice());
  timelines.loaf = await d.page.evaluate(() => window.__tlLoaf.slice());
  const ids = {};
  for (const p of people) ids[p.label] = p.id;
  for (const p of [...people, d]) await p.context.close();
  const click = timelines.D.find((e) => e.ev === 'click').t;
  const log = [];
  if (serverLog) {
    for (const line of server.output().split('\n')) {
      const m = line.replace(/\x1b\[[0-9;]*m/g, '').match(/^(\d{4}-\d\d-\d\dT[\d:.]+Z)\s+(.*)$/);
      if (!m) continue;
      const t = Date.parse(m[1]) + (Number(`0.${m[1].split('.')[1]?.replace('Z', '') ?? '0'}`) * 1000 % 1);
      if (t >= click - 50 && !/StreamTx for SSRC|remote PT order|pre-communicated SSRC|Create StreamRx|associated with RTX/.test(m[2])) log.push(`${Math.round(t - click)} ${m[2].slice(0, 200)}`);
    }
  }
  return { timelines, ids, loadBefore, loadAfter: loadNow(), serverLog: log, profile: cpuProfile ? summarizeProfile(cpuProfile) : null, trace: traceSummary, click: timelines.D.find((e) => e.ev === 'click').t };
}

/** Phase times (ms after the click) from one run's timelines. */
function phases(run) {
  const D = run.timelines.D;
  const click = D.find((e) => e.ev === 'click').t;
  const rel = (e) => (e ? Math.round(e.t - click) : null);
  const first = (tl, pred) => tl.find(pred) ?? null;
  const dFirst = (pred) => rel(first(D, (e) => e.t >= click && pred(e)));
  const members = ['A', 'B', 'C'];
  const out = {};
  out.joinSent = dFirst((e) => e.ev === 'send' && e.type === 'join');
  // The socket the join went out on; the client opens it during pre-join
  // once the user looks about to join, so it may be open before the click
  // (negative).
  const joinAt = first(D, (e) => e.t >= click && e.ev === 'send' && e.type === 'join')?.t ?? Infinity;
  out.wsOpen = rel(D.filter((e) => e.ev === 'ws_open' && e.t <= joinAt).at(-1) ?? null);
  out.welcomeReceived = dFirst((e) => e.ev === 'recv' && e.type === 'welcome');
  out.joinRequestSent = dFirst((e) => e.ev === 'send' && e.type === 'join_request');
  out.offerReceived = dFirst((e) => e.ev === 'recv' && e.type === 'offer');
  out.answerSent = dFirst((e) => e.ev === 'send' && e.type === 'answer');
  out.iceConnected = dFirst((e) => e.ev === 'ice_state' && e.state === 'connected');
  out.pcConnected = dFirst((e) => e.ev === 'pc_state' && e.state === 'connected');
  // The members' side of MLS (all in the same wall clock).
  let jrAt = null;
  let commitAt = null;
  let committer = null;
  let echoAt = null;
  let proofAt = null;
  for (const m of members) {
    const tl = run.timelines[m];
    const jr = first(tl, (e) => e.t >= click && e.ev === 'recv' && e.type === 'mls' && e.from !== null && e.from !== run.ids[m] && e.wire !== 1);
    if (jr && (jrAt === null || jr.t < jrAt)) jrAt = jr.t;
    const c = first(tl, (e) => e.t >= click && e.ev === 'send' && e.type === 'commit' && e.welcome);
    if (c && (commitAt === null || c.t < commitAt)) {
      commitAt = c.t;
      committer = m;
    }
  }
  if (committer) {
    const tl = run.timelines[committer];
    const echo = first(tl, (e) => e.t >= commitAt && e.ev === 'recv' && e.type === 'mls');
    echoAt = echo?.t ?? null;
    const proof = first(tl, (e) => e.t >= commitAt && e.ev === 'send' && e.type === 'chat');
    proofAt = proof?.t ?? null;
  }
  const r = (t) => (t === null ? null : Math.round(t - click));
  out.joinRequestAtMembers = r(jrAt);
  out.commitSent = r(commitAt);
  out.commitEchoed = r(echoAt);
  out.proofSent = r(proofAt);
  out.mlsWelcomeReceived = dFirst((e) => e.ev === 'recv' && e.type === 'mls' && e.wire === 3);
  out.welcomeProcessed = dFirst((e) => e.ev === 'console' && e.text.includes('waiting for its members to prove'));
  out.proofReceived = dFirst((e) => e.ev === 'recv' && e.type === 'chat');
  out.groupProved = dFirst((e) => e.ev === 'console' && e.text.includes('proved that it knows'));
  out.keyPosted = dFirst((e) => e.ev === 'key_posted');
  out.boundToLeaf = dFirst((e) => e.ev === 'bind' && typeof e.leaf === 'number');
  out.firstVideoPacket = dFirst((e) => e.ev === 'first_video_packet');
  out.firstWorkerVideoFrame = dFirst((e) => e.ev === 'worker_stats' && e.framesIn > 0);
  // The Worker's own clock for its first decryption of each sender.
  const senders = D.filter((e) => e.ev === 'worker_stats').at(-1)?.senders ?? {};
  const since = Object.values(senders).map((s) => s.since).filter((x) => x >= click);
  out.firstDecrypted = since.length ? Math.round(Math.min(...since) - click) : null;
  out.firstFlowing = dFirst((e) => e.ev === 'flowing');
  const videoMids = new Set(D.filter((e) => e.ev.startsWith('first_video_packet_mid_')).map((e) => e.mid));
  out.firstVideoFlowing = dFirst((e) => e.ev === 'flowing' && videoMids.has(e.mid));
  out.firstFrameReceived = dFirst((e) => e.ev === 'first_frame_received');
  out.firstKeyframeDecoded = dFirst((e) => e.ev === 'first_keyframe_decoded');
  out.firstFrameDecoded = dFirst((e) => e.ev === 'first_frame_decoded');
  out.tileAttached = dFirst((e) => e.ev === 'tile_video_attached');
  out.tileFramePresented = dFirst((e) => e.ev === 'tile_frame_presented');
  // When the last member applied the commit that adds the joiner (its echo, a
  // public MLS message): from then on every sender encrypts under the new epoch.
  let lastOnNewEpoch = null;
  for (const m of members) {
    const c = first(run.timelines[m], (e) => commitAt !== null && e.t >= commitAt && e.ev === 'recv' && e.type === 'mls' && e.wire === 1);
    if (c) lastOnNewEpoch = Math.max(lastOnNewEpoch ?? 0, c.t);
  }
  out.allMembersOnNewEpoch = r(lastOnNewEpoch);
  const w = D.filter((e) => e.ev === 'worker_stats').at(-1);
  out.oldEpochFramesFailed = w ? Object.entries(w.failures).filter(([k]) => k.includes('epoch')).reduce((a, [, n]) => a + n, 0) : null;
  out.droppedNoKey = w ? w.droppedNoKey : null;
  return out;
}

/** The keyframe story of one run: who asked, when keyframes were made, what the Worker dropped. */
function keyframes(run) {
  const D = run.timelines.D;
  const click = D.find((e) => e.ev === 'click').t;
  const r = (t) => Math.round(t - click);
  const events = [];
  for (const m of ['A', 'B', 'C']) {
    for (const e of run.timelines[m]) {
      if (e.t < click) continue;
      if (e.ev === 'keyframe_encoded') events.push(`${r(e.t)} ${m} keyframe#${e.count}`);
      if (e.ev === 'pli_received' || e.ev === 'fir_received') events.push(`${r(e.t)} ${m} ${e.ev.replace('_received', '')}#${e.count}`);
    }
  }
  for (const e of D) {
    if (e.t < click) continue;
    if (e.ev === 'joiner_pli_sent') events.push(`${r(e.t)} D sent PLI mid ${e.mid} (#${e.count}, ${e.packets} pkts, ${e.framesReceived} frames in)`);
    if (e.ev === 'pc_state' && e.state === 'connected') events.push(`${r(e.t)} D connected`);
    if (e.ev === 'key_posted') events.push(`${r(e.t)} D key posted (epoch ${e.epoch})`);
    if (e.ev === 'first_frame_decoded') events.push(`${r(e.t)} D first frame decoded`);
    if (e.ev === 'worker_stats') {
      events.push(`${r(e.t)} D worker in=${e.framesIn} dec=${e.decrypted} noKey=${e.droppedNoKey} failed=${e.decryptFailed} unverified=${e.droppedUnverified} switching=${e.droppedSwitching} wrong=${e.wrongSender} epoch=${e.keyEpoch}${Object.keys(e.failures).length ? ' ' + JSON.stringify(e.failures) : ''}`);
    }
  }
  return events.sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
}

/** The joiner's main thread: long animation frames from the click to the first frame in a tile. */
function longFrames(run) {
  const D = run.timelines.D;
  const click = D.find((e) => e.ev === 'click').t;
  const end = D.find((e) => e.ev === 'tile_frame_presented')?.t ?? Infinity;
  const out = [];
  let busy = 0;
  for (const f of run.timelines.loaf) {
    if (f.t + f.duration < click || f.t > end) continue;
    busy += f.duration;
    const scripts = f.scripts
      .filter((x) => x.duration >= 5)
      .map((x) => `${x.invoker}${x.fn ? ' ' + x.fn : ''} ${x.duration}`)
      .join('; ');
    out.push(`${Math.round(f.t - click)}+${f.duration} ${scripts}`);
  }
  return { busy: Math.round(busy), frames: out };
}

const ORDER = [
  ['wsOpen', 'WebSocket open'],
  ['welcomeReceived', '`welcome` received'],
  ['joinSent', '`join` sent'],
  ['joinRequestSent', 'join_request sent (KeyPackage made)'],
  ['offerReceived', '`offer` received'],
  ['answerSent', 'answer sent'],
  ['iceConnected', 'ICE connected'],
  ['pcConnected', 'DTLS connected (pc.connectionState)'],
  ['firstVideoPacket', 'first video RTP packet (getStats)'],
  ['firstWorkerVideoFrame', 'first video frame reaches the Worker (250 ms stats)'],
  ['joinRequestAtMembers', 'join_request reaches the members'],
  ['commitSent', 'commit (+Welcome) sent by a member'],
  ['commitEchoed', 'commit echoed to the committer'],
  ['proofSent', 'group proof sent by the committer'],
  ['allMembersOnNewEpoch', 'all members applied the commit (send on the new epoch)'],
  ['mlsWelcomeReceived', 'MLS Welcome received'],
  ['welcomeProcessed', 'Welcome processed (verifying)'],
  ['proofReceived', 'group proof received'],
  ['groupProved', 'group proved (member)'],
  ['keyPosted', 'epoch key posted to the Worker'],
  ['boundToLeaf', 'first receiver bound to a leaf'],
  ['firstDecrypted', 'first frame (audio or video) decrypted (Worker clock)'],
  ['firstFlowing', 'first receiver flowing (Worker message)'],
  ['firstVideoFlowing', 'first video receiver flowing (a video frame decrypted)'],
  ['firstFrameReceived', 'first frame into the jitter buffer (framesReceived)'],
  ['firstKeyframeDecoded', 'first keyframe decoded'],
  ['firstFrameDecoded', 'first frame decoded (framesDecoded)'],
  ['tileAttached', 'tile video attached'],
  ['tileFramePresented', 'first frame presented in a tile'],
];

/** Durations between phases (ms), and which of media and keys came last. */
const SPANS = [
  ['click → WebSocket open (negative: opened during pre-join)', 0, 'wsOpen'],
  ['click → `join` sent', 0, 'joinSent'],
  ['`join` sent → `welcome`', 'joinSent', 'welcomeReceived'],
  ['`welcome` → join_request sent (welcome handler: UI + KeyPackage)', 'welcomeReceived', 'joinRequestSent'],
  ['`welcome` → `offer` handled', 'welcomeReceived', 'offerReceived'],
  ['`offer` → answer sent (SDP, 46 transforms, + whatever else ran)', 'offerReceived', 'answerSent'],
  ['answer → DTLS connected', 'answerSent', 'pcConnected'],
  ['join_request sent → at the members', 'joinRequestSent', 'joinRequestAtMembers'],
  ['join_request at the members → commit sent', 'joinRequestAtMembers', 'commitSent'],
  ['commit sent → group proof sent (committer)', 'commitSent', 'proofSent'],
  ['commit sent → MLS Welcome handled by the joiner', 'commitSent', 'mlsWelcomeReceived'],
  ['MLS Welcome → processed', 'mlsWelcomeReceived', 'welcomeProcessed'],
  ['processed → group proof handled', 'welcomeProcessed', 'proofReceived'],
  ['group proof → key posted', 'proofReceived', 'keyPosted'],
  ['join_request sent → key posted (MLS, all of it)', 'joinRequestSent', 'keyPosted'],
  ['max(DTLS connected, key posted) → first video frame decrypted', 'mediaGate', 'firstVideoFlowing'],
  ['first video decrypted → first frame decoded (20 ms polls)', 'firstVideoFlowing', 'firstFrameDecoded'],
  ['first frame decoded → presented in a tile', 'firstFrameDecoded', 'tileFramePresented'],
];

function spans(ph) {
  const v = { ...ph, mediaGate: ph.pcConnected === null || ph.keyPosted === null ? null : Math.max(ph.pcConnected, ph.keyPosted) };
  return SPANS.map(([label, a, b]) => {
    const from = a === 0 ? 0 : v[a];
    return { label, ms: from === null || v[b] === null ? null : v[b] - from };
  });
}

function psi() {
  try {
    return readFileSync('/proc/pressure/cpu', 'utf8').split('\n')[0].match(/avg10=([\d.]+)/)[1];
  } catch {
    return '?';
  }
}

const server = await startServer(serverLog ? { env: { CONCLAVE_LOG: serverLog } } : {});
const results = [];
try {
  const members = await launchBrowser();
  const joiner = separateBrowser ? await launchBrowser() : members;
  for (let i = 0; i < runs; i++) {
    try {
      const run = await oneRun(server, { members, joiner });
      const ph = phases(run);
      results.push({ run, ph });
      if (!jsonOut) {
        console.error(`run ${i + 1}: decoded ${ph.firstFrameDecoded} ms, tile ${ph.tileFramePresented} ms, load ${run.loadBefore} → ${run.loadAfter}`);
      }
    } catch (err) {
      console.error(`run ${i + 1} failed: ${err.message}`);
    }
    await sleep(1000);
  }
  await members.close();
  if (joiner !== members) await joiner.close();
} finally {
  await server.stop();
  if (serverLog && process.env.JOIN_TIMELINE_SERVER_LOG) writeFileSync(process.env.JOIN_TIMELINE_SERVER_LOG, server.output());
}

const table = ORDER.map(([k, label]) => {
  const xs = results.map((r) => r.ph[k]);
  return { phase: label, key: k, median: median(xs), samples: xs };
});
if (jsonOut) {
  console.log(JSON.stringify({ table, runs: results.map((r) => ({ ph: r.ph, load: [r.run.loadBefore, r.run.loadAfter], keyframes: keyframes(r.run), longFrames: longFrames(r.run), serverLog: r.run.serverLog, profile: r.run.profile, timelines: r.run.timelines, ids: r.run.ids })) }, null, 1));
} else {
  let nproc = '?';
  try {
    nproc = execSync('nproc').toString().trim();
  } catch {
    // unknown
  }
  console.log(`${results.length} runs, ${nproc} cores, ${separateBrowser ? 'joiner in its own browser' : 'one browser for all four'}`);
  console.log(`load (1/5/15 min) per run, before → after: ${results.map((r) => `${r.run.loadBefore.split(' ')[0]}→${r.run.loadAfter.split(' ')[0]}`).join(', ')}`);
  console.log('\nms after the Join click        median   samples');
  for (const row of table) console.log(`${row.phase.padEnd(58)} ${String(row.median ?? '-').padStart(6)}   ${row.samples.map((x) => x ?? '-').join(' ')}`);
  console.log('\nspans (ms)                                                        median   samples');
  const all = results.map((r) => spans(r.ph));
  for (const [i, [label]] of SPANS.entries()) {
    const xs = all.map((sp) => sp[i].ms);
    console.log(`${label.padEnd(66)} ${String(median(xs) ?? '-').padStart(6)}   ${xs.map((x) => x ?? '-').join(' ')}`);
  }
  const early = results.filter((r) => r.ph.answerSent !== null && r.ph.allMembersOnNewEpoch !== null && r.ph.answerSent < r.ph.allMembersOnNewEpoch);
  console.log(`old-epoch frames the joiner could not decrypt, per run: ${results.map((r) => r.ph.oldEpochFramesFailed).join(' ')}; frames dropped for want of a key: ${results.map((r) => r.ph.droppedNoKey).join(' ')}`);
  console.log(`the answer went out before every member was on the new epoch in ${early.length} of ${results.length} runs (the SFU's answer-time keyframe request then yields frames the joiner cannot decrypt)`);
  const keysLast = results.filter((r) => r.ph.keyPosted !== null && r.ph.pcConnected !== null && r.ph.keyPosted > r.ph.pcConnected).length;
  console.log(`media gate: the key came after DTLS in ${keysLast} of ${results.length} runs (MLS on the critical path), DTLS after the key in the others`);
  for (const [i, r] of results.entries()) {
    console.log(`\n--- run ${i + 1}: keyframes, PLIs, the Worker (ms after click)`);
    for (const line of keyframes(r.run)) console.log('  ' + line);
    if (r.run.serverLog.length) {
      console.log('  server log:');
      for (const line of r.run.serverLog) console.log('    ' + line);
    }
    if (r.run.profile) {
      console.log(`  D main-thread CPU profile (${r.run.profile.totalMs} ms sampled), buckets: ${JSON.stringify(r.run.profile.buckets)}`);
      console.log('  self time:');
      for (const line of r.run.profile.self) console.log('    ' + line);
      console.log('  inclusive time:');
      for (const line of r.run.profile.inclusive) console.log('    ' + line);
    }
    if (r.run.trace) {
      console.log(`  D renderer main thread (trace, ${r.run.trace.spanMs} ms span, ${r.run.trace.busyMs} ms in tasks), tasks by posting site:`);
      for (const line of r.run.trace.byPost) console.log('    ' + line);
      console.log('  slices by name (inclusive):');
      for (const line of r.run.trace.byName) console.log('    ' + line);
    }
    const lf = longFrames(r.run);
    console.log(`  D main thread: ${lf.busy} ms in long frames (>50 ms) from the click to the first tile frame`);
    for (const line of lf.frames) console.log('    ' + line);
  }
}
