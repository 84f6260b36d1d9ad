// The settings panel: switch microphone and camera during the meeting.

import { canChooseSpeaker, type LocalMedia } from '../media';
import { h, modKey } from './dom';
import { icon } from './icons';

export class SettingsPanel {
  readonly el: HTMLElement;
  private micSelect: HTMLSelectElement;
  private camSelect: HTMLSelectElement;
  private speakerSelect: HTMLSelectElement;

  constructor(
    private readonly media: () => LocalMedia | null,
    switchDevice: (kind: 'microphone' | 'camera', deviceId: string) => void,
    private readonly speaker: { get(): string; set(deviceId: string): void },
    close: () => void,
  ) {
    this.speakerSelect = h('select', { id: 'settings-speaker', 'data-testid': 'settings-speaker' });
    this.speakerSelect.addEventListener('change', () => this.speaker.set(this.speakerSelect.value));
    this.micSelect = h('select', { id: 'settings-mic', 'data-testid': 'settings-mic' });
    this.camSelect = h('select', { id: 'settings-camera', 'data-testid': 'settings-camera' });
    this.micSelect.addEventListener('change', () => switchDevice('microphone', this.micSelect.value));
    this.camSelect.addEventListener('change', () => switchDevice('camera', this.camSelect.value));
    this.el = h(
      'aside',
      { class: 'panel settings-panel', 'aria-labelledby': 'settings-title', 'data-testid': 'settings-panel' },
      h('header', { class: 'panel-header' },
        h('h2', { id: 'settings-title' }, 'Settings'),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close settings', onclick: close }, icon('close')),
      ),
      h('div', { class: 'panel-body' },
        h('label', { for: 'settings-mic' }, 'Microphone'),
        this.micSelect,
        h('label', { for: 'settings-camera' }, 'Camera'),
        this.camSelect,
        canChooseSpeaker ? h('label', { for: 'settings-speaker' }, 'Speaker') : null,
        canChooseSpeaker ? this.speakerSelect : null,
        h('p', { class: 'hint' }, 'Keyboard: ', h('kbd', {}, modKey), '+', h('kbd', {}, 'D'), ' microphone, ',
          h('kbd', {}, modKey), '+', h('kbd', {}, 'E'), ' camera, ',
          h('kbd', {}, modKey), '+', h('kbd', {}, 'Alt'), '+', h('kbd', {}, 'C'), ' chat, ',
          h('kbd', {}, modKey), '+', h('kbd', {}, 'Alt'), '+', h('kbd', {}, 'P'), ' people, ',
          h('kbd', {}, 'Esc'), ' closes a panel.'),
      ),
    );
  }

  async refresh(): Promise<void> {
    const media = this.media();
    if (!media) return;
    const { microphones, cameras, speakers } = await media
      .listDevices()
      .catch(() => ({ microphones: [], cameras: [], speakers: [] }));
    const fill = (select: HTMLSelectElement, devices: MediaDeviceInfo[], current: string | undefined, label: string): void => {
      select.replaceChildren(
        ...(devices.length
          ? devices.map((d, i) => h('option', { value: d.deviceId }, d.label || `${label} ${i + 1}`))
          : [h('option', { value: '' }, `No ${label.toLowerCase()} found`)]),
      );
      select.disabled = devices.length === 0;
      if (current && devices.some((d) => d.deviceId === current)) select.value = current;
    };
    fill(this.micSelect, microphones, media.micDeviceId, 'Microphone');
    fill(this.camSelect, cameras, media.cameraDeviceId, 'Camera');
    fill(this.speakerSelect, speakers, this.speaker.get() || undefined, 'Speaker');
  }
}
