// Which sender's frames one receiver accepts, and what to call the frames
// it refuses. Pure logic of the media Worker (worker.ts), apart so it can be
// unit-tested.
//
// The page binds every receiver (one per m-line) to the MLS leaf of the
// participant its m-line carries. With fixed receive slots the server moves
// m-lines between participants without renegotiating (the `tracks`
// message), so one receiver carries A's camera, then B's, then nobody's.
// The server's message and the media race: A's last frames can arrive after
// the page rebound the receiver to B, and B's first ones before. Both are
// dropped (the decoder then asks for a key frame). They are counted as
// "switching", not as frames of a wrong sender, which stays the sign of a
// server that labels one member's media as another's.

/** What the page binds a receiver to. */
export type Binding =
  /** A verified member's MLS leaf: only its frames are decrypted. */
  | number
  /** A participant not (yet) in the roster: frames wait a moment, undecrypted. */
  | 'unverified'
  /** The m-line carries nobody: frames are dropped. */
  | 'none';

/**
 * How long after a receiver changed participant frames of another member
 * are taken for frames in flight across the switch (not a wrong sender).
 */
export const SWITCH_MS = 1000;

export interface BindingState {
  /**
   * The one MLS leaf whose frames this receiver accepts. null: nobody (the
   * m-line carries nothing, or the receiver has no m-line id); undefined:
   * not bound to a verified member yet (frames wait, never decrypted).
   */
  leaf: number | null | undefined;
  /** The page's number for the current binding (echoed when frames flow). */
  seq: number;
  /** A frame of the current binding was passed on (reported once per binding). */
  flowing: boolean;
  /** When the receiver last moved away from a member (ms); -Infinity: never. */
  switchedAt: number;
  /**
   * Frames of one other member refused in a row on this receiver: if the
   * page binds the receiver to that member soon after they began, they
   * were that member's first frames arriving ahead of the `tracks` message.
   */
  refused: { leaf: number; count: number; since: number } | null;
}

export function leafOf(binding: Binding): number | null | undefined {
  if (binding === 'unverified') return undefined;
  if (binding === 'none') return null;
  return binding;
}

export function newBindingState(leaf: number | null | undefined, seq: number): BindingState {
  return { leaf, seq, flowing: false, switchedAt: -Infinity, refused: null };
}

export interface Rebound {
  /** The binding changed (a new leaf, or none); held frames must be re-judged. */
  changed: boolean;
  /** Frames earlier counted as a wrong sender that were the new member's first ones. */
  reclassified: number;
  /** Report `flowing` for this seq now (same member rebound under a new number). */
  flowingNow: boolean;
}

/** The page bound the receiver to `leaf` (see `leafOf`) under number `seq`. */
export function rebind(s: BindingState, leaf: number | null | undefined, seq: number, now: number): Rebound {
  s.seq = seq;
  if (s.leaf === leaf) return { changed: false, reclassified: 0, flowingNow: s.flowing };
  if (typeof s.leaf === 'number') s.switchedAt = now;
  s.leaf = leaf;
  s.flowing = false;
  let reclassified = 0;
  if (typeof leaf === 'number' && s.refused?.leaf === leaf && now - s.refused.since <= SWITCH_MS) reclassified = s.refused.count;
  s.refused = null;
  return { changed: true, reclassified, flowingNow: false };
}

export type Verdict =
  /** The bound member's frame: decrypt it. */
  | 'accept'
  /** Another member's frame, not explained by a recent switch. */
  | 'wrong-sender'
  /** In flight across a change of participant. */
  | 'switching'
  /** The receiver carries nobody. */
  | 'unmapped';

/**
 * What to do with a frame whose KID names `kidLeaf` (null: unreadable
 * header) on a receiver bound to a member or to nobody (not one waiting
 * for its binding: such frames are held, not judged).
 */
export function judge(s: BindingState, kidLeaf: number | null, now: number): Verdict {
  if (s.leaf !== null && s.leaf !== undefined && kidLeaf === s.leaf) return 'accept';
  if (now - s.switchedAt <= SWITCH_MS) return 'switching';
  if (s.leaf === null || s.leaf === undefined) return 'unmapped';
  if (kidLeaf !== null) {
    if (s.refused?.leaf === kidLeaf) s.refused.count++;
    else s.refused = { leaf: kidLeaf, count: 1, since: now };
  }
  return 'wrong-sender';
}
