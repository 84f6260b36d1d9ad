// Whose video this page does not display now — tiles scrolled out of view,
// or the whole page hidden (another tab, minimised, phone locked) — so the
// server stops forwarding it (`hidden_video`; audio always flows). Video
// shown again is asked for at once, since someone is looking; hiding waits
// a little, so scrolling past a tile does not flap the stream.

export const HIDE_AFTER_MS = 500;

export class HiddenVideo {
  private pageHidden = false;
  private outOfView = new Set<number>();
  private participants = new Set<number>();
  /** Sharing a screen: on the stage whatever their tile does. */
  private presenting = new Set<number>();
  /** What the server was last told (sorted); a new session starts empty. */
  private told: number[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly send: (participants: number[]) => void,
    private readonly hideAfterMs = HIDE_AFTER_MS,
  ) {}

  /** The page as a whole is hidden (`document.visibilityState`). */
  setPageHidden(hidden: boolean): void {
    this.pageHidden = hidden;
    this.changed();
  }

  /** Whether participant `id`'s tile intersects the viewport. */
  setInView(id: number, inView: boolean): void {
    if (inView) this.outOfView.delete(id);
    else this.outOfView.add(id);
    this.changed();
  }

  /** The remote participants in the meeting now, and who of them shares a screen. */
  setParticipants(ids: Iterable<number>, presenting: Iterable<number> = []): void {
    this.participants = new Set(ids);
    this.presenting = new Set(presenting);
    for (const id of this.outOfView) if (!this.participants.has(id)) this.outOfView.delete(id);
    this.changed();
  }

  /** A new server session knows nothing hidden: tell it again. */
  newSession(): void {
    this.told = [];
    this.changed();
  }

  /** Sorted ids whose video is not displayed now. */
  hidden(): number[] {
    const ids = this.pageHidden
      ? [...this.participants]
      : [...this.outOfView].filter((id) => this.participants.has(id) && !this.presenting.has(id));
    return ids.sort((a, b) => a - b);
  }

  dispose(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private changed(): void {
    const now = this.hidden();
    if (sameIds(now, this.told)) {
      this.dispose();
      return;
    }
    // Only more hidden than the server knows: wait. Anything shown again: now.
    const onlyHides = now.length > this.told.length && this.told.every((id) => now.includes(id));
    if (!onlyHides) {
      this.flush();
    } else if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flush();
      }, this.hideAfterMs);
    }
  }

  private flush(): void {
    this.dispose();
    const now = this.hidden();
    if (sameIds(now, this.told)) return;
    this.told = now;
    this.send(now);
  }
}

function sameIds(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}
