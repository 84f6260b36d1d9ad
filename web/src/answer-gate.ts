// Server messages that wait while this page answers an SDP offer.
//
// A joiner's MLS Welcome usually arrives while the first offer is being
// answered. Processing it (openmls, on the page's main thread) in between
// would hold back the answer, and with it the whole media path (ICE, DTLS,
// the first frame), for as long as it takes; after the answer it runs while
// ICE and DTLS connect. So while an offer is being answered, every other
// server message waits here, in arrival order, and is handled once the
// answer is sent — or after `maxHoldMs`, whichever comes first. Offers and
// `tracks` go to the peer connection's own queue and never wait here.
// Nothing is decrypted or shown sooner for it: the media Worker gets no key
// before the verified group gives one.

export interface GateTimers {
  set(fn: () => void, ms: number): number;
  clear(id: number | undefined): void;
}

const windowTimers: GateTimers = {
  set: (fn, ms) => window.setTimeout(fn, ms),
  clear: (id) => window.clearTimeout(id),
};

export class AnswerGate<T> {
  private answering = 0;
  private held: T[] | null = null;
  private timer: number | undefined;
  private closed = false;

  constructor(
    private readonly deliver: (msg: T) => void,
    private readonly maxHoldMs: number,
    private readonly timers: GateTimers = windowTimers,
  ) {}

  /** An offer is being answered: messages wait from now on. */
  answeringOffer(): void {
    if (this.closed) return;
    this.answering += 1;
    this.held ??= [];
    this.timers.clear(this.timer);
    this.timer = this.timers.set(() => this.release(), this.maxHoldMs);
  }

  /** An offer's answer was sent (or its negotiation failed). */
  answered(): void {
    this.answering = Math.max(0, this.answering - 1);
    if (this.answering === 0) this.release();
  }

  /** Delivers `msg` now, or holds it if an offer is being answered. */
  push(msg: T): void {
    if (this.closed) return;
    if (this.held) this.held.push(msg);
    else this.deliver(msg);
  }

  /** Whether messages are waiting for an answer now. */
  get holding(): boolean {
    return this.held !== null;
  }

  /**
   * Delivers what is held now, without waiting for the answer. For the end
   * of the connection: what the server said before closing it (e.g. "your
   * request to join was declined") must be heard before the close is
   * acted on, or the page would take it for a lost connection and rejoin.
   */
  flush(): void {
    this.release();
  }

  /** Drops what is held; nothing is delivered any more. */
  close(): void {
    this.closed = true;
    this.timers.clear(this.timer);
    this.held = null;
  }

  private release(): void {
    this.timers.clear(this.timer);
    this.timer = undefined;
    const held = this.held;
    this.held = null;
    for (const msg of held ?? []) {
      if (this.closed) return;
      this.deliver(msg);
    }
  }
}
