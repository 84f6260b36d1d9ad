// The server's map of m-lines to tracks (`TrackMapping`), as offers and
// `tracks` messages give it. Pure logic of PeerSession (peer.ts), apart so it
// can be unit-tested.
//
// With fixed receive slots the server's first offer has every m-line this
// client will ever have; afterwards `tracks` messages move subscribe m-lines
// between participants (or to nobody) without renegotiating.

import type { TrackMapping } from './protocol.gen';

const SOURCES: readonly unknown[] = ['microphone', 'camera', 'screen'];
const DIRECTIONS: readonly unknown[] = ['publish', 'subscribe'];

/** Whether `t` is a well-formed TrackMapping (the server's JSON is only typed, not checked). */
export function isTrackMapping(t: unknown): t is TrackMapping {
  if (typeof t !== 'object' || t === null) return false;
  const o = t as Record<string, unknown>;
  return (
    typeof o.mid === 'string' &&
    DIRECTIONS.includes(o.direction) &&
    typeof o.participant === 'number' &&
    Number.isSafeInteger(o.participant) &&
    SOURCES.includes(o.source)
  );
}

/**
 * The map an offer's `tracks` gives, by mid. Malformed entries are left
 * out (their m-line then carries nothing); of a mid listed twice, the first
 * entry counts.
 */
export function trackMap(tracks: unknown): Map<string, TrackMapping> {
  const map = new Map<string, TrackMapping>();
  if (!Array.isArray(tracks)) return map;
  for (const t of tracks) {
    if (isTrackMapping(t) && !map.has(t.mid)) map.set(t.mid, { mid: t.mid, direction: t.direction, participant: t.participant, source: t.source });
  }
  return map;
}

/**
 * The map after a `tracks` message (the whole map, not a change): every
 * subscribe m-line carries what the message says, or nothing if it is not
 * listed. Publish m-lines stay as the last offer negotiated them: which
 * m-line sends what cannot change without an offer, so the message's
 * publish entries, and subscribe entries on a publish m-line, are ignored.
 */
export function remapTracks(current: ReadonlyMap<string, TrackMapping>, tracks: unknown): Map<string, TrackMapping> {
  const next = new Map<string, TrackMapping>();
  for (const [mid, m] of current) {
    if (m.direction === 'publish') next.set(mid, m);
  }
  for (const [mid, m] of trackMap(tracks)) {
    if (m.direction === 'subscribe' && !next.has(mid)) next.set(mid, m);
  }
  return next;
}
