// One <audio> element per remote microphone, on the chosen speaker, with a
// "click to enable sound" fallback when the browser blocks autoplay.

import { h } from './dom';

export class AudioOutput {
  /** Hidden container for the <audio> elements. */
  readonly el: HTMLElement;
  /** Shown only when autoplay was refused. */
  readonly unlockButton: HTMLButtonElement;
  private audios = new Map<number, HTMLAudioElement>();
  private sinkId = '';

  constructor(private readonly onSinkError: () => void) {
    this.el = h('div', { class: 'audio-sinks', 'aria-hidden': 'true' });
    this.unlockButton = h('button', { type: 'button', class: 'btn btn-primary audio-unlock', 'data-testid': 'enable-audio' }, 'Click to enable sound');
    this.unlockButton.hidden = true;
    this.unlockButton.addEventListener('click', () => {
      for (const a of this.audios.values()) a.play().catch(() => undefined);
      this.unlockButton.hidden = true;
    });
  }

  /** Plays `track` for participant `id` (null removes it). */
  set(id: number, track: MediaStreamTrack | null): void {
    let audio = this.audios.get(id);
    if (!track) {
      this.remove(id);
      return;
    }
    if (!audio) {
      audio = h('audio', { autoplay: true, 'data-testid': 'remote-audio', 'data-participant-id': id });
      this.applySink(audio);
      this.audios.set(id, audio);
      this.el.appendChild(audio);
    }
    const current = audio.srcObject instanceof MediaStream ? audio.srcObject.getTracks()[0] : undefined;
    if (current !== track) {
      audio.srcObject = new MediaStream([track]);
      audio.play().catch(() => {
        this.unlockButton.hidden = false;
      });
    }
  }

  remove(id: number): void {
    const audio = this.audios.get(id);
    if (!audio) return;
    audio.srcObject = null;
    audio.remove();
    this.audios.delete(id);
  }

  clear(): void {
    for (const id of [...this.audios.keys()]) this.remove(id);
  }

  /** Output device chosen in settings ('' = system default). */
  get speaker(): string {
    return this.sinkId;
  }

  set speaker(deviceId: string) {
    this.sinkId = deviceId;
    for (const a of this.audios.values()) this.applySink(a);
  }

  private applySink(audio: HTMLAudioElement): void {
    if (!this.sinkId || !('setSinkId' in audio)) return;
    audio.setSinkId(this.sinkId).catch(this.onSinkError);
  }
}
