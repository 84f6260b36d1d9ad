// What a join needs that does not depend on the name, made on the pre-join
// screen so that pressing Join starts warm (docs/performance.md, "Join
// time"): the E2EE wasm module compiled and run once (`warmUpMls`), the
// media Worker started with its own module, the peer connection created,
// and — once the user shows they are about to join (types a name, reaches
// the Join button) — the WebSocket opened. Nothing is sent on the socket
// before Join: the server learns only that a page is open, which loading it
// told it already. None of this holds a key or touches the meeting's
// encryption: the Worker has no key until the verified group gives one, and
// the real MLS session is made at Join, with the name.

import { loadE2ee, warmUpMls } from './e2ee/group';
import { detectTransformApi, MediaCrypto, type TransformApi } from './e2ee/media';
import { createPeerConnection } from './peer';
import { PREPARED_SOCKET_MAX_AGE_MS, signalingUrl } from './signaling';

/** What Room.start takes from a preparation (each null if not ready or not usable). */
export interface Prepared {
  socket: WebSocket | null;
  crypto: MediaCrypto | null;
  pc: RTCPeerConnection | null;
}

export class JoinPreparation {
  private socket: WebSocket | null = null;
  private socketAt = 0;
  private crypto: MediaCrypto | null = null;
  private pc: RTCPeerConnection | null = null;
  private done = false;
  private readonly api: TransformApi | null = detectTransformApi();

  constructor(private readonly url: string = signalingUrl()) {
    // After the pre-join screen's first paint: the camera preview comes first.
    window.setTimeout(() => {
      if (this.done) return;
      loadE2ee()
        .then(() => {
          if (this.done || !this.api) return;
          this.crypto = new MediaCrypto(this.api, (message) => console.error(`conclave: ${message}`));
          this.pc = createPeerConnection(this.crypto.needsInsertableStreams);
          return warmUpMls(() => this.done);
        })
        .catch(() => undefined); // Join loads (and reports) the module again
    }, 0);
  }

  /**
   * The user is about to join: open the WebSocket (again, if the last one
   * is gone or so old the server would drop it before our `join`).
   */
  intent(): void {
    if (this.done) return;
    const s = this.socket;
    const fresh = s && (s.readyState === WebSocket.CONNECTING || s.readyState === WebSocket.OPEN) && Date.now() - this.socketAt < PREPARED_SOCKET_MAX_AGE_MS - 2000;
    if (fresh) return;
    s?.close();
    try {
      this.socket = new WebSocket(this.url);
      this.socketAt = Date.now();
    } catch {
      this.socket = null;
    }
  }

  /** Hands everything over (once); what is too old or broken comes back null. */
  take(): Prepared {
    this.done = true;
    let socket = this.socket;
    if (socket && Date.now() - this.socketAt >= PREPARED_SOCKET_MAX_AGE_MS) {
      socket.close();
      socket = null;
    }
    const out = { socket, crypto: this.crypto, pc: this.pc };
    this.socket = null;
    this.crypto = null;
    this.pc = null;
    return out;
  }

  /** Not joining after all (e.g. the page shows an error instead). */
  dispose(): void {
    const p = this.take();
    p.socket?.close();
    p.crypto?.dispose();
    p.pc?.close();
  }
}
