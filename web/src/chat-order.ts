// Where a received chat message goes in the chat panel. No DOM here:
// web/test/chat-order.test.ts runs these under Node.
//
// The server relays chat in whatever order it likes; its `seq` is not
// trusted. Across senders, arrival order is the only order there is. Within
// one sender session, though, the sender numbers its messages inside the
// encryption (a counter from 0 that the server cannot change): a message
// that arrives after a later one of the same session is shown before it,
// where its sender put it. A message is never dropped or hidden for its
// counter: a reused or odd counter only decides where it goes.

/** A received message's place in its sender's sequence. */
export interface ChatOrder {
  /** The sender session (see `chatSession`). */
  session: string;
  /** The sender's message counter in that session, from inside the encryption. */
  counter: number;
}

/**
 * The sender session a chat counter counts in: the sender's leaf and its
 * per-session signature key in the message's epoch, both from the E2EE core.
 * A member who rejoins gets a new key (and maybe a new leaf) and counts from
 * 0 again; a new member in a freed leaf has another key. Null when either
 * is unknown (our own echo, or a sender the core could not name): such a
 * message keeps its arrival place.
 */
export function chatSession(leaf: number | null, key: string | null): string | null {
  if (leaf === null || !Number.isInteger(leaf) || leaf < 0 || !key) return null;
  return `${leaf}:${key.toLowerCase()}`;
}

/** A message's order key, or null if it only has its arrival place. */
export function chatOrder(leaf: number | null, key: string | null, counter: number | null): ChatOrder | null {
  const session = chatSession(leaf, key);
  if (session === null || counter === null || !Number.isInteger(counter) || counter < 0) return null;
  return { session, counter };
}

/**
 * Where a message arriving now goes among the messages `shown` (in display
 * order): at the end, unless a shown message of the same sender session has
 * a higher counter; then just before the first of those. Each session thus
 * stays in counter order on screen (equal counters keep arrival order), and
 * other senders' messages keep their arrival places.
 */
export function chatInsertIndex(shown: readonly (ChatOrder | null)[], next: ChatOrder | null): number {
  if (next) {
    const i = shown.findIndex((s) => s !== null && s.session === next.session && s.counter > next.counter);
    if (i >= 0) return i;
  }
  return shown.length;
}
