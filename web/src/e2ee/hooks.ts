// Read-only test hooks: `window.__conclave.e2ee` describes the current
// session's end-to-end encryption (state, epoch, security code, roster,
// unverified participants, media statistics). It exposes no keys and no
// way to change anything.

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
