// Read-only test hooks: `window.__conclave.e2ee` describes the current
// session's end-to-end encryption (state, epoch, security code, roster,
// unverified participants, media statistics). It exposes no keys and no
// way to change anything.
//
// It is installed on every page, production included, on purpose: the
// browser tests (e2e/) run against the production binary, and a separate
// test build would test other code. Why that is harmless (also
// docs/security.md §8):
// - What it shows is on screen or sent to the server anyway: the state
//   and security code (security panel), the roster's names and signature
//   *public* keys (people list; the server saw them in KeyPackages),
//   knocks (the knock prompt), epoch and own leaf (in the handshake
//   messages the server relays and in every frame's KID), frame counters per sender leaf (the
//   server sees the packets and their timing). `hasSecret` is a yes/no,
//   never the invite secret.
// - It holds no key material (no SFrame base key, exporter, epoch or
//   invite secret), no chat or media plaintext, and no reference to a live
//   object: every read builds copies and freezes them; `stats()` asks the
//   Worker for counters (fixed failure texts, never frame contents).
// - Only script in this page can read it, and such script can already
//   read the page (names, chat, video) and the invite secret in
//   `location.hash`. A malicious server that serves the page has all of
//   that anyway (docs/security.md, "The served client").
// Keep it that way: nothing secret, nothing that acts, may be added here.

import type { Room } from '../room';
import type { E2eeState } from './group';
import type { WorkerStats } from './messages';

export interface E2eeSnapshot {
  state: E2eeState;
  epoch: number | null;
  securityCode: string | null;
  ownLeaf: number | null;
  roster: { leafIndex: number; displayName: string; signatureKey: string }[];
  unverified: number[];
  knocks: { name: string; participantId: number | null; fingerprint: string; lookalike: boolean }[];
  refused: boolean;
  hasSecret: boolean;
  transformApi: 'script' | 'streams' | null;
  stats(): Promise<WorkerStats | null>;
}

export function installTestHooks(currentRoom: () => Room | null): void {
  const hooks = Object.freeze({
    get e2ee(): E2eeSnapshot | null {
      const room = currentRoom();
      if (!room) return null;
      const g = room.group;
      return Object.freeze({
        state: g.state,
        epoch: g.joined ? g.epoch : null,
        securityCode: g.joined ? g.securityCode : null,
        ownLeaf: g.joined ? g.ownLeaf : null,
        roster: g.joined ? g.roster.map((r) => ({ ...r })) : [],
        unverified: room.unverified().map((p) => p.id),
        knocks: [...g.knocks.values()].map((k) => ({ name: k.name, participantId: k.participantId, fingerprint: k.fingerprint, lookalike: k.lookalike })),
        refused: g.refused,
        hasSecret: g.hasSecret,
        transformApi: room.crypto?.api ?? null,
        stats: () => room.stats(),
      });
    },
  });
  Object.defineProperty(window, '__conclave', { value: hooks, writable: false, configurable: false, enumerable: false });
}
