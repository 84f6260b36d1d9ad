// Local devices: microphone, camera and screen capture, with the errors a
// user can understand.

export type MediaProblem = 'denied' | 'not_found' | 'in_use' | 'unsupported' | 'other';

export interface DeviceLists {
  microphones: MediaDeviceInfo[];
  cameras: MediaDeviceInfo[];
  speakers: MediaDeviceInfo[];
}

/** Whether this browser can route audio to a chosen output device. */
export const canChooseSpeaker = typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;

const CAMERA_CONSTRAINTS: MediaTrackConstraints = {
  width: { ideal: 640 },
  height: { ideal: 360 },
  frameRate: { ideal: 24, max: 30 },
};

const MIC_CONSTRAINTS: MediaTrackConstraints = {
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
};

export function classifyMediaError(err: unknown): MediaProblem {
  const name = err instanceof DOMException || err instanceof Error ? err.name : '';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
    case 'PermissionDeniedError':
      return 'denied';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return 'not_found';
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return 'in_use';
    case 'TypeError':
      return 'unsupported';
    default:
      return 'other';
  }
}

export function describeProblem(kind: 'microphone' | 'camera' | 'screen', problem: MediaProblem): string {
  const what = kind === 'microphone' ? 'microphone' : kind === 'camera' ? 'camera' : 'screen sharing';
  switch (problem) {
    case 'denied':
      return kind === 'screen'
        ? 'Screen sharing was cancelled or blocked.'
        : `Access to the ${what} is blocked. Allow it in the browser's site settings and reload — you can still join without it.`;
    case 'not_found':
      return `No ${what} was found. You can still join without one.`;
    case 'in_use':
      return `The ${what} is in use by another application or could not be started.`;
    case 'unsupported':
      return `This browser cannot use the ${what} here (it needs HTTPS or localhost).`;
    default:
      return `The ${what} could not be started.`;
  }
}

function hasMediaDevices(): boolean {
  return typeof navigator !== 'undefined' && !!navigator.mediaDevices?.getUserMedia;
}

/** The user's own microphone, camera and screen tracks. */
export class LocalMedia {
  mic: MediaStreamTrack | null = null;
  camera: MediaStreamTrack | null = null;
  screen: MediaStreamTrack | null = null;
  micDeviceId: string | undefined;
  cameraDeviceId: string | undefined;
  micProblem: MediaProblem | null = null;
  cameraProblem: MediaProblem | null = null;
  /** Devices picked in a menu are required (exact); remembered ones only preferred. */
  private micChosen = false;
  private cameraChosen = false;
  /** Whether the microphone track sends sound (muting keeps the track). */
  micEnabled = true;

  constructor(saved?: { micDeviceId?: string | undefined; cameraDeviceId?: string | undefined }) {
    this.micDeviceId = saved?.micDeviceId;
    this.cameraDeviceId = saved?.cameraDeviceId;
  }

  /**
   * Asks for microphone and/or camera in one permission prompt; when that
   * fails, asks for each separately so each gets its own explanation.
   */
  async acquire(want: { mic: boolean; camera: boolean }): Promise<void> {
    if (!hasMediaDevices()) {
      if (want.mic) this.micProblem = 'unsupported';
      if (want.camera) this.cameraProblem = 'unsupported';
      return;
    }
    if (want.mic && want.camera) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({
          audio: this.audioConstraints(),
          video: this.videoConstraints(),
        });
        this.adoptMic(stream.getAudioTracks()[0] ?? null);
        this.adoptCamera(stream.getVideoTracks()[0] ?? null);
        return;
      } catch {
        // Try separately below to find out which one failed.
      }
    }
    if (want.mic) await this.startMic().catch(() => undefined);
    if (want.camera) await this.startCamera().catch(() => undefined);
  }

  async startMic(deviceId?: string): Promise<MediaStreamTrack> {
    if (deviceId !== undefined) {
      this.micDeviceId = deviceId;
      this.micChosen = true;
    }
    try {
      if (!hasMediaDevices()) throw new TypeError('mediaDevices unavailable');
      const stream = await navigator.mediaDevices.getUserMedia({ audio: this.audioConstraints() });
      const track = stream.getAudioTracks()[0];
      if (!track) throw new DOMException('no audio track', 'NotFoundError');
      this.mic?.stop();
      this.adoptMic(track);
      return track;
    } catch (err) {
      this.micProblem = classifyMediaError(err);
      throw err;
    }
  }

  async startCamera(deviceId?: string): Promise<MediaStreamTrack> {
    if (deviceId !== undefined) {
      this.cameraDeviceId = deviceId;
      this.cameraChosen = true;
    }
    try {
      if (!hasMediaDevices()) throw new TypeError('mediaDevices unavailable');
      const stream = await navigator.mediaDevices.getUserMedia({ video: this.videoConstraints() });
      const track = stream.getVideoTracks()[0];
      if (!track) throw new DOMException('no video track', 'NotFoundError');
      this.camera?.stop();
      this.adoptCamera(track);
      return track;
    } catch (err) {
      this.cameraProblem = classifyMediaError(err);
      throw err;
    }
  }

  /** Picks the camera to use the next time it is turned on. */
  chooseCamera(deviceId: string): void {
    this.cameraDeviceId = deviceId;
    this.cameraChosen = true;
  }

  /** Stops the camera so its light goes off. */
  stopCamera(): void {
    this.camera?.stop();
    this.camera = null;
  }

  setMicEnabled(enabled: boolean): void {
    this.micEnabled = enabled;
    if (this.mic) this.mic.enabled = enabled;
  }

  /** Asks the user to pick a screen, window or tab. */
  async startScreen(): Promise<MediaStreamTrack> {
    if (!navigator.mediaDevices?.getDisplayMedia) {
      throw new DOMException('getDisplayMedia unavailable', 'TypeError');
    }
    // Chrome-only hints (ignored elsewhere): don't offer this tab itself
    // (hall of mirrors), allow switching the shared surface mid-share.
    const options: DisplayMediaStreamOptions & { selfBrowserSurface?: string; surfaceSwitching?: string } = {
      video: { frameRate: { ideal: 15, max: 30 } },
      audio: false,
      selfBrowserSurface: 'exclude',
      surfaceSwitching: 'include',
    };
    const stream = await navigator.mediaDevices.getDisplayMedia(options);
    const track = stream.getVideoTracks()[0];
    if (!track) throw new DOMException('no screen track', 'NotFoundError');
    if ('contentHint' in track) track.contentHint = 'detail';
    this.screen?.stop();
    this.screen = track;
    return track;
  }

  stopScreen(): void {
    this.screen?.stop();
    this.screen = null;
  }

  stopAll(): void {
    this.mic?.stop();
    this.mic = null;
    this.stopCamera();
    this.stopScreen();
  }

  async listDevices(): Promise<DeviceLists> {
    if (!navigator.mediaDevices?.enumerateDevices) return { microphones: [], cameras: [], speakers: [] };
    const devices = await navigator.mediaDevices.enumerateDevices();
    return {
      microphones: devices.filter((d) => d.kind === 'audioinput' && d.deviceId !== ''),
      cameras: devices.filter((d) => d.kind === 'videoinput' && d.deviceId !== ''),
      speakers: devices.filter((d) => d.kind === 'audiooutput' && d.deviceId !== ''),
    };
  }

  private adoptMic(track: MediaStreamTrack | null): void {
    this.mic = track;
    if (track) {
      this.micProblem = null;
      track.enabled = this.micEnabled;
      this.micDeviceId = track.getSettings().deviceId ?? this.micDeviceId;
    }
  }

  private adoptCamera(track: MediaStreamTrack | null): void {
    this.camera = track;
    if (track) {
      this.cameraProblem = null;
      this.cameraDeviceId = track.getSettings().deviceId ?? this.cameraDeviceId;
    }
  }

  private audioConstraints(): MediaTrackConstraints {
    if (!this.micDeviceId) return MIC_CONSTRAINTS;
    const id = this.micChosen ? { exact: this.micDeviceId } : { ideal: this.micDeviceId };
    return { ...MIC_CONSTRAINTS, deviceId: id };
  }

  private videoConstraints(): MediaTrackConstraints {
    if (!this.cameraDeviceId) return CAMERA_CONSTRAINTS;
    const id = this.cameraChosen ? { exact: this.cameraDeviceId } : { ideal: this.cameraDeviceId };
    return { ...CAMERA_CONSTRAINTS, deviceId: id };
  }
}
