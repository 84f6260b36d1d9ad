// Entry point: routes `/` to the landing screen and `/<room>` to pre-join →
// meeting, and decides what happens when a session ends (retry, rejoin,
// back to pre-join with a message).

import './styles.css';
import { installTestHooks } from './e2ee/hooks';
import { detectTransformApi, UNSUPPORTED_BROWSER_TEXT } from './e2ee/media';
import { loadE2ee } from './e2ee/group';
import { secretFromUrl } from './e2ee/secret';
import { LocalMedia } from './media';
import { JoinPreparation } from './prepare';
import { Room } from './room';
import { announce } from './ui/dom';
import { renderEnded } from './ui/ended';
import { renderLanding, roomFromPath, roomNameProblem, roomPath } from './ui/landing';
import { MeetingView, serverErrorText } from './ui/meeting';
import { CAMERA_KEY, MIC_KEY, renderPrejoin } from './ui/prejoin';

/**
 * Rejoining after a lost session (server restarted, network gone for
 * longer than an ICE restart can bridge): quickly at first, then every
 * 15 s, for as long as RETRY_FOR_MS; sooner when the browser says it is
 * online again. After that the page says the connection is lost and
 * offers to rejoin.
 */
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15_000];
const RETRY_FOR_MS = 5 * 60_000;

function appRoot(): HTMLElement {
  const el = document.getElementById('app');
  if (!el) throw new Error('#app missing');
  return el;
}

function saved(key: string): string | undefined {
  try {
    return localStorage.getItem(key) ?? undefined;
  } catch {
    return undefined;
  }
}

function goHome(): void {
  location.assign('/');
}

/** The session the test hooks describe. */
let currentRoom: Room | null = null;

async function enterRoom(root: HTMLElement, roomName: string, notice?: string, media?: LocalMedia): Promise<void> {
  document.title = `${roomName} · Conclave`;
  if (!detectTransformApi()) {
    renderEnded(root, {
      title: 'This browser can’t join encrypted calls',
      detail: UNSUPPORTED_BROWSER_TEXT,
      rejoinLabel: 'Try again',
      onRejoin: () => location.reload(),
      onHome: goHome,
    });
    return;
  }
  // Fetch and compile the encryption module while the user sets up, and
  // get the rest of a join ready (prepare.ts).
  loadE2ee().catch(() => undefined);
  const preparation = new JoinPreparation();
  const local = media ?? new LocalMedia({ micDeviceId: saved(MIC_KEY), cameraDeviceId: saved(CAMERA_KEY) });
  const { name } = await renderPrejoin(root, {
    room: roomName,
    media: local,
    notice,
    noInviteKey: secretFromUrl() === null,
    onIntent: () => preparation.intent(),
  });
  // The Room makes its MLS session from the wasm module at once: a Join
  // pressed before the module finished loading (a slow machine, a quick
  // click) waits for it here. If it failed, the Room says so.
  await loadE2ee().catch(() => undefined);
  startMeeting(root, roomName, name, local, preparation);
}

function startMeeting(root: HTMLElement, roomName: string, name: string, media: LocalMedia, preparation: JoinPreparation): void {
  let room: Room | null = null;
  let firstPreparation: JoinPreparation | null = preparation;
  let joinedOnce = false;
  let attempt = 0;
  let retryTimer: number | undefined;
  /** When the current run of rejoin attempts started (null: not retrying). */
  let retryingSince: number | null = null;
  const onOnline = (): void => {
    if (retryingSince === null || retryTimer === undefined) return;
    window.clearTimeout(retryTimer);
    retryTimer = window.setTimeout(() => {
      retryTimer = undefined;
      connect();
    }, 250);
  };
  window.addEventListener('online', onOnline);

  const view = new MeetingView(roomName, {
    leave: () => {
      window.clearTimeout(retryTimer);
      const live = room && ['connecting', 'connected', 'media_interrupted'].includes(room.state.kind);
      if (live) room?.leave();
      else showLeft();
    },
    rejoin: () => {
      window.clearTimeout(retryTimer);
      attempt = 0;
      retryingSince = null;
      connect();
    },
  });
  root.replaceChildren(view.el);

  const finish = (): void => {
    window.clearTimeout(retryTimer);
    window.removeEventListener('pagehide', onPageHide);
    window.removeEventListener('online', onOnline);
    room?.dispose();
    view.destroy();
  };

  const showLeft = (): void => {
    finish();
    media.stopAll();
    renderEnded(root, {
      title: 'You left the meeting',
      detail: 'Your camera and microphone are off.',
      rejoinLabel: 'Rejoin',
      onRejoin: () => void enterRoom(root, roomName),
      onHome: goHome,
    });
  };

  const onPageHide = (): void => room?.leave();
  window.addEventListener('pagehide', onPageHide);

  const retryOrGiveUp = (): void => {
    retryingSince ??= Date.now();
    if (Date.now() - retryingSince < RETRY_FOR_MS) {
      const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)] ?? 15_000;
      attempt += 1;
      view.showReconnecting(attempt);
      retryTimer = window.setTimeout(() => {
        retryTimer = undefined;
        connect();
      }, delay);
    } else {
      retryingSince = null;
      view.showReconnecting(null);
      announce('Connection lost');
    }
  };

  function connect(): void {
    room?.dispose();
    const prepared = firstPreparation?.take() ?? null;
    firstPreparation = null;
    const r = new Room(roomName, name, media, prepared);
    room = r;
    currentRoom = r;
    r.on((ev) => {
      if (ev.type === 'welcome') {
        joinedOnce = true;
        attempt = 0;
        retryingSince = null;
        announce(`You joined ${roomName}`);
      }
      if (ev.type !== 'state') return;
      const s = ev.state;
      switch (s.kind) {
        case 'left':
          showLeft();
          break;
        case 'refused':
          finish();
          void enterRoom(root, roomName, serverErrorText(s.code, s.message), media);
          break;
        case 'denied':
          finish();
          media.stopAll();
          renderEnded(root, {
            title: 'The meeting’s members declined your request',
            detail: 'Someone in the meeting chose not to let you in. If you were expecting to join, ask them for the full invite link.',
            rejoinLabel: 'Ask again',
            onRejoin: () => void enterRoom(root, roomName),
            onHome: goHome,
          });
          break;
        case 'removed':
          finish();
          media.stopAll();
          renderEnded(root, {
            title: `${s.by} removed you from the meeting`,
            detail: 'This page left the call and deleted its keys. If this was a mistake, ask someone in the meeting to invite you again.',
            rejoinLabel: 'Join again',
            onRejoin: () => void enterRoom(root, roomName),
            onHome: goHome,
          });
          break;
        case 'unsupported':
          finish();
          media.stopAll();
          renderEnded(root, {
            title: 'The call can’t be encrypted here',
            detail: s.message,
            rejoinLabel: 'Try again',
            onRejoin: () => location.reload(),
            onHome: goHome,
          });
          break;
        case 'unreachable':
          if (!joinedOnce) {
            finish();
            void enterRoom(root, roomName, 'Can’t reach the Conclave server. Check your connection and try again.', media);
          } else {
            retryOrGiveUp();
          }
          break;
        case 'lost':
          retryOrGiveUp();
          break;
        default:
          break;
      }
    });
    view.bind(r, joinedOnce);
    r.start();
  }

  connect();
}

function main(): void {
  installTestHooks(() => currentRoom);
  const root = appRoot();
  const room = roomFromPath(location.pathname);
  if (room === null) {
    document.title = 'Conclave';
    renderLanding(root, (name) => location.assign(roomPath(name)));
    return;
  }
  const problem = roomNameProblem(room);
  if (problem) {
    renderEnded(root, {
      title: 'That room link doesn’t work',
      detail: problem,
      rejoinLabel: 'Choose another room',
      onRejoin: goHome,
      onHome: goHome,
    });
    return;
  }
  void enterRoom(root, room);
}

main();
