// One participant's tile in the grid: video or avatar, name, mute and
// speaking indicators, connection quality.

import type { QualityLevel } from '../quality';
import type { Participant } from '../room';
import { h, hueFor, initials } from './dom';
import { icon } from './icons';

export function attachTrack(video: HTMLVideoElement, track: MediaStreamTrack | null): void {
  const current = video.srcObject instanceof MediaStream ? video.srcObject.getTracks()[0] ?? null : null;
  if (current === track) return;
  video.srcObject = track ? new MediaStream([track]) : null;
  if (track) video.play().catch(() => undefined);
}

export class Tile {
  readonly el: HTMLElement;
  private video: HTMLVideoElement;
  private avatar: HTMLElement;
  private nameEl: HTMLElement;
  private mutedEl: HTMLElement;
  private screenEl: HTMLElement;
  private unverifiedEl: HTMLElement;
  private qualityEl: HTMLElement;
  private uplinkEl: HTMLElement;
  /** The tile's accessible name without / with the connection's state. */
  private baseLabel = '';
  private qualityState: string | null = null;

  constructor(p: Participant) {
    this.video = h('video', { class: 'tile-video', autoplay: true, playsinline: true, 'data-testid': 'tile-video' });
    this.video.muted = true; // sound comes from the participant's <audio>
    if (p.isLocal) this.video.classList.add('mirrored');
    this.avatar = h('div', { class: 'avatar', 'aria-hidden': 'true' }, initials(p.name));
    this.avatar.style.setProperty('--hue', String(hueFor(p.id)));
    this.nameEl = h('span', { class: 'tile-name', 'data-testid': 'tile-name' });
    this.mutedEl = h('span', { class: 'tile-muted', 'data-testid': 'tile-muted', title: 'Microphone muted' }, icon('mic', true));
    this.screenEl = h('span', { class: 'tile-badge', title: 'Sharing screen' }, icon('screen'));
    this.unverifiedEl = h(
      'span',
      { class: 'tile-unverified', 'data-testid': 'tile-unverified', title: 'Not in the encrypted meeting: receives no keys' },
      icon('lockOff'),
      h('span', {}, 'Not verified'),
    );
    // Signal bars, shown only when something is wrong (a calm grid otherwise).
    this.qualityEl = h(
      'span',
      { class: 'tile-quality', role: 'img', 'data-testid': 'tile-quality', 'data-level': 'unknown' },
      h('span', { class: 'bar' }),
      h('span', { class: 'bar' }),
      h('span', { class: 'bar' }),
    );
    this.qualityEl.hidden = true;
    // The local tile's sentence when others get a degraded picture of us.
    this.uplinkEl = h('div', { class: 'tile-uplink', 'data-testid': 'tile-uplink-warning' }, icon('warning'), h('span', {}));
    this.uplinkEl.hidden = true;
    this.el = h(
      'div',
      {
        class: 'tile',
        role: 'group',
        'data-testid': 'tile',
        'data-participant-id': p.id,
        'data-local': p.isLocal ? 'true' : 'false',
      },
      this.video,
      this.avatar,
      this.uplinkEl,
      this.qualityEl,
      h('div', { class: 'tile-label' }, this.unverifiedEl, this.mutedEl, this.screenEl, this.nameEl),
    );
    this.update(p);
  }

  update(p: Participant): void {
    const unverified = !p.isLocal && !p.verified;
    const name = p.isLocal ? `${p.name} (You)` : p.name;
    this.unverifiedEl.hidden = !unverified;
    this.el.classList.toggle('unverified', unverified);
    this.el.dataset.verified = String(p.verified);
    if (unverified) this.el.dataset.unverified = 'true';
    else delete this.el.dataset.unverified;
    this.nameEl.textContent = name;
    this.avatar.textContent = initials(p.name);
    const camTrack = p.media.camera ? p.tracks.camera ?? null : null;
    attachTrack(this.video, camTrack);
    const showVideo = !!camTrack;
    this.video.hidden = !showVideo;
    this.avatar.hidden = showVideo;
    this.mutedEl.hidden = p.media.microphone;
    this.screenEl.hidden = !p.media.screen;
    this.el.classList.toggle('speaking', p.speaking && p.media.microphone);
    this.el.dataset.speaking = String(p.speaking);
    this.el.dataset.muted = String(!p.media.microphone);
    this.el.dataset.camera = String(p.media.camera);
    const states = [
      unverified ? (p.knocking ? 'not verified, waiting to be let in' : 'not verified') : null,
      p.media.microphone ? null : 'muted',
      p.media.camera ? null : 'camera off',
      p.media.screen ? 'sharing screen' : null,
      p.speaking ? 'speaking' : null,
    ].filter(Boolean);
    this.baseLabel = states.length ? `${name}, ${states.join(', ')}` : name;
    this.refreshLabel();
  }

  private refreshLabel(): void {
    this.el.setAttribute('aria-label', this.qualityState ? `${this.baseLabel}, ${this.qualityState}` : this.baseLabel);
  }

  /**
   * Shows the connection quality: `label` is the indicator's accessible name
   * and tooltip ("Connection: poor — 12% of audio packets lost"); `warning`
   * (local tile only) the sentence saying others get a degraded picture of
   * us. Bars show only for 'fair' and 'poor'; the level is always in
   * `data-quality` (tests, styling).
   */
  setQuality(level: QualityLevel, label: string, warning: string | null = null): void {
    this.el.dataset.quality = level;
    this.qualityEl.dataset.level = level;
    this.qualityEl.hidden = level !== 'fair' && level !== 'poor';
    this.qualityEl.setAttribute('aria-label', label);
    this.qualityEl.title = label;
    this.uplinkEl.hidden = warning === null;
    this.uplinkEl.dataset.level = level;
    this.uplinkEl.title = warning ?? '';
    const text = this.uplinkEl.lastElementChild;
    if (text) text.textContent = warning ?? '';
    this.qualityState = level === 'fair' || level === 'poor' ? `${level} connection` : null;
    this.refreshLabel();
  }

  destroy(): void {
    this.video.srcObject = null;
    this.el.remove();
  }
}
