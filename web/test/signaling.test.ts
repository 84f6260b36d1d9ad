// src/signaling.ts: what the client accepts from the server's WebSocket,
// and where that socket is.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { MAX_MESSAGE_BYTES } from '../src/protocol.gen';
import { parseServerMessage, signalingUrl } from '../src/signaling';

const SERVER_TYPES = [
  'welcome',
  'create_group',
  'mls',
  'commit_rejected',
  'offer',
  'tracks',
  'participant_joined',
  'participant_left',
  'participant_updated',
  'chat',
  'speaking',
  'keepalive',
  'error',
];

test('signaling: every server message type is accepted and returned as sent', () => {
  for (const type of SERVER_TYPES) {
    const msg = parseServerMessage(JSON.stringify({ type, extra: [1, 'two'] }));
    assert.deepEqual(msg, { type, extra: [1, 'two'] }, type);
  }
  const chat = parseServerMessage('{"type":"chat","seq":3,"from":7,"data":"AAAA","sent_at":1700000000000}');
  assert.equal(chat?.type, 'chat');
  assert.equal(chat?.type === 'chat' ? chat.sent_at : null, 1700000000000);
});

test('signaling: unknown types and client-to-server types are refused', () => {
  for (const type of ['join', 'answer', 'leave', 'Welcome', 'WELCOME', ' welcome', '', 'welcome\u0000', '__proto__', 'constructor']) {
    assert.equal(parseServerMessage(JSON.stringify({ type })), null, JSON.stringify(type));
  }
});

test('signaling: JSON that is not an object with a string type is refused', () => {
  for (const text of ['null', '42', '"welcome"', '["welcome"]', '{}', '{"type":null}', '{"type":1}', '{"type":["welcome"]}', '{"type":{"type":"welcome"}}', 'true']) {
    assert.equal(parseServerMessage(text), null, text);
  }
});

test('signaling: malformed JSON and non-text frames are refused without throwing', () => {
  for (const text of ['', '{', '{"type":"welcome"', "{'type':'welcome'}", '{"type":"welcome"}}', 'welcome', '\uFEFF{"type":"welcome"']) {
    assert.equal(parseServerMessage(text), null, JSON.stringify(text));
  }
  for (const data of [undefined, null, 1, new ArrayBuffer(8), new Uint8Array([123, 125]), { type: 'welcome' }]) {
    assert.equal(parseServerMessage(data), null, String(data));
  }
});

test('signaling: a message of exactly MAX_MESSAGE_BYTES is accepted, one more is refused', () => {
  const frame = (length: number): string => {
    const head = '{"type":"mls","from":null,"data":"';
    const tail = '"}';
    return head + 'A'.repeat(length - head.length - tail.length) + tail;
  };
  assert.equal(frame(MAX_MESSAGE_BYTES).length, MAX_MESSAGE_BYTES);
  assert.equal(parseServerMessage(frame(MAX_MESSAGE_BYTES))?.type, 'mls');
  assert.equal(parseServerMessage(frame(MAX_MESSAGE_BYTES + 1)), null);
});

test('signaling: the socket is /ws on the page origin, wss only on https', () => {
  const at = (protocol: string, host: string): string => signalingUrl({ protocol, host } as Location);
  assert.equal(at('https:', 'meet.example.org'), 'wss://meet.example.org/ws');
  assert.equal(at('https:', 'meet.example.org:8443'), 'wss://meet.example.org:8443/ws');
  assert.equal(at('http:', 'localhost:8080'), 'ws://localhost:8080/ws');
  assert.equal(at('http:', '[::1]:8080'), 'ws://[::1]:8080/ws');
});
