// Pure rules for chat messages, shared by the Room (what may be sent, which
// time a received message shows) and the chat panel (the length counter).
// No DOM here: web/test/chat-text.test.ts runs these under Node.

import { MAX_CHAT_CHARS } from './protocol.gen';

/**
 * What to send for the text the user typed: trimmed, or null if nothing is
 * left or it is longer than MAX_CHAT_CHARS (counted in code points, as the
 * server does).
 */
export function sendableChatText(text: string): string | null {
  const trimmed = text.trim();
  if (!trimmed || [...trimmed].length > MAX_CHAT_CHARS) return null;
  return trimmed;
}

/** The composer's counter ("3850/4000"), shown only within 200 characters of the limit. */
export function chatCounterText(value: string): string {
  const n = [...value].length;
  return n > MAX_CHAT_CHARS - 200 ? `${n}/${MAX_CHAT_CHARS}` : '';
}

/**
 * The time a received message shows: the sender's from inside the
 * encryption; the server's if none was given; `now` (our own clock) if
 * neither is a date we can show.
 */
export function chatSentAt(senderTime: number, serverTime: number, now: number): number {
  return [senderTime, serverTime, now].find((t) => t > 0 && !Number.isNaN(new Date(t).getTime())) ?? now;
}

/** A piece of a chat message as shown: plain text, or a link to open. */
export type ChatPart = { kind: 'text'; text: string } | { kind: 'link'; text: string; href: string };

// A URL starts at http:// or https:// and runs to whitespace; what ends a
// sentence around it (".", ",", "!", "?", quotes, an unmatched ")") is not
// part of it.
const URL_START = /https?:\/\//gi;
const TRAILING = /[.,;:!?'"»”’]+$/;

/**
 * Splits a message into text and links, for showing it with clickable
 * links. Only http and https links are made (never javascript:, data: or
 * anything else), only where the URL parses, and the link's text is what
 * the sender wrote.
 */
export function chatParts(text: string): ChatPart[] {
  const parts: ChatPart[] = [];
  let rest = 0;
  for (const match of text.matchAll(URL_START)) {
    const start = match.index ?? 0;
    if (start < rest) continue;
    // The URL must not start in the middle of a word ("xhttp://").
    if (start > 0 && /[\p{L}\p{N}]/u.test(text[start - 1] ?? '')) continue;
    let end = start;
    while (end < text.length && !/\s/u.test(text[end] ?? ' ')) end++;
    let candidate = text.slice(start, end);
    for (;;) {
      const trimmed = candidate.replace(TRAILING, '');
      const unmatched = trimmed.endsWith(')') && count(trimmed, '(') < count(trimmed, ')');
      const next = unmatched ? trimmed.slice(0, -1) : trimmed;
      if (next === candidate) break;
      candidate = next;
    }
    const href = safeHref(candidate);
    if (href === null) continue;
    if (start > rest) parts.push({ kind: 'text', text: text.slice(rest, start) });
    parts.push({ kind: 'link', text: candidate, href });
    rest = start + candidate.length;
  }
  if (rest < text.length) parts.push({ kind: 'text', text: text.slice(rest) });
  return parts;
}

function count(text: string, char: string): number {
  return text.split(char).length - 1;
}

/** The URL to open for `candidate`, if it is a well-formed http(s) URL with a host. */
function safeHref(candidate: string): string | null {
  if (candidate.length <= 'https://'.length) return null;
  try {
    const url = new URL(candidate);
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) return null;
    return url.href;
  } catch {
    return null;
  }
}
