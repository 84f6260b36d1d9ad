// src/chat-text.ts: what the chat sends, its length counter, and which time
// a received message shows.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { chatCounterText, chatParts, chatSentAt, sendableChatText, type ChatPart } from '../src/chat-text';
import { MAX_CHAT_CHARS } from '../src/protocol.gen';

const NOW = Date.UTC(2026, 11, 4, 19, 0, 0);
/** The largest time a JavaScript Date can hold (±100,000,000 days). */
const MAX_DATE_MS = 8.64e15;

test('chat send: text is trimmed; blank text is not sent', () => {
  assert.equal(sendableChatText('  hello  '), 'hello');
  assert.equal(sendableChatText('\n\tline one\nline two\n'), 'line one\nline two');
  for (const blank of ['', ' ', '\n\n', '\t \r\n', '\u00a0\u3000']) {
    assert.equal(sendableChatText(blank), null, JSON.stringify(blank));
  }
});

test('chat send: up to MAX_CHAT_CHARS code points after trimming', () => {
  assert.equal(MAX_CHAT_CHARS, 4000);
  assert.equal(sendableChatText('a'.repeat(4000)), 'a'.repeat(4000));
  assert.equal(sendableChatText('a'.repeat(4001)), null);
  assert.equal(sendableChatText(`   ${'a'.repeat(4000)}   `), 'a'.repeat(4000), 'surrounding blanks do not count');
});

test('chat send: emoji count as one character each', () => {
  const emoji = '🎉'.repeat(4000);
  assert.equal(emoji.length, 8000);
  assert.equal(sendableChatText(emoji), emoji);
  assert.equal(sendableChatText(emoji + '🎉'), null);
});

test('chat counter: hidden until the last 200 characters, then n/4000 in code points', () => {
  assert.equal(chatCounterText(''), '');
  assert.equal(chatCounterText('a'.repeat(3800)), '');
  assert.equal(chatCounterText('a'.repeat(3801)), '3801/4000');
  assert.equal(chatCounterText('a'.repeat(4000)), '4000/4000');
  assert.equal(chatCounterText('😀'.repeat(1950)), '', '3900 UTF-16 units are 1950 characters');
  assert.equal(chatCounterText('😀'.repeat(3801)), '3801/4000');
});

test('chat time: the sender’s time wins when it is a showable date', () => {
  assert.equal(chatSentAt(NOW - 5000, NOW - 1000, NOW), NOW - 5000);
  assert.equal(chatSentAt(1, NOW, NOW), 1);
  assert.equal(chatSentAt(MAX_DATE_MS, NOW, NOW), MAX_DATE_MS, 'the last date a Date can hold');
});

test('chat time: a missing or unshowable sender time falls back to the server’s', () => {
  for (const sender of [0, -1, NaN, Infinity, -Infinity, MAX_DATE_MS + 1, Number.MAX_SAFE_INTEGER, 2 ** 64]) {
    assert.equal(chatSentAt(sender, NOW - 1000, NOW), NOW - 1000, String(sender));
  }
});

test('chat time: with neither time showable, our own clock is used', () => {
  assert.equal(chatSentAt(0, 0, NOW), NOW);
  assert.equal(chatSentAt(2 ** 64, 2 ** 64, NOW), NOW);
  assert.equal(chatSentAt(NaN, -5, NOW), NOW);
  for (const t of [chatSentAt(2 ** 64, MAX_DATE_MS + 1, NOW), chatSentAt(-1, NaN, NOW)]) {
    assert.doesNotThrow(() => new Date(t).toISOString(), 'the chat panel calls toISOString on it');
  }
});

const link = (text: string, href = text): ChatPart => ({ kind: 'link', text, href });
const plain = (text: string): ChatPart => ({ kind: 'text', text });

test('chat links: http and https URLs become links, the rest stays text', () => {
  assert.deepEqual(chatParts('no links here'), [plain('no links here')]);
  assert.deepEqual(chatParts('see https://example.org/a?b=1#c now'), [
    plain('see '),
    link('https://example.org/a?b=1#c'),
    plain(' now'),
  ]);
  assert.deepEqual(chatParts('http://example.org'), [link('http://example.org', 'http://example.org/')]);
  assert.deepEqual(chatParts('two: https://a.example https://b.example'), [
    plain('two: '),
    link('https://a.example', 'https://a.example/'),
    plain(' '),
    link('https://b.example', 'https://b.example/'),
  ]);
});

test('chat links: sentence punctuation and an unmatched bracket are not part of the link', () => {
  assert.deepEqual(chatParts('Read https://example.org/x.'), [plain('Read '), link('https://example.org/x'), plain('.')]);
  assert.deepEqual(chatParts('(see https://example.org/x)'), [plain('(see '), link('https://example.org/x'), plain(')')]);
  assert.deepEqual(chatParts('https://en.wikipedia.org/wiki/Foo_(bar)!'), [
    link('https://en.wikipedia.org/wiki/Foo_(bar)'),
    plain('!'),
  ]);
});

test('chat links: no other scheme, no malformed URL, no link inside a word', () => {
  for (const text of [
    'javascript:alert(1)',
    'data:text/html,<b>x</b>',
    'ftp://example.org/file',
    'https://',
    'http://[::1',
    'xhttps://example.org',
    'JAVASCRIPT://example.org',
  ]) {
    assert.ok(chatParts(text).every((p) => p.kind === 'text'), text);
    assert.equal(chatParts(text).map((p) => p.text).join(''), text, text);
  }
});

test('chat links: the parts always put the message back together', () => {
  for (const text of ['a https://x.example/(y)) b.', 'https://x.example,https://y.example', '\u{1F600} https://x.example/é ok']) {
    assert.equal(chatParts(text).map((p) => p.text).join(''), text, text);
  }
});
