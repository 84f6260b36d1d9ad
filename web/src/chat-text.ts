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
