// The screen before entering a room: name, camera preview, device choice,
// "join muted / camera off", and clear messages about missing devices.

import { describeProblem, type LocalMedia } from '../media';
import { MAX_NAME_CHARS } from '../protocol.gen';
import { h, hueFor, initials } from './dom';
import { icon } from './icons';

const NAME_KEY = 'conclave.name';
export const MIC_KEY = 'conclave.micDeviceId';
export const CAMERA_KEY = 'conclave.cameraDeviceId';

export function storedName(): string {
  try {
    return localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

function store(key: string, value: string | undefined): void {
  try {
    if (value) localStorage.setItem(key, value);
  } catch {
    // storage may be disabled; remembering is best effort
  }
}

export function nameProblem(name: string): string | null {
  if (!name.trim()) return 'Enter your name so others know who you are.';
  if ([...name].length > MAX_NAME_CHARS) return `Names are at most ${MAX_NAME_CHARS} characters.`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/u.test(name)) return 'The name contains invisible control characters.';
  return null;
}

export interface PrejoinOptions {
  room: string;
  media: LocalMedia;
  /** A message from a previous attempt (e.g. server unreachable). */
  notice?: string | undefined;
  /** The link carries no invite secret (`#s=…`): joining an ongoing meeting means knocking. */
  noInviteKey?: boolean;
  /** The user looks about to join (types a name, reaches the Join button): a chance to get ready. */
  onIntent?: () => void;
}

export interface PrejoinResult {
  name: string;
}

export function renderPrejoin(root: HTMLElement, opts: PrejoinOptions): Promise<PrejoinResult> {
  const { media } = opts;
  let disposed = false;
  let meterStop: (() => void) | null = null;

  const video = h('video', { class: 'preview-video mirrored', autoplay: true, playsinline: true, 'data-testid': 'preview-video' });
  video.muted = true;
  const avatar = h('div', { class: 'preview-avatar', 'aria-hidden': 'true' });
  const previewStatus = h('p', { class: 'preview-status' });
  const meterFill = h('div', { class: 'meter-fill' });
  const meter = h('div', { class: 'meter', 'aria-hidden': 'true', title: 'Microphone level' }, meterFill);

  const micBtn = h('button', { type: 'button', class: 'round-btn', 'data-testid': 'prejoin-mic' });
  const camBtn = h('button', { type: 'button', class: 'round-btn', 'data-testid': 'prejoin-camera' });

  const nameInput = h('input', {
    id: 'display-name',
    type: 'text',
    autocomplete: 'nickname',
    maxlength: MAX_NAME_CHARS,
    required: true,
    placeholder: 'Your name',
    'aria-describedby': 'name-error',
    'data-testid': 'name-input',
  });
  nameInput.value = storedName();
  const nameError = h('p', { id: 'name-error', class: 'form-error', role: 'alert' });

  const micSelect = h('select', { id: 'mic-select', 'data-testid': 'mic-select' });
  const camSelect = h('select', { id: 'camera-select', 'data-testid': 'camera-select' });
  const mutedBox = h('input', { id: 'join-muted', type: 'checkbox', 'data-testid': 'join-muted' });
  const camOffBox = h('input', { id: 'join-camera-off', type: 'checkbox', 'data-testid': 'join-camera-off' });
  const problems = h('div', { class: 'notices', role: 'status', 'aria-live': 'polite', 'data-testid': 'media-problems' });
  const notice = h('p', { class: 'notice notice-error', role: 'alert', 'data-testid': 'join-notice' });
  if (opts.notice) notice.textContent = opts.notice;
  else notice.hidden = true;
  const joinBtn = h('button', { type: 'submit', class: 'btn btn-primary btn-wide', 'data-testid': 'join-button' }, 'Join meeting');

  const form = h(
    'form',
    { class: 'prejoin-form', novalidate: true },
    h('h1', {}, 'Ready to join?'),
    h('p', { class: 'room-title' }, 'Room ', h('strong', { 'data-testid': 'room-name' }, opts.room)),
    opts.noInviteKey
      ? h('p', { class: 'hint', 'data-testid': 'invite-hint' }, 'This link has no invite key. If the meeting has already started, someone in it will need to let you in.')
      : null,
    notice,
    h('label', { for: 'display-name' }, 'Your name'),
    nameInput,
    nameError,
    h('div', { class: 'field-grid' },
      h('label', { for: 'mic-select' }, 'Microphone'),
      micSelect,
      h('label', { for: 'camera-select' }, 'Camera'),
      camSelect,
    ),
    h('div', { class: 'checks' },
      h('label', { class: 'check' }, mutedBox, ' Join with microphone muted'),
      h('label', { class: 'check' }, camOffBox, ' Join with camera off'),
    ),
    problems,
    joinBtn,
  );

  const screen = h(
    'main',
    { class: 'screen prejoin', 'data-testid': 'prejoin' },
    h('div', { class: 'prejoin-layout' },
      h('section', { class: 'preview', 'aria-label': 'Camera preview' },
        video, avatar, previewStatus,
        h('div', { class: 'preview-controls' }, micBtn, camBtn, meter),
      ),
      h('section', { class: 'card prejoin-card' }, form),
    ),
  );
  root.replaceChildren(screen);

  const refresh = (): void => {
    const micOn = !!media.mic && media.micEnabled;
    const camOn = !!media.camera;
    mutedBox.checked = !micOn;
    camOffBox.checked = !camOn;
    micBtn.replaceChildren(icon('mic', !micOn));
    micBtn.setAttribute('aria-label', micOn ? 'Mute microphone' : 'Unmute microphone');
    micBtn.setAttribute('aria-pressed', String(!micOn));
    micBtn.classList.toggle('off', !micOn);
    camBtn.replaceChildren(icon('camera', !camOn));
    camBtn.setAttribute('aria-label', camOn ? 'Turn camera off' : 'Turn camera on');
    camBtn.setAttribute('aria-pressed', String(!camOn));
    camBtn.classList.toggle('off', !camOn);

    video.srcObject = media.camera ? new MediaStream([media.camera]) : null;
    video.hidden = !camOn;
    avatar.hidden = camOn;
    const name = nameInput.value.trim();
    avatar.textContent = name ? initials(name) : '';
    avatar.style.setProperty('--hue', String(hueFor(name.length * 7 + 3)));
    previewStatus.textContent = camOn ? '' : media.cameraProblem ? 'Camera unavailable' : 'Camera is off';

    const lines: string[] = [];
    if (media.micProblem) lines.push(describeProblem('microphone', media.micProblem));
    if (media.cameraProblem) lines.push(describeProblem('camera', media.cameraProblem));
    problems.replaceChildren(...lines.map((l) => h('p', { class: 'notice notice-warn', 'data-testid': 'media-problem' }, icon('warning'), ' ', l)));
    meter.hidden = !media.mic;
    restartMeter();
  };

  const fillSelect = (select: HTMLSelectElement, devices: MediaDeviceInfo[], current: string | undefined, none: string): void => {
    select.replaceChildren(
      ...(devices.length
        ? devices.map((d, i) => h('option', { value: d.deviceId }, d.label || `${select === micSelect ? 'Microphone' : 'Camera'} ${i + 1}`))
        : [h('option', { value: '' }, none)]),
    );
    select.disabled = devices.length === 0;
    if (current && devices.some((d) => d.deviceId === current)) select.value = current;
  };

  const refreshDevices = async (): Promise<void> => {
    try {
      const { microphones, cameras } = await media.listDevices();
      fillSelect(micSelect, microphones, media.micDeviceId, 'No microphone found');
      fillSelect(camSelect, cameras, media.cameraDeviceId, 'No camera found');
    } catch {
      // enumerateDevices failing just leaves the selects empty
    }
  };

  let meterTrack: MediaStreamTrack | null = null;
  const restartMeter = (): void => {
    if (meterTrack === media.mic && !disposed) return;
    meterStop?.();
    meterStop = null;
    meterTrack = media.mic;
    if (!media.mic || disposed) return;
    try {
      const ctx = new AudioContext();
      const source = ctx.createMediaStreamSource(new MediaStream([media.mic]));
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 512;
      source.connect(analyser);
      const data = new Uint8Array(analyser.fftSize);
      let raf = 0;
      const tick = (): void => {
        analyser.getByteTimeDomainData(data);
        let peak = 0;
        for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
        const level = media.micEnabled ? Math.min(1, peak / 64) : 0;
        meterFill.style.transform = `scaleX(${level.toFixed(3)})`;
        raf = requestAnimationFrame(tick);
      };
      tick();
      const resume = (): void => void ctx.resume();
      document.addEventListener('pointerdown', resume, { once: true });
      meterStop = () => {
        cancelAnimationFrame(raf);
        document.removeEventListener('pointerdown', resume);
        void ctx.close();
      };
    } catch {
      meterStop = null;
    }
  };

  const setCamera = async (on: boolean): Promise<void> => {
    if (on) await media.startCamera().catch(() => undefined);
    else media.stopCamera();
    refresh();
  };
  const setMic = async (on: boolean): Promise<void> => {
    if (on && !media.mic) {
      media.setMicEnabled(true);
      await media.startMic().catch(() => undefined);
    } else {
      media.setMicEnabled(on);
    }
    refresh();
  };

  micBtn.addEventListener('click', () => void setMic(!(media.mic && media.micEnabled)));
  camBtn.addEventListener('click', () => void setCamera(!media.camera));
  mutedBox.addEventListener('change', () => void setMic(!mutedBox.checked));
  camOffBox.addEventListener('change', () => void setCamera(!camOffBox.checked));
  micSelect.addEventListener('change', async () => {
    const wasEnabled = media.micEnabled;
    await media.startMic(micSelect.value).catch(() => undefined);
    media.setMicEnabled(wasEnabled);
    store(MIC_KEY, media.micDeviceId);
    refresh();
  });
  camSelect.addEventListener('change', async () => {
    await media.startCamera(camSelect.value).catch(() => undefined);
    store(CAMERA_KEY, media.cameraDeviceId);
    refresh();
  });
  nameInput.addEventListener('input', () => {
    nameError.textContent = '';
    nameInput.removeAttribute('aria-invalid');
    const name = nameInput.value.trim();
    avatar.textContent = name ? initials(name) : '';
  });
  navigator.mediaDevices?.addEventListener?.('devicechange', () => void refreshDevices());
  const intent = (): void => {
    if (!disposed) opts.onIntent?.();
  };
  nameInput.addEventListener('input', intent);
  for (const type of ['focus', 'pointerenter', 'pointerdown'] as const) joinBtn.addEventListener(type, intent);

  refresh();
  micSelect.replaceChildren(h('option', {}, 'Looking for devices…'));
  camSelect.replaceChildren(h('option', {}, 'Looking for devices…'));
  previewStatus.textContent = 'Starting camera…';
  const ready = (async () => {
    if (!media.mic && !media.camera) await media.acquire({ mic: true, camera: true });
    if (disposed) return;
    refresh();
    await refreshDevices();
  })();

  if (nameInput.value) joinBtn.focus();
  else nameInput.focus();

  return new Promise((resolve) => {
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (joinBtn.disabled) return;
      const name = nameInput.value.trim();
      const problem = nameProblem(name);
      if (problem) {
        nameError.textContent = problem;
        nameInput.setAttribute('aria-invalid', 'true');
        nameInput.focus();
        return;
      }
      // Join with the devices the user sees: wait for the first permission prompt.
      joinBtn.disabled = true;
      joinBtn.textContent = 'Joining…';
      await ready.catch(() => undefined);
      store(NAME_KEY, name);
      store(MIC_KEY, media.micDeviceId);
      store(CAMERA_KEY, media.cameraDeviceId);
      disposed = true;
      meterStop?.();
      resolve({ name });
    });
  });
}
