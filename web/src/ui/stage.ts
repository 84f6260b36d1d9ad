// The large screen-share area; while it shows, the grid becomes a strip.

import type { Participant } from '../room';
import { h } from './dom';
import { attachTrack } from './tile';

export class ScreenStage {
  readonly el: HTMLElement;
  private video: HTMLVideoElement;
  private label: HTMLElement;
  private stopBtn: HTMLButtonElement;

  constructor(stopSharing: () => void) {
    this.video = h('video', { class: 'stage-video', autoplay: true, playsinline: true, 'data-testid': 'screen-video' });
    this.video.muted = true;
    this.label = h('p', { class: 'stage-label', 'data-testid': 'screen-label' });
    this.stopBtn = h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'stop-share' }, 'Stop presenting');
    this.stopBtn.addEventListener('click', stopSharing);
    this.el = h(
      'section',
      { class: 'stage', 'aria-label': 'Screen share', 'data-testid': 'screen-stage' },
      this.video,
      h('div', { class: 'stage-bar' }, this.label, this.stopBtn),
    );
    this.el.hidden = true;
  }

  /**
   * Picks who is presenting: the latest remote sharer, else ourselves.
   * Returns whether anything is shown.
   */
  show(people: Participant[]): boolean {
    const presenter =
      [...people].reverse().find((p) => !p.isLocal && p.media.screen && p.tracks.screen) ??
      people.find((p) => p.isLocal && p.tracks.screen);
    const track = presenter?.tracks.screen ?? null;
    attachTrack(this.video, track);
    if (!presenter || !track) {
      this.el.hidden = true;
      delete this.el.dataset.participantId;
      return false;
    }
    this.label.textContent = presenter.isLocal ? 'You are presenting to everyone' : `${presenter.name} is presenting`;
    this.el.dataset.participantId = String(presenter.id);
    this.stopBtn.hidden = !presenter.isLocal;
    this.el.hidden = false;
    return true;
  }
}
