// Development-only stand-in for the signaling half of the Conclave server:
// serves web/dist and answers /ws with a scripted room (two fake people, chat
// echo, speaking events) but NO media (it never sends an offer). Used to look
// at the UI before the real server exists; the e2e tests use the real binary.
//
//   node tools/mock-server.mjs [port]
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const dist = process.env.DIST ? process.env.DIST.replace(/\/?$/, '/') : fileURLToPath(new URL('../../web/dist/', import.meta.url));
const port = Number(process.argv[2] ?? 8099);
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };
const CSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; style-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:";

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  let file = url.pathname.startsWith('/assets/') ? normalize(url.pathname).slice(1) : 'index.html';
  try {
    const body = await readFile(join(dist, file));
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'content-security-policy': CSP });
    res.end(body);
  } catch {
    res.writeHead(404).end('not found');
  }
});

let nextId = 100;
let seq = 0;
const wss = new WebSocketServer({ server, path: '/ws' });
wss.on('connection', (ws) => {
  const send = (m) => ws.readyState === ws.OPEN && ws.send(JSON.stringify(m));
  const timers = [];
  ws.on('message', (data) => {
    const msg = JSON.parse(String(data));
    if (msg.type === 'join') {
      if (msg.room === 'full') return send({ type: 'error', code: 'room_full', message: 'the room has 50 participants' }), ws.close();
      const you = { id: nextId++, name: msg.name, media: msg.media };
      const ada = { id: 1, name: 'Ada Lovelace', media: { microphone: true, camera: false, screen: false } };
      const grace = { id: 2, name: 'Grace Hopper', media: { microphone: false, camera: false, screen: false } };
      send({ type: 'welcome', you, participants: [ada, grace] });
      const chat = (from, name, text) => send({ type: 'chat', seq: ++seq, from, name, text, sent_at: Date.now() });
      timers.push(setTimeout(() => chat(1, 'Ada Lovelace', 'Hello everyone! Can you hear me?'), 300));
      timers.push(setTimeout(() => send({ type: 'speaking', ids: [1] }), 500));
      timers.push(setTimeout(() => send({ type: 'participant_joined', participant: { id: 3, name: 'Linus', media: { microphone: true, camera: false, screen: false } } }), 700));
      timers.push(setTimeout(() => chat(2, 'Grace Hopper', 'Loud and clear.'), 900));
    } else if (msg.type === 'chat') {
      send({ type: 'chat', seq: ++seq, from: nextId - 1, name: 'You', text: msg.text, sent_at: Date.now() });
    }
  });
  ws.on('close', () => timers.forEach(clearTimeout));
});
server.listen(port, '127.0.0.1', () => console.log(`mock on http://127.0.0.1:${port}/`));
